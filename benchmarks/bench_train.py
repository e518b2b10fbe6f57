"""Training and inference speed of any registered model: the project's Trainer vs a plain eager loop.

Both paths train the same model (default STA-LSTM at paper size: 3 x LSTM(100) main network, one
LSTM(100) per attention subnetwork; ``--model`` / ``--model-kwargs`` pick another family, e.g. the
view-attention LSTM with ``--views 3``) on NTU shapes (2 bodies x 25 joints x 3 channels, 60 classes)
from the same initial weights on the same synthetic batches (random coordinates, per-sample lengths
between half and all of ``--frames`` unless the model needs a fixed length, padded and masked by the
project's collate function; multi-view models also get ``view_mask``):

* ``plain``    a hand-written loop: forward, CE (+ head CEs) + regularization terms, backward, clip,
              optimizer step;
              inference is ``model(batch)`` under ``torch.inference_mode``; it also times the
              DataLoader's ``next()`` (reading + collate), reported as the loader's share of the
              step time (``loader %``);
* ``plain_sync`` the same loop reading ``float(loss)`` and the correct count on the host after
              every step, as the Trainer did before it kept its running metrics on the device
              (on CUDA each read waits for the GPU; on the CPU there is nothing to wait for);
* ``trainer``  :class:`skeleton_attention.training.trainer.Trainer` (metrics accumulation,
              gradient clipping, determinism on CPU, a full checkpoint every epoch) and
              ``Trainer.predict``; on CUDA also with bf16 autocast (``trainer_bf16``).

Every measurement runs in its own fresh interpreter, so the peak memory it reports is its own
(CPU: peak RSS of the process; CUDA: ``torch.cuda.max_memory_allocated``). The first
``--warmup`` epoch(s) are not timed. On the CPU the rates use the process's CPU time (robust to
other load on a shared machine; with ``--threads 1`` it is single-core time), on CUDA wall time.
Usage::

    python benchmarks/bench_train.py                          # CPU, and CUDA when available
    python benchmarks/bench_train.py --samples 512 --frames 150 --batch 128 --threads 2
    python benchmarks/bench_train.py --devices cuda --batch 256 --samples 4096
    python benchmarks/bench_train.py --paths plain plain_sync trainer   # cost of per-step host reads
    python benchmarks/bench_train.py --table data/04_feature/ntu/samples.parquet --batch 32   # real loader
    python benchmarks/bench_train.py --model view_attention --views 3 --frames 60
    python benchmarks/bench_train.py --model san --model-kwargs '{"variant": "san_v1"}' --frames 32
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
try:
    import skeleton_attention  # noqa: F401
except ImportError:  # running from a checkout without an editable install
    sys.path.insert(0, str(REPO_ROOT / "src"))


def _dataset(
    samples: int, frames: int, seed: int, *, views: int, fixed_length: bool, classes: int, streams: tuple[str, ...]
):
    """Random NTU-shaped items as the project's datasets yield them: ``x`` (M, T, V, C), or
    (views, M, T, V, C) with a ``view_mask`` that drops one view of every fourth sample; one
    ``x_<stream>`` each when the model reads several streams."""
    import numpy as np
    from torch.utils.data import Dataset

    shape = (samples, views, 2, frames, 25, 3) if views > 1 else (samples, 2, frames, 25, 3)

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


def _loader(dataset, batch: int, shuffle_seed: int | None):
    import torch
    from torch.utils.data import DataLoader

    from skeleton_attention.training.data import collate_samples

    generator = None
    if shuffle_seed is not None:
        generator = torch.Generator()
        generator.manual_seed(shuffle_seed)
    return DataLoader(
        dataset,
        batch_size=batch,
        shuffle=shuffle_seed is not None,
        generator=generator,
        collate_fn=collate_samples,
        num_workers=0,
    )


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
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


_CLOCK = {"clock": time.perf_counter}


def _now() -> float:
    return _CLOCK["clock"]()


class EpochClock:
    """Trainer callback: wall time of every epoch, checkpoint writing included."""

    def __init__(self, device) -> None:
        self.device = device
        self.durations: list[float] = []
        self._last: float | None = None

    def on_fit_start(self, trainer, history) -> None:
        pass

    def on_phase_start(self, trainer, phase_index, phase) -> None:
        _sync(self.device)
        self._last = _now()

    def on_epoch_end(self, trainer, metrics) -> None:
        _sync(self.device)
        now = _now()
        self.durations.append(now - self._last)
        self._last = now

    def on_fit_end(self, trainer, result) -> None:
        pass


def measure(spec: dict) -> dict:
    """One measurement (runs in a child interpreter)."""
    import torch
    import torch.nn.functional as F

    from skeleton_attention.models.base import DataDescription
    from skeleton_attention.models.registry import build_model, model_input_spec
    from skeleton_attention.training.trainer import Trainer, TrainerConfig, move_batch

    torch.set_num_threads(int(spec["threads"]))
    # CPU: process CPU time, which the other load on a shared machine disturbs far less than wall
    # time (with one thread it is the single-core time); CUDA: wall time after synchronizing
    _CLOCK["clock"] = time.process_time if spec["clock"] == "cpu" else time.perf_counter
    device = torch.device(spec["device"])
    torch.manual_seed(0)
    input_spec = model_input_spec(spec["model"])
    views = int(spec["views"]) if input_spec.multi_view else 1
    streams = tuple(input_spec.streams or ("joint",))
    description = DataDescription(
        streams=streams,
        channels=(3,) * len(streams),
        num_classes=60,
        num_joints=25,
        num_bodies=2,
        num_views=views,
        multi_view=input_spec.multi_view,
        num_frames=spec["frames"] if input_spec.fixed_length else None,
        layout="ntu25",
    )
    if spec.get("table"):
        train_loader, eval_loader, description = _table_loaders(spec, input_spec)
    else:
        dataset = _dataset(
            spec["samples"], spec["frames"], seed=1, views=views, fixed_length=input_spec.fixed_length, classes=60,
            streams=streams,
        )
        train_loader = _loader(dataset, spec["batch"], shuffle_seed=2)
        eval_loader = _loader(dataset, spec["batch"], shuffle_seed=None)
    model = build_model(spec["model"], description, **spec["model_kwargs"]).to(device)
    optimizer_config = {"name": spec["optimizer"], "lr": spec["lr"]}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    base_memory = (
        _peak_memory_mb(device)
        if device.type == "cuda"
        else (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    )
    warmup, epochs = int(spec["warmup"]), int(spec["epochs"])
    path = spec["path"]
    result: dict = {"device": spec["device"], "path": path}

    if path in ("plain", "plain_sync"):
        per_step_sync = path == "plain_sync"
        load_time = 0.0
        if spec["optimizer"] == "adam":
            optimizer = torch.optim.Adam(model.parameters(), lr=spec["lr"])
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=spec["lr"], momentum=0.9)
        train_time = 0.0
        for epoch in range(warmup + epochs):
            model.train()
            _sync(device)
            start = _now()
            batches = iter(train_loader)
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
                loss = F.cross_entropy(out.logits, batch["label"]) + sum(out.regularization.values())
                for head in out.head_logits.values():
                    loss = loss + F.cross_entropy(head, batch["label"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                if per_step_sync:  # the host reads of the old Trainer loop
                    running_loss += float(loss.detach())
                    correct += int((out.logits.detach().argmax(dim=1) == batch["label"]).sum())
            _sync(device)
            if epoch >= warmup:
                train_time += _now() - start
        result["loader_share"] = load_time / train_time
        model.eval()
        _sync(device)
        start = _now()
        with torch.inference_mode():
            for batch in eval_loader:
                model(move_batch(batch, device))
        _sync(device)
        infer_time = _now() - start
    else:
        amp = "bf16" if path == "trainer_bf16" else None
        with tempfile.TemporaryDirectory() as checkpoints:
            config = TrainerConfig(
                epochs=warmup + epochs,
                optimizer=optimizer_config,
                grad_clip_norm=1.0,
                monitor="train_acc",
                device=spec["device"],
                amp=amp,
                progress=False,
                checkpoint_dir=checkpoints,
            )
            clock = EpochClock(device)
            trainer = Trainer(model, config, callbacks=[clock])
            trainer.fit(train_loader, None)
            # whole epochs as the trainer runs them: batches, metrics, LR schedule and checkpoint
            train_time = sum(clock.durations[warmup:])
        _sync(device)
        start = _now()
        trainer.predict(eval_loader)
        _sync(device)
        infer_time = _now() - start
    n_train, n_eval = len(train_loader.dataset), len(eval_loader.dataset)
    result.update(
        {
            "train_samples_per_s": n_train * epochs / train_time,
            "infer_samples_per_s": n_eval / infer_time,
            "peak_memory_mb": _peak_memory_mb(device),
            "memory_before_mb": base_memory,
            "parameters": sum(p.numel() for p in model.parameters()),
            "clock": spec["clock"],
        }
    )
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", nargs="*", default=None, help="cpu and/or cuda (default: cpu + cuda if present)")
    parser.add_argument("--model", default="sta_lstm", help="a registered model name")
    parser.add_argument("--model-kwargs", type=json.loads, default=None, help='JSON, e.g. \'{"variant": "lstm"}\'')
    parser.add_argument("--views", type=int, default=3, help="views per sample for multi-view models")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--lr", type=float, default=0.005)
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--frames", type=int, default=100, help="max frames; lengths are U[frames/2, frames]")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs")
    parser.add_argument("--warmup", type=int, default=1, help="untimed epochs first")
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
        choices=("plain", "plain_sync", "trainer", "trainer_bf16"),
        default=None,
        help="what to measure (default: plain, trainer, and trainer_bf16 on CUDA)",
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
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(measure(json.loads(args.worker))))
        return

    import torch

    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    model_kwargs = (
        args.model_kwargs
        if args.model_kwargs is not None
        else ({"variant": "sta_lstm"} if args.model == "sta_lstm" else {})
    )
    rows = []
    for device in devices:
        paths = args.paths or ["plain", "trainer"] + (["trainer_bf16"] if device == "cuda" else [])
        for path in paths:
            spec = {
                "clock": args.clock or ("cpu" if device == "cpu" else "wall"),
                "device": device,
                "path": path,
                "samples": args.samples,
                "frames": args.frames,
                "batch": args.batch,
                "epochs": args.epochs,
                "warmup": args.warmup,
                "threads": args.threads,
                "model": args.model,
                "model_kwargs": model_kwargs,
                "views": args.views,
                "optimizer": args.optimizer,
                "lr": args.lr,
                "table": args.table,
                "protocol": args.protocol,
                "data_settings": args.data_settings,
            }
            env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
            done = subprocess.run(
                [sys.executable, __file__, "--worker", json.dumps(spec)],
                capture_output=True,
                text=True,
                env=env,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"{device}/{path} failed:\n{done.stderr[-3000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    data = f"table {args.table} ({args.protocol})" if args.table else f"{args.samples} samples x <= {args.frames} fr"
    print(
        f"{args.model} {json.dumps(model_kwargs)} ({rows[0]['parameters']:,} parameters), {data}, "
        f"batch {args.batch}, {args.epochs} timed epoch(s) after {args.warmup} warm-up, "
        f"{args.threads} CPU thread(s), torch {torch.__version__}"
    )
    header = (
        f"{'device':<6} {'path':<13} {'clock':<5} {'train samples/s':>16} {'infer samples/s':>16} "
        f"{'peak MB':>9} {'before MB':>10} {'loader %':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        share = f"{100 * r['loader_share']:>9.1f}" if "loader_share" in r else f"{'':>9}"
        print(
            f"{r['device']:<6} {r['path']:<13} {r['clock']:<5} {r['train_samples_per_s']:>16.1f} "
            f"{r['infer_samples_per_s']:>16.1f} "
            f"{r['peak_memory_mb']:>9.0f} {r['memory_before_mb']:>10.0f} {share}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
