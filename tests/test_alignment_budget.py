"""The cheaper offset search of the pipelines' settings (docs/performance.md §3).

``conf/base/parameters_prepare.yml`` sets ``search_iterations``, ``search_frame_step`` and
``final_tol`` for NTU and N-UCLA; ``align_views``' defaults keep the previous, exhaustive search. Checked here:
the settings against the previous search on real recordings (tolerances from the validation on all
recordings in docs/performance.md §3), against the known offsets of synthetic recordings, that bad
values fail with a clear message, and that the settings reach ``align_views`` through the
preparation nodes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from skeleton_attention.skeletons import alignment
from skeleton_attention.skeletons.alignment import align_views, multiview_frame, rotation_angle_deg
from skeleton_attention.skeletons.layouts import KINECT20
from tests.kedro_helpers import REPO_ROOT

PARAMS = yaml.safe_load((REPO_ROOT / "conf" / "base" / "parameters_prepare.yml").read_text())
BUDGET = ("search_iterations", "search_frame_step", "shortlist", "shortlist_iterations", "final_tol")
#: the N-UCLA keys the preparation node takes out before calling multiview_frame
NUCLA_NODE_KEYS = ("frame", "cameras", "normalize", "copied_views", "copy_min_share")


def _settings(kind: str) -> tuple[dict, dict]:
    """(conf settings, previous settings) of ``prepare_<kind>.multiview`` as multiview_frame takes
    them; previous: the search settings at align_views' defaults, and NTU's coarse_step too (the
    exhaustive search, as before the settings; N-UCLA's coarse_step was set before)."""
    conf = {k: v for k, v in PARAMS[f"prepare_{kind}"]["multiview"].items() if k not in NUCLA_NODE_KEYS}
    previous = (*BUDGET, "coarse_step") if kind == "ntu" else BUDGET
    return conf, {k: v for k, v in conf.items() if k not in previous}


def _ntu_groups(root: Path):
    from skeleton_attention.skeletons.views import load_ntu_view

    groups: dict[str, dict[int, tuple]] = defaultdict(dict)
    for path in sorted(root.glob("*.skeleton")):
        groups[path.stem[:4] + path.stem[8:]][int(path.stem[5:8])] = load_ntu_view(
            path, denoise_params=PARAMS["prepare_ntu"]["denoise"]
        )
    return [({c: v for c, (v, _) in g.items()}, {c: t for c, (_, t) in g.items()}) for _, g in sorted(groups.items())]


def _other_cameras(aligned) -> list[int]:
    return [c for c in aligned.offsets if c != aligned.reference_camera]


def test_conf_search_settings_differ_from_the_exhaustive_defaults():
    """The test below would compare the previous search with itself if conf set nothing."""
    for kind in ("ntu", "nucla"):
        conf, previous = _settings(kind)
        assert conf != previous and conf["search_iterations"] < 8 and conf["final_tol"] > 1e-7


def test_conf_settings_on_real_ntu_match_the_exhaustive_search(shared_data):
    """Both real NTU recordings: same body order, offsets within 1 frame, residuals within 1 mm and
    rotations within 0.5 degrees. Measured: A001's C002 moves from -1.5 to -2.5 frames (its score is
    flat there, docs/geometry.md "Offsets") for +0.1 mm; the other views keep their offsets."""
    conf, previous = _settings("ntu")
    for views, tracked in _ntu_groups(shared_data / "ntu_multiview"):
        fast = multiview_frame(views, "body", tracked=tracked, **conf)
        full = multiview_frame(views, "body", tracked=tracked, **previous)
        assert fast.body_order == full.body_order
        for c in _other_cameras(full):
            assert abs(fast.offsets[c] - full.offsets[c]) <= 1.0
            assert fast.residuals[c] - full.residuals[c] <= 1e-3
            assert rotation_angle_deg(fast.rotations[c] @ full.rotations[c].T) < 0.5


def test_conf_settings_on_real_nucla_stay_close_to_the_exhaustive_search(shared_data):
    """The first 40 N-UCLA recordings (copied views masked, as the pipeline does): no recording's
    mean residual worse by more than 1 cm (measured on all 548: at most +9.5 mm) and the mean change
    at most +1 mm (measured: -1.2 mm on all 548); 80 % of the offsets within one frame (95 %)."""
    from skeleton_attention.skeletons import nucla

    conf, previous = _settings("nucla")
    share = float(PARAMS["prepare_nucla"]["multiview"]["copy_min_share"])
    groups: dict[str, dict[int, np.ndarray]] = defaultdict(dict)
    for path in sorted((shared_data / "nucla_raw" / "all_sqe").glob("a0[1-2]_s0[1-4]_*.json")):
        seq = nucla.read_nucla_file(path)
        groups[path.stem.rsplit("_", 1)[0]][int(seq.meta["camera"])] = seq.coords
    changes, offsets = [], []
    for key in sorted(groups)[:40]:
        views = groups[key]
        copies = nucla.copied_views(views, share)
        views = {c: v for c, v in views.items() if c not in copies}
        fast = multiview_frame(views, "body", layout=KINECT20, **conf)
        full = multiview_frame(views, "body", layout=KINECT20, **previous)
        cams = _other_cameras(full)
        if not cams:
            continue
        changes.append(np.mean([fast.residuals[c] for c in cams]) - np.mean([full.residuals[c] for c in cams]))
        offsets += [abs(fast.offsets[c] - full.offsets[c]) for c in cams]
    assert len(changes) >= 30
    assert max(changes) <= 0.01 and np.mean(changes) <= 1e-3
    assert np.mean(np.array(offsets) <= 1.0) >= 0.8


def test_conf_settings_recover_the_true_offsets_of_synthetic_recordings(tmp_path):
    """Synthetic NTU recordings with known offsets: the conf settings find them within 0.5 frame,
    like the previous search (measured on 42 recordings: the same mean error, 0.18 frames)."""
    from skeleton_attention.skeletons.synthetic import MANIFEST_NAME, write_synthetic_ntu

    files = write_synthetic_ntu(tmp_path, num_classes=4, performers=(1,), replications=(1,), cameras=(1, 2, 3), seed=5)
    meta = json.loads((tmp_path / MANIFEST_NAME).read_text())["files"]
    conf, previous = _settings("ntu")
    errors = {"conf": [], "previous": []}
    by_group: dict[str, dict[int, int]] = defaultdict(dict)  # each view starts master_offset frames in
    for p in files:
        by_group[p.stem[:4] + p.stem[8:]][int(p.stem[5:8])] = meta[p.name]["master_offset"]
    for (views, tracked), (_, start) in zip(_ntu_groups(tmp_path), sorted(by_group.items()), strict=True):
        for name, settings in (("conf", conf), ("previous", previous)):
            aligned = multiview_frame(views, "body", tracked=tracked, **settings)
            errors[name] += [abs(aligned.offsets[c] - (start[1] - start[c])) for c in (2, 3)]
    assert len(errors["conf"]) == 8
    assert max(errors["conf"]) <= 0.5
    assert np.mean(errors["conf"]) <= np.mean(errors["previous"]) + 0.1


def test_shortlist_keeps_the_choices_on_real_ntu(shared_data):
    """The shortlist (not used by the pipelines: measured slower on these sizes) ranks candidates by
    one least-squares fit and scores the best 3 fully: same body order, offsets within 0.5 frame."""
    views, tracked = _ntu_groups(shared_data / "ntu_multiview")[1]  # A050: two people
    _, previous = _settings("ntu")
    full = align_views(views, tracked=tracked, **previous)
    short = align_views(views, tracked=tracked, shortlist=3, **previous)
    assert short.body_order == full.body_order
    assert all(abs(short.offsets[c] - full.offsets[c]) <= 0.5 for c in _other_cameras(full))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("search_frame_step", 0, "search_frame_step must be >= 1"),
        ("search_frame_step", 1.5, "search_frame_step must be an integer"),
        ("search_frame_step", True, "search_frame_step must be an integer"),
        ("shortlist", -1, "shortlist must be >= 0"),
        ("shortlist_iterations", -2, "shortlist_iterations must be >= 0"),
        ("final_tol", 0.0, "final_tol must be a number in"),
        ("final_tol", "1e-3", "final_tol must be a number in"),
        ("final_tol", 2.0, "final_tol must be a number in"),
        ("search_iterations", 0, "search_iterations must be an integer >= 1"),
        ("final_iterations", 2.5, "final_iterations must be an integer >= 1"),
    ],
)
def test_bad_search_settings_fail_with_a_clear_message(key, value, message):
    rng = np.random.default_rng(0)
    view = rng.normal(size=(1, 20, 25, 3))
    with pytest.raises(ValueError, match=message):
        align_views({1: view, 2: view}, **{key: value})


@pytest.mark.parametrize("kind", ["ntu", "nucla"])
def test_conf_search_settings_reach_align_views_through_the_preparation(shared_data, tmp_path, monkeypatch, kind):
    """The preparation node of each data set, with the conf parameters, calls align_views with them."""
    from skeleton_attention.skeletons.bundle import PreparedBundle, write_bundle

    seen: list[dict] = []
    original = alignment.align_views

    def recording(*args, **kwargs):
        seen.append({k: kwargs[k] for k in BUDGET if k in kwargs})
        return original(*args, **kwargs)

    monkeypatch.setattr(alignment, "align_views", recording)
    params = {**PARAMS[f"prepare_{kind}"], "workers": 1}
    if kind == "ntu":
        from skeleton_attention.pipelines.prepare_ntu.nodes import align_ntu_views, ingest_ntu

        raw = sorted((shared_data / "ntu_multiview").glob("*A050.skeleton"))
        write_bundle(tmp_path / "i", ingest_ntu(raw, "", {**params, "use_missing_list": False}))
        write_bundle(tmp_path / "m", align_ntu_views(PreparedBundle(tmp_path / "i"), params))
    else:
        from skeleton_attention.pipelines.prepare_nucla.nodes import ingest_nucla, stack_nucla_views

        raw = sorted((shared_data / "nucla_raw" / "all_sqe").glob("a01_s01_e00_v0*.json"))
        write_bundle(tmp_path / "i", ingest_nucla(raw, params))
        write_bundle(tmp_path / "m", stack_nucla_views(PreparedBundle(tmp_path / "i"), params))
    conf, _ = _settings(kind)
    assert seen == [{k: conf[k] for k in BUDGET if k in conf}]
    assert seen[0]["search_iterations"] == PARAMS[f"prepare_{kind}"]["multiview"]["search_iterations"]
