"""MANs (Xie et al., IJCAI 2018): TARM, STCM backbones, variants, parameter counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from skeleton_attention.models.backbones import PreActStack, build_stcm, densenet161, resnet18
from skeleton_attention.models.base import DataDescription, ModelOutput
from skeleton_attention.models.mans import TARM, VARIANTS, FrameAttention, MANs, build_mans
from skeleton_attention.models.registry import available_models, build_model, model_input_spec
from skeleton_attention.models.sta_lstm import TemporalAttention
from skeleton_attention.training.plots import plot_attention

SMALL = {"image_size": 16, "hidden_size": 8}


def _batch(n: int = 3, m: int = 1, t: int = 20, v: int = 6, c: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(n, m, t, v, c, generator=g),
        "mask": torch.ones(n, t, dtype=torch.bool),
        "label": torch.arange(n) % 4,
    }


def _model(variant: str = "mans", *, t: int = 20, v: int = 6, m: int = 1, **kw) -> MANs:
    torch.manual_seed(0)
    kwargs = {"num_classes": 4, "num_joints": v, "num_bodies": m, "in_channels": 3, "num_frames": t, **SMALL, **kw}
    return build_mans(variant=variant, **kwargs)


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --- backbones --------------------------------------------------------------------------------------


def test_backbones_have_the_published_parameter_counts():
    assert _count(resnet18(num_classes=1000)) == 11_689_512
    assert _count(densenet161(num_classes=1000)) == 28_681_000


@pytest.mark.parametrize("name", ["resnet18", "densenet161", "mans9", "mans33"])
@pytest.mark.parametrize("size", [224, 50])
def test_backbone_output_shapes_at_both_scales(name, size):
    batch = 1 if name == "densenet161" and size == 224 else 2  # one image for the heaviest pass
    net = build_stcm(name, num_classes=7).eval()
    with torch.no_grad():
        out = net(torch.randn(batch, 3, size, size))
    assert out.shape == (batch, 7)
    assert torch.isfinite(out).all()


def test_mans_n_depth_counts_the_convolutions():
    for depth, blocks in ((9, 2), (33, 8), (61, 15)):
        net = PreActStack(depth, num_classes=5)
        convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
        assert len(convs) == depth == 1 + 4 * blocks
        assert [m.kernel_size for m in convs[:1]] == [(5, 5)]
    with pytest.raises(ValueError, match="1 \\+ 4 \\* blocks"):
        PreActStack(10, num_classes=5)
    with pytest.raises(ValueError, match="unknown STCM"):
        build_stcm("vgg16", num_classes=5)


# --- Table 5 parameter counts ------------------------------------------------------------------------

#: Table 5 #param (NTU: 60 classes, 2 bodies x 25 joints, 50 frames) and our count's allowed gap
TABLE_5 = {
    "mans33": 3.1e6,
    "mans61": 5.7e6,
    "resnet18": 12.0e6,
    "densenet161": 27.6e6,
}


def _ntu_mans(stcm: str, **kw) -> MANs:
    return MANs(num_classes=60, num_joints=25, num_bodies=2, in_channels=3, num_frames=50, stcm=stcm, **kw)


@pytest.mark.parametrize("stcm", sorted(TABLE_5))
def test_parameter_counts_match_table_5(stcm):
    # the paper's count: the TARMs at the image size (tarm_on=image), as its 224 x 224 inputs imply
    count = _count(_ntu_mans(stcm, tarm_on="image"))
    assert abs(count - TABLE_5[stcm]) / TABLE_5[stcm] < 0.05, count
    # the default (TARMs on the 50 sampled frames x 50 columns) is within 5 % too
    assert abs(_count(_ntu_mans(stcm)) - TABLE_5[stcm]) / TABLE_5[stcm] < 0.05


def test_mans9_count_is_the_authors_code_count():
    """Table 5 says 0.8M; the authors' MANs_9.py (TARM: Dense 64, BiGRU 64 summed, attention
    50 -> 3 -> 50, Dense 50; STCM: Conv5x5/2 + [2, 2] pre-activation blocks) has 0.856M, which we
    reproduce layer for layer (docs/models/mans.md): 7 % above the rounded table value."""
    model = _ntu_mans("mans9")
    tarm = 50 * 64 + 64 + 2 * 3 * (64 * 64 + 64 * 64 + 2 * 64) + (50 * 3 + 3) + (3 * 50 + 50) + 64 * 50 + 50
    assert _count(model.tarms) == 3 * tarm
    assert _count(model) == 856_309
    assert abs(_count(model) - 0.8e6) / 0.8e6 < 0.075


# --- TARM ----------------------------------------------------------------------------------------------


def test_tarm_output_is_t_by_n_and_the_model_recalibrates_a_t_by_n_by_3_image():
    model = _model(t=20, v=6, m=2).eval()
    batch = _batch(m=2)
    image, _ = model.image(batch)
    assert image.shape == (3, 3, 20, 12)  # (B, coordinates, T, N = bodies x joints)
    # body-major columns: column 6 is body 2's first joint
    assert torch.equal(image[:, :, :, 6], batch["x"][:, 1, :, 0, :].permute(0, 2, 1))
    recalibrated, weights = model.recalibrate(image)
    assert recalibrated.shape == image.shape  # O~ is T x N x 3
    assert weights.shape == (3, 20, 3)
    tarm_out, w = model.tarms[0](image[:, 0])
    assert tarm_out.shape == (3, 20, 12) and w.shape == (3, 20)


def test_residual_identity_when_the_recalibration_is_zero():
    tarm = TARM(num_points=6, num_frames=20, hidden_size=8)
    nn.init.zeros_(tarm.fc_out.weight)
    nn.init.zeros_(tarm.fc_out.bias)
    x = torch.randn(2, 20, 6)
    out, _ = tarm(x)
    assert torch.equal(out, x)  # eq. 1 with F(X) = 0


def test_neutral_attention_gives_the_no_attention_module():
    """F_A = 1 (sigmoid saturated by W2's bias) turns eq. 2 into F(X) = F_M: the TARM equals the
    no-attention TARM with the same weights, X~ = X + FC(F_M)."""
    torch.manual_seed(0)
    full = TARM(6, 20, 8, attention="tarm").eval()
    plain = TARM(6, 20, 8, attention="none").eval()
    plain.load_state_dict({k: v for k, v in full.state_dict().items() if not k.startswith("attention.")})
    nn.init.zeros_(full.attention.w2.weight)
    nn.init.constant_(full.attention.w2.bias, 50.0)
    x = torch.randn(2, 20, 6)
    out_full, weights = full(x)
    out_plain, none = plain(x)
    assert none is None
    torch.testing.assert_close(weights, torch.ones_like(weights))
    torch.testing.assert_close(out_full, out_plain)
    # and by hand: X + FC(fwd + bwd)
    h = plain.fc_in(x)
    seq, _ = plain.gru(h)
    torch.testing.assert_close(out_plain, x + plain.fc_out(seq[..., :8] + seq[..., 8:]))


def test_frame_attention_follows_eq_6_to_8_and_is_normalised():
    att = FrameAttention(num_frames=50, alpha=16)
    assert att.w1.weight.shape == (3, 50) and att.w2.weight.shape == (50, 3)  # W1: T/alpha x T
    x = torch.randn(4, 50, 8) * 10
    weights = att(x)
    assert weights.shape == (4, 50)
    assert (weights > 0).all() and (weights < 1).all()  # sigmoid: each frame weight in (0, 1)
    # eq. 7 copies X_p K times; W1 acting on each copy gives the same column, which is our single one
    copies = x.mean(-1, keepdim=True).expand(4, 50, 8)  # F_d(X_p, K)
    per_column = torch.sigmoid(att.w2(torch.relu(att.w1(copies.transpose(1, 2))))).transpose(1, 2)
    torch.testing.assert_close(per_column, weights.unsqueeze(-1).expand(4, 50, 8))
    # the weights depend on the sample
    assert not torch.allclose(weights[0], weights[1])


def test_sta_lstm_attention_variant_uses_song_et_al_temporal_attention():
    model = _model("sta_lstm_attention")
    assert all(isinstance(t.attention, TemporalAttention) for t in model.tarms)
    out = model.eval()(_batch())
    assert (out.attention["frame"] >= 0).all()  # ReLU gate, not normalised (STA-LSTM eq. 6)


# --- the model -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("stcm", ["mans9", "resnet18"])
def test_each_variant_builds_runs_and_trains_every_parameter(variant, stcm):
    # T / alpha = 8 bottleneck units: with eq. 8's single unit at T = 20, alpha = 16, the ReLU can
    # be closed for every sample at initialisation (then W1 gets no gradient; docs/models/mans.md)
    model = _model(variant, stcm=stcm, t=32, alpha=4).train()
    out = model(_batch(t=32))
    assert isinstance(out, ModelOutput) and out.logits.shape == (3, 4)
    assert ("frame" in out.attention) == (variant in ("mans", "sta_lstm_attention"))
    if variant == "stcm_only":
        assert model.tarms is None
    if variant == "no_attention":
        assert all(t.attention is None for t in model.tarms)
    torch.nn.functional.cross_entropy(out.logits, _batch(t=32)["label"]).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_gradient_reaches_the_tarm_through_the_resize():
    model = _model(image_size=32)
    assert model.num_frames != model.image_size  # 20 x 6 resized to 32 x 32
    out = model(_batch())
    out.logits.sum().backward()
    assert model.tarms[0].fc_in.weight.grad.abs().sum() > 0


def test_tarm_on_image_resizes_first():
    model = _model(tarm_on="image", image_size=24).eval()
    assert model.tarms[0].fc_in.in_features == 24
    out = model(_batch())
    assert out.attention["frame"].shape == (3, 24, 3)


def test_scales_set_image_size_and_units():
    small = MANs(num_classes=4, num_joints=6, num_bodies=1, in_channels=3, num_frames=20, stcm="mans9")
    large = MANs(num_classes=4, num_joints=6, num_bodies=1, in_channels=3, num_frames=20, stcm="resnet18")
    assert (small.image_size, small.hidden_size, small.scale) == (50, 64, "small")
    assert (large.image_size, large.hidden_size, large.scale) == (224, 128, "large")
    both = MANs(num_classes=4, num_joints=6, num_bodies=1, in_channels=3, num_frames=20, stcm="resnet18", scale="small")
    assert (both.image_size, both.hidden_size) == (50, 64)


def test_padded_frames_and_batch_neighbours_do_not_change_the_output():
    model = _model().eval()
    batch = _batch()
    batch["mask"][0, 15:] = False
    reference = model(batch).logits
    noisy = {**batch, "x": batch["x"].clone()}
    noisy["x"][0, :, 15:] = 1e3  # garbage in the padded frames
    torch.testing.assert_close(model(noisy).logits, reference)
    alone = model({k: v[:1] for k, v in batch.items()}).logits  # eval mode: no batch dependence
    torch.testing.assert_close(alone, reference[:1])


def test_absent_body_columns_stay_zero_in_the_image():
    model = _model(m=2).eval()
    batch = _batch(m=2)
    batch["x"][:, 1] = 0.0  # one-person samples: the second body is zeros (the authors' convention)
    image, _ = model.image(batch)
    assert torch.count_nonzero(image[..., 6:]) == 0


def test_overfits_a_small_batch():
    torch.manual_seed(0)
    model = _model(gru_dropout=0.0)
    batch = _batch(n=8)
    batch["label"] = torch.arange(8) % 4
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(60):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch).logits, batch["label"])
        loss.backward()
        opt.step()
    model.eval()
    assert float(loss.detach()) < 0.1
    assert (model(batch).logits.argmax(1) == batch["label"]).all()


def test_registry_builds_from_a_description_and_checks_it():
    assert "mans" in available_models()
    assert "backbones" not in available_models()
    spec = model_input_spec("mans")
    assert spec.fixed_length and spec.max_streams == 1
    data = DataDescription(num_classes=4, num_joints=6, num_bodies=1, num_frames=20)
    model = build_model("mans", data, **SMALL)
    assert model.num_frames == 20 and model.num_points == 6
    with pytest.raises(ValueError, match="fixed number of frames"):
        build_model("mans", DataDescription(num_classes=4, num_joints=6, num_bodies=1))
    with pytest.raises(ValueError, match="from data="):
        build_mans(data, num_frames=20)


def test_bad_settings_and_batches_are_rejected():
    with pytest.raises(ValueError, match="unknown MANs variant"):
        _model("sa_lstm")
    with pytest.raises(ValueError, match="conflicts"):
        _model("stcm_only", use_tarm=True)
    with pytest.raises(ValueError, match="tarm_on"):
        _model(tarm_on="both")
    with pytest.raises(ValueError, match="attention must be"):
        TARM(6, 20, 8, attention="softmax")
    model = _model()
    with pytest.raises(ValueError, match="built for T = 20"):
        model(_batch(t=30))
    with pytest.raises(ValueError, match="\\(M, V, C\\)"):
        model(_batch(v=7))


def test_attention_plot_draws_frame_curves_per_coordinate():
    model = _model().eval()
    out = model(_batch())
    samples = [
        {
            "title": f"s{i}",
            "length": 20,
            "attention": {"frame": out.attention["frame"][i].numpy()},
            "kinds": model.attention_kinds,
        }
        for i in range(2)
    ]
    fig = plot_attention(samples)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    assert [line.get_label() for line in axes[0].get_lines()] == ["x", "y", "z"]
    np.testing.assert_allclose(axes[0].get_lines()[1].get_ydata(), samples[0]["attention"]["frame"][:, 1])
    # without the hint the same map is a heat map (the generic path is unchanged)
    plain = plot_attention([{**samples[0], "kinds": {}}])
    assert plain.axes[0].get_images()


# --- configuration -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dataset", "protocol", "batch", "epochs", "bodies"),
    [
        ("ntu", "ntu60_xsub", 40, 50, 2),
        ("utkinect", "utkinect_loocv", 8, 100, 1),
        ("sbu", "sbu_fold", 8, 100, 2),
        ("nucla", "nucla_xview", 20, 100, 1),
    ],
)
def test_composed_configuration_has_the_paper_settings(dataset, protocol, batch, epochs, bodies):
    from tests.kedro_helpers import load_config

    _, params = load_config({"run": {"dataset": dataset, "protocol": protocol}})
    config = params["train_mans_config"]
    assert config["model"]["name"] == "mans" and config["model"]["kwargs"]["alpha"] == 16
    assert config["training"]["optimizer"] == {
        "name": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 0.0001,
    }
    assert config["training"]["schedule"] == {"name": "none"}
    assert (config["data"]["batch_size"], config["training"]["epochs"]) == (batch, epochs)
    assert config["data"]["num_bodies"] == bodies
    assert config["data"]["sampling"] == {"mode": "resample", "length": 50}
    assert config["data"]["protocol"] == protocol
