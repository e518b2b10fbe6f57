"""DSTA-Net (models/dsta_net.py): shapes of every Table 1 variant, the three decoupling strategies
against explicit loops, tanh maps, position encodings, masking of padded frames and missing
bodies, gradients, overfitting, the paper's architecture sizes; the slow-stream ``stride`` step and
the ``runs`` blocks of the configuration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from skeleton_attention.experiments.config import ConfigError, compose
from skeleton_attention.models.base import DataDescription
from skeleton_attention.models.dsta_net import (
    PAPER_CHANNELS,
    VARIANTS,
    AttentionModule,
    DSTANet,
    build_dsta_net,
    sinusoid_encoding,
)
from skeleton_attention.models.registry import build_model
from skeleton_attention.skeletons.streams import motion_fast, motion_slow
from skeleton_attention.training.sampling import SamplingPipeline, Stride, sampling_from_config
from tests.kedro_helpers import REPO_ROOT

SMALL = {"channels": (8, 16), "strides": (2, 1), "num_heads": 2}


def _model(variant: str = "dsta", bodies: int = 2, frames: int = 12, **kwargs) -> DSTANet:
    torch.manual_seed(0)
    options = {**SMALL, **kwargs}
    return build_dsta_net(
        variant=variant, num_classes=5, num_joints=6, num_bodies=bodies, in_channels=3, num_frames=frames, **options
    )


def _batch(n: int = 3, bodies: int = 2, frames: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "x": torch.randn(n, bodies, frames, 6, 3, generator=g),
        "mask": torch.ones(n, frames, dtype=torch.bool),
        "label": torch.arange(n) % 5,
    }


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_gives_logits_and_the_maps_of_layers_one_and_last(variant: str) -> None:
    model = _model(variant).eval()
    out = model(_batch())
    assert out.logits.shape == (3, 5) and torch.isfinite(out.logits).all()
    assert {k: tuple(v.shape) for k, v in out.attention.items()} == {
        "layer 1 spatial [joints x joints]": (3, 6, 6),
        "layer 1 temporal [frames x frames]": (3, 12, 12),
        "layer 2 spatial [joints x joints]": (3, 6, 6),
        "layer 2 temporal [frames x frames]": (3, 6, 6),  # after the stride-2 first layer
    }


def test_temporal_convolution_variant_has_spatial_maps_only() -> None:
    out = _model(temporal="conv").eval()(_batch())
    assert out.logits.shape == (3, 5)
    assert sorted(out.attention) == ["layer 1 spatial [joints x joints]", "layer 2 spatial [joints x joints]"]


def _module(axis: str, strategy: str, encoding: str = "decoupled", global_map: bool = False) -> AttentionModule:
    torch.manual_seed(1)
    return AttentionModule(axis, 4, 8, 3, 2, strategy, encoding, global_map, num_elements=6 if axis == "spatial" else 5)


def _qk(module: AttentionModule, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    h = x + module._encoding(x)
    n, s, ce = x.shape[0], module.num_heads, module.embed_channels
    return module.query(h).view(n, s, ce, *x.shape[2:]), module.key(h).view(n, s, ce, *x.shape[2:])


@pytest.mark.parametrize("strategy", ["a", "b", "c"])
def test_spatial_strategies_match_equations_2_to_4(strategy: str) -> None:
    module = _module("spatial", strategy).eval()
    x = torch.randn(2, 4, 5, 6)  # (N, C, T, V)
    q, k = _qk(module, x)  # (N, S, Ce, T, V)
    ce, t = module.embed_channels, x.shape[2]
    per_frame = [torch.einsum("nscu,nscv->nsuv", q[:, :, :, i], k[:, :, :, i]) for i in range(t)]
    if strategy == "a":  # eq. 2: one map per frame
        expected = torch.tanh(torch.stack(per_frame, dim=2) / ce)
    elif strategy == "c":  # eq. 4: the per-frame products summed over frames (normalised by C_e T)
        expected = torch.tanh(sum(per_frame) / (ce * t))
    else:  # eq. 3: every pair of frames (t, tau)
        pairs = sum(torch.einsum("nscu,nscv->nsuv", q[:, :, :, i], k[:, :, :, j]) for i in range(t) for j in range(t))
        expected = torch.tanh(pairs / (ce * t * t))
    att = module.attention_map(x, None)
    assert att.shape == ((2, 2, 5, 6, 6) if strategy == "a" else (2, 2, 6, 6))
    torch.testing.assert_close(att, expected, rtol=1e-4, atol=1e-5)
    assert att.abs().max() <= 1.0  # tanh, alpha = 1, no global map


@pytest.mark.parametrize("strategy", ["a", "b", "c"])
def test_temporal_strategies_relate_frames(strategy: str) -> None:
    module = _module("temporal", strategy).eval()
    x = torch.randn(2, 4, 5, 6)
    att = module.attention_map(x, None)
    assert att.shape == ((2, 2, 6, 5, 5) if strategy == "a" else (2, 2, 5, 5))
    assert att.abs().max() <= 1.0
    y, shown = module(x, None)
    assert y.shape == (2, 8, 5, 6) and shown.shape == (2, 5, 5)


def test_global_regularization_is_added_to_the_scaled_tanh_map() -> None:
    module = _module("spatial", "c", global_map=True).eval()
    with torch.no_grad():
        module.alpha.fill_(0.5)
        module.global_map.copy_(torch.randn_like(module.global_map))
    x = torch.randn(2, 4, 5, 6)
    att = module.attention_map(x, None)
    tanh_part = (att - module.global_map[None]) / 0.5
    assert tanh_part.abs().max() <= 1.0 + 1e-6
    assert not torch.allclose(att, tanh_part)


def test_position_encodings_follow_equation_5_and_sec_3_2() -> None:
    pe = sinusoid_encoding(7, 6)
    p, i = 3, 1
    assert pe[2 * i, p] == pytest.approx(math.sin(p / 10000 ** (2 * i / 6)), abs=1e-6)
    assert pe[2 * i + 1, p] == pytest.approx(math.cos(p / 10000 ** (2 * i / 6)), abs=1e-6)
    assert sinusoid_encoding(4, 5).shape == (5, 4)  # odd channel counts
    x = torch.zeros(1, 4, 5, 6)
    spatial = _module("spatial", "c")._encoding(x)
    temporal = _module("temporal", "c")._encoding(x)
    unified = _module("spatial", "c", encoding="unified")._encoding(x)
    assert spatial.shape == temporal.shape == unified.shape == (4, 5, 6)
    # decoupled: the same joint has the same marker in every frame, the same frame in every joint
    assert torch.equal(spatial[:, 0], spatial[:, 4]) and not torch.equal(spatial[:, :, 0], spatial[:, :, 1])
    assert torch.equal(temporal[:, :, 0], temporal[:, :, 5]) and not torch.equal(temporal[:, 0], temporal[:, 1])
    # unified: one index t * V + v, so the same joint differs between frames
    assert not torch.equal(unified[:, 0], unified[:, 1])
    torch.testing.assert_close(unified[:, 1, 2], sinusoid_encoding(30, 4)[:, 1 * 6 + 2])
    assert _module("spatial", "c", encoding="none")._encoding(x) is None


@pytest.mark.parametrize("variant", ["dsta", "st_att_a", "st_att_b", "st_att_c_upe"])
def test_padded_frames_do_not_change_the_output(variant: str) -> None:
    model = _model(variant, frames=None).eval()  # no fixed T (the temporal global map needs one)
    batch = _batch(n=2, frames=9)
    padded = {
        "x": torch.cat([batch["x"], 50 * torch.randn(2, 2, 4, 6, 3)], dim=2),
        "mask": torch.cat([batch["mask"], torch.zeros(2, 4, dtype=torch.bool)], dim=1),
    }
    with torch.no_grad():
        plain, more = model(batch), model(padded)
    torch.testing.assert_close(more.logits, plain.logits, rtol=1e-4, atol=1e-5)
    for name, value in plain.attention.items():
        if "spatial" in name:
            torch.testing.assert_close(more.attention[name], value, rtol=1e-4, atol=1e-5)


def test_a_missing_body_does_not_change_the_output() -> None:
    model = _model().eval()
    batch = _batch(n=2)
    one = batch["x"].clone()
    one[:, 1] = 0.0  # the second body is absent (zeros, as the data side pads)
    twice = torch.stack([one[:, 0], one[:, 0]], dim=1)
    with torch.no_grad():
        a = model({"x": one, "mask": batch["mask"]}).logits
        b = model({"x": twice, "mask": batch["mask"]}).logits
        single = _model(bodies=1).eval()
        single.load_state_dict(model.state_dict())
        c = single({"x": one[:, :1], "mask": batch["mask"]}).logits
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("variant", ["dsta", "st_att_c_dpe_stgr", "st_att_a", "st_att_b"])
def test_gradient_reaches_every_parameter(variant: str) -> None:
    model = _model(variant).train()
    out = model(_batch())
    torch.nn.functional.cross_entropy(out.logits, _batch()["label"]).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert not missing


def test_overfits_a_small_batch() -> None:
    model = _model(channels=(16, 16), strides=(1, 1))
    batch = _batch(n=10, seed=3)
    batch["label"] = torch.arange(10) % 5
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    for _ in range(80):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(batch).logits, batch["label"])
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        assert (model(batch).logits.argmax(1) == batch["label"]).float().mean() == 1.0


def _module_parameters(cin: int, cout: int, heads: int, ce: int, elements: int | None) -> int:
    count = 2 * (cin * heads * ce + heads * ce) + heads  # sigma, phi, alpha
    count += heads * elements * elements if elements else 0  # global regularization map
    count += heads * cin * cout + cout + 2 * cout  # concatenated heads -> C_out, BN
    count += 0 if cin == cout else cin * cout + cout + 2 * cout  # residual projection, BN
    return count + cout * cout + cout + 2 * cout  # feed-forward, BN


def test_paper_architecture_sizes() -> None:
    """Sec. 4.2: 8 layers, 64-256 channels, 3 heads (the paper gives no parameter count)."""
    data = DataDescription(num_classes=60, num_joints=25, num_bodies=2, num_frames=128)
    model = build_model("dsta_net", data)
    assert len(model.layers) == 8
    assert [layer.spatial.out[0].weight.shape[0] for layer in model.layers] == list(PAPER_CHANNELS)
    assert {layer.spatial.num_heads for layer in model.layers} == {3}
    expected = 3 * 64 + 64 + 2 * 64  # input embedding + BN
    width = 64
    for out in PAPER_CHANNELS:
        expected += _module_parameters(width, out, 3, out // 4, 25)
        expected += _module_parameters(out, out, 3, out // 4, None)
        width = out
    expected += 256 * 60 + 60
    assert sum(p.numel() for p in model.parameters()) == expected == 3_243_908


def test_variants_and_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown DSTA-Net variant"):
        _model("nope")
    with pytest.raises(ValueError, match="conflicts"):
        _model("dsta", strategy="a")
    with pytest.raises(ValueError, match="fixed number of frames"):
        _model("st_att_c_dpe_stgr", frames=None)
    with pytest.raises(ValueError, match="one model per stream"):
        build_dsta_net(
            DataDescription(num_classes=3, num_joints=6, num_bodies=1, streams=("joint", "bone"), channels=(3, 3))
        )


# --- data side: the slow-temporal stream ----------------------------------------------------------


def test_stride_step_keeps_every_second_frame() -> None:
    step = Stride(2)
    assert step.output_length(128) == 64 and step.output_length(9) == 4 and step.output_length(1) == 1
    np.testing.assert_array_equal(step.positions(9, None, train=False), [0, 2, 4, 6])
    rng = np.random.default_rng(0)
    phases = {float(step.positions(9, rng, train=True)[0]) for _ in range(50)}
    assert phases == {0.0, 1.0}
    pipeline = sampling_from_config([{"resample": {"length": 150}}, {"crop": {"length": 128}}, {"stride": {"step": 2}}])
    assert isinstance(pipeline, SamplingPipeline) and pipeline.fixed_length == 64


def test_slow_stream_is_the_fast_difference_of_the_half_rate_clip() -> None:
    x = np.random.default_rng(1).normal(size=(1, 16, 4, 3)).astype(np.float32) + 5.0
    half = SamplingPipeline((Stride(2),)).apply({"joint": x}, None, train=False)["joint"]
    np.testing.assert_allclose(motion_fast(half), motion_slow(x)[:, ::2])


def _family(env: str = "base") -> dict:
    text = (REPO_ROOT / "conf" / env / "parameters_train_dsta_net.yml").read_text()
    return yaml.safe_load(text)["train_dsta_net"]


def test_runs_blocks_select_the_four_streams() -> None:
    family = _family()
    run = {"dataset": "nucla", "protocol": "nucla_xview", "tag": "base"}
    assert compose(family, run)["data"]["streams"] == ["joint"]
    expected = {
        "spatial_temporal": ["joint"],
        "spatial": ["bone"],
        "fast_temporal": ["motion_fast"],
        "slow_temporal": ["motion_fast"],
    }
    for name, streams in expected.items():
        config = compose(family, {**run, "name": name})
        assert config["data"]["streams"] == streams and config["data"]["motion_from"] == "sampled"
        assert config["data"]["num_bodies"] == 1  # the data set's block still applies
        assert "runs" not in config
    slow = compose(family, {**run, "name": "slow_temporal"})["data"]["sampling"]
    assert sampling_from_config(slow).fixed_length == 64
    assert sampling_from_config(compose(family, {**run, "name": "spatial"})["data"]["sampling"]).fixed_length == 128
    with pytest.raises(ConfigError, match="runs"):
        compose({**family, "runs": ["x"]}, run)


def test_paper_training_settings() -> None:
    config = compose(_family(), {"dataset": "ntu", "protocol": "ntu60_xsub"})
    training = config["training"]
    assert training["optimizer"] == {
        "name": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 0.0005,
    }
    assert training["schedule"] == {"name": "multistep", "milestones": [60, 90], "gamma": 0.1}
    assert training["epochs"] == 120 and config["data"]["batch_size"] == 32
    assert config["model"]["kwargs"]["channels"] == list(PAPER_CHANNELS)
    assert config["model"]["kwargs"]["temporal"] == "attention"
