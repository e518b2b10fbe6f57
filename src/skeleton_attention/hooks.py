"""Kedro hooks."""

from __future__ import annotations

import atexit
import logging
import sys
import time

from kedro.framework.hooks import hook_impl

from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.fingerprint import StaleBundleError
from skeleton_attention.skeletons.ingest import EmptyRawDirectory
from skeleton_attention.training.distributed import DistEnv, is_main_process

logger = logging.getLogger(__name__)

#: errors whose message is the whole story: printed as one line, no traceback needed to read it
_PREPARATION_ERRORS = (MalformedSkeletonFile, EmptyRawDirectory, StaleBundleError)


class ProgressHooks:
    """Logs each node's wall time, so a user sees where a long run spends it."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    @hook_impl
    def before_node_run(self, node) -> None:
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node) -> None:
        started = self._started.pop(node.name, None)
        if started is not None:
            logger.info("node %s finished in %.2f s", node.name, time.perf_counter() - started)


def preparation_error(error: BaseException | None) -> BaseException | None:
    """The bad-input error at the root of ``error`` (Kedro wraps it, e.g. in a DatasetError), if any."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, _PREPARATION_ERRORS):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def failure_line(error: BaseException) -> str:
    """``PREPARATION FAILED: <file>: <reason> (line N): <detail>``, on one line."""
    if isinstance(error, MalformedSkeletonFile):
        where = f" (line {error.line})" if error.line is not None else ""
        text = f"{error.path}: {error.reason}{where}: {error.detail}"
    else:
        text = str(error)
    return "PREPARATION FAILED: " + " ".join(text.split())


class FailureSummaryHooks:
    """A failed preparation says why in one line, before Kedro's traceback and again as the very last
    line of the output (registered with ``atexit``, which runs after the traceback is printed), so
    strict mode's reason is readable without scrolling through ~230 lines of frames."""

    def __init__(self) -> None:
        self._pending: str | None = None

    @hook_impl
    def on_pipeline_error(self, error: Exception) -> None:
        root = preparation_error(error)
        if root is None:
            return
        line = failure_line(root)
        logger.error(line)
        if self._pending is None:
            atexit.register(self._print_last)
        self._pending = line

    def _print_last(self) -> None:
        if self._pending is not None:
            sys.stdout.flush()
            print(self._pending, file=sys.stderr, flush=True)
            self._pending = None


def rank() -> int:
    return DistEnv.from_env().rank


class DistributedHooks:
    """Under ``torchrun`` every rank runs the Kedro session; only rank 0 may write or track.

    On ranks other than 0 (torchrun's ``RANK`` > 0; docs/training.md, "Distributed training"):

    * kedro-mlflow's hooks are not loaded (``settings.DISABLE_HOOKS_FOR_PLUGINS``), so those ranks
      neither set up the tracking store nor open runs; the trainer's ``MlflowCallback`` logs from
      rank 0 only as well;
    * every dataset the pipeline writes becomes a :class:`~kedro.io.MemoryDataset` before the
      run starts, so nothing reaches ``data/``, ``metrics/`` or MLflow: the nodes still compute
      (``split_samples`` gives every rank the same rows) and ``train_model`` joins rank 0 in DDP.

    The CLI (``cli.py``) also cuts those ranks' run after ``train_model``: evaluation, the report
    and the model export run on rank 0 alone.
    """

    @hook_impl
    def before_pipeline_run(self, run_params, pipeline, catalog) -> None:
        if is_main_process():
            return
        from kedro.io import MemoryDataset

        outputs = sorted(pipeline.all_outputs())
        for name in outputs:
            # "assign": no copies (figures and model artifacts pass through as they are)
            catalog[name] = MemoryDataset(copy_mode="assign")
        logger.info("rank %d: %d pipeline output(s) kept in memory, not written", rank(), len(outputs))
