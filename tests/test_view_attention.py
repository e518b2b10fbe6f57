"""The spatio-temporal and view attention network (Feng, Li, Yuan 2018): shapes per variant and
depth, missing views, padded frames, a single-person sample, normalised attention, eq. 11 against
an explicit computation, gradients, overfitting, parameter counts, and the view-weight plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from skeleton_attention.models.base import DataDescription
from skeleton_attention.models.registry import build_model, model_input_spec
from skeleton_attention.models.view_attention import VARIANTS, ViewAttentionLSTM, build_view_attention

SMALL = {"hidden_size": 8, "attention_hidden_size": 6, "spatial_fc_size": 5, "bilstm_size": 4, "view_fc_size": 3}


def make_batch(
    lengths: list[int], *, views: int = 3, bodies: int = 2, joints: int = 4, present=None, seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random multi-view skeletons, zero-padded after each sample's length; ``present`` (N, views)
    bool marks the present views (absent ones are zero, as the data loader gives them)."""
    gen = torch.Generator().manual_seed(seed)
    n, t = len(lengths), max(lengths)
    x = torch.randn(n, views, bodies, t, joints, 3, generator=gen)
    mask = torch.zeros(n, t, dtype=torch.bool)
    for i, length in enumerate(lengths):
        mask[i, :length] = True
        x[i, :, :, length:] = 0.0
    view_mask = torch.ones(n, views, dtype=torch.bool) if present is None else torch.as_tensor(present)
    x[~view_mask] = 0.0
    return {"x": x, "mask": mask, "view_mask": view_mask, "label": torch.arange(n) % 3}


def small_model(views: int = 3, bodies: int = 2, joints: int = 4, classes: int = 3, **kwargs) -> ViewAttentionLSTM:
    return build_view_attention(
        num_classes=classes, num_joints=joints, num_bodies=bodies, in_channels=3, num_views=views, **{**SMALL, **kwargs}
    ).eval()


def test_registry_specs_and_descriptions():
    assert model_input_spec("view_attention").multi_view
    assert not model_input_spec("view_attention_single").multi_view
    multi = DataDescription(num_classes=5, num_joints=4, num_bodies=1, num_views=3, multi_view=True)
    single = DataDescription(num_classes=5, num_joints=4, num_bodies=1)
    model = build_model("view_attention", multi, **SMALL)
    assert len(model.subnetworks) == 3 and model.multi_view
    assert build_model("view_attention_single", single, **SMALL).num_views == 1
    with pytest.raises(ValueError, match="multi-view"):
        build_model("view_attention", single, **SMALL)
    with pytest.raises(ValueError, match="single-view"):
        build_model("view_attention_single", multi, **SMALL)
    with pytest.raises(ValueError, match="conflicts"):
        build_model("view_attention", multi, variant="deep_lstm", spatial_attention=True)
    with pytest.raises(ValueError, match="unknown view-attention variant"):
        build_model("view_attention", multi, variant="vam_only")


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("num_layers", [1, 2, 3, 4])
def test_shapes_for_every_variant_and_depth(variant, num_layers):
    model = small_model(variant=variant, num_layers=num_layers)
    assert all(len(sub.lstms) == num_layers for sub in model.subnetworks)
    out = model(make_batch([5, 3]))
    assert out.logits.shape == (2, 3) and torch.isfinite(out.logits).all()
    flags = VARIANTS[variant]
    expected = set()
    if flags["spatial_attention"]:
        expected |= {"spatial_view1", "spatial_view2", "spatial_view3"}
        assert out.attention["spatial_view1"].shape == (2, 5, 8)  # (N, T, K = M * V)
    if flags["temporal_attention"]:
        expected.add("temporal")
        assert out.attention["temporal"].shape == (2, 5, 3)  # (N, T, views)
    if flags["view_attention"]:
        expected.add("view")
        assert out.attention["view"].shape == (2, 3)
    assert set(out.attention) == expected
    assert set(model.attention_kinds) == expected
    reg = {"weight_l1"} | ({"spatial_attention", "temporal_attention"} if flags["spatial_attention"] else set())
    assert set(out.regularization) == reg


def test_single_view_mode_reads_single_view_batches():
    model = build_model(
        "view_attention_single", DataDescription(num_classes=3, num_joints=4, num_bodies=2), **SMALL
    ).eval()
    batch = make_batch([5, 3], views=1)
    single = {"x": batch["x"][:, 0], "mask": batch["mask"]}
    out = model(single)
    assert out.logits.shape == (2, 3)
    assert set(out.attention) == {"spatial", "temporal"}  # one view: no view weights to learn
    assert model.view_w1 is None and model.view_w2 is None
    # the same weights on the same data as a one-view multi-view batch give the same output
    multi = small_model(views=1, variant="st_am")
    multi.load_state_dict(model.state_dict())
    torch.testing.assert_close(multi(batch).logits, out.logits)


def test_view_weights_sum_to_one_over_present_views():
    present = [[True, True, True], [True, False, True], [False, True, False], [False, False, True]]
    model = small_model()
    out = model(make_batch([4, 4, 4, 4], present=present))
    weights = out.attention["view"]
    present_t = torch.tensor(present)
    assert torch.isnan(weights[~present_t]).all()  # absent views: no weight (NaN in the map)
    torch.testing.assert_close(torch.nansum(weights, dim=1), torch.ones(4))
    assert (weights[present_t] > 0).all()
    assert weights[2, 1] == 1.0 and weights[3, 2] == 1.0  # a lone view takes everything


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("share", [False, True])
def test_a_missing_view_does_not_change_the_output(variant, share):
    present = [[True, False, True], [True, True, True]]
    batch = make_batch([5, 4], present=present)
    model = small_model(variant=variant, share_view_weights=share)
    out = model(batch)
    noisy = {**batch, "x": batch["x"].clone()}
    noisy["x"][0, 1] = torch.randn_like(noisy["x"][0, 1]) * 3  # garbage in the absent slot
    out2 = model(noisy)
    torch.testing.assert_close(out2.logits, out.logits)
    for name in out.regularization:
        torch.testing.assert_close(out2.regularization[name], out.regularization[name])
    for name in out.attention:
        torch.testing.assert_close(out2.attention[name], out.attention[name], equal_nan=True)
    # the present views of sample 0 give what a two-camera model with the same sub-networks gives
    if not share:
        two = small_model(views=2, variant=variant)
        state = {
            k.replace("subnetworks.2.", "subnetworks.1."): v
            for k, v in model.state_dict().items()
            if not k.startswith("subnetworks.1.")
        }
        two.load_state_dict(state)
        pair = {"x": batch["x"][:1, [0, 2]], "mask": batch["mask"][:1], "view_mask": torch.ones(1, 2, dtype=torch.bool)}
        torch.testing.assert_close(two(pair).logits, out.logits[:1])


def test_padded_frames_do_not_change_the_output():
    batch = make_batch([6, 3])
    model = small_model()
    alone = model(
        {k: v[1:2, ..., :3, :, :] if k == "x" else v for k, v in batch.items()}
        | {"mask": batch["mask"][1:2, :3], "view_mask": batch["view_mask"][1:2]}
    )
    padded = model(batch)
    torch.testing.assert_close(padded.logits[1:2], alone.logits)
    noisy = {**batch, "x": batch["x"].clone()}
    noisy["x"][1, :, :, 3:] = torch.randn_like(noisy["x"][1, :, :, 3:])  # garbage in padded frames
    out = model(noisy)
    torch.testing.assert_close(out.logits, padded.logits)
    torch.testing.assert_close(out.regularization["spatial_attention"], padded.regularization["spatial_attention"])
    assert (out.attention["temporal"][1, 3:] == 0).all() and (out.attention["spatial_view1"][1, 3:] == 0).all()


def test_a_single_person_sample():
    """One performer in a two-body layout (the second body is zeros, as the loader pads it): finite
    outputs, normalised attention, and the same result alone as in a batch with two-person samples."""
    batch = make_batch([5, 5])
    batch["x"][0, :, 1] = 0.0  # sample 0: one person in every view
    model = small_model(spatial_scale="num_joints")
    out = model(batch)
    alone = model({k: v[:1] for k, v in batch.items()})
    assert torch.isfinite(out.logits).all()
    torch.testing.assert_close(alone.logits, out.logits[:1])
    gamma = out.attention["spatial_view1"][0]
    torch.testing.assert_close(gamma.sum(-1), torch.full((5,), 8.0))  # K * softmax (spatial_scale num_joints)
    model.train()
    loss = nn.functional.cross_entropy(model(batch).logits, batch["label"])
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("scale, total", [("softmax", 1.0), ("num_joints", 8.0)])
def test_spatial_attention_is_normalised_over_joints(scale, total):
    model = small_model(spatial_scale=scale)
    out = model(make_batch([4, 2]))
    for j in (1, 2, 3):
        gamma = out.attention[f"spatial_view{j}"]
        assert (gamma >= 0).all()
        torch.testing.assert_close(gamma[0].sum(-1), torch.full((4,), total))
        torch.testing.assert_close(gamma[1, :2].sum(-1), torch.full((2,), total))
    assert (out.attention["temporal"] >= 0).all()  # ReLU gates


def test_regularization_follows_eq_11():
    present = [[True, False, True], [True, True, True]]
    batch = make_batch([5, 3], present=present)
    lam = {"lambda_spatial": 0.3, "lambda_temporal": 0.2, "lambda_weights": 0.01}
    model = small_model(spatial_scale="softmax", **lam)
    out = model(batch)
    gamma = {j: out.attention[f"spatial_view{j + 1}"] for j in range(3)}
    e = out.attention["temporal"]
    spatial, temporal = [], []
    for i, length in enumerate([5, 3]):
        views = [j for j in range(3) if present[i][j]]
        tv = length * len(views)
        mean_gamma = sum(gamma[j][i, :length].sum(0) for j in views) / tv
        spatial.append(((1 - mean_gamma) ** 2).sum())
        temporal.append(sum((e[i, :length, j] ** 2).sum() for j in views) / tv)
    torch.testing.assert_close(out.regularization["spatial_attention"], 0.3 * torch.stack(spatial).mean())
    torch.testing.assert_close(out.regularization["temporal_attention"], 0.2 * torch.stack(temporal).mean())
    l1 = sum(p.abs().sum() for n, p in model.named_parameters() if "weight" in n)
    torch.testing.assert_close(out.regularization["weight_l1"], 0.01 * l1)
    assert any("bias" in n for n, _ in model.named_parameters())  # biases exist and stay out of the L1


def test_equal_weights_without_attention_modules():
    """deep_lstm: alpha_j is the mean of z_t over valid frames, o the mean of h_j over present views."""
    batch = make_batch([4, 4], present=[[True, True, False], [True, True, True]])
    model = small_model(variant="deep_lstm")
    x = batch["x"]
    joints = x.permute(0, 1, 3, 2, 4, 5).reshape(2, 3, 4, 8, 3)
    alpha, _, _ = model._view_features(joints, batch["mask"])
    h = model._bilstm(alpha, batch["view_mask"])
    o0 = h[0, :2].mean(0)
    torch.testing.assert_close(model(batch).logits[0], model.classifier(o0))
    assert (h[0, 2] == 0).all()  # the absent slot holds no Bi-LSTM state


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradient_reaches_every_parameter(variant):
    model = small_model(variant=variant).train()
    batch = make_batch([5, 4, 3])
    out = model(batch)
    loss = nn.functional.cross_entropy(out.logits, batch["label"]) + sum(out.regularization.values())
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_overfits_one_small_batch():
    torch.manual_seed(0)
    model = small_model(hidden_size=16, bilstm_size=8, dropout=0.0, lambda_weights=0.0).train()
    batch = make_batch([6, 5, 6, 4, 6, 5], present=[[True, True, True]] * 4 + [[True, False, True]] * 2)
    batch["label"] = torch.tensor([0, 1, 2, 0, 1, 2])
    optim = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        optim.zero_grad()
        out = model(batch)
        loss = nn.functional.cross_entropy(out.logits, batch["label"]) + sum(out.regularization.values())
        loss.backward()
        optim.step()
    model.eval()
    assert (model(batch).logits.argmax(1) == batch["label"]).all()


#: NTU multi-view, the paper's sizes (3 cameras, K = 2 x 25, 60 classes, 3 layers); the paper gives no count
PAPER_COUNT = 5_842_455


def _lstm(inputs: int, units: int) -> int:
    return 4 * units * (inputs + units) + 8 * units


def subnetwork_parameters(
    *, k: int, c: int, layers: int, variant: str, hidden: int = 256, att: int = 128, fc: int = 128
) -> int:
    """One view-specific sub-network: spatial attention, stacked LSTMs, temporal attention."""
    flags = VARIANTS[variant]
    inp = k * c
    spatial = _lstm(inp, att) + (inp * fc + fc) + att * fc + (fc * k + k) if flags["spatial_attention"] else 0
    temporal = _lstm(inp, att) + (inp + 1) + att if flags["temporal_attention"] else 0
    return spatial + temporal + _lstm(inp, hidden) + (layers - 1) * _lstm(hidden, hidden)


def expected_parameters(
    *,
    k: int,
    c: int,
    classes: int,
    views: int,
    layers: int = 3,
    variant: str = "st_am_vam",
    subnetworks: int | None = None,
    hidden: int = 256,
    bi: int = 128,
    vfc: int = 128,
) -> int:
    """Closed formula of the network's size (docs/models/view-attention.md)."""
    subnets = views if subnetworks is None else subnetworks
    view = 2 * bi * vfc + vfc if VARIANTS[variant]["view_attention"] and views > 1 else 0
    return (
        subnets * subnetwork_parameters(k=k, c=c, layers=layers, variant=variant, hidden=hidden)
        + 2 * _lstm(hidden, bi)
        + view
        + 2 * bi * classes
        + classes
    )


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("layers", [1, 2, 3, 4])
def test_paper_sizes_parameter_count(variant, layers):
    """NTU multi-view (K = 2 x 25, 3 cameras, 60 classes) at the paper's sizes; the full 3-layer
    network has 5,842,455 parameters (the paper gives no count)."""
    data = DataDescription(num_classes=60, num_joints=25, num_bodies=2, num_views=3, multi_view=True)
    model = build_model("view_attention", data, variant=variant, num_layers=layers)
    count = sum(p.numel() for p in model.parameters())
    assert count == expected_parameters(k=50, c=3, classes=60, views=3, layers=layers, variant=variant)
    if variant == "st_am_vam" and layers == 3:
        assert count == PAPER_COUNT
    shared = build_model("view_attention", data, variant=variant, num_layers=layers, share_view_weights=True)
    assert sum(p.numel() for p in shared.parameters()) == expected_parameters(
        k=50, c=3, classes=60, views=3, layers=layers, variant=variant, subnetworks=1
    )


def test_constructor_rejects_bad_settings():
    base = {"num_classes": 3, "num_joints": 4, "num_bodies": 1, "in_channels": 3, "num_views": 3}
    for bad in (
        {"num_layers": 0},
        {"dropout": 1.0},
        {"lambda_spatial": -1},
        {"spatial_scale": "x"},
        {"temporal_pooling": "max"},
        {"init": "xavier"},
    ):
        with pytest.raises(ValueError):
            ViewAttentionLSTM(**base, **bad)
    with pytest.raises(ValueError, match="one view"):
        ViewAttentionLSTM(**base, multi_view=False)
    model = ViewAttentionLSTM(**{**base, "num_views": 3}, **SMALL)
    with pytest.raises(ValueError, match="views, M, V, C"):
        model(make_batch([3], views=2, bodies=1))


# --- the view weights in the evaluation and the report --------------------------------------------


def test_view_weights_are_collected_and_plotted():
    from skeleton_attention.pipelines.training_common import _nanmean_columns
    from skeleton_attention.training.plots import plot_attention
    from skeleton_attention.training.trainer import Trainer, TrainerConfig

    model = small_model()
    batches = [make_batch([4, 3], present=[[True, True, True], [False, True, True]], seed=s) for s in range(2)]
    preds = Trainer(model, TrainerConfig(device="cpu", progress=False)).predict(
        batches, keep_attention=2, collect_attention=["view"]
    )
    weights = preds.attention_all["view"]
    assert weights.shape == (4, 3) and np.isnan(weights[1, 0]) and np.isnan(weights[3, 0])
    np.testing.assert_allclose(np.nansum(weights, axis=1), 1.0, rtol=1e-5)
    means = _nanmean_columns(weights)
    assert means[0] == pytest.approx(np.mean(weights[[0, 2], 0]))
    assert _nanmean_columns(np.full((2, 2), np.nan)) == [None, None]

    samples = [
        {"title": f"s{i}", "length": int(preds.lengths[i]), "attention": maps, "kinds": dict(model.attention_kinds)}
        for i, maps in enumerate(preds.attention)
    ]
    fig = plot_attention([*samples, {"title": "all", "distribution": preds.attention_all, "kinds": {}}])
    titles = [ax.get_title() for ax in fig.get_axes()]
    assert any("view weights per view" in t for t in titles)
    assert sum(t.endswith("\nview") for t in titles) == 2  # a bar chart per sample
    assert len([t for t in titles if t.endswith("spatial_view1")]) == 2
    with pytest.raises(ValueError, match="no attention map 'nope'"):
        Trainer(model, TrainerConfig(device="cpu", progress=False)).predict(batches, collect_attention=["nope"])


def test_report_logs_the_mean_view_weights():
    import pandas as pd

    from skeleton_attention.pipelines.training_common import report

    history = pd.DataFrame([{"epoch": 1, "train_loss": 1.0, "val_ce": 0.9, "val_acc": 0.5, "phase_index": 0}])
    metrics = {
        "top1": 0.5,
        "top5": 1.0,
        "mean_class_acc": 0.5,
        "loss": 1.0,
        "num_samples": 4,
        "confusion_matrix": np.eye(3),
        "attention_mean": {"view": [0.5, None, 0.25]},
    }
    artifact = {
        "info": {
            "monitor": "val_ce",
            "best_epoch": 1,
            "best_metric": 0.9,
            "epochs_run": 1,
            "class_names": ["a", "b", "c"],
            "layout": "ntu25",
        }
    }
    *_, flat, mlflow_metrics = report(history, metrics, [], artifact)
    assert flat["test_mean_view_attention_1"] == 0.5 and flat["test_mean_view_attention_3"] == 0.25
    assert "test_mean_view_attention_2" not in flat
    assert mlflow_metrics["mean_view_attention_1"] == {"value": 0.5, "step": 1}
    assert math.isclose(flat["test_top1"], 0.5)
