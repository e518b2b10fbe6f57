"""Attention drawn on the skeleton (training/skeleton_plots.py): one circle per joint, area monotone
in weight, bones along the layout, and a clear error for a map that does not fit the skeleton."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from skeleton_attention.skeletons.layouts import KINECT20, NTU25, SBU15, JointLayout
from skeleton_attention.training.skeleton_plots import (
    MAX_AREA,
    MIN_AREA,
    choose_projection,
    draw_skeleton,
    key_frames,
    plot_skeleton_attention,
    plot_skeleton_sequence,
)

LAYOUTS = [NTU25, KINECT20, SBU15]


def _pose(layout: JointLayout, bodies: int = 1, seed: int = 0) -> np.ndarray:
    """(M, V, 3) joints: the spine along +z (as the prepared tables hold it), the rest scattered."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(0.0, 0.3, (bodies, layout.num_joints, 3))
    pose[:, layout.spine_bottom] = [0.0, 0.0, 0.0]
    pose[:, layout.spine_top] = [0.0, 0.0, 0.5]
    pose[:, layout.left_shoulder] = [0.4, 0.0, 0.6]
    pose[:, layout.right_shoulder] = [-0.4, 0.0, 0.6]
    pose[1:, :, 0] += 1.5  # a second person beside the first
    return pose


def _axes():
    return Figure().subplots()


@pytest.mark.parametrize("layout", LAYOUTS, ids=[layout.name for layout in LAYOUTS])
def test_one_circle_per_joint_with_area_monotone_in_weight(layout):
    pose = _pose(layout)
    weights = np.random.default_rng(1).uniform(0.0, 3.0, layout.num_joints)
    drawn = draw_skeleton(_axes(), pose, layout, weights)
    sizes = drawn.joints.get_sizes()
    assert len(drawn.joints.get_offsets()) == layout.num_joints == len(sizes)
    order = np.argsort(weights)
    assert np.all(np.diff(sizes[order]) > 0), "a larger weight must draw a larger circle"
    assert sizes.max() == pytest.approx(MAX_AREA) and sizes.min() >= MIN_AREA
    # the colour follows the weight too: the heaviest joint is the darkest
    luminance = drawn.joints.get_facecolors()[:, :3].mean(axis=1)
    assert np.argmin(luminance) == np.argmax(weights)


@pytest.mark.parametrize("layout", LAYOUTS, ids=[layout.name for layout in LAYOUTS])
def test_bones_follow_the_layout(layout):
    pose = _pose(layout)
    drawn = draw_skeleton(_axes(), pose, layout)
    segments = drawn.bones.get_segments()
    assert len(segments) == len(layout.bones) == layout.num_joints - 1
    # the projection is frontal (x horizontal, z up): each segment joins a child to its parent
    for segment, (child, parent) in zip(segments, layout.bones, strict=True):
        np.testing.assert_allclose(segment, pose[0][[child, parent]][:, [0, 2]])
    np.testing.assert_allclose(drawn.points, pose[0][:, [0, 2]])


def test_two_bodies_and_an_absent_one():
    pose = _pose(SBU15, bodies=2)
    weights = np.arange(1, 2 * SBU15.num_joints + 1, dtype=float)  # (M * V,), body-major as the models emit
    drawn = draw_skeleton(_axes(), pose, SBU15, weights)
    assert len(drawn.joints.get_offsets()) == 2 * SBU15.num_joints
    assert len(drawn.bones.get_segments()) == 2 * len(SBU15.bones)
    assert np.all(np.diff(drawn.joints.get_sizes()) > 0)  # weights increase body by body, joint by joint
    pose[1] = 0.0  # the second person is absent (zero padding): not drawn, its weights ignored
    alone = draw_skeleton(_axes(), pose, SBU15, weights)
    assert len(alone.joints.get_offsets()) == SBU15.num_joints


@pytest.mark.parametrize("length", [NTU25.num_joints - 1, NTU25.num_joints + 1, 2 * NTU25.num_joints])
def test_a_weight_vector_of_the_wrong_length_is_refused(length):
    with pytest.raises(ValueError, match="weights for 1 x 25 joints"):
        draw_skeleton(_axes(), _pose(NTU25), NTU25, np.ones(length))


def test_wrong_joint_count_and_negative_weights_are_refused():
    with pytest.raises(ValueError, match="do not hold the 20 joints"):
        draw_skeleton(_axes(), _pose(NTU25), KINECT20)
    weights = np.ones(NTU25.num_joints)
    weights[3] = -0.1
    with pytest.raises(ValueError, match=">= 0"):
        draw_skeleton(_axes(), _pose(NTU25), NTU25, weights)


def test_the_projection_stands_the_skeleton_upright():
    pose = _pose(NTU25)
    assert choose_projection(pose, NTU25) == choose_projection(pose, NTU25).__class__(0, 2, 1.0)
    camera = pose[..., [0, 2, 1]]  # y up, z depth (raw Kinect camera coordinates)
    assert (choose_projection(camera, NTU25).horizontal, choose_projection(camera, NTU25).vertical) == (0, 1)
    image = camera.copy()
    image[..., 1] *= -1  # image keypoints: y grows downwards
    assert choose_projection(image, NTU25).up == -1.0


def test_key_frames_span_the_valid_frames():
    np.testing.assert_array_equal(key_frames(41, 5), [0, 10, 20, 30, 40])
    np.testing.assert_array_equal(key_frames(3, 5), [0, 1, 2])
    with pytest.raises(ValueError):
        key_frames(0, 5)


def test_figure_of_a_single_and_a_multi_view_sample():
    t = 12
    single = np.stack([_pose(NTU25, bodies=2, seed=s) for s in range(t)], axis=1)  # (M, T, V, C)
    spatial = np.random.default_rng(0).uniform(0.1, 2.0, (t, 2 * NTU25.num_joints))
    sample = {
        "title": "s1",
        "length": 10,
        "positions": single,
        "attention": {"spatial": spatial, "temporal": np.linspace(0.0, 1.0, t)},
    }
    fig = plot_skeleton_attention([sample], NTU25, key_frame_count=4)
    skeleton_axes = [ax for ax in fig.axes if ax.collections and ax.get_title().startswith("frame")]
    assert [ax.get_title() for ax in skeleton_axes] == ["frame 1", "frame 4", "frame 7", "frame 10"]
    strip = [ax for ax in fig.axes if ax.get_xlabel() == "frame"]
    assert len(strip) == 1 and len(strip[0].get_lines()[0].get_xdata()) == 10  # cut at the valid length
    multi = np.stack([single, single, np.zeros_like(single)])  # (views, M, T, V, C), the third view absent
    views = {
        "title": "mv",
        "length": t,
        "positions": multi,
        "kinds": {f"spatial_view{j + 1}": {"kind": "joints", "view": j} for j in range(3)}
        | {"temporal": {"kind": "frames", "labels": ["view 1", "view 2", "view 3"]}},
        "attention": {
            "spatial_view1": spatial,
            "spatial_view2": spatial,
            "spatial_view3": np.full_like(spatial, np.nan),
            "temporal": np.ones((t, 3)),
        },
    }
    fig = plot_skeleton_attention([views], NTU25, key_frame_count=3)
    titles = [" ".join(text.get_text() for text in sub.texts) for sub in fig.subfigs]
    assert len(titles) == 3 and "spatial_view2" in titles[1] and titles[2].endswith("absent view")
    assert plot_skeleton_attention([sample], None).axes[0].texts  # no layout: said, not drawn


def test_sequence_figure_draws_one_row_per_view_and_marks_an_absent_one():
    single = np.stack([_pose(KINECT20, seed=s) for s in range(9)], axis=1)  # (M=1, T, V, C)
    views = np.stack([single, single, np.zeros_like(single)])
    fig = plot_skeleton_sequence(views, KINECT20, key_frame_count=3, view_names=["v01", "v02", "v03"])
    titles = [ax.get_title() for ax in fig.axes if ax.collections]
    assert titles == ["v01, frame 1", "frame 5", "frame 9", "v02, frame 1", "frame 5", "frame 9"]
    assert any(text.get_text() == "v03: absent" for ax in fig.axes for text in ax.texts)
    with pytest.raises(ValueError, match="positions must be"):
        plot_skeleton_sequence(single[0], KINECT20)


def test_one_hint_mechanism_for_every_family():
    from skeleton_attention.models.base import attention_hints
    from skeleton_attention.models.mans import MANs

    assert attention_hints({"temporal": "frames"}) == {"temporal": {"kind": "frames"}}
    assert attention_hints(MANs.attention_kinds)["frame"]["labels"] == ["x", "y", "z"]
    with pytest.raises(ValueError, match="kind 'curves' is not one of"):
        attention_hints({"frame": {"kind": "curves"}})  # the former MANs-only hint kind
    with pytest.raises(ValueError, match="unknown hint keys \\['colour'\\]"):
        attention_hints({"spatial": {"kind": "joints", "colour": "red"}})
