"""Data-parallel training with torch's DistributedDataParallel, launched by ``torchrun``.

``torchrun`` starts one process per GPU (or per CPU worker) and tells each who it is through the
environment: ``RANK`` (0..WORLD_SIZE-1 over all nodes), ``WORLD_SIZE``, ``LOCAL_RANK`` (the
process's index on its node, which picks its GPU), ``MASTER_ADDR`` / ``MASTER_PORT`` (the
rendezvous store). :class:`DistEnv` reads them; the :class:`~skeleton_attention.training.trainer.Trainer`
joins the process group for the duration of ``fit`` (nccl on CUDA, gloo on CPU) when
``training.distributed`` is ``auto`` (the default) and the world has more than one process.

What runs where (docs/training.md, "Distributed training"):

* every rank runs the same loop on its own shard of the training data
  (:meth:`SeededSampler.shard <skeleton_attention.training.batches.SeededSampler.shard>`) and on a
  contiguous block of the validation rows (:func:`shard_loader`); DDP averages the gradients;
* the per-epoch sums (loss, loss parts, correct, sample counts, non-finite steps) are all-reduced
  (:func:`all_reduce_sums`), so every rank sees the same metrics and takes the same early-stopping,
  LR-plateau and selection decisions;
* rank 0 alone writes checkpoints (all ranks read them on resume) and, through
  :attr:`Trainer.is_main <skeleton_attention.training.trainer.Trainer.is_main>`, logs to MLflow.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Sampler, SequentialSampler

logger = logging.getLogger(__name__)

#: ``training.distributed``: ``auto`` joins a process group when torchrun's WORLD_SIZE > 1; ``off``
#: trains alone even under torchrun (every rank a full independent run: only for debugging)
DISTRIBUTED_MODES = ("auto", "off")


@dataclass(frozen=True)
class DistEnv:
    """This process's place in a torchrun world (a single process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DistEnv:
        """Read torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` (absent: a single process)."""
        env = os.environ if environ is None else environ
        try:
            world = int(env.get("WORLD_SIZE", "1"))
            rank = int(env.get("RANK", "0"))
            local = int(env.get("LOCAL_RANK", str(rank)))
        except ValueError as err:
            raise ValueError(f"torchrun's RANK / WORLD_SIZE / LOCAL_RANK must be integers: {err}") from err
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"RANK={rank} is not within WORLD_SIZE={world}")
        return cls(rank=rank, world_size=world, local_rank=local)

    @classmethod
    def resolve(cls, mode: str) -> DistEnv:
        """The world for ``training.distributed`` (``auto``: from the environment; ``off``: alone)."""
        if mode not in DISTRIBUTED_MODES:
            raise ValueError(f"training.distributed must be one of {DISTRIBUTED_MODES}, got {mode!r}")
        return cls.from_env() if mode == "auto" else cls()

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_main_process() -> bool:
    """True unless this is a torchrun rank other than 0 (for code that writes files or logs runs)."""
    return DistEnv.from_env().is_main


def device_for(device: torch.device, env: DistEnv) -> torch.device:
    """Under DDP each process takes the GPU of its ``LOCAL_RANK`` (a plain ``cuda`` means "my GPU")."""
    if env.is_distributed and device.type == "cuda" and device.index is None:
        return torch.device("cuda", env.local_rank)
    return device


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def join_process_group(env: DistEnv, device: torch.device) -> None:
    """Join the default process group when the world has several processes and none is joined yet.

    The process stays in the group until it exits (an ``atexit`` hook leaves it): leaving and
    re-joining through the same ``MASTER_PORT`` races with the other ranks' teardown, so a second
    ``fit`` in the same process (resume, notebooks) reuses the group instead.
    """
    if not env.is_distributed or dist.is_initialized():
        return
    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this torch build")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = backend_for(device)
    # env:// reads MASTER_ADDR / MASTER_PORT set by torchrun (or by the caller)
    dist.init_process_group(backend=backend, rank=env.rank, world_size=env.world_size)
    atexit.register(_leave_process_group)
    logger.info("rank %d of %d joined the %s process group on %s", env.rank, env.world_size, backend, device)


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sums(values: Tensor, env: DistEnv) -> Tensor:
    """Sum a (float64) tensor over the ranks, in place; the identity in a single process."""
    if env.is_distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def agree(value: float, env: DistEnv, what: str, device: torch.device) -> None:
    """Fail on every rank when the ranks disagree on ``value`` (e.g. the epoch a resume starts from:
    a checkpoint directory that only some nodes can see). ``device``: nccl reduces CUDA tensors only."""
    if not env.is_distributed:
        return
    values = torch.tensor([value, -value], dtype=torch.float64, device=device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    if values[0] != -values[1]:
        raise RuntimeError(
            f"the ranks disagree on {what} (from {-float(values[1])} to {float(values[0])}); "
            "the checkpoint directory must be one that every rank can read"
        )


def all_gather_object(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` in a single process."""
    if not env.is_distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(env: DistEnv) -> None:
    if env.is_distributed:
        dist.barrier()


def wrap(model: nn.Module, device: torch.device, env: DistEnv, find_unused_parameters: bool) -> nn.Module:
    """The module the training step calls: ``model`` itself, or a DDP wrapper of it.

    DDP registers gradient hooks on the parameters that have ``requires_grad`` when it wraps, and
    broadcasts rank 0's weights and buffers; a phase that freezes or unfreezes parameters
    (``configure_phase``) therefore needs a new wrapper, which the trainer builds at every phase
    start. The wrapped module is never stored or checkpointed (no ``module.`` key prefix).
    """
    if not env.is_distributed:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(
        model, device_ids=ids, output_device=ids[0] if ids else None, find_unused_parameters=find_unused_parameters
    )


class ShardSampler(Sampler[int]):
    """A contiguous block of ``range(num_samples)`` per rank (blocks differ by at most one sample; no
    padding, so every sample is counted once when the ranks' sums are added)."""

    def __init__(self, num_samples: int, rank: int, num_replicas: int) -> None:
        self.start = num_samples * rank // num_replicas
        self.stop = num_samples * (rank + 1) // num_replicas

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        return iter(range(self.start, self.stop))


def shard_loader(loader: DataLoader, env: DistEnv) -> DataLoader:
    """This rank's share of an evaluation loader (table order, contiguous block): the same dataset,
    batch size, collate and worker settings. Only for loaders without a sampler of their own."""
    if not env.is_distributed:
        return loader
    sampler = loader.sampler
    if not isinstance(sampler, SequentialSampler):
        raise ValueError(f"cannot shard an evaluation loader with a {type(sampler).__name__}; give it none")
    workers = loader.num_workers
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=ShardSampler(len(loader.dataset), env.rank, env.world_size),
        num_workers=workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=False,
        persistent_workers=loader.persistent_workers,
        prefetch_factor=loader.prefetch_factor if workers > 0 else None,
        worker_init_fn=loader.worker_init_fn,
        generator=loader.generator,
    )


def shard_train_loader(loader: DataLoader, env: DistEnv) -> None:
    """Shard the training loader's :class:`SeededSampler` for this rank (in place; a sampler
    already sharded for this world is accepted). Any other sampler is refused: an unsharded one
    would train every rank on the whole data set."""
    if not env.is_distributed:
        return
    for owner in (getattr(loader, "sampler", None), getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        if callable(getattr(owner, "shard", None)):
            owner.shard(env.rank, env.world_size)
            return
        if getattr(owner, "num_replicas", None) == env.world_size and getattr(owner, "rank", None) == env.rank:
            return  # e.g. torch's DistributedSampler, set up by the caller
    raise ValueError(
        "under DDP the training loader needs a SeededSampler (make_loader(train=True)) or a sampler "
        f"sharded for rank {env.rank} of {env.world_size}"
    )
