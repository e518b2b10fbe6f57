"""SAN / TS-SAN (models/san.py): shapes, consensus, masking of absent bodies and padded frames,
attention normalisation, SAN-V3's head losses, gradients, overfitting, parameter counts, the
self-attention figure and the train_san settings checks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from skeleton_attention.models.base import DataDescription
from skeleton_attention.models.registry import build_model, model_input_spec
from skeleton_attention.models.san import (
    SAN,
    VARIANTS,
    body_presence,
    consensus,
    masked_max,
)
from skeleton_attention.training.plots import is_self_attention, plot_attention
from skeleton_attention.training.trainer import compute_loss

#: small sizes: the tests check the wiring, not the paper's width
SMALL = {"num_layers": 2, "num_heads": 2, "cnn_channels": (8, 8, 8, 8), "ff_dim": 16, "ffn_dim": 16}


def make_model(variant: str = "san_v2", *, bodies: int = 2, frames: int = 12, **kwargs) -> SAN:
    data = DataDescription(
        num_classes=5,
        num_joints=4,
        num_bodies=bodies,
        streams=("joint", "motion_fast"),
        channels=(3, 3),
        num_frames=frames,
    )
    return build_model("san", data, variant=variant, **{**SMALL, **kwargs})


def make_batch(n: int = 3, *, bodies: int = 2, frames: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pos = torch.randn(n, bodies, frames, 4, 3, generator=g)
    mot = torch.zeros_like(pos)
    mot[:, :, :-1] = pos[:, :, 1:] - pos[:, :, :-1]  # the velocity stream: x[t+1] - x[t], last frame 0
    return {"x_joint": pos, "x_motion_fast": mot, "mask": torch.ones(n, frames, dtype=torch.bool)}


CONFIGS = list(itertools.product(sorted(VARIANTS), ("cnn", "ff"), (1, 3), ("avg", "max")))


@pytest.mark.parametrize(("variant", "encoder", "segments", "how"), CONFIGS)
def test_every_variant_has_the_right_shapes(variant, encoder, segments, how) -> None:
    model = make_model(variant, encoder=encoder, num_segments=segments, consensus=how).eval()
    with torch.no_grad():
        out = model(make_batch())
    assert out.logits.shape == (3, 5)
    assert set(out.head_logits) == ({"position", "motion"} if variant == "san_v3" else set())
    names = {"self_attention_position", "self_attention_motion"} if variant == "san_v3" else {"self_attention"}
    assert set(out.attention) == names
    for att in out.attention.values():
        assert att.shape == (3, 2, 12, 12)  # (N, heads, T, T) over the whole sampled sequence
    assert out.regularization == {}


def test_consensus_on_hand_examples() -> None:
    scores = torch.tensor([[[1.0, 5.0], [3.0, -1.0], [2.0, 2.0]]])  # one video, 3 segments, 2 classes
    assert torch.equal(consensus(scores, "avg"), torch.tensor([[2.0, 2.0]]))
    assert torch.equal(consensus(scores, "max"), torch.tensor([[3.0, 5.0]]))
    with pytest.raises(ValueError, match="consensus must be one of"):
        consensus(scores, "sum")


def test_ts_san_is_the_consensus_of_the_segments_classified_alone() -> None:
    torch.manual_seed(0)
    for how in ("avg", "max"):
        ts = make_model(num_segments=3, consensus=how, frames=12).eval()
        single = make_model(num_segments=1, frames=4).eval()
        single.load_state_dict(ts.state_dict())  # the same weights: segments share them
        batch = make_batch(2)
        with torch.no_grad():
            whole = ts(batch)
            parts = []
            for k in range(3):
                seg = {key: v[:, :, 4 * k : 4 * k + 4] for key, v in batch.items() if key != "mask"}
                seg["mask"] = batch["mask"][:, 4 * k : 4 * k + 4]
                # presence is decided on the whole sample, as in TS-SAN
                parts.append(single(seg).logits)
        expected = consensus(torch.stack(parts, dim=1), how)
        torch.testing.assert_close(whole.logits, expected)
        att = whole.attention["self_attention"]
        off_block = att.clone()
        for k in range(3):
            off_block[:, :, 4 * k : 4 * k + 4, 4 * k : 4 * k + 4] = 0
        assert torch.count_nonzero(off_block) == 0  # attention never crosses segments


def test_masked_max_and_body_presence() -> None:
    features = torch.tensor([[[1.0, -3.0], [5.0, -9.0]], [[0.5, 0.0], [9.0, 9.0]]])
    present = torch.tensor([[True, True], [True, False]])
    assert torch.equal(masked_max(features, present), torch.tensor([[5.0, -3.0], [0.5, 0.0]]))
    x = torch.zeros(3, 2, 4, 2, 3)
    x[0, 0, 1, 0, 0] = 1.0
    x[1, :, 2, 1, 2] = -1.0
    assert body_presence(x).tolist() == [[True, False], [True, True], [True, False]]  # all-zero: first body


@pytest.mark.parametrize("variant", ["san_v2", "san_v3"])
@pytest.mark.parametrize("segments", [1, 3])
def test_a_missing_second_person_does_not_change_the_output(variant, segments) -> None:
    torch.manual_seed(1)
    two = make_model(variant, bodies=2, num_segments=segments).eval()
    one = make_model(variant, bodies=1, num_segments=segments).eval()
    one.load_state_dict(two.state_dict())  # V2 / V3 weights do not depend on the number of bodies
    batch = make_batch(3, bodies=2)
    for key in ("x_joint", "x_motion_fast"):
        batch[key][:, 1] = 0.0  # the second person is absent (zero-padded)
    single = {key: (v[:, :1] if key != "mask" else v) for key, v in batch.items()}
    with torch.no_grad():
        out2, out1 = two(batch), one(single)
    torch.testing.assert_close(out2.logits, out1.logits)
    for name in out1.head_logits:
        torch.testing.assert_close(out2.head_logits[name], out1.head_logits[name])


def test_san_v2_takes_the_strongest_person_whatever_the_order() -> None:
    torch.manual_seed(2)
    model = make_model("san_v2").eval()
    batch = make_batch(2)
    swapped = {k: (v.flip(1) if k != "mask" else v) for k, v in batch.items()}
    with torch.no_grad():
        torch.testing.assert_close(model(batch).logits, model(swapped).logits)
        # the max over persons, by hand: the SAN block's feature of each person, then the classifier
        feats = []
        for m in range(2):
            enc = model.encoder(torch.cat([batch["x_joint"][:, m], batch["x_motion_fast"][:, m]], -1))
            feats.append(model.block(enc, batch["mask"])[0])
        expected = model.classifier(torch.maximum(*feats))
        torch.testing.assert_close(model(batch).logits, expected)


def test_padded_frames_do_not_change_the_output_with_the_ff_encoder() -> None:
    torch.manual_seed(3)
    for variant in sorted(VARIANTS):
        model = make_model(variant, encoder="ff").eval()
        batch = make_batch(2)
        batch["mask"][:, 9:] = False  # frames 9-11 are padding
        noisy = {k: v.clone() for k, v in batch.items()}
        noisy["x_joint"][:, :, 9:] = 100.0
        noisy["x_motion_fast"][:, :, 9:] = -100.0
        with torch.no_grad():
            a, b = model(batch), model(noisy)
        torch.testing.assert_close(a.logits, b.logits)
        for name in a.attention:  # padded keys get no attention
            assert torch.count_nonzero(a.attention[name][..., 9:]) == 0


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_attention_rows_are_distributions(variant) -> None:
    model = make_model(variant, num_segments=3).eval()
    with torch.no_grad():
        out = model(make_batch())
    for att in out.attention.values():
        assert (att >= 0).all()
        torch.testing.assert_close(att.sum(-1), torch.ones(att.shape[:-1]))
    model.train()
    assert model(make_batch()).attention == {}  # maps are computed in evaluation only


def test_san_v3_head_logits_are_summed_into_the_loss() -> None:
    torch.manual_seed(4)
    model = make_model("san_v3").train()
    batch = make_batch(4)
    labels = torch.tensor([0, 1, 2, 3])
    out = model(batch)
    total, parts = compute_loss(out, labels)
    assert set(parts) == {"ce", "ce_position", "ce_motion"}
    ce = torch.nn.functional.cross_entropy
    expected = ce(out.logits, labels) + ce(out.head_logits["position"], labels) + ce(out.head_logits["motion"], labels)
    torch.testing.assert_close(total, expected)
    # three different classifiers: the main one reads both SAN blocks
    assert not torch.allclose(out.logits, out.head_logits["position"])
    assert model.joint_classifier.fc.in_features == 2 * model.feature_dim


@pytest.mark.parametrize(("variant", "encoder"), list(itertools.product(sorted(VARIANTS), ("cnn", "ff"))))
def test_gradient_reaches_every_parameter(variant, encoder) -> None:
    torch.manual_seed(5)
    model = make_model(variant, encoder=encoder, num_segments=3).train()
    out = model(make_batch(4))
    total, _ = compute_loss(out, torch.tensor([0, 1, 2, 3]))
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing, f"no gradient for {missing}"


def test_overfits_a_small_batch() -> None:
    torch.manual_seed(6)
    model = make_model("san_v2", num_segments=3, dropout=0.0, san_dropout=0.0)
    batch = make_batch(5, seed=7)
    labels = torch.arange(5)
    opt = torch.optim.Adam(model.parameters(), lr=0.005)
    for step in range(200):
        loss, _ = compute_loss(model(batch), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 9:
            with torch.no_grad():
                if (model.eval()(batch).logits.argmax(1) == labels).all():
                    break
            model.train()
    model.eval()
    with torch.no_grad():
        assert (model(batch).logits.argmax(1) == labels).all(), f"not fitted after {step + 1} steps"


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _san_block_count(d: int, layers: int, ffn: int, frames: int) -> int:
    """Closed formula: input layer norm + position embedding + per layer (QKV + output projections,
    two layer norms, the feed-forward) + the FC over the concatenated layers."""
    per_layer = (3 * d * d + 3 * d) + (d * d + d) + 2 * (2 * d) + (d * ffn + ffn) + (ffn * d + d)
    return 2 * d + frames * d + layers * per_layer + (layers * d * d + d)


def test_parameter_counts_at_the_paper_size() -> None:
    """NTU, 2 bodies x 25 joints, 60 classes, 32 frames, CNN 64/32/32/64 (d = 512), L4H8, FFN 4d."""
    data = DataDescription(
        num_classes=60,
        num_joints=25,
        num_bodies=2,
        streams=("joint", "motion_fast"),
        channels=(3, 3),
        num_frames=96,
    )
    ts_v2 = build_model("san", data, variant="san_v2", num_segments=3)
    d, block = 512, _san_block_count(512, 4, 2048, 32)
    cnn = (6 * 64 + 64) + (64 * 32 * 3 + 32) + (25 * 32 * 9 + 32) + (32 * 64 * 9 + 64)
    assert ts_v2.feature_dim == d
    assert _count(ts_v2) == cnn + block + (d * 60 + 60) == 13_739_164  # docs/models/san.md
    # without the input layer norm (the paper's text): 2 d fewer
    no_norm = build_model("san", data, variant="san_v2", num_segments=3, input_norm=False)
    assert _count(ts_v2) - _count(no_norm) == 2 * d
    # TS-SAN shares its weights over the segments: the same count as SAN-V2 on one 32-frame clip
    one = build_model("san", DataDescription(**{**data.to_dict(), "num_frames": 32}), variant="san_v2")
    assert _count(one) == _count(ts_v2)
    counts = {
        (v, e): _count(build_model("san", data, variant=v, encoder=e, num_segments=3))
        for v in sorted(VARIANTS)
        for e in ("cnn", "ff")
    }
    assert counts == {
        ("san_v1", "cnn"): 13_746_364,
        ("san_v1", "ff"): 13_860_924,
        ("san_v2", "cnn"): 13_739_164,
        ("san_v2", "ff"): 13_784_124,
        ("san_v3", "cnn"): 27_539_444,
        ("san_v3", "ff"): 27_552_948,
    }


def test_bad_settings_and_batches_are_rejected() -> None:
    with pytest.raises(ValueError, match="do not split into 5 equal segments"):
        make_model(num_segments=5)
    with pytest.raises(ValueError, match="unknown SAN variant"):
        make_model("san_v4")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        make_model(num_heads=3)
    with pytest.raises(ValueError, match="cannot be pooled"):
        make_model(cnn_time_pool=2, frames=10, num_segments=1)
    with pytest.raises(ValueError, match="variant 'san_v1' sets fusion"):
        make_model("san_v1", fusion="person")
    model = make_model()
    batch = make_batch()
    with pytest.raises(ValueError, match="has no 'x_motion_fast'"):
        model({k: v for k, v in batch.items() if k != "x_motion_fast"})
    with pytest.raises(ValueError, match=r"\(M, T, J, C\) = \(2, 12, 4, 3\)"):
        model({**batch, "x_joint": batch["x_joint"][:, :, :8]})
    ts = make_model(num_segments=3)
    empty = {**batch, "mask": batch["mask"].clone()}
    empty["mask"][:, 8:] = False
    with pytest.raises(ValueError, match="every segment needs at least one valid frame"):
        ts(empty)


def test_the_input_spec_asks_for_position_and_velocity_at_a_fixed_length() -> None:
    spec = model_input_spec("san")
    assert spec.streams == ("joint", "motion_fast") and spec.fixed_length
    with pytest.raises(ValueError, match="consumes the streams"):
        build_model("san", DataDescription(num_classes=3, num_joints=4, num_bodies=1, num_frames=8))


def test_input_norm_makes_the_block_independent_of_the_encoder_scale() -> None:
    torch.manual_seed(8)
    block = make_model("san_v2", encoder="ff").block.eval()
    h = torch.randn(2, 12, 16)
    mask = torch.ones(2, 12, dtype=torch.bool)
    with torch.no_grad():
        torch.testing.assert_close(block(h, mask)[0], block(h * 50.0, mask)[0], rtol=1e-4, atol=1e-4)


def test_cnn_time_pooling_shortens_the_attention_maps() -> None:
    model = make_model(cnn_time_pool=2, frames=12, num_segments=1).eval()
    with torch.no_grad():
        out = model(make_batch())
    assert out.attention["self_attention"].shape == (3, 2, 3, 3)  # 12 frames pooled twice by 2


def test_self_attention_maps_are_drawn_as_head_tiles() -> None:
    rng = np.random.default_rng(0)
    maps = rng.random((8, 32, 32))
    maps /= maps.sum(-1, keepdims=True)
    assert is_self_attention("self_attention", maps) and not is_self_attention("spatial", maps)
    assert not is_self_attention("self_attention", maps[..., :5])
    sample = {"title": "s1", "length": 32, "attention": {"self_attention": maps}}
    fig = plot_attention([sample, sample])
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 2
    mosaic = np.asarray(images[0].get_array())
    # 8 heads in 4 columns x 2 rows of 32 x 32 tiles, separated by a 2-frame gap
    assert mosaic.shape == (2 * 32 + 2, 4 * 32 + 3 * 2)
    np.testing.assert_allclose(mosaic[:32, :32], maps[0])
    np.testing.assert_allclose(mosaic[34:66, 102:134], maps[7])
    assert [t.get_text() for t in fig.axes[0].texts] == [f"h{k}" for k in range(1, 9)]


def _params(**data) -> dict:
    sampling = [{"crop": {"ratio": [0.5, 1.0], "test_ratio": 0.9}}, {"segments": {"num": 3, "frames_per_segment": 8}}]
    return {
        "model": {"name": "san", "variant": "san_v2", "kwargs": {"num_segments": 3}},
        "data": {
            "protocol": "ntu60_xsub",
            "streams": ["joint", "motion_fast"],
            "motion_from": "sampled",
            "sampling": sampling,
            **data,
        },
        "training": {},
    }


def test_the_train_san_nodes_check_the_settings(caplog) -> None:
    from skeleton_attention.pipelines.train_san.nodes import _check_san

    _check_san(_params())  # the paper's form passes
    with pytest.raises(ValueError, match="train_san trains model 'san'"):
        _check_san({**_params(), "model": {"name": "sta_lstm"}})
    with pytest.raises(ValueError, match=r"SAN reads data.streams \['joint', 'motion_fast'\]"):
        _check_san(_params(streams=["joint"]))
    with pytest.raises(ValueError, match=r"needs data\.sampling to end with"):
        _check_san(_params(sampling=[{"resample": {"length": 24}}]))
    with pytest.raises(ValueError, match=r"needs data\.sampling to end with"):
        _check_san(_params(sampling=[{"segments": {"num": 2, "frames_per_segment": 8}}]))
    caplog.clear()
    _check_san(_params(motion_from="table"))
    assert "velocity is that of the sampled frames" in caplog.text
