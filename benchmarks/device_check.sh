#!/usr/bin/env bash
# The GPU check a session with a lent GPU runs (one call, about 10 minutes of device time):
#
#   bash benchmarks/device_check.sh            # on the GPU machine, from the repository root
#   bash benchmarks/device_check.sh --dry-run  # anywhere: parses every command line, runs the
#                                              # torchrun smoke on the CPU (gloo) at tiny size
#
# 1. benchmarks/bench_train.py on CUDA: every family (STA-LSTM, view-attention LSTM with 3 views,
#    SAN-V2, TS-SAN, DSTA-Net, MANs-9) at paper size and paper batch, paths eager / amp (bf16) /
#    compile, wall clock, torch.cuda.max_memory_allocated; 2 batches per epoch, 1 warm-up + 2 timed
#    epochs per row;
# 2. the cost of per-step host reads on CUDA: STA-LSTM plain vs plain_sync vs eager;
# 3. torchrun --nproc-per-node=1 benchmarks/ddp_smoke.py: nccl process group, DDP steps of STA-LSTM
#    against plain ones, the Trainer under torchrun on the GPU. (The Kedro embedded run is not
#    part of it: the GPU machines have no Kedro; ddp_smoke.py exercises the same Trainer.)
#
# Under 6 minutes by construction: each stage runs under `timeout` (270 + 60 + 60 s) and the
# benchmark writes its JSON after every row, so a stage cut short keeps what it measured.
# Expected on an H100 (not yet run there): about 4 minutes, most of it the 18 interpreters'
# start-up and CUDA initialisation (~5-10 s each) and the compile warm-ups (tens of seconds for
# DSTA-Net and SAN). Everything lands under $OUT (set by the device tool; default ./device_out):
# env.txt (versions, nvidia-smi, the commands and their exit codes), bench_train.md / .json,
# host_sync.md / .json, ddp_smoke.txt, errors.txt (every stage's stderr): 7 files, within the
# device tool's 8.
set -uo pipefail

OUT="${OUT:-./device_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
# torchrun as the module of the Python that holds torch (no reliance on PATH); TORCHRUN overrides
read -r -a TORCHRUN <<<"${TORCHRUN:-$PY -m torch.distributed.run}"
DRY=0
[[ "${1:-}" == "--dry-run" ]] && DRY=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true
status=0

stage() {  # stage <seconds> <log file> <command...>: run under a time limit, keep the exit code
  local limit=$1 log=$2
  shift 2
  echo "== $*" | tee -a "$OUT/env.txt" "$OUT/errors.txt"
  timeout "$limit" "$@" >"$log" 2>>"$OUT/errors.txt"
  local rc=$?
  echo "   exit $rc$([[ $rc -eq 124 ]] && echo " (time limit)")" | tee -a "$OUT/env.txt"
  [[ $rc -ne 0 ]] && status=1
  tail -n 30 "$log"
}

"$PY" -c "import sys, torch; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda,
'available', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" \
  >"$OUT/env.txt" 2>&1
command -v nvidia-smi >/dev/null && nvidia-smi >>"$OUT/env.txt" 2>&1

if [[ $DRY -eq 1 ]]; then
  stage 60 "$OUT/bench_train.md" "$PY" benchmarks/bench_train.py --devices cuda --models all \
    --paths eager amp compile --epochs 2 --warmup 1 --json "$OUT/bench_train.json" --dry-run
  stage 60 "$OUT/host_sync.md" "$PY" benchmarks/bench_train.py --devices cuda --models sta_lstm \
    --paths plain plain_sync eager --epochs 2 --warmup 1 --json "$OUT/host_sync.json" --dry-run
  stage 120 "$OUT/ddp_smoke.txt" "${TORCHRUN[@]}" --nproc-per-node=1 --master-port=29533 benchmarks/ddp_smoke.py \
    --device cpu --tiny --steps 2
  exit $status
fi

stage 270 "$OUT/bench_train.md" "$PY" benchmarks/bench_train.py --devices cuda --models all \
  --paths eager amp compile --epochs 2 --warmup 1 --json "$OUT/bench_train.json"
stage 60 "$OUT/host_sync.md" "$PY" benchmarks/bench_train.py --devices cuda --models sta_lstm \
  --paths plain plain_sync eager --epochs 2 --warmup 1 --json "$OUT/host_sync.json"
stage 60 "$OUT/ddp_smoke.txt" "${TORCHRUN[@]}" --nproc-per-node=1 benchmarks/ddp_smoke.py --device cuda
exit $status
