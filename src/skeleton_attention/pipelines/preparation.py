"""Nodes shared by every ``prepare_*`` pipeline: streams from an intermediate bundle, and the summary."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.pipeline import Node, Pipeline, node

from skeleton_attention.skeletons.bundle import BundleSource, BundleSpec, PreparedBundle
from skeleton_attention.skeletons.fingerprint import digest, output_params, raw_fingerprint
from skeleton_attention.skeletons.ingest import FileOutcome, IngestCounter, RawFileList, ingest
from skeleton_attention.skeletons.prepare import featurize
from skeleton_attention.skeletons.table import STREAM_NAMES

logger = logging.getLogger(__name__)


class _CountedRecords:
    """Iterates the ingest generator and fills ``source.inputs_seen`` when it is exhausted."""

    def __init__(
        self,
        source: BundleSource,
        paths: Sequence[Path],
        processor,
        params: Mapping[str, Any],
        skipped: Sequence[Mapping[str, object]] = (),
    ):
        self._source = source
        self._paths = paths
        self._processor = processor
        self._params = params
        self._skipped = skipped

    def __iter__(self):
        counter = IngestCounter()
        yield from ingest(
            self._paths,
            self._processor,
            skipped=self._skipped,
            strict=bool(self._params.get("strict", False)),
            workers=self._params.get("workers"),
            chunksize=int(self._params.get("chunksize", 8)),
            counter=counter,
            description=str(self._params.get("description", "ingest")),
        )
        self._source.inputs_seen = counter.inputs_seen
        logger.info(
            "%s: %d inputs -> %d samples, %d quarantined, %d excluded",
            self._params.get("description", "ingest"),
            counter.inputs_seen,
            counter.samples,
            counter.quarantined,
            counter.excluded,
        )


def ingest_source(
    paths: Sequence[Path],
    processor: Callable[[Path], FileOutcome],
    protocols: Sequence[str],
    params: Mapping[str, Any],
    info: Mapping[str, Any] | None = None,
    fold_protocols: Sequence[str] = (),
    *,
    fingerprint_extra: Mapping[str, Any] | None = None,
    source_bundle: PreparedBundle | None = None,
) -> BundleSource:
    """A lazy bundle source over raw files; the bundle dataset drives it when saving.

    ``protocols`` are train/test protocols, ``fold_protocols`` cross-validated ones (fold numbers).
    When ``paths`` is a :class:`RawFileList`, its skipped entries become quarantine rows and its
    unmatched files a count in the summary, so every entry of the raw directory is accounted for.
    The source fingerprint (fingerprint.py) covers the raw files' names, sizes and times, the
    output-shaping ``params`` and ``fingerprint_extra`` (side files: label maps, missing list); for
    tasks derived from another bundle (``source_bundle``), that bundle's fingerprint instead.
    """
    skipped: Sequence[Mapping[str, object]] = ()
    if isinstance(paths, RawFileList):
        skipped = paths.skipped
        info = {**paths.summary_info(), **dict(info or {})}
    info = {"stage": "intermediate", "coordinates": "camera", **dict(info or {})}
    if source_bundle is not None:
        fingerprint = digest({"source": source_bundle.fingerprint, "params": output_params(params)})
    else:
        fingerprint = raw_fingerprint(list(paths), params, fingerprint_extra, skipped)
    spec = BundleSpec(
        protocols=tuple(protocols),
        fold_protocols=tuple(fold_protocols),
        streams=("joint",),
        row_group_size=int(params.get("row_group_size", 256)),
        info=info,
        source_fingerprint=fingerprint,
        source_bundle=source_bundle,
        rebuild_command=rebuild_command(str(info.get("dataset", ""))),
        parquet=params.get("parquet"),
    )
    source = BundleSource(spec=spec, records=())
    source.records = _CountedRecords(source, list(paths), processor, params, skipped)
    return source


def rebuild_command(dataset: str) -> str:
    """The command that rebuilds a data set's bundles (``ntu_multiview`` comes from ``prepare_ntu``)."""
    name = dataset.removesuffix("_multiview") or "<dataset>"
    return f"kedro run --pipelines=prepare_{name}"


def build_streams(intermediate: PreparedBundle, params: Mapping[str, Any]) -> BundleSource:
    """Normalize and decouple every sample of the intermediate bundle into the stream table.

    Reading the intermediate bundle here means the features cannot be stale by construction; the
    intermediate's fingerprint is recorded so that a later load notices when it is rebuilt alone.
    """
    streams = tuple(params.get("streams", STREAM_NAMES))
    order = dict(params.get("row_order") or {})
    spec = BundleSpec(
        protocols=intermediate.table.split_protocols,
        fold_protocols=intermediate.table.fold_protocols,
        streams=streams,
        row_group_size=int(params.get("row_group_size", 256)),
        info={
            "stage": "feature",
            "normalize": dict(params.get("normalize", {})),
            "row_order": order,
            **({"smoothing": dict(params["smoothing"])} if params.get("smoothing") is not None else {}),
            # runtime joint layouts (user data sets) travel on, so training can resolve the name
            **({"layouts": intermediate.summary["layouts"]} if intermediate.summary.get("layouts") else {}),
        },
        source_fingerprint=digest({"source": intermediate.fingerprint, "params": output_params(params)}),
        source_bundle=intermediate,
        rebuild_command=rebuild_command(str(intermediate.summary.get("dataset", ""))),
        parquet=params.get("parquet"),
    )
    records = featurize(
        intermediate.table, params.get("normalize", {}), streams, params.get("smoothing"), row_order=order
    )
    return BundleSource(spec=spec, records=records, inputs_seen=len(intermediate.table))


def summarize_preparation(
    intermediate: PreparedBundle, features: PreparedBundle
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The quarantine manifest and a summary that checks every input is accounted for."""
    quarantine = intermediate.quarantine
    inter = intermediate.summary
    seen = int(inter.get("inputs_seen", -1))
    summary = {
        "inputs_seen": seen,
        "samples": int(features.summary["samples"]),
        "quarantined": int(inter["quarantined"]),
        "excluded": int(inter["excluded"]),
        "reasons": inter["reasons"],
        "num_classes_present": features.summary["num_classes_present"],
        "streams": features.summary["streams"],
        "protocols": features.summary["protocols"],
        "fold_protocols": features.summary.get("fold_protocols", []),
        "split_counts": _split_counts(features),
    }
    if inter.get("warnings"):  # e.g. a custom data set's k-fold drawn per sample for want of subjects
        summary["warnings"] = inter["warnings"]
    if "raw_files_unmatched" in inter:
        summary["raw_files_unmatched"] = int(inter["raw_files_unmatched"])
    if features.summary["samples"] != inter["samples"]:
        raise RuntimeError(
            f"{features.path}: {features.summary['samples']} samples but the intermediate bundle has {inter['samples']}"
        )
    logger.info(
        "prepared %s: %d inputs, %d samples, %d quarantined, %d excluded (%s)",
        features.path,
        seen,
        summary["samples"],
        summary["quarantined"],
        summary["excluded"],
        summary["reasons"] or "no problems",
    )
    return quarantine, summary


def _split_counts(bundle: PreparedBundle) -> dict[str, dict[str, int]]:
    meta = bundle.table.metadata()
    counts = {}
    for column in meta.columns:
        if column.startswith("split_"):
            values = meta[column].fillna("none").value_counts()
            counts[column[len("split_") :]] = {str(k): int(v) for k, v in values.items()}
    return counts


def preparation_pipeline(name: str, ingest_node: Node) -> Pipeline:
    """ingest (raw -> intermediate bundle) -> streams (feature bundle) -> summary, for one data set."""
    return Pipeline(
        [
            ingest_node,
            node(
                build_streams,
                inputs=[f"{name}_intermediate", f"params:prepare_{name}"],
                outputs=f"{name}_samples",
                name=f"build_{name}_streams",
            ),
            node(
                summarize_preparation,
                inputs=[f"{name}_intermediate", f"{name}_samples"],
                outputs=[f"{name}_quarantine", f"{name}_preparation_summary"],
                name=f"summarize_{name}_preparation",
            ),
        ]
    )
