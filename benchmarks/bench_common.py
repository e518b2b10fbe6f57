"""Helpers shared by the benchmarks: the baseline code tree, memory, and the machine line.

A benchmark compares the working tree's code with an earlier revision *in the same run*
(``--baseline-ref``): the revision's ``src/`` is extracted with ``git archive`` into a temporary
folder, and the baseline's worker processes run with that folder first on ``PYTHONPATH``, so both
codes see the same machine load, files and page cache.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path("src") / "skeleton_attention"


@contextlib.contextmanager
def baseline_tree(ref: str | None) -> Iterator[Path | None]:
    """The ``src`` folder of revision ``ref`` of this repository, extracted for the run (None: none).

    The compiled NTU parser is not in git: when the revision's C source is the same as this tree's,
    this tree's build of it is copied in, so the baseline reads files as fast as the new code does
    and only the code under test differs.
    """
    if not ref:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="baseline_") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "archive", ref, "src"], check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        skeletons = PACKAGE / "skeletons"
        source = REPO_ROOT / skeletons / "_ntu_fast.c"
        old_source = Path(tmp) / skeletons / "_ntu_fast.c"
        if source.is_file() and old_source.is_file() and source.read_bytes() == old_source.read_bytes():
            for built in (REPO_ROOT / skeletons).glob("_ntu_fast*.so"):
                shutil.copy2(built, Path(tmp) / skeletons / built.name)
        yield Path(tmp) / "src"


def code_env(src: Path | None) -> dict[str, str]:
    """Environment of a worker running the code in ``src`` (None: this tree's), one BLAS thread."""
    src = REPO_ROOT / "src" if src is None else src
    path = os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def peak_rss_mib() -> float:
    """Peak RSS of this process. Linux keeps ``ru_maxrss`` across ``exec`` (a child starts with
    its parent's peak), so the per-address-space high-water mark ``VmHWM`` is read instead."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 / 2**20 if sys.platform == "darwin" else 1 / 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def machine_line() -> str:
    """Python, numpy and pyarrow versions, CPU count and the load averages (1, 5, 15 min)."""
    import numpy as np
    import pyarrow as pa

    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return (
        f"python {sys.version.split()[0]}, numpy {np.__version__}, pyarrow {pa.__version__}, "
        f"{os.cpu_count()} CPUs, load average {load}"
    )
