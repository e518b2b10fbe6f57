"""Training and inference speed of every model family: the project's Trainer in fp32, with bf16
autocast and with ``torch.compile``, against a plain eager loop; one table, with a correctness column.

Families (``--models``, default ``sta_lstm``; ``all`` = every one) at their paper sizes, read from
``conf/base/parameters_train_<family>.yml`` (benchmarks/bench_families.py): STA-LSTM, the
view-attention LSTM (``--views`` views, default 3), SAN-V2 and TS-SAN, DSTA-Net, MANs-9. Each gets
synthetic NTU-shaped batches of its input contract (2 bodies x 25 joints x 3 channels, 60 classes;
its streams; multi-view batches with ``view_mask`` for the view-attention LSTM; the fixed T its
sampling produces for SAN (32 / 96), DSTA-Net (128) and MANs (50), else per-sample lengths between
half and all of ``--frames``, padded and masked by the project's collate; ``--frames`` given on a
fixed-length family replaces its T), its batch size (or ``--batch``), its optimizer and gradient
clipping, from the same initial weights on the same batches.

Paths (``--paths``, default ``eager amp compile``):

* ``eager``    :class:`skeleton_attention.training.trainer.Trainer` in float32 (running metrics on the
              device: no per-step host read; determinism on CPU; a full checkpoint every epoch) and
              ``Trainer.predict``; ``trainer`` is the same path's old name;
* ``amp``      the same with ``training.amp: bf16`` (``trainer_bf16``: old name). The Trainer applies
              AMP on CUDA only (training/amp.py); on the CPU the benchmark sets the Trainer's
              autocast dtype to bf16 itself (as tests/test_trainer.py does), because torch supports
              bf16 autocast there and whether it pays is what this measures. On a CPU without
              native bf16 (AVX2 only) oneDNN has no bf16 LSTM kernel: that row reads
              ``unsupported`` (not a failure);
* ``compile``  the same with ``training.compile`` (``true``, or the family's options, e.g.
              DSTA-Net ``{dynamic: false}``); prediction stays eager, as in the Trainer;
* ``plain``    a hand-written loop: forward, the Trainer's loss, backward, clipping, optimizer step;
* ``plain_sync`` the plain loop reading the loss and correct count on the host after every step,
              as the Trainer did before its running metrics moved to the device.

Columns: train and inference samples/s (timed epochs only; inference over the same samples),
``loader %`` (the DataLoader's ``next()``: reading and collate, ``num_workers=0``, as a share of the
timed training time), peak memory (CPU: the worker's peak RSS; CUDA: ``torch.cuda.max_memory_allocated``),
``warm-up s`` (the untimed first epoch(s): compilation included on the ``compile`` path), and the
correctness check: the mean training loss of the first epoch (the same steps, weights, batches and
dropout draws on every path) against the ``eager`` row's, relative, within :data:`TOLERANCE`.

Every (model, path) runs in its own fresh interpreter (its own peak memory, its own compile
caches). On the CPU the rates use the process's CPU time (robust to other load on a shared
machine; with ``--threads 1``, single-core time), on CUDA wall time after synchronizing. Usage::

    python benchmarks/bench_train.py --devices cpu --models all --samples 32 --batch 16   # CPU table
    python benchmarks/bench_train.py --devices cuda --models all                          # paper batches
    python benchmarks/bench_train.py --paths plain plain_sync eager    # cost of per-step host reads
    python benchmarks/bench_train.py --table data/04_feature/ntu/samples.parquet --batch 32   # real loader
    python benchmarks/bench_train.py --models san_v2 --model-kwargs '{"variant": "san_v1"}'
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# this checkout's code, also where the environment installed another checkout (a worktree, or the
# GPU machine's copy without any install); the workers run this file and inherit it
sys.path.insert(0, str(REPO_ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import machine_line, peak_rss_mib  # noqa: E402
from bench_families import FAMILIES, resolve_family  # noqa: E402
from bench_train_report import TOLERANCE, check_correctness, print_table  # noqa: E402

PATHS = ("eager", "amp", "compile", "plain", "plain_sync")
ALIASES = {"trainer": "eager", "trainer_bf16": "amp"}
DEFAULT_PATHS = ("eager", "amp", "compile")
#: registered model names that were --model values before the families (docs/results.md commands)
MODEL_ALIASES = {"san": "san_v2", "mans": "mans9"}


def _dataset(
    samples: int,
    frames: int,
    seed: int,
    *,
    views: int,
    bodies: int,
    fixed_length: bool,
    classes: int,
    streams: tuple[str, ...],
):
    """Random NTU-shaped items as the project's datasets yield them: ``x`` (M, T, V, C), or
    (views, M, T, V, C) with a ``view_mask`` that drops one view of every fourth sample; one
    ``x_<stream>`` each when the model reads several streams."""
    import numpy as np
    from torch.utils.data import Dataset

    shape = (samples, views, bodies, frames, 25, 3) if views > 1 else (samples, bodies, frames, 25, 3)

    class Synthetic(Dataset):
        def __init__(self) -> None:
            rng = np.random.default_rng(seed)
            self.x = rng.normal(size=shape).astype(np.float32)
            low = frames if fixed_length else frames // 2
            self.lengths = rng.integers(low, frames + 1, size=samples)
            self.labels = rng.integers(0, classes, size=samples)

        def __len__(self) -> int:
            return samples

        def __getitem__(self, i: int):
            n = int(self.lengths[i])
            keys = ["x"] if len(streams) == 1 else [f"x_{name}" for name in streams]
            item = {key: self.x[i, ..., :n, :, :] for key in keys}
            item.update({"length": n, "label": int(self.labels[i]), "index": i})
            if views > 1:
                mask = np.ones(views, dtype=bool)
                if i % 4 == 3:
                    mask[i % views] = False
                item["view_mask"] = mask
            return item

    return Synthetic()


def _loader(dataset, batch: int, shuffle_seed: int | None, collate):
    import torch
    from torch.utils.data import DataLoader

    generator = None
    if shuffle_seed is not None:
        generator = torch.Generator()
        generator.manual_seed(shuffle_seed)
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=shuffle_seed is not None,
        generator=generator,
        collate_fn=collate,
        num_workers=0,
    )


class TimedLoader:
    """A training loader that adds the time of every ``next()`` (reading, sampling, collate) to
    ``seconds``; the Trainer sees the wrapped loader's length, sampler and dataset."""

    def __init__(self, loader) -> None:
        self.loader = loader
        self.seconds = 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            before = _now()
            batch = next(batches, None)
            self.seconds += _now() - before
            if batch is None:
                return
            yield batch


def _table_loaders(spec: dict, input_spec):
    """The project's own loaders on a prepared table (``--table``): SkeletonDataset reading Parquet,
    temporal sampling, augmentation and collate, as ``train_model`` builds them (train rows of
    ``--protocol`` for training, its test rows for inference; no validation carve)."""
    from skeleton_attention.training.data import DataSettings, build_loaders, build_training_data

    config = {"protocol": spec["protocol"], "batch_size": spec["batch"], "num_workers": 0, "val_fraction": 0.0}
    config.update(spec["data_settings"])
    settings = DataSettings.from_config(config)
    data = build_training_data(spec["table"], settings, seed=0, input_spec=input_spec)
    loaders = build_loaders(data, settings, seed=0)
    return loaders["train"], loaders["test"], data.description


def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mib()


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


_CLOCK = {"clock": time.perf_counter}


def _now() -> float:
    return _CLOCK["clock"]()


class EpochClock:
    """Trainer callback: time of every epoch (checkpoint writing included) and the loader's part."""

    def __init__(self, device, loader: TimedLoader) -> None:
        self.device = device
        self.loader = loader
        self.durations: list[float] = []
        self.loading: list[float] = []
        self._last: float | None = None
        self._loaded = 0.0

    def on_fit_start(self, trainer, history) -> None:
        pass

    def on_phase_start(self, trainer, phase_index, phase) -> None:
        _sync(self.device)
        self._last, self._loaded = _now(), self.loader.seconds

    def on_epoch_end(self, trainer, metrics) -> None:
        _sync(self.device)
        now = _now()
        self.durations.append(now - self._last)
        self.loading.append(self.loader.seconds - self._loaded)
        self._last, self._loaded = now, self.loader.seconds

    def on_fit_end(self, trainer, result) -> None:
        pass


def _description(spec: dict, input_spec):
    from skeleton_attention.models.base import DataDescription

    streams = tuple(spec["streams"])
    return DataDescription(
        streams=streams,
        channels=(3,) * len(streams),
        num_classes=60,
        num_joints=25,
        num_bodies=int(spec["num_bodies"]),
        num_views=int(spec["views"]) if input_spec.multi_view else 1,
        multi_view=input_spec.multi_view,
        num_frames=spec["fixed_frames"],
        layout="ntu25",
    )


def _plain(spec: dict, model, train_loader, device) -> dict:
    """The hand-written loop: the Trainer's loss, clipping and optimizer, no Trainer."""
    import torch

    from skeleton_attention.training.checkpoints import seed_everything
    from skeleton_attention.training.trainer import build_optimizer, compute_loss, move_batch

    per_step_sync = spec["path"] == "plain_sync"
    optimizer = build_optimizer(model.parameters(), spec["optimizer"])
    clip = spec["grad_clip_norm"]
    warmup, epochs = int(spec["warmup"]), int(spec["epochs"])
    seed_everything(0)  # what the Trainer does at the start of a fit: the same dropout draws
    train_time = load_time = warmup_time = 0.0
    first_loss = None
    for epoch in range(warmup + epochs):
        model.train()
        _sync(device)
        start = _now()
        batches = iter(train_loader)
        loss_sum, seen = torch.zeros((), dtype=torch.float64, device=device), 0
        running_loss, correct = 0.0, 0
        while True:
            before = _now()
            batch = next(batches, None)  # reading, sampling, collate (num_workers=0: all in this process)
            if epoch >= warmup:
                load_time += _now() - before
            if batch is None:
                break
            batch = move_batch(batch, device)
            out = model(batch)
            loss, _ = compute_loss(out, batch["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(clip))
            optimizer.step()
            n = int(batch["label"].shape[0])
            loss_sum += loss.detach().double() * n
            seen += n
            if per_step_sync:  # the host reads of the old Trainer loop
                running_loss += float(loss.detach())
                correct += int((out.logits.detach().argmax(dim=1) == batch["label"]).sum())
        _sync(device)
        elapsed = _now() - start
        if epoch == 0:
            first_loss = float(loss_sum) / seen
        if epoch >= warmup:
            train_time += elapsed
        else:
            warmup_time += elapsed
    return {"train_time": train_time, "load_time": load_time, "warmup_time": warmup_time, "loss": first_loss}


def _trainer(spec: dict, model, train_loader, device) -> tuple[dict, object]:
    """The project's Trainer on ``spec['path']``: fp32, bf16 autocast, or compiled."""
    import torch

    from skeleton_attention.training.trainer import Trainer, TrainerConfig

    path, warmup = spec["path"], int(spec["warmup"])
    timed = TimedLoader(train_loader)
    with tempfile.TemporaryDirectory() as checkpoints:
        config = TrainerConfig(
            epochs=warmup + int(spec["epochs"]),
            optimizer=spec["optimizer"],
            grad_clip_norm=spec["grad_clip_norm"],
            monitor="train_acc",
            device=spec["device"],
            amp="bf16" if path == "amp" else None,
            compile=spec["compile"] if path == "compile" else False,
            progress=False,
            checkpoint_dir=checkpoints,
        )
        if path == "compile":
            # inductor draws dropout masks with its own RNG unless told to use eager's: then the
            # compiled training would differ from eager by chance, not by error, and the correctness
            # column could not tell the two apart
            import torch._inductor.config as inductor_config

            inductor_config.fallback_random = True
        clock = EpochClock(device, timed)
        trainer = Trainer(model, config, callbacks=[clock])
        if path == "amp" and trainer.amp_dtype is None:
            trainer.amp_dtype = torch.bfloat16  # the Trainer's AMP is CUDA-only; see the module docstring
        result = trainer.fit(timed, None)
    return {
        # whole epochs as the trainer runs them: batches, metrics, LR schedule and checkpoint
        "train_time": sum(clock.durations[warmup:]),
        "load_time": sum(clock.loading[warmup:]),
        "warmup_time": sum(clock.durations[:warmup]),
        "loss": result.history[0]["train_loss"],
    }, trainer


def measure(spec: dict) -> dict:
    """One measurement (runs in a child interpreter)."""
    import torch

    from skeleton_attention.models.registry import build_model, model_input_spec
    from skeleton_attention.training.batches import collate_samples
    from skeleton_attention.training.trainer import move_batch

    torch.set_num_threads(int(spec["threads"]))
    # CPU: process CPU time, which the other load on a shared machine disturbs far less than wall
    # time (with one thread it is the single-core time); CUDA: wall time after synchronizing
    _CLOCK["clock"] = time.process_time if spec["clock"] == "cpu" else time.perf_counter
    device = torch.device(spec["device"])
    input_spec = model_input_spec(spec["model"])
    description = _description(spec, input_spec)
    if spec.get("table"):
        train_loader, eval_loader, description = _table_loaders(spec, input_spec)
    else:
        dataset = _dataset(
            spec["samples"],
            spec["fixed_frames"] or spec["frames"],
            seed=1,
            views=description.num_views,
            bodies=description.num_bodies,
            fixed_length=spec["fixed_frames"] is not None,
            classes=60,
            streams=description.streams,
        )
        collate = input_spec.collate or collate_samples
        train_loader = _loader(dataset, spec["batch"], shuffle_seed=2, collate=collate)
        eval_loader = _loader(dataset, spec["batch"], shuffle_seed=None, collate=collate)
    torch.manual_seed(0)  # the same initial weights on every path
    model = build_model(spec["model"], description, **spec["model_kwargs"]).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    if spec["path"] in ("plain", "plain_sync"):
        timing = _plain(spec, model, train_loader, device)
        predict = model
    else:
        timing, trainer = _trainer(spec, model, train_loader, device)
        predict = None
    model.eval()
    _sync(device)
    start = _now()
    if predict is None:
        trainer.predict(eval_loader)
    else:
        with torch.inference_mode():
            for batch in eval_loader:
                model(move_batch(batch, device))
    _sync(device)
    infer_time = _now() - start
    n_train, n_eval = len(train_loader.dataset), len(eval_loader.dataset)
    return {
        "family": spec["family"],
        "device": spec["device"],
        "path": spec["path"],
        "train_samples_per_s": n_train * int(spec["epochs"]) / timing["train_time"],
        "infer_samples_per_s": n_eval / infer_time,
        "loader_share": timing["load_time"] / timing["train_time"],
        "warmup_s": timing["warmup_time"],
        "loss": timing["loss"],
        "peak_memory_mb": _peak_memory_mb(device),
        "parameters": sum(p.numel() for p in model.parameters()),
        "clock": spec["clock"],
    }


def _family_specs(args: argparse.Namespace) -> list[dict]:
    """One resolved family per ``--models`` name, with the command line's overrides."""
    names = list(FAMILIES) if "all" in args.models else [MODEL_ALIASES.get(n, n) for n in args.models]
    families = []
    for name in dict.fromkeys(names):
        family = resolve_family(name, tiny=args.tiny)
        family["model_kwargs"].update(args.model_kwargs or {})
        if args.frames and family["fixed_frames"]:
            family["fixed_frames"] = args.frames
        if args.batch:
            family["batch"] = args.batch
        if args.optimizer:
            family["optimizer"] = {"name": args.optimizer, "lr": args.lr or 0.005}
        elif args.lr:
            family["optimizer"]["lr"] = args.lr
        if args.compile_options is not None:
            family["compile"] = args.compile_options
        families.append(family)
    return families


#: oneDNN's message when it has no kernel for a primitive (bf16 LSTM on a CPU without native bf16)
ONEDNN_NO_KERNEL = "could not create a primitive descriptor"


def _cpu_capability() -> str:
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def _run_worker(spec: dict, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        last = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or ["(no message)"]
        if spec["device"] == "cpu" and spec["path"] == "amp" and ONEDNN_NO_KERNEL in done.stderr:
            # a CPU without native bf16 (AVX2 only): oneDNN has no bf16 LSTM kernel there; the
            # path cannot run on this machine, which is a property of the CPU, not a wrong result
            return {
                "family": spec["family"],
                "device": spec["device"],
                "path": spec["path"],
                "unsupported": f"no bf16 kernel on this CPU ({_cpu_capability()}): {last[0][:90]}",
            }
        return {
            "family": spec["family"],
            "device": spec["device"],
            "path": spec["path"],
            "error": last[0][:160],
            "stderr": done.stderr[-3000:],
        }
    return json.loads(done.stdout.strip().splitlines()[-1])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--devices", nargs="*", default=None, help="cpu and/or cuda (default: cuda if present, else cpu)"
    )
    parser.add_argument(
        "--models",
        "--model",
        nargs="+",
        default=["sta_lstm"],
        choices=[*FAMILIES, *MODEL_ALIASES, "all"],
        help="benchmark families (bench_families.py), or all",
    )
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default=None,
        help='JSON merged over every family\'s model kwargs, e.g. \'{"variant": "lstm"}\'',
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="each family's tiny model settings (bench_families.py), for tests and dry runs",
    )
    parser.add_argument("--views", type=int, default=3, help="views per sample for multi-view models")
    parser.add_argument("--optimizer", default=None, help="adam / sgd / ... instead of the family's optimizer")
    parser.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: the family's; 0.005 with --optimizer)"
    )
    parser.add_argument(
        "--compile-options",
        type=json.loads,
        default=None,
        help='torch.compile arguments (JSON) instead of the family\'s, e.g. \'{"mode": "max-autotune"}\'',
    )
    parser.add_argument("--samples", type=int, default=None, help="samples per epoch (default: 2 batches)")
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help="variable-length families: max frames, lengths U[frames/2, frames] (default 100); "
        "fixed-length ones: T instead of the one their sampling fixes",
    )
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the family's)")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs first (compilation happens here)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default=None,
        help="cpu: process CPU time (default on CPU), wall: wall time (default on CUDA)",
    )
    parser.add_argument(
        "--paths",
        nargs="*",
        choices=(*PATHS, *ALIASES),
        default=None,
        help=f"what to measure (default: {' '.join(DEFAULT_PATHS)})",
    )
    parser.add_argument(
        "--table", default=None, help="a prepared table (data/04_feature/ntu/samples.parquet) instead of synthetic data"
    )
    parser.add_argument("--protocol", default="ntu60_xsub", help="with --table: its train rows train, test rows infer")
    parser.add_argument(
        "--data-settings",
        type=json.loads,
        default={"augmentation": {"noise_std": 0.075}},
        help="with --table: data settings (JSON) over the defaults, e.g. sampling and augmentation",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--dry-run", action="store_true", help="print each worker's settings and run none")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return 0
    if args.warmup < 1:
        raise SystemExit("--warmup must be >= 1: the correctness column compares the first epoch's loss")

    import torch

    devices = args.devices or (["cuda"] if torch.cuda.is_available() else ["cpu"])
    paths = list(dict.fromkeys(ALIASES.get(p, p) for p in (args.paths or DEFAULT_PATHS)))
    families = _family_specs(args)
    specs = []
    for device in devices:
        for family in families:
            for path in paths:
                specs.append(
                    {
                        **family,
                        "clock": args.clock or ("cpu" if device == "cpu" else "wall"),
                        "device": device,
                        "path": path,
                        "samples": args.samples or 2 * family["batch"],
                        "frames": args.frames or 100,
                        "views": args.views,
                        "epochs": args.epochs,
                        "warmup": args.warmup,
                        "threads": args.threads,
                        "table": args.table,
                        "protocol": args.protocol,
                        "data_settings": args.data_settings,
                    }
                )
    if args.dry_run:
        for spec in specs:
            print(json.dumps(spec))
        return 0
    load_at_start = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    rows = []
    for spec in specs:
        rows.append(_run_worker(spec, args.threads))
        if args.json:  # after every row: a run stopped by a time limit keeps what it measured
            args.json.write_text(json.dumps(rows, indent=2))
    check_correctness(rows)
    data = f"table {args.table} ({args.protocol})" if args.table else "synthetic NTU-shaped batches"
    cpu_only = "" if "cuda" in devices else " CPU only (no CUDA device here)."
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), devices {', '.join(devices)}.{cpu_only}")
    print(f"{machine_line()} (at the end; at the start {load_at_start})")
    print(
        f"{data}; {args.epochs} timed epoch(s) after {args.warmup} warm-up epoch(s) per row; rates on "
        f"{'CPU time' if (args.clock or 'cpu') == 'cpu' and devices == ['cpu'] else 'the device clock'}; "
        f"correctness: first-epoch training loss vs eager, relative, fp32 paths within {TOLERANCE['fp32']:g}, "
        f"bf16 within {TOLERANCE['bf16']:g}"
    )
    for family in families:
        frames = family["fixed_frames"] or f"<= {args.frames or 100}"
        samples = args.samples or 2 * family["batch"]
        print(
            f"- {family['label']}: {family['model']} {json.dumps(family['model_kwargs'])} "
            f"from {family['config_file']}; batch {family['batch']}, {samples} samples, "
            f"{frames} frames, streams {family['streams']}, compile {json.dumps(family['compile'])}"
        )
    print()
    print_table(rows, {f["family"]: f["label"] for f in families})
    for row in rows:
        if "error" in row:
            print(f"\n{row['family']} / {row['device']} / {row['path']} failed:\n{row['stderr']}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 1 if any("error" in r or r.get("correct") is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
