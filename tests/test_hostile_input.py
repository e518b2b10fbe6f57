"""Preparation under hostile input: nothing vanishes, corrupt values are quarantined with a named
reason, interrupted runs are cleaned up, stale bundles are refused, strict mode says why in one line."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from skeleton_attention.hooks import preparation_error
from skeleton_attention.skeletons.bundle import BundleSource, BundleSpec, PreparedBundle, write_bundle
from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.fingerprint import StaleBundleError
from skeleton_attention.skeletons.ingest import EmptyRawDirectory, scan_raw_dir
from tests.kedro_helpers import REPO_ROOT, run_pipeline

KINETICS_EXCLUDE = ("kinetics_train_label.json", "kinetics_val_label.json")


def _pose(shift: float = 0.0) -> list[float]:
    return [round(0.3 + 0.01 * j + shift, 3) for j in range(36)]


def _clip(label: str, index: int, frames=(1, 2, 3), score: float = 0.5) -> str:
    data = [{"frame_index": f, "skeleton": [{"pose": _pose(0.001 * f), "score": [score] * 18}]} for f in frames]
    return json.dumps({"data": data, "label": label, "label_index": index})


def _entry(label: str, index: int) -> dict:
    return {"label": label, "label_index": index, "has_skeleton": True}


def _kinetics_raw(root: Path) -> tuple[Path, dict, dict]:
    """A raw folder holding good clips and every kind of hostile entry, plus its two label maps."""
    raw = root / "kinetics"
    raw.mkdir(parents=True)
    train = {
        "good_a": _entry("a", 0),
        "my_label_clip": _entry("b", 1),
        "big_index": _entry("z", 999),
        "neg_score": _entry("a", 0),
        "huge_frame": _entry("a", 0),
        "both": _entry("a", 0),
    }
    val = {"good_b": _entry("b", 1), "both": _entry("a", 0)}
    (raw / "good_a.json").write_text(_clip("a", 0))
    (raw / "good_b.json").write_text(_clip("b", 1))
    (raw / "my_label_clip.json").write_text(_clip("b", 1))  # a clip whose name contains "label"
    (raw / "big_index.json").write_text(_clip("z", 999))  # file and map agree, but 3 classes only
    (raw / "neg_score.json").write_text(_clip("a", 0, score=-0.25))
    (raw / "huge_frame.json").write_text(_clip("a", 0, frames=(1, 2, 1_000_000)))
    (raw / "both.json").write_text(_clip("a", 0))
    (raw / "README.md").write_text("not a clip\n")
    (raw / "gone.json").symlink_to(raw / "does_not_exist.json")
    (raw / "loop.json").symlink_to(raw / "loop.json")
    (raw / "kinetics_train_label.json").write_text(json.dumps(train))
    (raw / "kinetics_val_label.json").write_text(json.dumps(val))
    return raw, train, val


def test_raw_listing_accounts_for_every_entry(tmp_path):
    raw, _, _ = _kinetics_raw(tmp_path)
    listing = scan_raw_dir(raw, ("*.json",), KINETICS_EXCLUDE)
    names = [p.name for p in listing]
    assert "my_label_clip.json" in names and len(names) == 7
    skipped = {Path(r["file"]).name: (r["kind"], r["reason"]) for r in listing.skipped}
    assert skipped == {
        "gone.json": ("quarantined", "broken_symlink"),
        "loop.json": ("quarantined", "symlink_loop"),
        "kinetics_train_label.json": ("excluded", "excluded_by_pattern"),
        "kinetics_val_label.json": ("excluded", "excluded_by_pattern"),
    }
    detail = next(r["detail"] for r in listing.skipped if r["reason"] == "excluded_by_pattern")
    assert "kinetics_train_label.json" in detail
    assert [Path(u).name for u in listing.unmatched] == ["README.md"]
    # symlinked folders are followed once; a link back to an ancestor is a loop, not a hang
    (raw / "more").mkdir()
    (raw / "more" / "extra.json").write_text(_clip("a", 0))
    (raw / "more" / "up").symlink_to(raw)
    (raw / "again").symlink_to(raw / "more")
    (raw / "zlinked").symlink_to(raw / "more")
    listing = scan_raw_dir(raw, ("*.json",), KINETICS_EXCLUDE)
    assert [p.relative_to(raw).as_posix() for p in listing if p.name == "extra.json"] == ["more/extra.json"]
    folders = {
        Path(r["file"]).relative_to(raw).as_posix(): r["reason"]
        for r in listing.skipped
        if r["reason"] in ("symlink_loop", "duplicate_folder")
    }
    assert folders == {
        "more/up": "symlink_loop",
        "again": "duplicate_folder",
        "zlinked": "duplicate_folder",
        "loop.json": "symlink_loop",
    }
    # an entry path (the configured label map location) excludes by path, not by name
    by_path = scan_raw_dir(raw, ("*.json",), (str(raw / "kinetics_val_label.json"),))
    assert "kinetics_train_label.json" in [p.name for p in by_path]


@pytest.mark.parametrize("pipeline", ["prepare_ntu", "prepare_kinetics", "prepare_utkinect", "prepare_msr"])
def test_an_empty_raw_folder_fails_naming_it(tmp_path, pipeline):
    name = pipeline.removeprefix("prepare_")
    raw = tmp_path / "empty raw"
    raw.mkdir()
    with pytest.raises(Exception) as info:
        run_pipeline(pipeline, tmp_path, {f"{name}_raw_dir": str(raw)})
    assert isinstance(preparation_error(info.value), EmptyRawDirectory)
    assert f"raw data directory {raw} is empty" in str(info.value)


def test_a_folder_without_matching_files_fails_naming_the_patterns(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "README.txt").write_text("x")
    (raw / "notes.md").write_text("x")
    with pytest.raises(Exception, match=r"holds no readable file matching the patterns \['\*\.skeleton'\]"):
        run_pipeline("prepare_ntu", tmp_path, {"ntu_raw_dir": str(raw)})


def test_kinetics_hostile_clips_are_quarantined_with_named_reasons(tmp_path):
    raw, _, _ = _kinetics_raw(tmp_path)
    run_pipeline(
        "prepare_kinetics",
        tmp_path,
        {
            "kinetics_raw_dir": str(raw),
            "kinetics_train_labels": str(raw / "kinetics_train_label.json"),
            "kinetics_val_labels": str(raw / "kinetics_val_label.json"),
        },
    )
    summary = json.loads((tmp_path / "data/08_reporting/kinetics_preparation_summary.json").read_text())
    assert summary["reasons"] == {
        "excluded:excluded_by_pattern": 2,
        "quarantined:bad_score": 1,
        "quarantined:broken_symlink": 1,
        "quarantined:label_conflict": 1,
        "quarantined:label_mismatch": 1,
        "quarantined:symlink_loop": 1,
        "quarantined:too_many_frames": 1,
    }
    assert summary["samples"] == 3 and summary["raw_files_unmatched"] == 1
    assert summary["inputs_seen"] == summary["samples"] + summary["quarantined"] + summary["excluded"] == 11
    quarantine = pd.read_csv(tmp_path / "data/02_intermediate/kinetics_quarantine.csv")
    reasons = dict(zip(quarantine["file"].map(lambda f: Path(f).name), quarantine["reason"], strict=True))
    assert reasons["big_index.json"] == "label_mismatch" and reasons["huge_frame.json"] == "too_many_frames"
    assert reasons["both.json"] == "label_conflict" and reasons["neg_score.json"] == "bad_score"
    detail = quarantine.set_index("reason").loc["too_many_frames", "detail"]
    assert "1000000" in detail and "max_frames=10000" in detail
    ids = set(PreparedBundle(tmp_path / "data/04_feature/kinetics").table.metadata()["sample_id"])
    assert ids == {"good_a", "good_b", "my_label_clip"}


def test_too_many_frames_is_checked_before_allocating(tmp_path):
    from skeleton_attention.skeletons.kinetics import read_kinetics_clip

    path = tmp_path / "c.json"
    path.write_text(_clip("a", 0, frames=(1, 50_000_000)))
    started = time.perf_counter()
    with pytest.raises(MalformedSkeletonFile) as info:
        read_kinetics_clip(path, max_frames=10_000)
    assert info.value.reason == "too_many_frames" and time.perf_counter() - started < 1.0
    assert "frame_index 50000000" in info.value.detail


def test_ntu_frame_count_header_does_not_drive_allocation(tmp_path, ntu_raw):
    """A corrupt frame count (1,000,000) meets the end of a small file: truncated, at once."""
    from skeleton_attention.skeletons.ntu import read_ntu_skeleton

    lines = (ntu_raw / "S001C001P001R001A001.skeleton").read_text().splitlines()
    lines[0] = "1000000"
    path = tmp_path / "S001C001P001R001A001.skeleton"
    path.write_text("\n".join(lines) + "\n")
    started = time.perf_counter()
    with pytest.raises(MalformedSkeletonFile) as info:
        read_ntu_skeleton(path)
    assert info.value.reason == "truncated" and time.perf_counter() - started < 2.0


def test_quarantine_line_numbers_are_integers(ntu_raw, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    good = (ntu_raw / "S001C001P001R001A001.skeleton").read_bytes()
    (raw / "S001C001P001R001A001.skeleton").write_bytes(good)
    (raw / "S001C001P001R001A002.skeleton").write_bytes(good.replace(b"\n25\n", b"\n24\n", 1))
    (raw / "S001C001P001R001A003.skeleton").write_bytes(b"")  # a row without a line: NaN in pandas
    (raw / "missing.txt").write_text("header\n")
    run_pipeline("prepare_ntu", tmp_path, {"ntu_raw_dir": str(raw), "ntu_missing_list": str(raw / "missing.txt")})
    inter = tmp_path / "data/02_intermediate"
    for path in (inter / "ntu/quarantine.csv", inter / "ntu_quarantine.csv"):
        rows = list(pd.read_csv(path, dtype=str, keep_default_na=False)["line"])
        assert sorted(rows) == ["", rows[-1] or rows[0]] and all(r == "" or r.isdigit() for r in rows), (path, rows)
    assert PreparedBundle(tmp_path / "data/02_intermediate/ntu").quarantine["line"].dtype == "Int64"


# --- interrupted runs --------------------------------------------------------------------------------


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_killed_runs_temporaries_are_swept_and_nothing_else(tmp_path, caplog):
    from skeleton_attention.training.checkpoints import atomic_torch_save

    dead, live = _dead_pid(), os.getppid()
    stale = [
        tmp_path / f".bundle.tmp-{dead}-abc123",
        tmp_path / f".bundle.old-{dead}",
        tmp_path / f".last.pt.{dead}-x1y2z3.tmp",
    ]
    legacy = tmp_path / ".bundle.tmp-ab12cd34"  # an older version's name (no pid): older than this process
    kept = [
        tmp_path / f".bundle.tmp-{live}-abc123",  # a live process is still writing it
        tmp_path / "bundle.tmp",
        tmp_path / ".bundle.notes",
        tmp_path / f".other.tmp-{dead}-abc123",
    ]
    for path in [*stale[:2], legacy, kept[0]]:
        path.mkdir()
        (path / "samples.parquet").write_bytes(b"half")
    for path in [stale[2], *kept[1:]]:
        path.write_bytes(b"x")
    old = time.time() - 3600
    os.utime(legacy, (old, old))
    with caplog.at_level(logging.WARNING, logger="skeleton_attention.skeletons.tempfiles"):
        write_bundle(tmp_path / "bundle", BundleSource(BundleSpec(protocols=()), records=[]))
        atomic_torch_save({"a": 1}, tmp_path / "last.pt")
    assert not any(p.exists() for p in [*stale, legacy])
    assert all(p.exists() for p in kept)
    assert (tmp_path / "bundle" / "summary.json").is_file() and (tmp_path / "last.pt").is_file()
    logged = caplog.text
    assert all(p.name in logged for p in [*stale, legacy])


# --- stale bundles -------------------------------------------------------------------------------------


def _msr_raw(shared_data: Path, target: Path, count: int) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted((shared_data / "msr_action3d_raw").glob("a0[12]_s0[12]_*_skeleton3D.txt"))[:count]:
        (target / path.name).symlink_to(path)
    return target


def test_features_built_from_an_older_intermediate_are_refused(shared_data, tmp_path):
    from skeleton_attention.datasets import PreparedBundleDataset
    from skeleton_attention.pipelines.prepare_msr.nodes import ingest_msr

    raw = _msr_raw(shared_data, tmp_path / "raw", 8)
    run_pipeline("prepare_msr", tmp_path, {"msr_raw_dir": str(raw)})
    inter_path, feature_path = tmp_path / "data/02_intermediate/msr", tmp_path / "data/04_feature/msr"
    inter, features = PreparedBundle(inter_path), PreparedBundle(feature_path)
    assert features.summary["source_bundle_fingerprint"] == inter.fingerprint
    assert features.summary["source_bundle"] == "../../02_intermediate/msr"
    assert len(inter.summary["source_fingerprint"]) == 64

    # a run killed after its first step, on different raw input: a new intermediate beside old features
    (raw / sorted(os.listdir(raw))[0]).unlink()
    params = yaml.safe_load((REPO_ROOT / "conf/base/parameters_prepare.yml").read_text())["prepare_msr"]
    write_bundle(inter_path, ingest_msr(scan_raw_dir(raw, ("*_skeleton3D.txt",)), {**params, "workers": 1}))
    with pytest.raises(StaleBundleError) as info:
        PreparedBundle(feature_path)
    message = str(info.value)
    assert str(feature_path) in message and str(inter_path) in message
    assert "kedro run --pipelines=prepare_msr" in message
    with pytest.raises(Exception, match="stale prepared data"):
        PreparedBundleDataset(str(feature_path)).load()  # what training loads
    assert PreparedBundle(feature_path, check_source=False).summary["samples"] == 8

    run_pipeline("prepare_msr", tmp_path, {"msr_raw_dir": str(raw)})  # the rebuild it names
    assert PreparedBundle(feature_path).summary["samples"] == 7


def test_the_same_input_gives_the_same_fingerprint_and_a_touched_file_another(shared_data, tmp_path):
    from skeleton_attention.pipelines.prepare_msr.nodes import ingest_msr

    raw = _msr_raw(shared_data, tmp_path / "raw", 3)
    params = {"workers": 1, "row_group_size": 16}
    first = ingest_msr(scan_raw_dir(raw, ("*_skeleton3D.txt",)), params).spec.source_fingerprint
    again = ingest_msr(scan_raw_dir(raw, ("*_skeleton3D.txt",)), {**params, "workers": 2}).spec.source_fingerprint
    assert first == again  # workers do not change what is built
    other = ingest_msr(scan_raw_dir(raw, ("*_skeleton3D.txt",)), {**params, "row_group_size": 8})
    assert other.spec.source_fingerprint != first
    real = sorted(raw.iterdir())[0]
    copy = real.with_suffix(".tmp")
    copy.write_bytes(real.read_bytes())
    real.unlink()
    copy.rename(real)  # same name and size, new modification time
    assert ingest_msr(scan_raw_dir(raw, ("*_skeleton3D.txt",)), params).spec.source_fingerprint != first


# --- row order -----------------------------------------------------------------------------------------


def test_row_permutation_is_seeded_complete_and_mixes_row_groups():
    from skeleton_attention.skeletons.prepare import row_permutation

    sizes = [256] * 40 + [100]
    order = row_permutation(sizes, seed=0, open_groups=8)
    assert sorted(order.tolist()) == list(range(sum(sizes)))
    assert np.array_equal(order, row_permutation(sizes, seed=0, open_groups=8))
    assert not np.array_equal(order, row_permutation(sizes, seed=1, open_groups=8))
    groups = np.minimum(order // 256, 40)
    window = groups[:1024]
    assert len(set(window.tolist())) >= 8  # file order would give 4 groups
    # every row group is consumed in one stretch: at most open_groups are open at a time
    first, last = {}, {}
    for position, group in enumerate(groups.tolist()):
        first.setdefault(group, position)
        last[group] = position
    events = sorted([(p, 1) for p in first.values()] + [(p + 1, -1) for p in last.values()])
    open_now = np.cumsum([e[1] for e in events])
    assert open_now.max() <= 8


def test_feature_table_rows_are_shuffled_deterministically_with_flat_reads(shared_data, tmp_path, monkeypatch):
    from skeleton_attention.pipelines.preparation import build_streams
    from skeleton_attention.pipelines.prepare_msr.nodes import ingest_msr
    from skeleton_attention.skeletons.table import SampleTable

    raw = tmp_path / "raw"
    raw.mkdir()
    for path in sorted((shared_data / "msr_action3d_raw").glob("*_skeleton3D.txt"))[:120]:
        (raw / path.name).symlink_to(path)
    params = {
        **yaml.safe_load((REPO_ROOT / "conf/base/parameters_prepare.yml").read_text())["prepare_msr"],
        "workers": 1,
        "row_group_size": 16,
    }
    write_bundle(tmp_path / "inter", ingest_msr(scan_raw_dir(raw, ("*_skeleton3D.txt",)), params))
    inter = PreparedBundle(tmp_path / "inter")
    reads = []
    original = SampleTable._row_group_values

    def counting(self, group, stream):
        if (group, stream) not in self._cache:
            reads.append(group)
        return original(self, group, stream)

    monkeypatch.setattr(SampleTable, "_row_group_values", counting)
    order = {"shuffle": True, "seed": 0, "open_row_groups": 2}
    write_bundle(tmp_path / "a", build_streams(inter, {**params, "row_order": order}))
    groups = len(inter.table.row_group_sizes())
    assert sorted(reads) == list(range(groups)), "each intermediate row group is read exactly once"
    write_bundle(tmp_path / "b", build_streams(inter, {**params, "row_order": order}))
    assert (tmp_path / "a/samples.parquet").read_bytes() == (tmp_path / "b/samples.parquet").read_bytes()
    shuffled = PreparedBundle(tmp_path / "a").table.metadata()["sample_id"].tolist()
    in_file_order = inter.table.metadata()["sample_id"].tolist()
    assert sorted(shuffled) == sorted(in_file_order) and shuffled != in_file_order
    write_bundle(tmp_path / "c", build_streams(inter, {**params, "row_order": {"shuffle": False}}))
    assert PreparedBundle(tmp_path / "c").table.metadata()["sample_id"].tolist() == in_file_order


# --- strict mode through the command line --------------------------------------------------------------


@pytest.mark.slow
def test_strict_failure_reason_is_the_last_line_of_kedro_run(tmp_path):
    project = tmp_path / "project"
    (project / "conf" / "local").mkdir(parents=True)
    (project / "src").mkdir()
    (project / "pyproject.toml").write_text((REPO_ROOT / "pyproject.toml").read_text())
    for name in ("catalog.yml", "parameters_prepare.yml"):
        (project / "conf" / "base").mkdir(exist_ok=True)
        (project / "conf" / "base" / name).write_text((REPO_ROOT / "conf" / "base" / name).read_text())
    (project / "conf/logging.yml").write_text((REPO_ROOT / "conf/logging.yml").read_text())
    raw = project / "bad"
    raw.mkdir()
    (raw / "clip_a.json").write_text(_clip("a", 0))
    (raw / "clip_b.json").write_text(_clip("a", 0, score=-1.0))
    (raw / "kinetics_train_label.json").write_text(json.dumps({"clip_a": _entry("a", 0), "clip_b": _entry("a", 0)}))
    (raw / "kinetics_val_label.json").write_text("{}")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT / "src"),
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "COLUMNS": "80",
    }
    kedro = Path(sys.executable).with_name("kedro")
    result = subprocess.run(
        [
            str(kedro),
            "run",
            "--pipelines=prepare_kinetics",
            "--params=kinetics_raw_dir=bad,kinetics_train_labels=bad/kinetics_train_label.json,"
            "kinetics_val_labels=bad/kinetics_val_label.json,prepare_kinetics.strict=true",
        ],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[-1].startswith("PREPARATION FAILED: ")
    assert "clip_b.json" in lines[-1] and "bad_score" in lines[-1], lines[-5:]
    assert sum("PREPARATION FAILED" in line for line in lines) == 2  # logged first, printed last
