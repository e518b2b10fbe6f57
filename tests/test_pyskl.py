"""PYSKL / MMAction2 annotation pickles: restricted loading, protocols, layouts, bad input."""

from __future__ import annotations

import datetime
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import yaml

from skeleton_attention.pipelines.preparation import build_streams
from skeleton_attention.pipelines.prepare_pyskl.nodes import ingest_pyskl
from skeleton_attention.skeletons import ntu
from skeleton_attention.skeletons.bundle import PreparedBundle, write_bundle
from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.pyskl import load_pyskl_pickle, split_protocols
from tests.kedro_helpers import load_config, run_pipeline

NTU_NAMES = ["S001C001P001R001A001", "S001C002P003R001A002", "S002C003P001R002A003", "S001C001P003R001A001"]


def ntu_annotation(name: str, frames: int = 12, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    keypoint = (rng.normal(size=(1, frames, 25, 3)) * 0.1 + np.array([0.0, 0.2, 3.0])).astype(np.float32)
    return {
        "frame_dir": name,
        "label": ntu.parse_ntu_name(name).label,
        "keypoint": keypoint,
        "total_frames": frames,
        "img_shape": (1080, 1920),
        "original_shape": (1080, 1920),
    }


def ntu_pickle(path: Path, protocol: int = 4, annotations: list | None = None) -> dict:
    anns = annotations if annotations is not None else [ntu_annotation(n, 10 + i, i) for i, n in enumerate(NTU_NAMES)]
    split = {"xsub_train": [], "xsub_val": [], "xview_train": [], "xview_val": []}
    for name in NTU_NAMES:
        official = ntu.ntu_splits(name)
        split["xsub_train" if official["ntu60_xsub"] == "train" else "xsub_val"].append(name)
        split["xview_train" if official["ntu60_xview"] == "train" else "xview_val"].append(name)
    data = {"split": split, "annotations": anns}
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return data


def coco_pickle(path: Path) -> dict:
    rng = np.random.default_rng(1)
    anns = []
    for i in range(4):
        keypoint = rng.uniform(0, 1, size=(2, 8, 17, 2)) * np.array([640.0, 480.0])
        score = rng.uniform(0.2, 1.0, size=(2, 8, 17)).astype(np.float16)
        anns.append(
            {
                "frame_dir": f"clip{i}",
                "label": i % 2,
                "keypoint": keypoint.astype(np.float16),
                "keypoint_score": score,
                "total_frames": 8,
                "img_shape": (480, 640),
            }
        )
    data = {"split": {"train": ["clip0", "clip1"], "val": ["clip2", "clip3"]}, "annotations": anns}
    path.write_bytes(pickle.dumps(data))
    return data


def convert(pkl: Path, out: Path, params: dict | None = None) -> PreparedBundle:
    write_bundle(out, ingest_pyskl(pkl, {"workers": 1, **(params or {})}))
    return PreparedBundle(out)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_restricted_unpickler_reads_numpy_pickles(tmp_path, protocol):
    data = ntu_pickle(tmp_path / "a.pkl", protocol=protocol)
    data["annotations"][0]["total_frames"] = np.int64(10)  # a numpy scalar too
    (tmp_path / "a.pkl").write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = load_pyskl_pickle(tmp_path / "a.pkl")
    np.testing.assert_array_equal(loaded["annotations"][1]["keypoint"], data["annotations"][1]["keypoint"])
    assert loaded["split"] == data["split"] and loaded["annotations"][0]["total_frames"] == 10


def test_numpy1_module_names_are_accepted(tmp_path):
    data = ntu_pickle(tmp_path / "a.pkl", protocol=2)
    raw = pickle.dumps(data, protocol=2)
    assert b"numpy._core.multiarray" in raw
    (tmp_path / "old.pkl").write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    loaded = load_pyskl_pickle(tmp_path / "old.pkl")
    np.testing.assert_array_equal(loaded["annotations"][2]["keypoint"], data["annotations"][2]["keypoint"])


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


class Thing:
    pass


MARKER = Path("/tmp") / f"pyskl-pwned-{os.getpid()}"


def test_a_pickle_carrying_code_is_refused_before_anything_runs(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"split": {}, "annotations": [{"frame_dir": "x", "keypoint": Payload()}]}))
    with pytest.raises(MalformedSkeletonFile, match=r"evil\.pkl: unsafe_pickle: refusing to load (posix|os)\.system"):
        load_pyskl_pickle(path)
    assert not MARKER.exists()
    path.write_bytes(pickle.dumps({"split": {}, "annotations": [Thing()]}))
    with pytest.raises(MalformedSkeletonFile, match=r"refusing to load tests\.test_pyskl\.Thing"):
        load_pyskl_pickle(path)
    path.write_bytes(pickle.dumps({"annotations": [], "x": datetime.timedelta(1)}))  # harmless, still not allowed
    with pytest.raises(MalformedSkeletonFile, match=r"refusing to load datetime\.timedelta"):
        load_pyskl_pickle(path)


def test_ntu_pickle_gets_ntu_identity_and_both_protocol_families(tmp_path):
    data = ntu_pickle(tmp_path / "ntu60_3danno.pkl")
    bundle = convert(tmp_path / "ntu60_3danno.pkl", tmp_path / "inter")
    meta = bundle.table.metadata().set_index("sample_id")
    assert bundle.summary["samples"] == 4 and set(meta["layout"]) == {"ntu25"} and set(meta["dataset"]) == {"ntu60"}
    assert list(meta["split_pyskl_xsub"]) == list(meta["split_ntu60_xsub"])  # PYSKL's val list = the test set
    assert list(meta["split_pyskl_xview"]) == list(meta["split_ntu60_xview"])
    assert set(bundle.table.split_protocols) == {"pyskl_xsub", "pyskl_xview", *ntu.ntu_splits(NTU_NAMES[0])}
    assert meta.at["S001C002P003R001A002", "performer"] == 3 and meta.at["S001C002P003R001A002", "camera"] == 2
    assert meta.at["S001C002P003R001A002", "label_name"] == ntu.NTU_ACTION_NAMES[1]
    row = int(meta.at["S002C003P001R002A003", "row"])
    np.testing.assert_array_equal(bundle.table.read_one(row)["joint"], data["annotations"][2]["keypoint"])


def test_coco_pickle_maps_to_coco17_with_scores_in_unit_coordinates(tmp_path):
    data = coco_pickle(tmp_path / "hrnet.pkl")
    bundle = convert(tmp_path / "hrnet.pkl", tmp_path / "inter")
    meta = bundle.table.metadata()
    assert set(meta["layout"]) == {"coco17"} and set(meta["num_channels"]) == {3} and set(meta["dataset"]) == {"hrnet"}
    assert list(meta["split_pyskl"]) == ["train", "train", "test", "test"]
    joint = bundle.table.read_one(0)["joint"]
    ann = data["annotations"][0]
    np.testing.assert_allclose(joint[..., 0], ann["keypoint"][..., 0].astype(np.float64) / 640, rtol=1e-6)
    np.testing.assert_allclose(joint[..., 1], ann["keypoint"][..., 1].astype(np.float64) / 480, rtol=1e-6)
    np.testing.assert_allclose(joint[..., 2], ann["keypoint_score"], rtol=1e-6)
    # the configured 2-D normalization and the streams run on coco17
    _, parameters = load_config()
    write_bundle(tmp_path / "features", build_streams(bundle, parameters["prepare_pyskl"]))
    features = PreparedBundle(tmp_path / "features")
    streams = features.table.read_one(0, ("joint", "bone"))
    assert np.isfinite(streams["bone"]).all() and np.abs(streams["joint"][..., :2]).max() <= 0.5 + 1e-6


def test_unknown_keypoint_layout_is_refused_unless_a_layout_file_is_given(tmp_path):
    rng = np.random.default_rng(0)
    anns = [{"frame_dir": f"c{i}", "label": 0, "keypoint": rng.normal(size=(1, 5, 20, 3))} for i in range(2)]
    (tmp_path / "k.pkl").write_bytes(pickle.dumps({"split": {"train": ["c0"], "test": ["c1"]}, "annotations": anns}))
    with pytest.raises(MalformedSkeletonFile, match=r"unknown_layout: keypoints with 20 joints x 3 channels"):
        ingest_pyskl(tmp_path / "k.pkl", {})
    (tmp_path / "layout.yaml").write_text(yaml.safe_dump({"layout": "kinect20"}))
    bundle = convert(tmp_path / "k.pkl", tmp_path / "inter", {"layout_file": str(tmp_path / "layout.yaml")})
    assert set(bundle.table.metadata()["layout"]) == {"kinect20"} and bundle.summary["samples"] == 2


def test_bad_annotations_are_quarantined_with_reasons(tmp_path):
    anns = [ntu_annotation(n, 10, i) for i, n in enumerate(NTU_NAMES)]
    anns[0]["total_frames"] = 99
    anns[1]["label"] = 7
    del anns[2]["keypoint"]
    anns[3]["keypoint"] = anns[3]["keypoint"][:, :, :24]
    ntu_pickle(tmp_path / "bad.pkl", annotations=[*anns, ntu_annotation("S001C003P001R001A001", 8, 9)])
    bundle = convert(tmp_path / "bad.pkl", tmp_path / "inter")
    reasons = dict(zip(bundle.quarantine["file"], bundle.quarantine["reason"], strict=True))
    base = str(tmp_path / "bad.pkl")
    assert reasons == {
        f"{base}[{NTU_NAMES[0]}]": "frame_count_mismatch",
        f"{base}[{NTU_NAMES[1]}]": "label_mismatch",
        f"{base}[{NTU_NAMES[2]}]": "malformed_annotation",
        f"{base}[{NTU_NAMES[3]}]": "wrong_joint_count",
    }
    assert bundle.summary["samples"] == 1 and bundle.summary["inputs_seen"] == 5


def test_an_unusable_first_annotation_does_not_decide_layout_or_naming(tmp_path):
    anns = ["junk", {"label": 0}, *(ntu_annotation(n, 10, i) for i, n in enumerate(NTU_NAMES))]
    ntu_pickle(tmp_path / "p.pkl", annotations=anns)
    bundle = convert(tmp_path / "p.pkl", tmp_path / "inter")
    assert list(bundle.quarantine["reason"]) == ["malformed_annotation", "malformed_annotation"]
    assert list(bundle.quarantine["file"]) == [
        f"{tmp_path / 'p.pkl'}[annotations[0]]",
        f"{tmp_path / 'p.pkl'}[annotations[1]]",
    ]
    assert bundle.summary["samples"] == 4 and "ntu60_xsub" in bundle.table.split_protocols


def test_split_names_map_to_protocols_and_conflicts_are_refused():
    assert split_protocols({"xsub_train": ["a"], "xsub_val": ["b"], "train": ["a"], "test": ["b"]}) == {
        "a": {"pyskl_xsub": "train", "pyskl": "train"},
        "b": {"pyskl_xsub": "test", "pyskl": "test"},
    }
    with pytest.raises(ValueError, match="both the train and the test list of pyskl_xsub"):
        split_protocols({"xsub_train": ["a"], "xsub_val": ["a"]})
    with pytest.raises(ValueError, match="'holdout' is not"):
        split_protocols({"holdout": ["a"]})


def test_not_a_pyskl_pickle_is_refused(tmp_path):
    (tmp_path / "l.pkl").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(MalformedSkeletonFile, match="expected a dict with an 'annotations' list, found list"):
        load_pyskl_pickle(tmp_path / "l.pkl")
    (tmp_path / "t.pkl").write_bytes(b"\x80\x04not a pickle")
    with pytest.raises(MalformedSkeletonFile, match="malformed_pickle"):
        load_pyskl_pickle(tmp_path / "t.pkl")


@pytest.mark.slow
def test_prepare_pyskl_pipeline_end_to_end(tmp_path):
    ntu_pickle(tmp_path / "ntu60_3danno.pkl")
    run_pipeline(
        "prepare_pyskl",
        tmp_path,
        runtime_params={"pyskl_pickle": str(tmp_path / "ntu60_3danno.pkl"), "pyskl_name": "ntu60_pyskl"},
    )
    summary = json.loads((tmp_path / "data/08_reporting/ntu60_pyskl_preparation_summary.json").read_text())
    assert summary["samples"] == 4 and summary["inputs_seen"] == 4 and summary["quarantined"] == 0
    assert summary["split_counts"]["pyskl_xsub"] == summary["split_counts"]["ntu60_xsub"]
    features = PreparedBundle(tmp_path / "data/04_feature/ntu60_pyskl")
    assert features.table.stream_names == ("joint", "bone", "motion_fast", "motion_slow")
