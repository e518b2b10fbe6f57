"""Names of our own temporary files, and the sweep that removes those an interrupted run left behind.

Every atomic writer of the project builds its output beside the target under a name that carries
the writing process's id, then renames it into place:

    .<name>.tmp-<pid>-<random>/     a bundle or generated raw directory being built (bundle.py, datasets.py)
    .<name>.old-<pid>/              the previous directory, renamed aside during the swap
    .<name>.<pid>-<random>.tmp      a Parquet table or a checkpoint being written (table.py, checkpoints.py)

A killed run (SIGKILL, power loss) cannot clean up, so the next writer of the same target sweeps
its siblings: an entry is removed only when its name matches one of these patterns for *that*
target and its process is gone. Names without a process id (written by older versions) are
removed only when older than the current process. A symlink or any other name is never touched.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path

logger = logging.getLogger(__name__)

#: when this process started (near enough: when the module was first imported)
PROCESS_STARTED = time.time()


def dir_prefix(name: str) -> str:
    """``tempfile.mkdtemp`` prefix of a directory being built for target ``name``."""
    return f".{name}.tmp-{os.getpid()}-"


def file_prefix(name: str) -> str:
    """``tempfile.mkstemp`` prefix (with suffix ``.tmp``) of a file being written for ``name``."""
    return f".{name}.{os.getpid()}-"


def aside_name(name: str) -> str:
    """The previous directory ``name`` while a new one is swapped in."""
    return f".{name}.old-{os.getpid()}"


def _patterns(name: str) -> list[re.Pattern[str]]:
    n = re.escape(name)
    return [
        re.compile(rf"\.{n}\.tmp-(?P<pid>\d+)-[A-Za-z0-9_]+"),
        re.compile(rf"\.{n}\.old-(?P<pid>\d+)"),
        re.compile(rf"\.{n}\.(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp"),
        # written before names carried a process id (tempfile's 8 random characters)
        re.compile(rf"\.{n}\.tmp-[A-Za-z0-9_]{{8}}"),
        re.compile(rf"\.{n}\.[A-Za-z0-9_]{{8}}\.tmp"),
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _stale(path: Path, pid: int | None) -> bool:
    try:
        older = path.lstat().st_mtime < PROCESS_STARTED
    except FileNotFoundError:
        return False
    if pid is None:
        return older
    if pid == os.getpid():  # our own id: stale only if a dead process with a reused id left it
        return older
    return not _alive(pid)


def sweep_stale(parent: str | os.PathLike[str], name: str) -> list[Path]:
    """Remove the temporary siblings of target ``parent/name`` that a dead process left; log them."""
    folder = Path(parent)
    if not folder.is_dir():
        return []
    patterns = _patterns(name)
    removed = []
    for entry in folder.iterdir():
        match = next((m for p in patterns if (m := p.fullmatch(entry.name))), None)
        if match is None or entry.is_symlink():
            continue
        pid = match.groupdict().get("pid")
        if not _stale(entry, None if pid is None else int(pid)):
            continue
        try:
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except FileNotFoundError:  # a concurrent sweep got there first
            continue
        removed.append(entry)
        logger.warning("removed %s, left by an interrupted run%s", entry, f" (process {pid})" if pid else "")
    return sorted(removed)
