"""Smoke test of the data-parallel plumbing under ``torchrun``: process group, DDP, the Trainer.

Run by benchmarks/device_check.sh as ``torchrun --nproc-per-node=1 benchmarks/ddp_smoke.py``: one
GPU, so nccl with one rank. The project's Trainer joins a process group only when WORLD_SIZE > 1
(training/distributed.py), so with one rank it trains alone; this script therefore checks the two
halves separately:

1. the process group of the device's backend (nccl on CUDA, gloo on CPU): an all-reduce, and a few
   steps of STA-LSTM wrapped in DistributedDataParallel against the same steps unwrapped (with one
   rank DDP's averaged gradient is the local one, so the weights must agree to float rounding);
2. the Trainer under torchrun's environment on the device: a short fit of the same model, finite loss.

The Kedro embedded run itself is not part of it: the GPU machines have no Kedro (docs/training.md
"Speed"). Prints one JSON line; exits non-zero on a failed check.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _batches(spec: dict, steps: int, device):
    import torch

    from skeleton_attention.training.batches import collate_samples

    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(steps):
        items = [
            {
                "x": torch.randn(spec["num_bodies"], 20, 25, 3, generator=generator).numpy(),
                "length": 20,
                "label": int(torch.randint(0, 60, (1,), generator=generator)),
                "index": i,
            }
            for i in range(4)
        ]
        batches.append({k: v.to(device) if hasattr(v, "to") else v for k, v in collate_samples(items).items()})
    return batches


def _model(spec: dict, device):
    import torch

    from skeleton_attention.models.base import DataDescription
    from skeleton_attention.models.registry import build_model

    torch.manual_seed(0)
    description = DataDescription(num_classes=60, num_joints=25, num_bodies=spec["num_bodies"], layout="ntu25")
    kwargs = {**spec["model_kwargs"], "dropout": 0.0}  # the two runs must draw nothing differently
    return build_model(spec["model"], description, **kwargs).to(device)


def _train(model, batches, lr: float) -> None:
    import torch

    from skeleton_attention.training.trainer import compute_loss

    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for batch in batches:
        loss, _ = compute_loss(model(batch), batch["label"])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from bench_families import resolve_family
    from skeleton_attention.training.trainer import Trainer, TrainerConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="the family's tiny sizes (CPU tests)")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args(argv)
    if "RANK" not in os.environ:
        raise SystemExit("run me under torchrun (torchrun --nproc-per-node=1 benchmarks/ddp_smoke.py)")
    started = time.perf_counter()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device(args.device, local_rank) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    spec = resolve_family("sta_lstm", tiny=args.tiny)
    dist.init_process_group(backend=backend)
    try:
        ones = torch.ones(4, device=device)
        dist.all_reduce(ones)
        reduced = float(ones.sum()) == 4.0 * dist.get_world_size()
        batches = _batches(spec, args.steps, device)
        plain, wrapped = _model(spec, device), _model(spec, device)
        ddp = DistributedDataParallel(wrapped, device_ids=[device.index] if device.type == "cuda" else None)
        _train(plain, batches, lr=0.01)
        _train(ddp, batches, lr=0.01)
        diff = max(
            float((a - b).abs().max())
            for a, b in zip(plain.state_dict().values(), wrapped.state_dict().values(), strict=True)
        )
    finally:
        dist.destroy_process_group()
    # the Trainer under torchrun's environment (one rank: no process group of its own)
    config = TrainerConfig(
        epochs=1,
        optimizer={"name": "sgd", "lr": 0.01},
        monitor="train_acc",
        device=str(device),
        amp="bf16" if device.type == "cuda" else None,
        progress=False,
    )
    result = Trainer(_model(spec, device), config).fit(batches, None)
    loss = result.history[0]["train_loss"]
    report = {
        "backend": backend,
        "device": str(device),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "all_reduce_ok": reduced,
        "ddp_vs_plain_max_abs_diff": diff,
        "trainer_loss": loss,
        "seconds": round(time.perf_counter() - started, 1),
    }
    ok = reduced and diff <= 1e-5 and loss == loss and abs(loss) != float("inf")
    report["ok"] = ok
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
