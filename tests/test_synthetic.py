"""The embedded synthetic data set: real raw formats, anatomy, geometry, classes, quirks, determinism.

The NTU files are checked with a strict parser written here, independent of the project's reader:
frame count; per frame a body count; per body a 10-field info line, ``25`` and 25 lines of exactly
12 numbers; the whole file consumed. The real files in ``shared_data`` pass the same parser, so the
synthetic ones are held to the format of the real data, not to our own idea of it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from skeleton_attention.skeletons.layouts import NTU25, OPENPOSE18
from skeleton_attention.skeletons.synthetic import (
    COLOR_BASELINE_X,
    COLOR_INTRINSICS,
    DEPTH_INTRINSICS,
    MANIFEST_NAME,
    SYNTHETIC_ACTIONS,
    SYNTHETIC_CAMERA_ANGLES,
    camera_center,
    camera_rotation,
    generate_default_dataset,
    view_transform,
    write_synthetic_kinetics,
    write_synthetic_ntu,
)

# one worker builds the generated sets of the module fixtures (10-20 s each)
pytestmark = pytest.mark.xdist_group("synthetic")

NAME_RE = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})\.skeleton$")
# the real files print numbers like C#'s float.ToString(): up to 7 significant digits, "E-05" exponents
NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?(E[-+]\d\d)?$")


@dataclass
class ParsedBody:
    body_id: int
    info: np.ndarray  # (9,) the fields after the ID
    joints: np.ndarray  # (25, 12)


def parse_ntu_strict(path: Path) -> list[list[ParsedBody]]:
    """Independent strict NTU .skeleton parser (raises AssertionError on any deviation)."""
    raw = path.read_bytes()
    assert raw, f"{path}: empty"
    text = raw.decode("ascii")
    lines = text.split("\r\n" if "\r\n" in text else "\n")
    assert lines[-1] == "", f"{path}: no final newline"
    lines = lines[:-1]
    assert not any("\r" in ln for ln in lines), f"{path}: mixed line endings"
    pos = 0

    def take() -> str:
        nonlocal pos
        assert pos < len(lines), f"{path}: truncated at line {pos + 1}"
        pos += 1
        return lines[pos - 1]

    def number(tok: str) -> float:
        assert NUMBER_RE.match(tok), f"{path}:{pos}: badly formatted number {tok!r}"
        return float(tok)

    n_frames = int(take())
    assert n_frames > 0
    frames = []
    for _ in range(n_frames):
        n_bodies = int(take())
        assert 0 <= n_bodies <= 6
        bodies = []
        for _ in range(n_bodies):
            info = take().split(" ")
            assert len(info) == 10, f"{path}:{pos}: {len(info)} body-info fields"
            assert info[0].isdigit()
            assert all(tok.isdigit() for tok in [*info[1:7], info[9]]), f"{path}:{pos}: non-integer flag"
            assert take() == "25", f"{path}:{pos}: joint count"
            joints = []
            for _ in range(25):
                toks = take().split(" ")
                assert len(toks) == 12, f"{path}:{pos}: {len(toks)} values"
                assert toks[11] in {"0", "1", "2"}
                joints.append([number(t) for t in toks])
            bodies.append(ParsedBody(int(info[0]), np.array([number(t) for t in info[1:]]), np.array(joints)))
        frames.append(bodies)
    assert pos == len(lines), f"{path}: {len(lines) - pos} trailing lines"
    return frames


def actor_tracks(frames: list[list[ParsedBody]], actor_ids: list[str]) -> np.ndarray:
    """(M, T, 25, 12) of the listed bodies, NaN where a body is absent."""
    out = np.full((len(actor_ids), len(frames), 25, 12), np.nan)
    index = {int(a): i for i, a in enumerate(actor_ids)}
    for t, bodies in enumerate(frames):
        for b in bodies:
            if b.body_id in index:
                out[index[b.body_id], t] = b.joints
    return out


BONES = np.array(NTU25.bones)
J = {n: i for i, n in enumerate(NTU25.joint_names)}


def bone_lengths(xyz: np.ndarray) -> np.ndarray:
    """(..., 25, 3) -> (..., 24)."""
    return np.linalg.norm(xyz[..., BONES[:, 0], :] - xyz[..., BONES[:, 1], :], axis=-1)


# --------------------------------------------------------------------------------------------------
# Fixtures: the default set, a noise-free set with every class, a quirky set
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict]:
    out = tmp_path_factory.mktemp("ntu_default")
    files = write_synthetic_ntu(out)
    return files, json.loads((out / MANIFEST_NAME).read_text())


@pytest.fixture(scope="module")
def clean_set(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict]:
    """Every class, no noise and no quirks: geometry can be checked to print precision."""
    out = tmp_path_factory.mktemp("ntu_clean")
    files = write_synthetic_ntu(
        out, num_classes=99, performers=(1, 2, 7), seed=3, noise_std=0.0, spurious_body_rate=0.0, dropped_frame_rate=0.0
    )
    return files, json.loads((out / MANIFEST_NAME).read_text())


@pytest.fixture(scope="module")
def parsed_default(default_set: tuple[list[Path], dict]) -> dict[str, list[list[ParsedBody]]]:
    return {p.name: parse_ntu_strict(p) for p in default_set[0]}


@pytest.fixture(scope="module")
def parsed_clean(clean_set: tuple[list[Path], dict]) -> dict[str, list[list[ParsedBody]]]:
    return {p.name: parse_ntu_strict(p) for p in clean_set[0]}


# --------------------------------------------------------------------------------------------------
# Format
# --------------------------------------------------------------------------------------------------


def test_strict_parser_accepts_the_real_files(shared_data: Path) -> None:
    for path in sorted((shared_data / "ntu_raw").glob("*.skeleton"))[:12] + sorted(
        (shared_data / "ntu_multiview").glob("*.skeleton")
    ):
        frames = parse_ntu_strict(path)
        assert len(frames) > 50


def test_default_set_names_counts_and_manifest(default_set: tuple[list[Path], dict], parsed_default: dict) -> None:
    files, manifest = default_set
    assert len(files) == 10 * 6 * 2 * 3
    assert set(manifest["files"]) == {p.name for p in files}
    for path in files:
        m = NAME_RE.match(path.name)
        assert m, path.name
        _, c, _, _, a = map(int, m.groups())
        meta = manifest["files"][path.name]
        assert meta["label"] == a - 1 and meta["camera"] == c
        assert meta["class"] == SYNTHETIC_ACTIONS[a - 1].name
        assert len(parsed_default[path.name]) == meta["frames"]
        assert 40 - 6 <= meta["frames"] <= 90
        assert b"\r" not in path.read_bytes()[:2000]
    assert {f["label"] for f in manifest["files"].values()} == set(range(10))


def test_values_are_plausible_kinect_values(default_set: tuple[list[Path], dict], parsed_default: dict) -> None:
    fx, fy, cx, cy = DEPTH_INTRINSICS
    cfx, cfy, ccx, ccy = COLOR_INTRINSICS
    leaf = [
        J[n]
        for n in ("head", "left_foot", "right_foot", "left_hand_tip", "left_thumb", "right_hand_tip", "right_thumb")
    ]
    ids_per_camera: dict[int, set[int]] = {}
    for name, frames in parsed_default.items():
        cam = int(name[5:8])
        for bodies in frames:
            for b in bodies:
                assert b.body_id > 72057594037927936
                ids_per_camera.setdefault(cam, set()).add(b.body_id)
                j = b.joints
                x, y, z = j[:, 0], j[:, 1], j[:, 2]
                assert (z > 1.0).all() and (z < 6.0).all()
                # pixel coordinates are the pinhole projection of xyz, to the printed precision
                np.testing.assert_allclose(j[:, 3], cx + fx * x / z, atol=2e-3)
                np.testing.assert_allclose(j[:, 4], cy - fy * y / z, atol=2e-3)
                np.testing.assert_allclose(j[:, 5], ccx + cfx * (x + COLOR_BASELINE_X) / z, atol=5e-3)
                np.testing.assert_allclose(j[:, 6], ccy - cfy * y / z, atol=5e-3)
                norms = np.linalg.norm(j[:, 7:11], axis=1)
                assert (norms[leaf] == 0).all()
                np.testing.assert_allclose(np.delete(norms, leaf), 1.0, atol=2e-6)
                info = b.info
                assert info[0] in range(16) and info[5] == 0 and info[8] == 2
                assert set(info[[1, 3]]) <= {0, 1} and set(info[[2, 4]]) <= {0, 1, 2, 3, 4}
                assert -1 <= info[6] <= 1 and -1 <= info[7] <= 1
    # per-camera tracking IDs: the three views never share an ID
    assert not (ids_per_camera[1] & ids_per_camera[2]) and not (ids_per_camera[2] & ids_per_camera[3])
    assert not ids_per_camera[1] & ids_per_camera[3]


def test_crlf_files_differ_only_in_line_endings(tmp_path: Path) -> None:
    kw = dict(num_classes=2, performers=(1,), replications=(1,), cameras=(1, 2))
    lf = write_synthetic_ntu(tmp_path / "lf", **kw)
    crlf = write_synthetic_ntu(tmp_path / "crlf", crlf_rate=1.0, **kw)
    for a, b in zip(lf, crlf, strict=True):
        assert b.read_bytes().count(b"\r\n") == b.read_bytes().count(b"\n")
        assert b.read_bytes().replace(b"\r\n", b"\n") == a.read_bytes()
        assert len(parse_ntu_strict(b)) == len(parse_ntu_strict(a))


# --------------------------------------------------------------------------------------------------
# Anatomy and geometry
# --------------------------------------------------------------------------------------------------


def test_bone_lengths_constant_and_symmetric_without_noise(
    clean_set: tuple[list[Path], dict], parsed_clean: dict
) -> None:
    _, manifest = clean_set
    pairs = [
        (
            BONES.tolist().index([J[f"left_{n}"], J[f"left_{p}" if p != "spine_shoulder" else p]]),
            BONES.tolist().index([J[f"right_{n}"], J[f"right_{p}" if p != "spine_shoulder" else p]]),
        )
        for n, p in (
            ("elbow", "shoulder"),
            ("wrist", "elbow"),
            ("hand", "wrist"),
            ("knee", "hip"),
            ("ankle", "knee"),
            ("foot", "ankle"),
            ("shoulder", "spine_shoulder"),
        )
    ]
    ratios = []
    for name, frames in parsed_clean.items():
        meta = manifest["files"][name]
        tracks = actor_tracks(frames, meta["actor_ids"])
        for person, height in zip(tracks, meta["heights"], strict=True):
            lengths = bone_lengths(person[..., :3])  # (T, 24)
            assert lengths.std(axis=0).max() < 2e-5, name  # rigid bones, up to 7-digit printing
            mean = lengths.mean(axis=0)
            for left, right in pairs:
                assert abs(mean[left] - mean[right]) < 1e-4
            # size scales with the performer's height (1.5-1.9 m)
            assert 1.5 <= height <= 1.9
            ratios.append(mean.sum() / height)
            # a plausible 2-4 m in front of the camera (the two people of an interaction stand about
            # 1.2 m apart, so from 45 degrees one of them is nearer)
            assert 1.5 < np.median(person[:, J["spine_base"], 2]) < 4.2
    # the 24 bones add up to about 2.6 heights for everybody (proportions vary by a few per cent)
    assert min(ratios) > 2.4 and max(ratios) < 2.9


def test_bone_lengths_stable_under_default_noise(default_set: tuple[list[Path], dict], parsed_default: dict) -> None:
    _, manifest = default_set
    stds = []
    for name, frames in parsed_default.items():
        tracks = actor_tracks(frames, manifest["files"][name]["actor_ids"])
        for person in tracks:
            lengths = bone_lengths(person[..., :3])
            stds.append(np.nanmedian(np.nanstd(lengths, axis=0)))
    # noise_std = 1 cm per coordinate: a bone's length jitters by about sqrt(2) cm, never by decimetres
    assert 0.005 < np.median(stds) < 0.03


def test_camera_geometry_functions() -> None:
    assert dict(SYNTHETIC_CAMERA_ANGLES) == {1: -45.0, 2: 0.0, 3: 45.0}
    for cam, angle in SYNTHETIC_CAMERA_ANGLES.items():
        R = camera_rotation(cam)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert np.isclose(np.linalg.det(R), 1.0)
        np.testing.assert_allclose(R[1], [0, 1, 0], atol=1e-12)  # vertical axis kept
        centre = camera_center(cam, 3.0)
        assert np.isclose(np.linalg.norm(centre - [0, 0, 3.0]), 3.0)  # all on a circle round the pivot
        assert np.isclose(centre[1], 0.0)
        # the camera looks at the pivot: pivot - centre is its optical axis (0, 0, 1) in world terms
        axis = (np.array([0, 0, 3.0]) - centre) / 3.0
        np.testing.assert_allclose(R @ axis, [0, 0, 1], atol=1e-12)
        assert np.isclose(np.degrees(np.arctan2(axis[0], axis[2])), angle)
    np.testing.assert_allclose(camera_rotation(2), np.eye(3))
    assert camera_center(1, 3.0)[0] > 0 > camera_center(3, 3.0)[0]
    with pytest.raises(ValueError):
        camera_rotation(4)


def test_views_are_the_same_motion_under_the_documented_rotation(
    clean_set: tuple[list[Path], dict], parsed_clean: dict
) -> None:
    _, manifest = clean_set
    distance = manifest["setups"]["1"]["distance"]
    checked = 0
    for name, meta1 in manifest["files"].items():
        if meta1["camera"] != 1:
            continue
        name2 = name.replace("C001", "C002")
        meta2 = manifest["files"][name2]
        a = actor_tracks(parsed_clean[name], meta1["actor_ids"])[..., :3]
        b = actor_tracks(parsed_clean[name2], meta2["actor_ids"])[..., :3]
        # frame i of camera c is master frame offset_c + i
        shift = meta1["master_offset"] - meta2["master_offset"]
        t1 = np.arange(len(parsed_clean[name]))
        t2 = t1 + shift
        ok = (t2 >= 0) & (t2 < b.shape[1])
        assert ok.sum() >= 30
        R, t = view_transform(2, 1, distance)
        b_in_1 = b[:, t2[ok]] @ R.T + t
        assert np.abs(b_in_1 - a[:, t1[ok]]).max() < 1e-4, name
        # the same with camera_rotation directly: X_c = R_c (X_w - p) + p, camera 2 being the world
        p = np.array([0.0, 0.0, distance])
        np.testing.assert_allclose((b[:, t2[ok]] - p) @ camera_rotation(1).T + p, a[:, t1[ok]], atol=1e-4)
        # and the views do differ (a real rotation, not a copy)
        assert np.abs(b[:, t2[ok]] - a[:, t1[ok]]).max() > 0.05
        checked += 1
    assert checked == len(SYNTHETIC_ACTIONS) * 3 * 2


def test_noisy_views_align_within_noise(default_set: tuple[list[Path], dict], parsed_default: dict) -> None:
    _, manifest = default_set
    distance = manifest["setups"]["1"]["distance"]
    R, t = view_transform(2, 3, distance)
    errors = []
    for name, meta in manifest["files"].items():
        if meta["camera"] != 2:
            continue
        name3 = name.replace("C002", "C003")
        m3 = manifest["files"][name3]
        a = actor_tracks(parsed_default[name], meta["actor_ids"])[..., :3]
        b = actor_tracks(parsed_default[name3], m3["actor_ids"])[..., :3]
        shift = meta["master_offset"] - m3["master_offset"]
        t2 = np.arange(a.shape[1])
        t3 = t2 + shift
        ok = (t3 >= 0) & (t3 < b.shape[1])
        diff = a[:, t2[ok]] @ R.T + t - b[:, t3[ok]]
        errors.append(np.sqrt(np.nanmedian((diff**2).sum(-1))))
    # two independent noise draws of ~1 cm per axis (1.5 cm in depth): ~2-4 cm apart, not more
    assert 0.01 < np.median(errors) < 0.05


def test_view_frame_counts_differ_like_ntu(default_set: tuple[list[Path], dict]) -> None:
    _, manifest = default_set
    differ = 0
    groups: dict[str, list[dict]] = {}
    for name, meta in manifest["files"].items():
        groups.setdefault(name[:4] + name[8:], []).append(meta)
    for metas in groups.values():
        assert len(metas) == 3
        counts = [m["frames"] for m in metas]
        assert max(counts) - min(counts) <= 6
        assert all(0 <= m["master_offset"] <= 3 for m in metas)
        differ += len(set(counts)) > 1
    assert differ > 0.5 * len(groups)


# --------------------------------------------------------------------------------------------------
# Classes
# --------------------------------------------------------------------------------------------------


def _features(person: np.ndarray) -> np.ndarray:
    """View-invariant motion features: per-joint mean speed and vertical range (cameras only yaw)."""
    xyz = person[..., :3]
    speed = np.nanmean(np.linalg.norm(np.diff(xyz, axis=0), axis=-1), axis=0)
    height = np.nanmax(xyz[..., 1], axis=0) - np.nanmin(xyz[..., 1], axis=0)
    return np.concatenate([speed, height])


def test_classes_differ_by_motion(default_set: tuple[list[Path], dict], parsed_default: dict) -> None:
    _, manifest = default_set
    feats, labels, performers = [], [], []
    for name, frames in parsed_default.items():
        meta = manifest["files"][name]
        tracks = actor_tracks(frames, meta["actor_ids"])
        feats.append(np.concatenate([_features(tracks[0]), [len(tracks) > 1]]))
        labels.append(meta["label"])
        performers.append(int(name[9:12]))
    X, y, perf = np.array(feats), np.array(labels), np.array(performers)
    speed = X[:, :25]
    by_class = {k: speed[y == k].mean(0) for k in range(10)}
    hand_r, hand_l = J["right_hand"], J["left_hand"]
    ankle_r = J["right_ankle"]
    assert by_class[0][hand_r] > 2 * by_class[0][hand_l]  # wave right hand
    assert by_class[1][hand_l] > 2 * by_class[1][hand_r]  # wave left hand
    assert by_class[4][ankle_r] > 3 * by_class[0][ankle_r]  # kick right moves the right ankle
    assert by_class[3][J["spine_base"]] > 3 * by_class[0][J["spine_base"]]  # squat moves the hips
    # cross-subject nearest centroid on these crude features already separates the classes
    train = np.isin(perf, [1, 2, 3, 4])
    mu, sd = X[train].mean(0), X[train].std(0) + 1e-6
    Z = (X - mu) / sd
    centroids = np.stack([Z[train & (y == k)].mean(0) for k in range(10)])
    pred = np.argmin(((Z[~train, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    accuracy = (pred == y[~train]).mean()
    assert accuracy > 0.8, accuracy


def test_interactions_have_two_people_and_singles_one(clean_set: tuple[list[Path], dict], parsed_clean: dict) -> None:
    _, manifest = clean_set
    for name, frames in parsed_clean.items():
        meta = manifest["files"][name]
        people = SYNTHETIC_ACTIONS[meta["label"]].people
        assert {len(b) for b in frames} == {people}, name
        if people == 2:
            a, b = actor_tracks(frames, meta["actor_ids"])[..., :3]
            gap = np.linalg.norm(a[:, J["spine_base"]] - b[:, J["spine_base"]], axis=-1)
            assert gap.min() > 0.5 and gap.max() < 2.0
    assert any(a.people == 2 for a in SYNTHETIC_ACTIONS[:10])


# --------------------------------------------------------------------------------------------------
# Quirks
# --------------------------------------------------------------------------------------------------


def _spread_noisy(joints: np.ndarray) -> bool:
    x, y = joints[:, 0], joints[:, 1]
    return (x.max() - x.min()) > 0.8 * (y.max() - y.min())


def test_spurious_bodies_and_dropped_frames_at_configured_rates(tmp_path: Path) -> None:
    files = write_synthetic_ntu(
        tmp_path, num_classes=10, performers=(1, 2, 3, 4, 5), seed=11, spurious_body_rate=0.3, dropped_frame_rate=0.05
    )
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    with_ghost = 0
    frames_total = frames_empty = 0
    kinds: dict[str, int] = {}
    for path in files:
        frames = parse_ntu_strict(path)
        meta = manifest["files"][path.name]
        people = SYNTHETIC_ACTIONS[meta["label"]].people
        counts = np.array([len(b) for b in frames])
        frames_total += len(frames)
        frames_empty += int((counts == 0).sum())
        assert sorted(np.flatnonzero(counts == 0).tolist()) == meta["dropped_frames"]
        extra = (counts > people).any()
        assert extra == bool(meta["ghosts"])
        with_ghost += extra
        for g in meta["ghosts"]:
            kinds[g["kind"]] = kinds.get(g["kind"], 0) + 1
            gid = int(g["id"])
            seen = [t for t, bodies in enumerate(frames) if any(b.body_id == gid for b in bodies)]
            assert seen and seen[0] >= g["first_frame"] and seen[-1] <= g["last_frame"]
            length = g["last_frame"] - g["first_frame"] + 1
            noisy = [_spread_noisy(b.joints) for t in seen for b in frames[t] if b.body_id == gid]
            if g["kind"] == "short":
                assert length <= 11  # dropped by the usual "<= 11 frames" denoising rule
            elif g["kind"] == "flat":
                assert length >= 0.4 * len(frames) - 1 and all(noisy)  # fails x-spread > 0.8 y-spread
            else:
                assert not any(noisy)  # upright: survives the spread rule
    rate = with_ghost / len(files)
    assert 0.22 < rate < 0.38, rate
    assert 0.04 < frames_empty / frames_total < 0.06
    assert set(kinds) == {"short", "flat", "static"}


def test_default_quirk_rates(default_set: tuple[list[Path], dict], parsed_default: dict) -> None:
    _, manifest = default_set
    ghosts = sum(bool(m["ghosts"]) for m in manifest["files"].values())
    frames = sum(len(f) for f in parsed_default.values())
    empty = sum(sum(len(b) == 0 for b in f) for f in parsed_default.values())
    assert 0.05 < ghosts / len(parsed_default) < 0.16
    assert 0.01 < empty / frames < 0.03


# --------------------------------------------------------------------------------------------------
# Determinism and parameters
# --------------------------------------------------------------------------------------------------


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    kw = dict(num_classes=4, performers=(1, 2), spurious_body_rate=0.5, crlf_rate=0.5)
    a = write_synthetic_ntu(tmp_path / "a", seed=5, **kw)
    b = write_synthetic_ntu(tmp_path / "b", seed=5, **kw)
    c = write_synthetic_ntu(tmp_path / "c", seed=6, **kw)
    assert [p.name for p in a] == [p.name for p in b] == [p.name for p in c]
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))
    assert (tmp_path / "a" / MANIFEST_NAME).read_bytes() == (tmp_path / "b" / MANIFEST_NAME).read_bytes()
    assert all(x.read_bytes() != z.read_bytes() for x, z in zip(a, c, strict=True))
    # a file depends only on the seed and its own name: fewer classes leave the others unchanged
    d = write_synthetic_ntu(tmp_path / "d", seed=5, **{**kw, "num_classes": 2})
    assert all(x.read_bytes() == (tmp_path / "a" / x.name).read_bytes() for x in d)
    assert not list((tmp_path).glob("**/.*.tmp"))


def test_bad_parameters_are_rejected(tmp_path: Path) -> None:
    for kw in (
        {"num_classes": 0},
        {"cameras": (4,)},
        {"frame_range": (5, 10)},
        {"frame_range": (50, 40)},
        {"spurious_body_rate": 1.5},
        {"noise_std": -1.0},
        {"performers": ()},
        {"performers": (1, 1)},
    ):
        with pytest.raises(ValueError):
            write_synthetic_ntu(tmp_path, **kw)
    with pytest.raises(ValueError):
        generate_default_dataset(tmp_path, {"nut": {}})


def test_num_classes_is_capped(tmp_path: Path) -> None:
    files = write_synthetic_ntu(tmp_path, num_classes=1000, performers=(1,), replications=(1,), cameras=(2,))
    assert len(files) == len(SYNTHETIC_ACTIONS) >= 12
    assert sum(a.people == 2 for a in SYNTHETIC_ACTIONS) >= 2


def test_generate_default_dataset_counts_and_stale_cleanup(tmp_path: Path) -> None:
    params = {
        "seed": 1,
        "ntu": {"num_classes": 4, "performers": [1, 2], "frame_range": [30, 40]},
        "kinetics": {"num_clips": 12, "num_classes": 4, "frame_range": [30, 50]},
    }
    result = generate_default_dataset(tmp_path, params)
    assert result["ntu_files"] == 4 * 2 * 2 * 3 == len(list((tmp_path / "ntu_raw").glob("*.skeleton")))
    assert result["kinetics_clips"] == 12
    assert result["kinetics_train_clips"] + result["kinetics_val_clips"] == 12
    # a smaller rerun removes the files it no longer produces, and nothing else
    keep = tmp_path / "ntu_raw" / "notes.txt"
    keep.write_text("mine")
    params["ntu"]["num_classes"] = 2
    params["kinetics"]["num_clips"] = 5
    result = generate_default_dataset(tmp_path, params)
    assert len(list((tmp_path / "ntu_raw").glob("*.skeleton"))) == result["ntu_files"] == 24
    assert len(list((tmp_path / "kinetics_raw").glob("kinetics_*/*.json"))) == 5
    assert keep.read_text() == "mine"
    # a folder without our manifest is never cleaned
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "S001C001P001R001A009.skeleton").write_text("real data\n")
    write_synthetic_ntu(foreign, num_classes=1, performers=(1,), replications=(1,))
    assert (foreign / "S001C001P001R001A009.skeleton").read_text() == "real data\n"
    only_kinetics = generate_default_dataset(tmp_path / "k", {"ntu": False, "kinetics": {"num_clips": 3}})
    assert "ntu_files" not in only_kinetics and only_kinetics["kinetics_clips"] == 3


# --------------------------------------------------------------------------------------------------
# Kinetics-skeleton
# --------------------------------------------------------------------------------------------------


def _check_kinetics_clip(path: Path) -> dict:
    text = path.read_text()
    assert text.startswith('{"data": [{"frame_index": 1, "skeleton": [') and not text.endswith("\n")
    clip = json.loads(text)
    assert list(clip) == ["data", "label", "label_index"]
    assert [f["frame_index"] for f in clip["data"]] == list(range(1, len(clip["data"]) + 1))
    for frame in clip["data"]:
        assert list(frame) == ["frame_index", "skeleton"]
        for person in frame["skeleton"]:
            assert list(person) == ["pose", "score"]
            assert len(person["pose"]) == 2 * OPENPOSE18.num_joints and len(person["score"]) == 18
            pose, score = np.array(person["pose"]).reshape(18, 2), np.array(person["score"])
            assert ((pose >= 0) & (pose <= 1.04)).all() and ((score >= 0) & (score < 1)).all()
            assert ((score == 0) == (pose == 0).all(1)).all()  # undetected joints: 0, 0 with score 0
    # every number with exactly 3 decimals, as in the ST-GCN release
    numbers = re.findall(r"(?<![\w.])-?\d+\.\d+", text)
    assert all(len(n.split(".")[1]) == 3 for n in numbers)
    return clip


def test_real_kinetics_clip_passes_the_same_check(shared_data: Path) -> None:
    _check_kinetics_clip(shared_data / "kinetics_raw" / "__vzEs2wzdQ.json")


def test_kinetics_clips_and_label_maps(tmp_path: Path) -> None:
    clips, train_map, val_map = write_synthetic_kinetics(
        tmp_path, num_clips=60, num_classes=10, seed=2, frame_range=(60, 120)
    )
    maps = {"kinetics_train": json.loads(train_map.read_text()), "kinetics_val": json.loads(val_map.read_text())}
    assert sum(len(m) for m in maps.values()) == 60 and maps["kinetics_val"] and maps["kinetics_train"]
    people_counts, empty_frames, frames = [], 0, 0
    labels = set()
    for path in clips:
        assert re.fullmatch(r"[A-Za-z0-9_-]{11}\.json", path.name)
        entry = maps[path.parent.name][path.stem]
        assert set(entry) == {"has_skeleton", "label", "label_index"}
        clip = _check_kinetics_clip(path)
        assert clip["label"] == entry["label"] == SYNTHETIC_ACTIONS[entry["label_index"]].name
        assert clip["label_index"] == entry["label_index"]
        labels.add(entry["label_index"])
        counts = [len(f["skeleton"]) for f in clip["data"]]
        assert 60 <= len(counts) <= 120
        assert entry["has_skeleton"] == (max(counts) > 0)
        people_counts.append(max(counts))
        frames += len(counts)
        empty_frames += counts.count(0)
    assert labels == set(range(10))
    assert max(people_counts) >= 3 and sum(c >= 2 for c in people_counts) > 10
    assert 0.01 < empty_frames / frames < 0.3
    again, _, _ = write_synthetic_kinetics(
        tmp_path / "again", num_clips=60, num_classes=10, seed=2, frame_range=(60, 120)
    )
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in clips]


def test_kinetics_people_are_plausible_2d_skeletons(tmp_path: Path) -> None:
    clips, _, _ = write_synthetic_kinetics(
        tmp_path,
        num_clips=10,
        num_classes=10,
        seed=4,
        extra_people_rate=0.0,
        empty_stretch_rate=0.0,
        dropped_frame_rate=0.0,
        no_skeleton_rate=0.0,
    )
    op = {n: i for i, n in enumerate(OPENPOSE18.joint_names)}
    for path in clips:
        clip = json.loads(path.read_text())
        for frame in clip["data"]:
            assert 1 <= len(frame["skeleton"]) <= 2
            for person in frame["skeleton"]:
                pose = np.array(person["pose"]).reshape(18, 2)
                neck, hip, ankle = pose[op["neck"]], pose[op["right_hip"]], pose[op["right_ankle"]]
                if (neck > 0).all() and (ankle > 0).all() and (hip > 0).all():
                    assert neck[1] < hip[1] < ankle[1] + 0.05  # image y grows downwards


# --------------------------------------------------------------------------------------------------
# The project's own readers on the synthetic files
# --------------------------------------------------------------------------------------------------


def test_project_ntu_reader_reads_every_synthetic_file(
    default_set: tuple[list[Path], dict], parsed_default: dict, tmp_path: Path
) -> None:
    from skeleton_attention.skeletons.ntu import read_ntu_skeleton

    crlf = write_synthetic_ntu(tmp_path, num_classes=3, performers=(1,), crlf_rate=1.0)
    for path in [*default_set[0], *crlf]:
        rec = read_ntu_skeleton(path)
        frames = parsed_default.get(path.name) if path in default_set[0] else parse_ntu_strict(path)
        assert rec.num_frames == len(frames)
        assert rec.bodies_per_frame.tolist() == [len(b) for b in frames]
        ours = [b for bodies in frames for b in bodies]
        assert [int(i) for i in rec.body_ids] == [b.body_id for b in ours]  # exact 64-bit IDs
        if ours:
            np.testing.assert_allclose(rec.joints, np.stack([b.joints[:, :11] for b in ours]), rtol=1e-6, atol=1e-6)
            assert rec.joint_tracking.tolist() == np.stack([b.joints[:, 11] for b in ours]).tolist()


def test_project_denoiser_drops_short_and_flat_ghosts(tmp_path: Path) -> None:
    from skeleton_attention.skeletons.denoise import denoise_ntu
    from skeleton_attention.skeletons.ntu import read_ntu_skeleton

    files = write_synthetic_ntu(tmp_path, num_classes=10, performers=(1, 2), seed=8, spurious_body_rate=1.0)
    manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
    checked = 0
    for path in files:
        meta = manifest["files"][path.name]
        ghost = meta["ghosts"][0]
        if ghost["kind"] == "static":
            continue  # an upright, still "person": the rules keep it, as they would on real data
        _, report = denoise_ntu(read_ntu_skeleton(path))
        actors = sorted(i for actor in report["actors"] for i in actor)
        assert actors == sorted(meta["actor_ids"]), (path.name, ghost)
        checked += 1
    assert checked > 20


def test_project_kinetics_reader_reads_every_synthetic_clip(tmp_path: Path) -> None:
    from skeleton_attention.skeletons.kinetics import load_label_map, read_kinetics_clip

    clips, train_map, val_map = write_synthetic_kinetics(
        tmp_path, num_clips=30, num_classes=10, seed=6, no_skeleton_rate=0.1
    )
    label_map = {**load_label_map(train_map), **load_label_map(val_map)}
    read = 0
    for path in clips:
        entry = label_map[path.stem]
        if not entry["has_skeleton"]:
            continue
        seq = read_kinetics_clip(path, label_map=label_map)
        assert seq.label == entry["label_index"]
        assert seq.coords.shape[1] == len(json.loads(path.read_text())["data"])
        read += 1
    assert 20 <= read < 30
