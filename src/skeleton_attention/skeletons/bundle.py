"""A prepared-data bundle: a sample table plus its side tables, written atomically as one directory.

Layout of ``<dir>/``::

    samples.parquet     the sample table (see table.py)
    quarantine.csv      one row per input file that was not turned into samples: file, reason, line, detail,
                        kind ("quarantined" for bad input, "excluded" for e.g. the official missing lists)
    report.jsonl        per-input decision records (e.g. NTU denoising), one JSON object per line
    summary.json        counts; written last, so a directory without it is incomplete

A bundle is built in ``.<dir>.tmp-<pid>-*`` and swapped into place only when complete, so an interrupted
run leaves either the previous bundle or none, never a half-written one that looks complete; the next
write of the same bundle removes what a killed run left (``tempfiles.py``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from skeleton_attention.skeletons.fingerprint import check_not_stale, digest
from skeleton_attention.skeletons.layouts import register_layouts
from skeleton_attention.skeletons.table import STREAM_NAMES, SampleTable, SampleTableWriter
from skeleton_attention.skeletons.tempfiles import aside_name, dir_prefix, sweep_stale

SAMPLES_FILE = "samples.parquet"
QUARANTINE_FILE = "quarantine.csv"
REPORT_FILE = "report.jsonl"
SUMMARY_FILE = "summary.json"
QUARANTINE_COLUMNS = ("file", "kind", "reason", "line", "detail")


@dataclass
class SideRecord:
    """A non-sample record travelling with the rows: ``kind`` is "quarantine" or "report"."""

    kind: str
    record: dict[str, object]


@dataclass
class BundleSpec:
    """What a producer promises to write: protocols and stream columns of its sample table."""

    protocols: Sequence[str]
    streams: Sequence[str] = STREAM_NAMES
    row_group_size: int = 256
    info: dict[str, object] = field(default_factory=dict)
    #: cross-validated protocols: their ``split_<name>`` column holds the fold number (table.py)
    fold_protocols: Sequence[str] = ()
    #: digest of what the bundle is built from (fingerprint.py); recorded in summary.json
    source_fingerprint: str | None = None
    #: a derived bundle's source bundle (its fingerprint is recorded, checked on load)
    source_bundle: PreparedBundle | None = None
    #: the command that rebuilds this bundle and its source, named when it is found stale
    rebuild_command: str | None = None
    #: Parquet compression and encoding of the sample table (``table.parquet_write_options``)
    parquet: Mapping[str, object] | None = None


@dataclass
class BundleSource:
    """A lazy producer: iterating ``records`` yields sample rows (dicts) and :class:`SideRecord` s.

    ``inputs_seen`` is read after iteration: the number of inputs (files) the producer looked at, so
    the summary can check that every input is accounted for.
    """

    spec: BundleSpec
    records: Iterable[dict[str, object] | SideRecord]
    inputs_seen: int | None = None


class PreparedBundle:
    """A loaded bundle: the lazy sample table and its (small) side tables.

    A derived bundle (features, multi-view) whose source bundle has been rebuilt since raises
    :class:`~skeleton_attention.skeletons.fingerprint.StaleBundleError` (``check_source=False``
    skips that check, for tools that inspect a stale bundle on purpose).
    """

    def __init__(self, path: str | os.PathLike[str], check_source: bool = True) -> None:
        self.path = Path(path)
        summary_path = self.path / SUMMARY_FILE
        if not summary_path.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a complete prepared bundle (no {SUMMARY_FILE}); rerun its prepare pipeline"
            )
        self.summary: dict[str, object] = json.loads(summary_path.read_text())
        # a user data set's own joint layout travels in the summary: make its name resolvable here
        register_layouts(self.summary.get("layouts"))  # type: ignore[arg-type]
        if check_source:
            check_not_stale(self.path, self.summary, SUMMARY_FILE)
        self.table = SampleTable(self.path / SAMPLES_FILE)

    @property
    def fingerprint(self) -> str | None:
        """This bundle's identity for its consumers (``None`` for a bundle older than fingerprints)."""
        value = self.summary.get("fingerprint")
        return None if value is None else str(value)

    @property
    def quarantine(self) -> pd.DataFrame:
        # line is an optional integer: nullable Int64 keeps 1444 from becoming 1444.0 on the way out
        return pd.read_csv(self.path / QUARANTINE_FILE, keep_default_na=False, na_values=[""], dtype={"line": "Int64"})

    @property
    def report(self) -> pd.DataFrame:
        """One row per decision record; nested fields stay Python objects (lists, dicts)."""
        with open(self.path / REPORT_FILE, encoding="utf-8") as handle:
            return pd.DataFrame([json.loads(line) for line in handle if line.strip()])


def write_bundle(path: str | os.PathLike[str], source: BundleSource, progress=None) -> dict[str, object]:
    """Consume ``source`` and write the bundle at ``path`` atomically; returns the summary."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target.parent, target.name)
    tmp_dir = Path(tempfile.mkdtemp(prefix=dir_prefix(target.name), dir=target.parent))
    try:
        spec = source.spec
        labels: Counter[int] = Counter()
        outcomes: Counter[str] = Counter()
        # side records are streamed to disk as they come: memory stays flat however many inputs
        with (
            SampleTableWriter(
                tmp_dir / SAMPLES_FILE,
                spec.protocols,
                spec.streams,
                spec.row_group_size,
                spec.fold_protocols,
                spec.parquet,
            ) as writer,
            open(tmp_dir / QUARANTINE_FILE, "w", newline="", encoding="utf-8") as quarantine_file,
            open(tmp_dir / REPORT_FILE, "w", encoding="utf-8") as report_file,
        ):
            quarantine = csv.DictWriter(quarantine_file, fieldnames=list(QUARANTINE_COLUMNS), extrasaction="ignore")
            quarantine.writeheader()
            for item in source.records:
                if isinstance(item, SideRecord) and item.kind == "quarantine":
                    quarantine.writerow(item.record)
                    outcomes[f"{item.record['kind']}:{item.record['reason']}"] += 1
                elif isinstance(item, SideRecord):
                    report_file.write(json.dumps(item.record, default=_json_default) + "\n")
                else:
                    writer.write(item)
                    labels[int(item["label"])] += 1  # type: ignore[arg-type]
                if progress is not None:
                    progress(item)
        summary = _summary(source, writer.rows_written, outcomes, labels)
        summary.update(_fingerprints(spec, target, summary))
        (tmp_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
        swap_into_place(tmp_dir, target)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return summary


def _json_default(value: object) -> object:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def _summary(
    source: BundleSource,
    samples: int,
    outcomes: Mapping[str, int],
    labels: Mapping[int, int],
) -> dict[str, object]:
    kinds: Counter[str] = Counter()
    for key, count in outcomes.items():
        kinds[key.split(":", 1)[0]] += count
    summary: dict[str, object] = {
        "samples": samples,
        "quarantined": kinds.get("quarantined", 0),
        "excluded": kinds.get("excluded", 0),
        "reasons": dict(sorted(outcomes.items())),
        "num_classes_present": len(labels),
        "samples_per_label": {str(k): v for k, v in sorted(labels.items())},
        "protocols": list(source.spec.protocols),
        "fold_protocols": list(source.spec.fold_protocols),
        "streams": list(source.spec.streams),
        **source.spec.info,
    }
    if source.inputs_seen is not None:
        summary["inputs_seen"] = source.inputs_seen
    return summary


def _fingerprints(spec: BundleSpec, target: Path, summary: Mapping[str, object]) -> dict[str, object]:
    """The provenance entries of summary.json (fingerprint.py): what this bundle was built from."""
    out: dict[str, object] = {}
    if spec.source_fingerprint is not None:
        out["source_fingerprint"] = spec.source_fingerprint
    if spec.source_bundle is not None:
        # relative to this bundle, so moving the data folder as a whole keeps the link
        out["source_bundle"] = os.path.relpath(spec.source_bundle.path.resolve(), target.resolve())
        out["source_bundle_fingerprint"] = spec.source_bundle.fingerprint
    if spec.rebuild_command:
        out["rebuild_command"] = spec.rebuild_command
    out["fingerprint"] = digest({**summary, **out})
    return out


def swap_into_place(tmp_dir: Path, target: Path) -> None:
    """Replace directory ``target`` by ``tmp_dir`` (same parent) with renames only.

    The previous ``target`` is renamed aside before the new one is renamed in, so at every moment
    a complete directory (old or new) is in place or in its aside copy; never a half-deleted one.
    """
    old = None
    if target.exists():
        old = target.with_name(aside_name(target.name))
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
    os.replace(tmp_dir, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
