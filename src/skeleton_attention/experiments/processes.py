"""Child ``kedro run`` processes of an experiment driver, their MLflow runs and their bookkeeping.

Both drivers (cross-validation, ``fold_driver``; named run groups, ``group_driver``) run each
member of an experiment (a fold, a stream, a stream of a fold) as its own ``kedro run`` process with
``--params=...`` and log it into a child MLflow run of one parent run. This module holds what they
share: the command line, the scheduler that runs the members ``workers`` at a time and records each
finished one at once (``state.json``, so a killed experiment resumes), the parent/child tracker and
the signal handling that turns SIGTERM into the same KILLED bookkeeping as Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skeleton_attention.skeletons.ingest import resolve_workers as available_cores

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"


def dotlist(params: Mapping[str, Any], prefix: str = "") -> list[str]:
    """``{"run": {"fold": 2}}`` -> ``["run.fold=2"]``: values as YAML/JSON literals for ``--params``."""
    items = []
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            items.extend(dotlist(value, f"{name}."))
        elif isinstance(value, str):
            items.append(f"{name}={value}")
        else:
            items.append(f"{name}={json.dumps(value)}")
    return items


def kedro_command(pipeline: str, params: Mapping[str, Any], env: str | None) -> list[str]:
    """``kedro run --pipelines=<pipeline> --params=... [--env=...]`` with this interpreter's Kedro."""
    kedro = Path(sys.executable).with_name("kedro")
    command = [str(kedro)] if kedro.exists() else [sys.executable, "-m", "kedro"]
    command += ["run", f"--pipelines={pipeline}"]
    if params:
        command.append(f"--params={','.join(dotlist(params))}")
    if env:
        command.append(f"--env={env}")
    return command


def with_run(params: Mapping[str, Any], **run: Any) -> dict[str, Any]:
    """``params`` with ``run.<key>`` set for each keyword (the member's selectors)."""
    return {**params, "run": {**dict(params.get("run") or {}), **run}}


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Atomic JSON write (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


def read_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def thread_env(workers: int) -> dict[str, str]:
    """Each of ``workers`` concurrent processes gets its share of the cores as BLAS/OpenMP threads."""
    threads = str(max(1, available_cores(None) // max(1, workers)))
    return {name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def worker_env(workers: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of a member process: ``environ`` plus its share of the cores as thread
    counts. A user's ``OMP_NUM_THREADS`` wins and sets the other libraries' counts too (torch takes
    its intra-op thread count from ``MKL_NUM_THREADS`` when that is set, so exporting only
    ``OMP_NUM_THREADS=1`` would otherwise still give 2 threads). On a shared machine two OpenMP
    threads per process on busy cores spin instead of working: a MANs fold ran about 15x slower."""
    user = environ.get("OMP_NUM_THREADS")
    threads = thread_env(workers) if user is None else {name: user for name in thread_env(workers)}
    return {**threads, **environ}


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler, ``kill``) stops the members and marks the runs KILLED, as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class ParentRun:
    """The parent MLflow run of an experiment and a child run per member.

    After an interruption the same parent is reopened when the experiment's fingerprint is the one
    recorded in its state and the run still exists in the same MLflow experiment; children it left
    RUNNING are marked KILLED."""

    def __init__(
        self, experiment_name: str, state: dict[str, Any], fingerprint: str, name: str, tags: Mapping[str, str]
    ) -> None:
        import mlflow

        self.client = mlflow.MlflowClient()
        experiment = mlflow.get_experiment_by_name(experiment_name)
        self.experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(experiment_name)
        self.run_id = (
            self._resume(state, fingerprint)
            or self.client.create_run(self.experiment_id, run_name=name, tags=dict(tags)).info.run_id
        )
        state["parent_run_id"] = self.run_id

    def _resume(self, state: Mapping[str, Any], fingerprint: str) -> str | None:
        previous = state.get("parent_run_id")
        if not previous or state.get("fingerprint") != fingerprint:
            return None
        try:
            found = self.client.get_run(previous)
            if found.info.experiment_id != self.experiment_id:
                # an older version put the parent in another experiment; member runs must share it
                raise LookupError(f"parent run {previous} is in experiment {found.info.experiment_id}")
        except Exception:  # deleted, another store or another experiment: start a new parent
            logger.info("previous parent run %s not found here; starting a new one", previous)
            return None
        self.client.update_run(previous, status="RUNNING")
        for run in self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{previous}'"
        ):
            if run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, "KILLED")
        logger.info("resuming parent run %s", previous)
        return previous

    def child(self, name: str, tags: Mapping[str, str]) -> str:
        run = self.client.create_run(
            self.experiment_id, run_name=name, tags={"mlflow.parentRunId": self.run_id, **dict(tags)}
        )
        return run.info.run_id

    def end_child(self, run_id: str, status: str) -> None:
        """Mark a child that its process left RUNNING (it failed or was killed)."""
        if self.client.get_run(run_id).info.status == "RUNNING":
            self.client.set_terminated(run_id, status)

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)

    def log_metrics(self, metrics: Mapping[str, Any]) -> None:
        for key, value in metrics.items():
            if value is not None:
                self.client.log_metric(self.run_id, key, float(value))

    def log_artifact(self, path: Path, artifact_path: str) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_path)


@dataclass
class Member:
    """One ``kedro run`` of an experiment: a fold, a named run, or a named run of a fold."""

    key: str  # its key in state.json ``completed``
    label: str  # in progress messages, e.g. "fold 2" or "run spatial, fold 2"
    command: list[str]
    log_path: Path
    fingerprint: str
    metrics_path: Path  # the test metrics it writes
    child_name: str = ""
    child_tags: dict[str, str] = field(default_factory=dict)


def run_members(
    members: list[Member],
    workers: int,
    cwd: Path,
    env: Mapping[str, str],
    state: dict[str, Any],
    state_path: Path,
    parent: ParentRun | None,
) -> dict[str, int]:
    """Run ``members`` ``workers`` at a time; returns their exit codes by key. A member that ends
    successfully is recorded in ``state`` (and ``state_path``) at once; an interrupt terminates the
    running ones and marks their runs KILLED before it propagates."""
    codes: dict[str, int] = {}
    running: dict[str, tuple[Member, subprocess.Popen, Any, str | None, float]] = {}
    queue = list(members)
    started = time.monotonic()
    try:
        while queue or running:
            while queue and len(running) < workers:
                member = queue.pop(0)
                member.log_path.parent.mkdir(parents=True, exist_ok=True)
                log = open(member.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed when it ends
                child = parent.child(member.child_name or member.label, member.child_tags) if parent else None
                process = subprocess.Popen(
                    member.command,
                    cwd=cwd,
                    env={**env, **({"MLFLOW_RUN_ID": child} if child else {})},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
                running[member.key] = (member, process, log, child, time.monotonic())
                logger.info("%s started (log: %s)", member.label, member.log_path)
            time.sleep(0.5)
            for key in [k for k, (_m, p, *_rest) in running.items() if p.poll() is not None]:
                member, process, log, child, began = running.pop(key)
                log.close()
                codes[key] = process.returncode
                if process.returncode == 0:
                    state.setdefault("completed", {})[key] = member.fingerprint
                    write_json(state_path, state)
                elif child and parent:
                    parent.end_child(child, "FAILED")
                _log_finished(
                    member, process.returncode, began, len(members) - len(queue) - len(running), len(members), started
                )
    except BaseException:
        for member, process, log, child, _began in running.values():
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
            if child and parent:
                parent.end_child(child, "KILLED")
            logger.info("%s stopped", member.label)
        raise
    return codes


def _log_finished(member: Member, code: int, began: float, finished: int, total: int, started: float) -> None:
    outcome = "done" if code == 0 else f"FAILED (exit {code})"
    top1 = (
        json.loads(member.metrics_path.read_text()).get("top1") if code == 0 and member.metrics_path.is_file() else None
    )
    logger.info(
        "%s %s in %.0f s%s [%d/%d, %.0f s elapsed]",
        member.label,
        outcome,
        time.monotonic() - began,
        f": test top-1 {top1:.4f}" if top1 is not None else "",
        finished,
        total,
        time.monotonic() - started,
    )


def finished_members(members: list[Member], state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Members whose process completed and whose metrics come from the current configuration
    (the fingerprint recorded in ``state`` and the one in the metrics file both match)."""
    completed = state.get("completed") or {}
    done = {}
    for member in members:
        if completed.get(member.key) != member.fingerprint or not member.metrics_path.is_file():
            continue
        metrics = json.loads(member.metrics_path.read_text())
        if metrics.get("config_fingerprint") == member.fingerprint:
            done[member.key] = metrics
        else:
            logger.info("%s: outputs come from another configuration; it will be retrained", member.label)
    return done
