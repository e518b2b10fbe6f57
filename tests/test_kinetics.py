"""Kinetics-skeleton reader on the 12 real clips in ../shared/data, plus malformed variants of them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from skeleton_attention.skeletons.errors import MalformedSkeletonFile
from skeleton_attention.skeletons.kinetics import (
    kinetics_split,
    load_label_map,
    load_label_names,
    parse_kinetics_json,
    read_kinetics_clip,
    remap_by_name,
    select_people,
)

# SOURCES.md table: clip, label, label_index, frames, max persons in a frame, frames with no one
OFFICIAL = [
    ("__NrybzYzUg", "abseiling", 0, 299, 2, 234),
    ("__PYrzYbzKE", "jumpstyle dancing", 173, 299, 11, 0),
    ("__U_scuxNlQ", "clay pottery making", 58, 299, 2, 0),
    ("__lt03EF4ao", "passing American football (in game)", 208, 249, 9, 0),
    ("__u6odV5hrI", "parkour", 207, 299, 2, 269),
    ("__vOysOPoCY", "parkour", 207, 249, 3, 82),
    ("__vzEs2wzdQ", "strumming guitar", 335, 164, 5, 1),
]
# clip, label, fork's label_index, official label_index, frames, frames with no one (measured)
RELABELLED = [
    ("___dTOdxzXY", "jumping into pool", 0, 172, 299, 0),
    ("___qijXy2f0", "playing harp", 1, 234, 299, 0),
    ("__0muxHV-Uw", "folding napkins", 2, 132, 299, 261),
    ("__4frZhaVDs", "braiding hair", 3, 32, 299, 67),
    ("__6LvmReo3Y", "pushing cart", 4, 262, 240, 0),
]


@pytest.fixture(scope="module")
def kin(shared_data: Path) -> dict[str, Path]:
    return {
        "raw": shared_data / "kinetics_raw",
        "relabelled": shared_data / "kinetics_raw_relabelled",
        "val_map": shared_data / "kinetics_meta" / "kinetics_val_label.json",
        "names": shared_data / "kinetics_meta" / "label_name.txt",
    }


@pytest.fixture(scope="module")
def val_map(kin):
    return load_label_map(kin["val_map"])


@pytest.fixture(scope="module")
def names(kin):
    return load_label_names(kin["names"])


@pytest.fixture(scope="module")
def fork_map(kin):
    return load_label_map(kin["relabelled"] / "kinetics_train_label.json")


def _empty_frames(coords: np.ndarray) -> int:
    return int((coords == 0).all(axis=(0, 2, 3)).sum())


def test_folder_holds_exactly_the_documented_clips(kin):
    assert sorted(p.stem for p in kin["raw"].glob("*.json")) == sorted(c[0] for c in OFFICIAL)
    clips = sorted(p.stem for p in kin["relabelled"].glob("*.json") if not p.stem.startswith("kinetics_"))
    assert clips == sorted(c[0] for c in RELABELLED)


def test_label_files(val_map, names):
    assert len(names) == 400 and names[0] == "abseiling" and names[-1] == "zumba"
    assert len(val_map) == 19906
    assert sum(not e["has_skeleton"] for e in val_map.values()) == 110
    assert all(names[e["label_index"]] == e["label"] for e in val_map.values())


@pytest.mark.parametrize(("clip", "label", "index", "frames", "max_persons", "empty"), OFFICIAL)
def test_official_clip(kin, val_map, names, clip, label, index, frames, max_persons, empty):
    path = kin["raw"] / f"{clip}.json"
    seq = read_kinetics_clip(path, label_map=val_map, label_names=names)
    assert (seq.label, seq.label_name) == (index, label)
    assert seq.coords.shape == (2, frames, 18, 3) and seq.coords.dtype == np.float32
    assert (seq.sample_id, seq.dataset, seq.layout) == (clip, "kinetics", "openpose18")
    assert seq.meta == {"clip_id": clip}
    assert _empty_frames(seq.coords) == empty
    raw = parse_kinetics_json(path)
    assert max(raw.people_per_frame()) == max_persons
    assert [f.frame_index for f in raw.frames] == list(range(1, frames + 1))  # 1-based, contiguous
    # each frame keeps min(people, 2) persons
    filled = (seq.coords[:, :, :, 2] != 0).any(axis=2).sum(axis=0)
    assert filled.tolist() == [min(n, 2) for n in raw.people_per_frame()]


@pytest.mark.parametrize("clip", [c[0] for c in OFFICIAL])
def test_slots_follow_per_frame_score_rank(kin, clip):
    path = kin["raw"] / f"{clip}.json"
    seq = read_kinetics_clip(path, max_people=3)
    raw = parse_kinetics_json(path)
    for frame in raw.frames:
        t = frame.frame_index - 1
        totals = sorted(frame.people[:, :, 2].sum(axis=1), reverse=True)
        slot_totals = seq.coords[:, t, :, 2].sum(axis=1)
        for m in range(min(3, len(totals))):
            assert slot_totals[m] == pytest.approx(totals[m], abs=1e-4)


def test_raw_coordinates_are_kept(kin):
    # frame_index 3 of __NrybzYzUg: pose[10:12] = (1.007, 0.361), score[5] = 0.215 (left_shoulder)
    seq = read_kinetics_clip(kin["raw"] / "__NrybzYzUg.json")
    np.testing.assert_allclose(seq.coords[0, 2, 5], [1.007, 0.361, 0.215], atol=1e-6)
    assert (seq.coords[1, 2] == 0).all()  # only one person in that frame
    assert (seq.coords[:, 0] == 0).all() and (seq.coords[:, 1] == 0).all()  # frames 1, 2 are empty
    x = seq.coords[..., 0]
    assert x.max() > 1.0  # keypoints slightly outside the frame: not clipped


def test_max_people_and_candidates(kin):
    path = kin["raw"] / "__PYrzYbzKE.json"
    raw = parse_kinetics_json(path)
    five = read_kinetics_clip(path, max_people=5)
    assert five.coords.shape[0] == 5
    filled = (five.coords[:, :, :, 2] != 0).any(axis=2).sum(axis=0)
    assert filled.tolist() == [min(n, 5) for n in raw.people_per_frame()]
    # ST-GCN ranks only the first 5 listed; with 11 people that can change slot 0
    all_ranked = read_kinetics_clip(path, max_people=1)
    first5 = read_kinetics_clip(path, max_people=1, max_candidates=5)
    assert (all_ranked.coords[0, :, :, 2].sum(-1) >= first5.coords[0, :, :, 2].sum(-1) - 1e-5).all()
    people = raw.frames[0].people
    np.testing.assert_array_equal(select_people(people, 1, 5)[0], people[:5][np.argmax(people[:5, :, 2].sum(1))])


def test_num_frames_pads_or_refuses(kin):
    path = kin["raw"] / "__vzEs2wzdQ.json"
    padded = read_kinetics_clip(path, num_frames=300)
    assert padded.coords.shape == (2, 300, 18, 3)
    assert (padded.coords[:, 164:] == 0).all()
    with pytest.raises(MalformedSkeletonFile) as err:
        read_kinetics_clip(path, num_frames=100)
    assert err.value.reason == "trailing_data" and str(path) in str(err.value)


@pytest.mark.parametrize(("clip", "label", "fork_index", "official", "frames", "empty"), RELABELLED)
def test_relabelled_clips(kin, fork_map, names, clip, label, fork_index, official, frames, empty):
    path = kin["relabelled"] / f"{clip}.json"
    plain = read_kinetics_clip(path, label_map=fork_map)
    assert (plain.label, plain.label_name) == (fork_index, label)
    remapped = read_kinetics_clip(path, label_map=fork_map, label_names=names)
    assert (remapped.label, remapped.label_name) == (official, label)
    assert remapped.coords.shape == (2, frames, 18, 3)
    assert _empty_frames(remapped.coords) == empty


def test_remap_by_name(kin, fork_map, names):
    official = remap_by_name(fork_map, names)
    assert {c: e["label_index"] for c, e in official.items()} == {c[0]: c[3] for c in RELABELLED}
    assert {c: e["label_index"] for c, e in fork_map.items()} == {c[0]: c[2] for c in RELABELLED}  # untouched
    with pytest.raises(ValueError, match="not among"):
        remap_by_name({"x": {"label": "no such class", "label_index": 0, "has_skeleton": True}}, names)


def test_relabelled_clip_against_official_map_is_refused(kin, val_map):
    path = kin["relabelled"] / "___dTOdxzXY.json"
    with pytest.raises(MalformedSkeletonFile) as err:
        read_kinetics_clip(path, label_map=val_map)
    assert err.value.reason == "label_mismatch" and str(path) in str(err.value)


def test_split(kin, val_map, fork_map):
    for clip, *_ in OFFICIAL:
        assert kinetics_split(clip, fork_map, val_map) == "test"
    for clip, *_ in RELABELLED:
        assert kinetics_split(clip, fork_map, val_map) == "train"
    assert kinetics_split("not_a_clip", fork_map, val_map) is None
    assert kinetics_split(OFFICIAL[0][0], None, val_map) == "test"
    fork_val = load_label_map(kin["relabelled"] / "kinetics_val_label.json")
    assert fork_val == fork_map  # the fork's two maps are identical ...
    with pytest.raises(ValueError, match="both"):  # ... so they cannot define a split
        kinetics_split(RELABELLED[0][0], fork_map, fork_val)


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def base_doc(kin) -> dict:
    return json.loads((kin["raw"] / "__vzEs2wzdQ.json").read_text())


def _first_person(doc: dict) -> dict:
    return next(f for f in doc["data"] if f["skeleton"])["skeleton"][0]


def _write(tmp_path: Path, doc: object, name: str = "bad_clip.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return path


def _mutations():
    def drop(key):
        return lambda d: d.pop(key)

    def person(fn):
        return lambda d: fn(_first_person(d))

    return [
        ("missing_data", drop("data"), "missing_field"),
        ("missing_label", drop("label"), "missing_field"),
        ("missing_pose", person(lambda p: p.pop("pose")), "missing_field"),
        ("missing_frame_index", lambda d: d["data"][5].pop("frame_index"), "missing_field"),
        ("short_pose", person(lambda p: p["pose"].pop()), "wrong_joint_count"),
        ("long_score", person(lambda p: p["score"].append(0.5)), "wrong_joint_count"),
        ("nan_pose", person(lambda p: p["pose"].__setitem__(3, float("nan"))), "non_finite"),
        ("inf_score", person(lambda p: p["score"].__setitem__(0, float("inf"))), "non_finite"),
        ("string_pose", person(lambda p: p["pose"].__setitem__(3, "0.5")), "non_numeric"),
        ("bool_score", person(lambda p: p["score"].__setitem__(3, True)), "non_numeric"),
        ("float_frame_index", lambda d: d["data"][5].__setitem__("frame_index", 6.0), "non_numeric"),
        ("duplicate_frame", lambda d: d["data"][5].__setitem__("frame_index", 5), "malformed_json"),
        ("skeleton_not_list", lambda d: d["data"][5].__setitem__("skeleton", {}), "malformed_json"),
        ("no_frames", lambda d: d.__setitem__("data", []), "zero_frames"),
        ("nobody", lambda d: [f.__setitem__("skeleton", []) for f in d["data"]], "no_skeleton"),
        ("negative_label", lambda d: d.__setitem__("label_index", -1), "label_mismatch"),
    ]


@pytest.mark.parametrize(("name", "mutate", "reason"), _mutations(), ids=[m[0] for m in _mutations()])
def test_bad_clip(tmp_path, base_doc, name, mutate, reason):
    doc = copy.deepcopy(base_doc)
    mutate(doc)
    path = _write(tmp_path, doc, f"{name}.json")
    with pytest.raises(MalformedSkeletonFile) as err:
        read_kinetics_clip(path)
    assert err.value.reason == reason
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty_file"),
        ("   \n", "empty_file"),
        ('{"data": [{"frame_index": 1, "skeleton": [', "malformed_json"),
        ("[1, 2, 3]", "malformed_json"),
        ('{"data": [], "label": "x", \n "label_index": 0,}', "malformed_json"),
        ("\x00\x01binary", "binary_file"),
    ],
)
def test_unreadable_clip(tmp_path, text, reason):
    path = _write(tmp_path, text)
    with pytest.raises(MalformedSkeletonFile) as err:
        read_kinetics_clip(path)
    assert err.value.reason == reason and str(path) in str(err.value)


def test_malformed_json_reports_line(tmp_path):
    path = _write(tmp_path, '{"data": [],\n"label": "x",\n"label_index": 0,}')
    with pytest.raises(MalformedSkeletonFile) as err:
        read_kinetics_clip(path)
    assert err.value.line == 3


def test_label_map_rules(tmp_path, base_doc, val_map, names):
    path = _write(tmp_path, base_doc, "__vzEs2wzdQ.json")
    good = {"__vzEs2wzdQ": dict(val_map["__vzEs2wzdQ"])}
    assert read_kinetics_clip(path, label_map=good).label == 335
    cases = [
        ({"__vzEs2wzdQ": {**good["__vzEs2wzdQ"], "label_index": 7}}, None, "label_mismatch"),
        ({"__vzEs2wzdQ": {**good["__vzEs2wzdQ"], "label": "zumba"}}, None, "label_mismatch"),
        ({"__vzEs2wzdQ": {**good["__vzEs2wzdQ"], "has_skeleton": False}}, None, "no_skeleton"),
        ({}, None, "label_mismatch"),
        (None, ["abseiling", "zumba"], "label_mismatch"),
    ]
    for label_map, label_names, reason in cases:
        with pytest.raises(MalformedSkeletonFile) as err:
            read_kinetics_clip(path, label_map=label_map, label_names=label_names)
        assert err.value.reason == reason and str(path) in str(err.value)


def test_zero_based_frame_index(tmp_path, base_doc):
    doc = copy.deepcopy(base_doc)
    for f in doc["data"]:
        f["frame_index"] -= 1
    shifted = read_kinetics_clip(_write(tmp_path, doc, "zero.json"))
    original = read_kinetics_clip(_write(tmp_path, base_doc, "one.json"))
    np.testing.assert_array_equal(shifted.coords, original.coords)
    # explicit base 0 on the 1-based file keeps an empty first frame
    explicit = read_kinetics_clip(_write(tmp_path, base_doc, "one.json"), frame_index_base=0)
    assert explicit.num_frames == original.num_frames + 1 and (explicit.coords[:, 0] == 0).all()


def test_bad_label_files(tmp_path):
    m = tmp_path / "map.json"
    m.write_text(json.dumps({"a": {"label": "x", "label_index": 0}}))
    with pytest.raises(MalformedSkeletonFile) as err:
        load_label_map(m)
    assert err.value.reason == "missing_field" and str(m) in str(err.value)
    m.write_text(json.dumps({"a": {"label": "x", "label_index": "0", "has_skeleton": True}}))
    with pytest.raises(MalformedSkeletonFile) as err:
        load_label_map(m)
    assert err.value.reason == "non_numeric"
    n = tmp_path / "names.txt"
    n.write_text("a\n\nb\n")
    with pytest.raises(MalformedSkeletonFile) as err:
        load_label_names(n)
    assert (err.value.reason, err.value.line) == ("missing_field", 2)
    n.write_text("a\nb\na\n\n")
    with pytest.raises(MalformedSkeletonFile) as err:
        load_label_names(n)
    assert (err.value.reason, err.value.line) == ("label_mismatch", 3)
    n.write_text("a\nb\n\n")
    assert load_label_names(n) == ["a", "b"]
