"""Turning a list of raw input files into bundle records, in parallel, accounting for every input.

A *processor* maps one input file to a :class:`FileOutcome` (zero or more samples with their split
membership, an optional decision report, or an exclusion) and raises
:class:`~skeleton_attention.skeletons.errors.MalformedSkeletonFile` for bad input. :func:`ingest`
runs processors over a process pool (order preserved, so output is deterministic), converts bad input
into quarantine records (or raises, when ``strict``), drops duplicate sample IDs into quarantine, and
yields rows and side records for :func:`~skeleton_attention.skeletons.bundle.write_bundle`.
"""

from __future__ import annotations

import errno
import fnmatch
import logging
import multiprocessing as mp
import os
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from skeleton_attention.skeletons.bundle import SideRecord
from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.sequence import SkeletonSequence
from skeleton_attention.skeletons.table import sequence_to_row

logger = logging.getLogger(__name__)


@dataclass
class FileOutcome:
    """What one input file became."""

    samples: list[tuple[SkeletonSequence, dict[str, str | None]]] = field(default_factory=list)
    report: dict[str, object] | None = None
    #: set when the file is deliberately left out (e.g. on the official missing-skeleton list)
    excluded_reason: str | None = None
    excluded_detail: str = ""


Processor = Callable[[Any], FileOutcome]
RowMaker = Callable[[SkeletonSequence, dict[str, str | None]], dict[str, object]]


def default_row(seq: SkeletonSequence, splits: dict[str, str | None]) -> dict[str, object]:
    """The intermediate table keeps the (denoised, un-normalized) coordinates as its ``joint`` stream."""
    return sequence_to_row(seq, {"joint": seq.coords}, splits)


def input_name(item: Any) -> str:
    """How an input appears in the manifest: a file path, or a task's ``view_group``/``name`` key."""
    if isinstance(item, dict):
        return str(item.get("view_group") or item.get("name") or item)
    return str(item)


def _run_one(processor: Processor, item: Any) -> tuple[Any, FileOutcome | None, dict | None]:
    try:
        return item, processor(item), None
    except MalformedSkeletonFile as error:
        return item, None, error.as_record()
    except Exception as error:  # a reader bug must not lose the input: quarantine it with the trace
        detail = f"{type(error).__name__}: {error} | {traceback.format_exc(limit=3)}"
        return item, None, {"file": input_name(item), "reason": "reader_error", "line": None, "detail": detail}


def resolve_workers(workers: int | None) -> int:
    """``None``/``0`` means every core this process may use."""
    if workers:
        return max(1, int(workers))
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _outcomes(
    items: Sequence[Any], processor: Processor, workers: int, chunksize: int
) -> Iterator[tuple[Any, FileOutcome | None, dict | None]]:
    if workers <= 1 or len(items) < 2 * chunksize:
        for item in items:
            yield _run_one(processor, item)
        return
    # fork is cheap and the processors are plain functions; spawn would re-import torch per worker
    context = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context()
    with context.Pool(workers) as pool:
        yield from pool.imap(partial(_run_one, processor), items, chunksize=chunksize)


class IngestCounter:
    """Counts inputs as they are consumed; read ``inputs_seen`` after iteration."""

    def __init__(self) -> None:
        self.inputs_seen = 0
        self.samples = 0
        self.quarantined = 0
        self.excluded = 0


def ingest(
    inputs: Sequence[Any],
    processor: Processor,
    *,
    strict: bool = False,
    workers: int | None = None,
    chunksize: int = 8,
    row_maker: RowMaker = default_row,
    counter: IngestCounter | None = None,
    description: str = "ingest",
    skipped: Sequence[Mapping[str, object]] = (),
) -> Iterator[dict[str, object] | SideRecord]:
    """Yield sample rows and side records for every input (a file path or a picklable task).

    ``skipped`` are quarantine records of inputs found but not read (``RawFileList.skipped``):
    they are counted as inputs and written first; a ``quarantined`` one fails a strict run.
    """
    files = list(inputs)
    counter = counter if counter is not None else IngestCounter()
    for record in skipped:
        counter.inputs_seen += 1
        if record["kind"] == "quarantined":
            if strict:
                raise MalformedSkeletonFile(
                    str(record["file"]), str(record["reason"]), str(record["detail"]), record.get("line")
                )
            counter.quarantined += 1
        else:
            counter.excluded += 1
        yield SideRecord("quarantine", dict(record))
    seen_ids: dict[str, str] = {}
    n_workers = resolve_workers(workers)
    bar = tqdm(total=len(files), desc=description, unit="file", dynamic_ncols=True, mininterval=1.0)
    try:
        for item, outcome, error in _outcomes(files, processor, n_workers, chunksize):
            name = input_name(item)
            counter.inputs_seen += 1
            bar.update(1)
            if error is not None:
                if strict:
                    raise MalformedSkeletonFile(error["file"], error["reason"], error["detail"], error["line"])
                counter.quarantined += 1
                yield SideRecord("quarantine", {"kind": "quarantined", **error})
                continue
            assert outcome is not None
            if outcome.report is not None:
                yield SideRecord("report", {"input": name, **outcome.report})
            reason, detail = outcome.excluded_reason, outcome.excluded_detail
            if reason is None and not outcome.samples:
                # e.g. a UTKinect recording whose every segment is NaN: record it rather than drop it
                reason, detail = "no_samples", "the input holds no sample"
            if reason is not None:
                counter.excluded += 1
                yield SideRecord(
                    "quarantine",
                    {
                        "file": name,
                        "kind": "excluded",
                        "reason": reason,
                        "line": None,
                        "detail": detail,
                    },
                )
                continue
            yield from _sample_rows(name, outcome, seen_ids, counter, strict, row_maker)
    finally:
        bar.close()


def _sample_rows(
    path: str,
    outcome: FileOutcome,
    seen_ids: dict[str, str],
    counter: IngestCounter,
    strict: bool,
    row_maker: RowMaker,
) -> Iterator[dict[str, object] | SideRecord]:
    for seq, splits in outcome.samples:
        first = seen_ids.get(seq.sample_id)
        if first is not None:
            problem = ("duplicate_sample", f"sample {seq.sample_id} was already read from {first}")
        elif not np.isfinite(seq.coords).all():
            problem = ("non_finite", f"sample {seq.sample_id} has NaN/inf")
        else:
            seen_ids[seq.sample_id] = path
            counter.samples += 1
            yield row_maker(seq, splits)
            continue
        error = MalformedSkeletonFile(path, *problem)
        if strict:
            raise error
        counter.quarantined += 1
        yield SideRecord("quarantine", {"kind": "quarantined", **error.as_record()})


def list_files(root: str | os.PathLike[str], patterns: Sequence[str]) -> list[Path]:
    """Every file under ``root`` matching any glob pattern, sorted for a deterministic order."""
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"raw data directory {base} does not exist")
    found: set[Path] = set()
    for pattern in patterns:
        found.update(p for p in base.rglob(pattern) if p.is_file())
    return sorted(found)


# --- raw directory listing: every entry accounted for ------------------------------------------------

#: how many unmatched file names a summary lists (the count is always complete)
UNMATCHED_EXAMPLES = 20


class EmptyRawDirectory(FileNotFoundError):
    """A raw directory with nothing to prepare (empty, or no file matching the patterns)."""


class RawFileList(list):
    """The readable files of a raw directory that match its patterns (a plain sorted list of paths),
    plus how every other entry was accounted for.

    ``skipped`` holds quarantine records for matching entries that are not read: ``excluded`` ones
    (an ``exclude`` entry names them, e.g. the Kinetics label maps) and ``quarantined`` ones (a
    symlink that is broken or loops). ``unmatched`` lists the files no pattern matches (a README,
    a manifest), reported as a count in the preparation summary.
    """

    def __init__(
        self,
        files: Sequence[Path] = (),
        *,
        root: Path | None = None,
        patterns: Sequence[str] = (),
        skipped: Sequence[dict[str, object]] = (),
        unmatched: Sequence[str] = (),
    ) -> None:
        super().__init__(files)
        self.root = root
        self.patterns = tuple(patterns)
        self.skipped = list(skipped)
        self.unmatched = list(unmatched)

    @classmethod
    def wrap(cls, files: Sequence[Path]) -> RawFileList:
        """``files`` as a RawFileList (a plain list of paths has nothing skipped or unmatched)."""
        return files if isinstance(files, RawFileList) else cls([Path(f) for f in files])

    def select(self, keep: Callable[[Path], bool]) -> RawFileList:
        """The files ``keep`` accepts; the others join ``unmatched`` (nothing disappears)."""
        kept = [f for f in self if keep(f)]
        dropped = [str(f) for f in self if not keep(f)]
        return RawFileList(
            kept,
            root=self.root,
            patterns=self.patterns,
            skipped=self.skipped,
            unmatched=self.unmatched + dropped,
        )

    def summary_info(self) -> dict[str, object]:
        """What the preparation summary records about the files that are neither read nor skipped."""
        return {
            "raw_files_unmatched": len(self.unmatched),
            "raw_files_unmatched_examples": self.unmatched[:UNMATCHED_EXAMPLES],
        }


def _exclusion(path: Path, name: str, exclude: Sequence[str]) -> str | None:
    """The ``exclude`` entry naming ``path``: a path (holds a ``/``), a glob, or an exact file name."""
    for entry in exclude:
        if "/" in entry or os.sep in entry:
            if os.path.abspath(path) == os.path.abspath(entry):
                return entry
        elif any(ch in entry for ch in "*?["):
            if fnmatch.fnmatchcase(name, entry):
                return entry
        elif name == entry:
            return entry
    return None


def _link_problem(path: Path) -> tuple[str, str] | None:
    """(reason, detail) for a symlink that cannot be read as a file; ``None`` for a readable one."""
    try:
        os.stat(path)
    except OSError as error:
        target = os.readlink(path) if path.is_symlink() else "?"
        if error.errno == errno.ELOOP:
            return "symlink_loop", f"symbolic link to {target} loops back on itself"
        if error.errno in (errno.ENOENT, errno.ENOTDIR):
            return "broken_symlink", f"symbolic link to {target}, which does not exist"
        return "unreadable", f"{type(error).__name__}: {error}"
    return None


def _folders_to_follow(
    directory: Path, names: list[str], listed: dict[str, str], skipped: list[dict[str, object]]
) -> list[str]:
    """The subfolders to descend into: symlinked ones are followed once, never around a loop.

    A folder reached again (through a link back to an ancestor, or a second link to a folder
    already listed) is recorded instead of walked: a loop would never end, a second route would
    read every file twice.
    """
    keep = []
    here = os.path.realpath(directory)
    # real folders claim their place before links to them, so files keep their real paths
    for name in sorted(names, key=lambda n: ((directory / n).is_symlink(), n)):
        path = directory / name
        real = os.path.realpath(path)
        first = listed.get(real)
        if first is None:
            listed[real] = str(path)
            keep.append(name)
        elif here == real or here.startswith(real + os.sep):
            skipped.append(
                {
                    "file": str(path),
                    "kind": "quarantined",
                    "reason": "symlink_loop",
                    "line": None,
                    "detail": f"symbolic link to {os.readlink(path)} leads back to {first}",
                }
            )
        else:
            skipped.append(
                {
                    "file": str(path),
                    "kind": "excluded",
                    "reason": "duplicate_folder",
                    "line": None,
                    "detail": f"the same folder as {first}, which is read",
                }
            )
    return sorted(keep)


def scan_raw_dir(
    root: str | os.PathLike[str], patterns: Sequence[str] = ("*",), exclude: Sequence[str] = ()
) -> RawFileList:
    """List a raw directory, accounting for every entry (see :class:`RawFileList`).

    Symlinked subfolders are followed (a raw tree often links in folders from elsewhere), each real
    folder once: a link that loops back is a ``symlink_loop`` row, a second link to a folder
    already listed a ``duplicate_folder`` one.

    Raises :class:`EmptyRawDirectory` naming the directory (and the patterns) when nothing in it
    can be read: an empty run that "succeeds" would only hide a wrong path.
    """
    base = Path(root)
    if not base.is_dir():
        raise FileNotFoundError(f"raw data directory {base} does not exist")
    files, skipped, unmatched = [], [], []
    listed = {os.path.realpath(base): str(base)}  # real folder -> the path it was listed under
    for directory, dirnames, filenames in os.walk(base, followlinks=True):
        dirnames[:] = _folders_to_follow(Path(directory), sorted(dirnames), listed, skipped)
        for name in sorted(filenames):
            path = Path(directory) / name
            rel = path.relative_to(base)
            if not any(rel.match(pattern) for pattern in patterns):
                unmatched.append(str(path))
                continue
            rule = _exclusion(path, name, exclude)
            if rule is not None:
                skipped.append(
                    {
                        "file": str(path),
                        "kind": "excluded",
                        "reason": "excluded_by_pattern",
                        "line": None,
                        "detail": f"matches the exclude entry {rule!r}",
                    }
                )
                continue
            problem = _link_problem(path) if path.is_symlink() else None
            if problem is not None:
                skipped.append(
                    {"file": str(path), "kind": "quarantined", "reason": problem[0], "line": None, "detail": problem[1]}
                )
            elif path.is_file():
                files.append(path)
            else:  # a socket, a FIFO: not a raw file
                unmatched.append(str(path))
    listing = RawFileList(sorted(files), root=base, patterns=patterns, skipped=skipped, unmatched=unmatched)
    if not listing:
        raise EmptyRawDirectory(_nothing_to_read(base, patterns, exclude, skipped, unmatched))
    return listing


def _nothing_to_read(
    base: Path, patterns: Sequence[str], exclude: Sequence[str], skipped: list[dict], unmatched: list[str]
) -> str:
    if not skipped and not unmatched:
        return f"raw data directory {base} is empty: nothing to prepare (is the raw path right?)"
    parts = [f"raw data directory {base} holds no readable file matching the patterns {list(patterns)}"]
    if unmatched:
        examples = ", ".join(Path(u).name for u in unmatched[:5])
        parts.append(f"{len(unmatched)} file(s) match no pattern (e.g. {examples})")
    reasons = Counter(str(r["reason"]) for r in skipped)
    for reason, count in sorted(reasons.items()):
        what = f" {list(exclude)}" if reason == "excluded_by_pattern" else ""
        parts.append(f"{count} {reason}{what}")
    return "; ".join(parts)
