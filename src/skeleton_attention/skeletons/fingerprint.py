"""Fingerprints: what a bundle was built from, so a consumer can refuse a stale one.

Every bundle's ``summary.json`` records

* ``source_fingerprint``: a digest of what it was built from. An intermediate bundle: the raw
  inputs' relative names, sizes and modification times (not their contents: see
  ``docs/data-format.md`` for the measured cost), the side files (label maps, missing list...) and
  the preparation parameters that shape the output. A feature or multi-view bundle: its
  intermediate bundle's ``fingerprint`` and its own parameters.
* ``fingerprint``: a digest of that source fingerprint and the bundle's summary (counts, reasons,
  protocols, streams), the identity of this bundle for its consumers.
* for a derived bundle, ``source_bundle`` (its intermediate, as a path relative to itself) and
  ``source_bundle_fingerprint`` (that bundle's ``fingerprint`` when this one was built).

Loading a derived bundle whose recorded source fingerprint differs from the fingerprint of the
bundle now at ``source_bundle`` raises :class:`StaleBundleError` (a run killed between preparation
steps leaves a new intermediate beside old features: training would otherwise use stale features).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

#: parameters that change how a bundle is produced but not what it holds
#: settings that change how a bundle is produced or stored, never its values (``parquet``: the file
#: encoding, table.parquet_write_options)
RUNTIME_ONLY_PARAMS = frozenset({"workers", "chunksize", "description", "strict", "parquet"})


class StaleBundleError(RuntimeError):
    """A derived bundle built from a different version of its source bundle than the one now on disk."""


def digest(value: object) -> str:
    """SHA-256 of a JSON-serializable value (keys sorted, so dict order does not matter)."""
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def output_params(params: Mapping[str, object]) -> dict[str, object]:
    """The parameters that shape a bundle's content (``RUNTIME_ONLY_PARAMS`` left out)."""
    return {k: v for k, v in params.items() if k not in RUNTIME_ONLY_PARAMS}


def file_stats(paths: Iterable[os.PathLike[str] | str], root: str | os.PathLike[str] | None = None) -> list:
    """``[relative name, size, mtime_ns]`` per file, in the given order (a stat each, no read)."""
    rows = []
    for path in paths:
        stat = os.stat(path)
        name = os.path.relpath(path, root) if root is not None else os.fspath(path)
        rows.append([name, stat.st_size, stat.st_mtime_ns])
    return rows


def raw_fingerprint(
    paths: Sequence[object],
    params: Mapping[str, object],
    extra: Mapping[str, object] | None = None,
    skipped: Sequence[Mapping[str, object]] = (),
) -> str:
    """The source fingerprint of an intermediate bundle built from the inputs ``paths``.

    Raw files enter by name, size and modification time; inputs that are tasks rather than files
    (a custom data set's CSV rows, a pickle's annotations) enter by their content, and the files
    behind them through ``extra`` (the caller's ``file_stats`` of its source files).
    """
    files = [p for p in paths if isinstance(p, str | os.PathLike)]
    tasks = [p for p in paths if not isinstance(p, str | os.PathLike)]
    root = os.path.commonpath([os.path.abspath(p) for p in files]) if files else None
    if root is not None and len(files) == 1:
        root = os.path.dirname(root)
    return digest(
        {
            "files": file_stats([os.path.abspath(p) for p in files], root),
            "tasks": digest([json.dumps(t, sort_keys=True, default=str) for t in tasks]) if tasks else None,
            "skipped": [
                [os.path.relpath(os.path.abspath(str(r["file"])), root) if root else str(r["file"]), r["reason"]]
                for r in skipped
            ],
            "params": output_params(params),
            "extra": dict(extra or {}),
        }
    )


def file_digest(path: str | os.PathLike[str] | None) -> str | None:
    """SHA-256 of a (small) side file's bytes, ``None`` when there is no such file."""
    if path is None or not Path(path).is_file():
        return None
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_not_stale(bundle_path: Path, summary: Mapping[str, object], summary_file: str) -> None:
    """Raise :class:`StaleBundleError` when the bundle's recorded source no longer matches.

    Nothing is checked when the bundle records no source (an intermediate bundle, or one written
    before fingerprints existed) or when the source bundle is gone (it may have been deleted to
    save space; the derived bundle is then all there is).
    """
    relative = summary.get("source_bundle")
    recorded = summary.get("source_bundle_fingerprint")
    if not relative or not recorded:
        return
    source = Path(os.path.normpath(bundle_path / str(relative)))
    source_summary = source / summary_file
    if not source_summary.is_file():
        return
    current = json.loads(source_summary.read_text()).get("fingerprint")
    if current == recorded:
        return
    command = summary.get("rebuild_command") or "its prepare pipeline"
    raise StaleBundleError(
        f"stale prepared data: {bundle_path} was built from {source} with fingerprint {str(recorded)[:12]}, "
        f"but {source} now has fingerprint {str(current)[:12]} (it was rebuilt after {bundle_path}, e.g. by a "
        f"run stopped between preparation steps). Refusing to use {bundle_path}; rebuild both with: {command}"
    )
