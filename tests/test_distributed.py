"""DistributedDataParallel training (training/distributed.py, the Trainer under torchrun): CPU, gloo,
two processes started with ``torch.multiprocessing`` and torchrun's environment variables.

What is exactly equal: the sharded sampler gives rank r the global positions r, r + 2, ... of the
single-process order (same per-sample seeds), so step s of two ranks with batch B is the
single-process batch s of size 2B; DDP averages the ranks' mean gradients, which is the mean
gradient of that batch (equal shard sizes, no dropout, no batch statistics, fixed-length items so
padding is the same). Parameters and metrics then agree up to float32 summation order (~1e-6).
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.multiprocessing as mp
from torch.distributed import TCPStore

from skeleton_attention.skeletons.table import SampleTable
from skeleton_attention.training.batches import SeededSampler
from skeleton_attention.training.callbacks import HistoryRecorder, StopAfterEpochs, TrainingInterruptedError
from skeleton_attention.training.checkpoints import CheckpointDir, load_torch_file
from skeleton_attention.training.distributed import DistEnv, ShardSampler
from skeleton_attention.training.trainer import Trainer
from tests.test_data import make_table
from tests.test_trainer import CONFIG, _setup

#: 12 training rows (4 per class), 4 validation rows: batch 4 alone = batch 2 on each of 2 ranks
PER_CLASS = 12
WORLD = 2
BATCH = 4
WORKER_TIMEOUT_S = 240
#: SGD, not Adam: Adam divides by the gradient's running RMS, so a parameter whose true gradient is
#: zero (the frame-score bias before a softmax) moves by +-lr on float noise whose sign depends on
#: the summation order, and the two runs drift apart for reasons that have nothing to do with DDP
DDP_CONFIG = {
    **CONFIG,
    "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9},
    "monitor": "val_ce",
    "monitor_mode": "min",
    "early_stopping": {"patience": 2},
}
COMPARED = ("train_loss", "train_ce", "train_reg", "train_acc", "val_ce", "val_loss_total", "val_acc", "val_top5", "lr")


def _no_dropout(model):
    model.dropout.p = 0.0  # dropout masks differ between ranks by design (per-rank seeds)
    return model


def _agent_store() -> TCPStore:
    """The rendezvous store, hosted by the test process as torchrun's agent hosts it: bound to a port
    the OS picks (no probe-then-bind race with other processes), and not owned by rank 0, so the
    ranks' teardown order cannot pull it from under the other rank."""
    return TCPStore("127.0.0.1", 0, world_size=WORLD, is_master=True, wait_for_workers=False)


# --- the sharded sampler --------------------------------------------------------------------------------


@pytest.mark.parametrize("num_samples,world", [(12, 2), (11, 2), (10, 3), (2, 3)])
def test_sharded_sampler_is_the_single_process_order_split_across_ranks(num_samples, world):
    single = SeededSampler(num_samples, seed=5)
    shards = [SeededSampler(num_samples, seed=5, num_replicas=world, rank=r) for r in range(world)]
    for _epoch in range(2):  # the generators stay in step across epochs
        whole = list(single)
        parts = [list(s) for s in shards]
        assert all(len(p) == len(s) == math.ceil(num_samples / world) for p, s in zip(parts, shards, strict=True))
        padded = [whole[i % num_samples] for i in range(len(parts[0]) * world)]
        for r, part in enumerate(parts):
            assert part == padded[r::world]  # same items, same per-sample seeds, interleaved
        covered = [item for part in parts for item in part]
        assert {i for i, _ in covered} == set(range(num_samples))
        if num_samples % world == 0:  # disjoint: every sample exactly once
            assert sorted(i for i, _ in covered) == list(range(num_samples))
        for s in shards:
            assert torch.equal(s.generator.get_state(), single.generator.get_state())
    with pytest.raises(ValueError, match="rank 2 is not one of 2"):
        SeededSampler(4, num_replicas=2, rank=2)


def test_validation_shards_are_contiguous_and_cover_each_row_once():
    blocks = [list(ShardSampler(7, r, 3)) for r in range(3)]
    assert blocks == [[0, 1], [2, 3], [4, 5, 6]]
    assert DistEnv.from_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}) == DistEnv(1, 2, 1)
    assert DistEnv.from_env({}) == DistEnv(0, 1, 0)
    with pytest.raises(ValueError, match="not within"):
        DistEnv.from_env({"RANK": "2", "WORLD_SIZE": "2"})


# --- two gloo ranks vs one process ---------------------------------------------------------------------


def _worker(rank: int, port: int, table_path: str, out_dir: str) -> None:
    """One torchrun-like rank: the trainer finds RANK / WORLD_SIZE / LOCAL_RANK in the environment."""
    import faulthandler
    import os

    faulthandler.dump_traceback_later(WORKER_TIMEOUT_S, exit=True)  # a hung collective fails the test
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": str(WORLD),
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "TORCHELASTIC_USE_AGENT_STORE": "True",  # every rank is a client of the test's store
            "GLOO_SOCKET_IFNAME": "lo",  # not whatever the host name resolves to (CI containers)
        }
    )
    torch.set_num_threads(1)
    writes: list[str] = []
    for method in ("save_last", "save_best"):  # spy: which rank writes checkpoint files
        original = getattr(CheckpointDir, method)

        def spy(self, state, _original=original, _name=method):
            writes.append(_name)
            return _original(self, state)

        setattr(CheckpointDir, method, spy)
    table = SampleTable(table_path)

    model, loaders = _setup(table, batch_size=BATCH // WORLD)
    trainer = Trainer(_no_dropout(model), {**DDP_CONFIG, "checkpoint_dir": f"{out_dir}/full"})
    full = trainer.fit(loaders["train"], loaders["val"])
    result = {
        "history": full.history,
        "best_epoch": full.best_epoch,
        "best_state": full.best_state,
        "final_state": {k: v.detach().clone() for k, v in trainer.model.state_dict().items()},
        "writes_full": list(writes),
        "steps_per_epoch": len(loaders["train"]),
    }
    # interrupted after epoch 3 (mid-phase), then resumed by a fresh model and loaders
    model_b, loaders_b = _setup(table, batch_size=BATCH // WORLD)
    with contextlib.suppress(TrainingInterruptedError):
        Trainer(
            _no_dropout(model_b), {**DDP_CONFIG, "checkpoint_dir": f"{out_dir}/cut"}, callbacks=[StopAfterEpochs(3)]
        ).fit(loaders_b["train"], loaders_b["val"])
    model_c, loaders_c = _setup(table, seed=99, batch_size=BATCH // WORLD)
    recorder = HistoryRecorder()
    resumed_trainer = Trainer(
        _no_dropout(model_c),
        {**DDP_CONFIG, "checkpoint_dir": f"{out_dir}/cut", "resume": True},
        callbacks=[recorder],
    )
    resumed = resumed_trainer.fit(loaders_c["train"], loaders_c["val"])
    result["resumed_epochs"] = [h["epoch"] for h in recorder.epochs]
    result["resumed_state"] = {k: v.detach().clone() for k, v in resumed_trainer.model.state_dict().items()}
    result["resumed_best_epoch"] = resumed.best_epoch
    result["writes"] = writes
    torch.save(result, f"{out_dir}/rank{rank}.pt")


def _close(a: dict, b: dict, atol: float) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """Two gloo ranks (spawned once for the module) and the single-process run they must match."""
    root = tmp_path_factory.mktemp("ddp")
    table_path = make_table(root / "samples.parquet", per_class=PER_CLASS, signal=1.0)
    store = _agent_store()
    mp.start_processes(_worker, args=(store.port, str(table_path), str(root)), nprocs=WORLD, start_method="spawn")
    del store
    ranks = [torch.load(root / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    model, loaders = _setup(SampleTable(table_path), batch_size=BATCH)
    assert len(loaders["train"].dataset) % WORLD == 0 and len(loaders["train"]) == ranks[0]["steps_per_epoch"]
    single_trainer = Trainer(_no_dropout(model), {**DDP_CONFIG, "checkpoint_dir": str(root / "single")})
    single = single_trainer.fit(loaders["train"], loaders["val"])
    return root, ranks, single, single_trainer.model.state_dict()


def test_two_ranks_train_the_same_model_as_one_process_with_twice_the_batch(ddp_run):
    _, ranks, single, single_state = ddp_run
    rank0, rank1 = ranks
    # the ranks hold identical weights (DDP), equal to the single process's up to summation order
    assert _close(rank0["final_state"], rank1["final_state"], 0) == 0.0
    assert _close(rank0["final_state"], single_state, 1e-5) < 1e-5
    assert _close(rank0["best_state"], single.best_state, 1e-5) < 1e-5
    assert rank0["best_epoch"] == rank1["best_epoch"] == single.best_epoch
    # every rank saw the same all-reduced metrics, equal to the single process's
    assert len(rank0["history"]) == len(single.history) == 5  # 2 + 3 epochs, 2 phases (one re-wrap)
    for h0, h1, hs in zip(rank0["history"], rank1["history"], single.history, strict=True):
        for key in COMPARED:
            assert h0[key] == h1[key], key
            assert h0[key] == pytest.approx(hs[key], rel=1e-5, abs=1e-6), (key, h0["epoch"])


def test_checkpoints_are_written_by_rank_0_only_without_a_module_prefix(ddp_run):
    root, ranks, _, _ = ddp_run
    assert "save_last" in ranks[0]["writes_full"] and "save_best" in ranks[0]["writes_full"]
    assert ranks[1]["writes"] == []
    for name in ("last.pt", "best.pt"):
        state = load_torch_file(root / "full" / name)
        keys = list(state["model"])
        assert keys and not any(k.startswith("module.") for k in keys), keys[:3]
    last = load_torch_file(root / "full" / "last.pt")
    assert last["rng_ranks"] is not None and len(last["rng_ranks"]) == WORLD
    assert not any(k.startswith("module.") for k in ranks[0]["best_state"])


def test_resume_under_ddp_continues_where_rank_0_stopped(ddp_run):
    _, ranks, _, _ = ddp_run
    for rank in ranks:  # every rank read rank 0's checkpoint and ran epochs 4-5 only
        assert rank["resumed_epochs"] == [4, 5]
        assert rank["resumed_best_epoch"] == ranks[0]["best_epoch"]
        assert _close(rank["resumed_state"], ranks[0]["final_state"], 0) < 1e-6


# --- kedro run under torchrun ------------------------------------------------------------------------


def test_ranks_other_than_0_keep_every_pipeline_output_in_memory(tmp_path, monkeypatch):
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Pipeline, node
    from kedro_datasets.json import JSONDataset

    from skeleton_attention.hooks import DistributedHooks

    def catalog() -> DataCatalog:
        return DataCatalog({"metrics": JSONDataset(filepath=str(tmp_path / "metrics.json")), "raw": MemoryDataset(1)})

    pipeline = Pipeline([node(lambda x: {"x": x}, "raw", "metrics", name="n")])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    main = catalog()
    DistributedHooks().before_pipeline_run({}, pipeline, main)
    assert isinstance(main.get("metrics"), JSONDataset)  # rank 0 writes
    monkeypatch.setenv("RANK", "1")
    other = catalog()
    DistributedHooks().before_pipeline_run({}, pipeline, other)
    assert isinstance(other.get("metrics"), MemoryDataset)
    other.save("metrics", {"x": 1})
    assert not (tmp_path / "metrics.json").exists()
