"""STA-LSTM (Song et al., AAAI 2017): shapes, attention properties, eq. 2-7 against an explicit
per-frame loop, padding invariance, gradients per variant, Algorithm 1 phases and overfitting."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from skeleton_attention.models.base import ModelOutput
from skeleton_attention.models.sta_lstm import (
    ALGORITHM_1_PHASES,
    PHASE_KEYS,
    STALSTM,
    VARIANTS,
    algorithm_1_phases,
    build_sta_lstm,
    iterations_to_epochs,
)

SMALL = {"hidden_size": 7, "attention_hidden_size": 6, "spatial_fc_size": 5}


def make_batch(
    lengths: list[int],
    *,
    bodies: int = 2,
    joints: int = 4,
    channels: int = 3,
    frames: int | None = None,
    seed=0,
) -> dict[str, torch.Tensor]:
    """Random skeletons, zero-padded after each sample's length (as the data loader pads them)."""
    gen = torch.Generator().manual_seed(seed)
    t = frames if frames is not None else max(lengths)
    x = torch.randn(len(lengths), bodies, t, joints, channels, generator=gen)
    mask = torch.zeros(len(lengths), t, dtype=torch.bool)
    for i, length in enumerate(lengths):
        mask[i, :length] = True
        x[i, :, length:] = 0.0
    return {"x": x, "mask": mask, "label": torch.arange(len(lengths)) % 3}


def small_model(bodies: int = 2, joints: int = 4, classes: int = 3, **kwargs) -> STALSTM:
    return STALSTM(num_classes=classes, num_joints=joints, num_bodies=bodies, in_channels=3, **{**SMALL, **kwargs})


def randomize_(model: nn.Module, seed: int = 1) -> None:
    """Non-zero biases everywhere, so the reference check covers every parameter."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)


def trainable_names(model: nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def names_under(model: nn.Module, *prefixes: str) -> set[str]:
    return {name for name, _ in model.named_parameters() if name.startswith(prefixes)}


# ----------------------------------------------------------------------------- reference (loops)
def lstm_step(lstm: nn.LSTM, x, h, c):
    gates = lstm.weight_ih_l0 @ x + lstm.bias_ih_l0 + lstm.weight_hh_l0 @ h + lstm.bias_hh_l0
    n = h.shape[0]
    i, f = torch.sigmoid(gates[:n]), torch.sigmoid(gates[n : 2 * n])
    g, o = torch.tanh(gates[2 * n : 3 * n]), torch.sigmoid(gates[3 * n :])
    c = f * c + i * g
    return o * torch.tanh(c), c


def reference(
    model: STALSTM, batch, *, spatial: bool, temporal: bool, depth: int, pooling: str, power: float,
    scale: str = "softmax",
):  # fmt: skip
    """Eq. 2-7 frame by frame, sample by sample, with the model's weights (eval mode, no dropout)."""
    x, mask = batch["x"], batch["mask"]
    n_samples, bodies, _, joints, channels = x.shape
    k_points = bodies * joints
    logits, alphas, betas, reg_s, reg_t = [], [], [], [], []
    for n in range(n_samples):
        length = int(mask[n].sum())
        zeros = lambda lstm: (x.new_zeros(lstm.hidden_size), x.new_zeros(lstm.hidden_size))  # noqa: E731
        hs, cs = zeros(model.spatial.lstm) if spatial else (None, None)
        hp, cp = zeros(model.temporal.lstm) if temporal else (None, None)
        states = [zeros(lstm) for lstm in model.main_lstms]
        o = x.new_zeros(model.num_classes)
        alpha_rows, beta_rows = [], []
        for t in range(length):
            xt = torch.stack([x[n, m, t, v, c] for m in range(bodies) for v in range(joints) for c in range(channels)])
            if spatial:
                sa = model.spatial
                s = sa.u.weight @ torch.tanh(sa.w_x.weight @ xt + sa.w_x.bias + sa.w_h.weight @ hs) + sa.u.bias
                alpha = torch.exp(s) / torch.exp(s).sum()
                if scale == "num_joints":
                    alpha = alpha * k_points
                hs, cs = lstm_step(sa.lstm, xt, hs, cs)  # h^s_t is used at t + 1
            else:
                alpha = x.new_ones(k_points)
            alpha_rows.append(alpha)
            xprime = torch.cat([alpha[k] * xt[k * channels : (k + 1) * channels] for k in range(k_points)])
            h = xprime
            for layer in range(depth):
                states[layer] = lstm_step(model.main_lstms[layer], h, *states[layer])
                h = states[layer][0]
            head = model.classifier if depth == model.num_main_layers else model.shallow_classifier
            z = head.weight @ h + head.bias
            if temporal:
                ta = model.temporal
                beta = torch.relu(ta.w_x.weight[0] @ xt + ta.w_x.bias[0] + ta.w_h.weight[0] @ hp)
                hp, cp = lstm_step(ta.lstm, xt, hp, cp)
            else:
                beta = x.new_tensor(1.0)
            beta_rows.append(beta)
            o = o + beta * z
        logits.append(o / length if pooling == "mean" else o)
        alphas.append(torch.stack(alpha_rows))
        betas.append(torch.stack(beta_rows))
        reg_s.append(sum((1 - sum(alpha_rows[t][k] for t in range(length)) / length) ** 2 for k in range(k_points)))
        reg_t.append(sum(abs(b) ** power for b in beta_rows) / length)
    return {
        "logits": torch.stack(logits),
        "alphas": alphas,
        "betas": betas,
        "spatial_attention": model.lambda_spatial * sum(reg_s) / n_samples,
        "temporal_attention": model.lambda_temporal * sum(reg_t) / n_samples,
    }


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("bodies", [1, 2])
def test_output_shapes(bodies: int) -> None:
    model = small_model(bodies=bodies, joints=5, classes=4).eval()
    batch = make_batch([6, 4, 2], bodies=bodies, joints=5)
    out = model(batch)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (3, 4)
    assert out.attention["spatial"].shape == (3, 6, bodies * 5)
    assert out.attention["temporal"].shape == (3, 6)
    assert set(out.regularization) == {"spatial_attention", "temporal_attention", "weight_l1"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.regularization.values())
    assert out.head_logits == {}


def test_paper_architecture_sizes() -> None:
    """Default sizes are the paper's: 3 x LSTM(100) main, LSTM(100) per attention net, NTU lambdas."""
    model = STALSTM(num_classes=60, num_joints=25, num_bodies=2, in_channels=3)
    assert (model.lambda_spatial, model.lambda_temporal, model.lambda_weights) == (0.01, 0.001, 0.00005)
    assert [lstm.hidden_size for lstm in model.main_lstms] == [100, 100, 100]
    assert model.spatial.lstm.hidden_size == model.temporal.lstm.hidden_size == 100
    f, h = 50 * 3, 100

    def lstm(i):
        return 4 * h * (i + h) + 8 * h

    expected = (
        lstm(f) + (f * 100 + 100) + 100 * 100 + (100 * 50 + 50)  # spatial: LSTM, W_xs+b_s, W_hs, U_s+b_us
        + lstm(f) + (f + 1) + h  # temporal: LSTM, w_x+b, w_h
        + lstm(f) + 2 * lstm(h)  # main
        + 2 * (h * 60 + 60)  # classifier and the 1-layer classifier
    )  # fmt: skip
    assert sum(p.numel() for p in model.parameters()) == expected


def test_spatial_weights_sum_to_one_and_temporal_nonnegative() -> None:
    model = small_model(joints=5)
    randomize_(model)
    model.eval()
    batch = make_batch([7, 3, 5], joints=5, seed=3)
    out = model(batch)
    alpha, beta, mask = out.attention["spatial"], out.attention["temporal"], batch["mask"]
    sums = alpha.sum(-1)
    torch.testing.assert_close(sums[mask], torch.ones(int(mask.sum())))
    assert (alpha[mask] > 0).all()
    assert (alpha[~mask] == 0).all() and (beta[~mask] == 0).all()
    assert (beta >= 0).all()
    # Random weights put some frames below the ReLU threshold and some above.
    assert (beta[mask] == 0).any() and (beta[mask] > 0).any()


@pytest.mark.parametrize("variant", ["sta_lstm", "lstm"])
def test_padding_frames_do_not_change_the_output(variant: str) -> None:
    model = build_sta_lstm(num_classes=3, num_joints=4, num_bodies=2, in_channels=3, variant=variant, **SMALL)
    randomize_(model)
    model.eval()
    short = make_batch([5, 3, 1], seed=4)
    long = make_batch([5, 3, 1], frames=9, seed=4)
    long["x"][:, :, :5] = short["x"]
    for i, length in enumerate([5, 3, 1]):  # garbage beyond the last valid frame, NaN included
        long["x"][i, :, length:] = 7.0
        long["x"][i, :, -1] = float("nan")
    a, b = model(short), model(long)
    torch.testing.assert_close(a.logits, b.logits)
    for key in a.regularization:
        torch.testing.assert_close(a.regularization[key], b.regularization[key])
    for key in a.attention:
        torch.testing.assert_close(a.attention[key], b.attention[key][:, :5])


@pytest.mark.parametrize(
    ("variant", "pooling", "power", "scale"),
    [("sta_lstm", "sum", 1.0, "softmax"), ("sta_lstm", "mean", 2.0, "softmax"), ("sa_lstm", "sum", 1.0, "softmax"),
     ("ta_lstm", "mean", 1.0, "softmax"), ("lstm", "sum", 1.0, "softmax"), ("sta_lstm", "sum", 1.0, "num_joints")],
)  # fmt: skip
def test_forward_and_losses_match_explicit_loops(variant: str, pooling: str, power: float, scale: str) -> None:
    model = build_sta_lstm(
        num_classes=3, num_joints=2, num_bodies=2, in_channels=3, variant=variant, temporal_pooling=pooling,
        temporal_reg_power=power, lambda_spatial=0.3, lambda_temporal=0.2, lambda_weights=0.01,
        spatial_scale=scale, **SMALL,
    )  # fmt: skip
    model.double()
    randomize_(model, seed=5)
    model.eval()
    batch = make_batch([4, 2, 3], joints=2, seed=6)
    batch["x"] = batch["x"].double()
    out = model(batch)
    ref = reference(
        model,
        batch,
        spatial=model.has_spatial,
        temporal=model.has_temporal,
        depth=3,
        pooling=pooling,
        power=power,
        scale=scale,
    )
    torch.testing.assert_close(out.logits, ref["logits"])
    for n, length in enumerate([4, 2, 3]):
        if model.has_spatial:
            torch.testing.assert_close(out.attention["spatial"][n, :length], ref["alphas"][n])
        if model.has_temporal:
            torch.testing.assert_close(out.attention["temporal"][n, :length], ref["betas"][n])
    expected_keys = {"weight_l1"}
    if model.has_spatial:
        expected_keys.add("spatial_attention")
        torch.testing.assert_close(out.regularization["spatial_attention"], ref["spatial_attention"])
    if model.has_temporal:
        expected_keys.add("temporal_attention")
        torch.testing.assert_close(out.regularization["temporal_attention"], ref["temporal_attention"])
    assert set(out.regularization) == expected_keys
    # eq. 7, 4th term: every weight matrix in use, no biases, not the unused 1-layer classifier.
    matrices = ["classifier.weight"]
    for i in range(3):
        matrices += [f"main_lstms.{i}.weight_ih_l0", f"main_lstms.{i}.weight_hh_l0"]
    if model.has_spatial:
        matrices += ["spatial.lstm.weight_ih_l0", "spatial.lstm.weight_hh_l0", "spatial.w_x.weight"]
        matrices += ["spatial.w_h.weight", "spatial.u.weight"]
    if model.has_temporal:
        matrices += ["temporal.lstm.weight_ih_l0", "temporal.lstm.weight_hh_l0", "temporal.w_x.weight"]
        matrices += ["temporal.w_h.weight"]
    params = dict(model.named_parameters())
    l1 = sum(abs(float(v)) for name in matrices for v in params[name].detach().flatten())
    assert math.isclose(float(out.regularization["weight_l1"].detach()), 0.01 * l1, rel_tol=1e-9)


def test_spatial_regularizer_at_uniform_attention() -> None:
    """With softmax weights the term is minimal (not zero) at uniform attention: K * (1 - 1/K)^2."""
    model = small_model(joints=3, lambda_spatial=1.0)
    with torch.no_grad():  # constant scores -> alpha = 1/K everywhere
        model.spatial.u.weight.zero_()
        model.spatial.u.bias.zero_()
    model.eval()
    out = model(make_batch([4, 2], joints=3))
    k = 2 * 3
    torch.testing.assert_close(out.regularization["spatial_attention"], torch.tensor(k * (1 - 1 / k) ** 2))


def test_k_scaled_uniform_attention_is_the_no_attention_network() -> None:
    """spatial_scale="num_joints": uniform alpha = 1 per joint, zero spatial regularizer, and the
    same output as the phase with spatial weights fixed to ones."""
    model = small_model(joints=3, lambda_spatial=1.0, spatial_scale="num_joints")
    with torch.no_grad():
        model.spatial.u.weight.zero_()
        model.spatial.u.bias.zero_()
    model.eval()
    batch = make_batch([4, 2], joints=3, seed=14)
    out = model(batch)
    torch.testing.assert_close(out.attention["spatial"][batch["mask"]], torch.ones(6, 6))
    torch.testing.assert_close(out.regularization["spatial_attention"], torch.tensor(0.0))
    model.configure_phase({"spatial": "ones"})
    torch.testing.assert_close(model(batch).logits, out.logits)


def test_noreg_variants_keep_only_the_weight_term() -> None:
    for variant in ("sa_lstm_noreg", "ta_lstm_noreg", "lstm"):
        model = build_sta_lstm(num_classes=3, num_joints=4, num_bodies=2, in_channels=3, variant=variant, **SMALL)
        assert set(model(make_batch([3, 2])).regularization) == {"weight_l1"}
    model = small_model(lambda_weights=0.0)
    assert set(model(make_batch([3, 2])).regularization) == {"spatial_attention", "temporal_attention"}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_variant_builds_runs_and_trains_every_parameter(variant: str) -> None:
    model = build_sta_lstm(num_classes=3, num_joints=4, num_bodies=2, in_channels=3, variant=variant, **SMALL)
    flags = VARIANTS[variant]
    assert (model.spatial is not None) == flags["spatial_attention"]
    assert (model.temporal is not None) == flags["temporal_attention"]
    batch = make_batch([6, 4, 5], seed=7)
    out = model(batch)
    assert out.logits.shape == (3, 3)
    assert ("spatial" in out.attention) == flags["spatial_attention"]
    assert ("temporal" in out.attention) == flags["temporal_attention"]
    loss = nn.functional.cross_entropy(out.logits, batch["label"]) + sum(out.regularization.values())
    loss.backward()
    expected = names_under(model, "main_lstms.", "classifier.")
    if flags["spatial_attention"]:
        expected |= names_under(model, "spatial.")
    if flags["temporal_attention"]:
        expected |= names_under(model, "temporal.")
    assert trainable_names(model) == expected
    for name, p in model.named_parameters():
        if name in expected:
            assert p.grad is not None, name
            assert p.grad.abs().sum() > 0, name
        else:  # the 1-layer classifier of Algorithm 1 is not part of the full network
            assert name.startswith("shallow_classifier.") and p.grad is None


def test_variant_conflicts_and_unknown_variant_are_rejected() -> None:
    with pytest.raises(ValueError, match="conflicts"):
        build_sta_lstm(num_classes=3, num_joints=4, num_bodies=2, in_channels=3, variant="lstm", spatial_attention=True)
    with pytest.raises(ValueError, match=r"known: .*sta_lstm"):
        build_sta_lstm(num_classes=3, num_joints=4, num_bodies=2, in_channels=3, variant="stalstm")


def test_bad_batches_are_rejected() -> None:
    model = small_model()
    batch = make_batch([3, 2])
    with pytest.raises(ValueError, match="valid frame"):
        model({**batch, "mask": torch.zeros_like(batch["mask"])})
    with pytest.raises(ValueError, match="bool"):
        model({**batch, "mask": batch["mask"].float()})
    with pytest.raises(ValueError, match=r"\(M, V, C\)"):
        model({**batch, "x": batch["x"][:, :1]})
    with pytest.raises(ValueError, match="'mask'"):
        model({"x": batch["x"]})


def test_constructor_rejects_bad_settings() -> None:
    for bad in ({"temporal_pooling": "max"}, {"dropout": 1.0}, {"lambda_spatial": -1.0}, {"init": "xavier"},
                {"temporal_reg_power": 0.0}, {"spatial_scale": "k"}, {"num_main_layers": 0}):  # fmt: skip
        with pytest.raises(ValueError):
            small_model(**bad)


def test_gaussian_init_zero_biases_and_fan_in_scale() -> None:
    model = STALSTM(num_classes=60, num_joints=25, num_bodies=2, in_channels=3)
    for name, p in model.named_parameters():
        if name == "temporal.w_x.bias":  # the frame gate starts open: beta_t ~ 1
            assert (p == 1).all()
        elif "bias" in name:
            assert (p == 0).all(), name
    w = model.main_lstms[0].weight_ih_l0.detach()  # 400 x 150, std 1/sqrt(150)
    assert abs(float(w.std()) * math.sqrt(150) - 1.0) < 0.05
    assert abs(float(w.mean())) < 0.01
    fixed = small_model(init_std=0.02)
    assert (
        abs(float(torch.cat([p.detach().flatten() for n, p in fixed.named_parameters() if "weight" in n]).std()) - 0.02)
        < 0.005
    )
    pytorch = small_model(init="pytorch")
    assert any((p != 0).any() for n, p in pytorch.named_parameters() if "bias" in n)


def test_frame_gate_starts_open() -> None:
    """b = 1 starts beta_t near one (equal weights); b = 0 starts it near zero, where ReLU dies."""
    batch = make_batch([8] * 16, seed=13)
    batch["x"] = batch["x"] * 0.1  # small inputs: beta_t is dominated by the bias
    torch.manual_seed(0)
    beta = small_model().eval()(batch).attention["temporal"]
    assert beta.min() > 0.5 and abs(float(beta.mean()) - 1.0) < 0.1
    torch.manual_seed(0)
    beta0 = small_model(temporal_bias_init=0.0).eval()(batch).attention["temporal"]
    assert float(beta0.mean()) < 0.2 and (beta0 == 0).float().mean() > 0.2


# ----------------------------------------------------------------------------- Algorithm 1
def expected_trainable(model: STALSTM, phase: dict) -> set[str]:
    names = set()
    depth = phase.get("main_layers", 3)
    for i in range(depth):
        names |= names_under(model, f"main_lstms.{i}.")
    names |= names_under(model, "classifier." if depth == 3 else "shallow_classifier.")
    for key in ("spatial", "temporal"):
        if phase.get(key, "learned") == "learned":
            names |= names_under(model, f"{key}.")
    return names


def test_algorithm_1_phases_match_the_paper_steps() -> None:
    phases = algorithm_1_phases(pretrain_epochs=2, n1_epochs=3, n2_epochs=1)
    assert [p["step"] for p in phases] == list(range(2, 10))
    assert [p["epochs"] for p in phases] == [2, 3, 1, 2, 3, 1, 3, 1]
    modes = [(p["main_layers"], p["spatial"], p["temporal"]) for p in phases]
    assert modes == [
        (1, "ones", "learned"), (3, "ones", "frozen"), (3, "ones", "learned"),  # steps 2-4
        (1, "learned", "ones"), (3, "frozen", "ones"), (3, "learned", "ones"),  # steps 5-7
        (3, "frozen", "frozen"), (3, "learned", "learned"),  # steps 8-9
    ]  # fmt: skip
    assert [p["main_generation"] for p in phases] == [0, 0, 0, 1, 1, 1, 1, 1]
    assert not any(p["main_generation"] for p in algorithm_1_phases(reset_main_before_spatial=False))
    assert set(ALGORITHM_1_PHASES[0]) - PHASE_KEYS == {"step", "name", "epochs"}
    # N1 = 1000 and N2 = 500 iterations on NTU-CS (40,091 training samples) at batch 256.
    assert iterations_to_epochs(1000, num_samples=40091, batch_size=256) == ALGORITHM_1_PHASES[1]["epochs"] == 7
    assert iterations_to_epochs(500, num_samples=40091, batch_size=256) == ALGORITHM_1_PHASES[2]["epochs"] == 4
    assert iterations_to_epochs(1000, num_samples=184, batch_size=8) == 44  # SBU fold: 23 iterations/epoch
    with pytest.raises(ValueError):
        algorithm_1_phases(n1_epochs=0)


def test_each_algorithm_1_phase_trains_exactly_its_parameters() -> None:
    model = small_model()
    randomize_(model)
    batch = make_batch([5, 3, 4], seed=8)
    for phase in ALGORITHM_1_PHASES:
        model.configure_phase(phase)
        assert trainable_names(model) == expected_trainable(model, phase), phase["name"]
        model.zero_grad(set_to_none=True)
        out = model(batch)
        loss = nn.functional.cross_entropy(out.logits, batch["label"]) + sum(out.regularization.values())
        loss.backward()
        for name, p in model.named_parameters():
            if p.requires_grad:
                assert p.grad is not None and p.grad.abs().sum() > 0, (phase["name"], name)
            else:
                assert p.grad is None, (phase["name"], name)
        # Attention maps and attention regularizers appear exactly when the attention is in use.
        for key in ("spatial", "temporal"):
            used = phase[key] != "ones"
            assert (key in out.attention) == used
            assert (f"{key}_attention" in out.regularization) == used


def test_phase_forward_matches_reference() -> None:
    """The 1-layer, alpha = 1 phase (step 2) computes eq. 4 with the shallow classifier."""
    model = small_model()
    model.double()
    randomize_(model, seed=9)
    model.configure_phase(ALGORITHM_1_PHASES[0])
    model.eval()
    batch = make_batch([4, 2], seed=10)
    batch["x"] = batch["x"].double()
    ref = reference(model, batch, spatial=False, temporal=True, depth=1, pooling="sum", power=1.0)
    torch.testing.assert_close(model(batch).logits, ref["logits"])


def test_growing_keeps_layer_one_and_reset_only_touches_the_main_network() -> None:
    model = small_model()
    batch = make_batch([5, 3], seed=11)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.configure_phase(ALGORITHM_1_PHASES[0])  # step 2: one main layer
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    out = model(batch)
    (nn.functional.cross_entropy(out.logits, batch["label"]) + sum(out.regularization.values())).backward()
    opt.step()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    assert not torch.equal(trained["main_lstms.0.weight_ih_l0"], before["main_lstms.0.weight_ih_l0"])
    assert torch.equal(trained["main_lstms.1.weight_ih_l0"], before["main_lstms.1.weight_ih_l0"])
    model.configure_phase(ALGORITHM_1_PHASES[1])  # step 3: grow to three layers
    for k, v in model.state_dict().items():
        assert torch.equal(v, trained[k]), k
    model.configure_phase(ALGORITHM_1_PHASES[3])  # step 5: reset the main network
    after = model.state_dict()
    for k, v in after.items():
        changed = not torch.equal(v, trained[k])
        is_main_weight = k.startswith(("main_lstms.", "classifier.", "shallow_classifier.")) and "weight" in k
        if k.startswith(("spatial.", "temporal.")):
            assert not changed, k
        if is_main_weight:
            assert changed, k
    assert int(model.main_generation) == 1


def test_reinitialization_happens_once_even_when_phases_are_replayed() -> None:
    """Resume order of the trainer: configure, load_state_dict, configure again (mid-phase)."""
    model = small_model()
    model.configure_phase(ALGORITHM_1_PHASES[3])  # step 5 re-initializes the main network
    mid_phase = {k: v.clone() for k, v in model.state_dict().items()}
    assert int(mid_phase["main_generation"]) == 1
    model.configure_phase(ALGORITHM_1_PHASES[3])  # replayed: nothing re-initialized
    assert all(torch.equal(v, mid_phase[k]) for k, v in model.state_dict().items())
    torch.manual_seed(123)
    fresh = small_model()
    fresh.configure_phase(ALGORITHM_1_PHASES[3])
    fresh.load_state_dict(mid_phase)
    fresh.configure_phase(ALGORITHM_1_PHASES[3])
    assert all(torch.equal(v, mid_phase[k]) for k, v in fresh.state_dict().items())
    fresh.configure_phase(ALGORITHM_1_PHASES[7])  # later phases of the same round: no reset either
    assert all(torch.equal(v, mid_phase[k]) for k, v in fresh.state_dict().items())


def test_configure_phase_defaults_and_errors() -> None:
    model = small_model()
    model.configure_phase({"main_layers": 1, "spatial": "frozen", "temporal": "ones", "main": "frozen"})
    assert trainable_names(model) == set()
    model.configure_phase({"epochs": 3, "name": "whatever"})  # trainer keys only: the full model
    assert trainable_names(model) == expected_trainable(model, {})
    lstm = build_sta_lstm(num_classes=3, num_joints=4, num_bodies=2, in_channels=3, variant="lstm", **SMALL)
    for bad in ({"spatial": "learned"}, {"temporal": "frozen"}):
        with pytest.raises(ValueError, match=r"has no (spatial|temporal) attention module"):
            lstm.configure_phase(bad)
    for bad in (
        {"main_layers": 2},
        {"main_layers": True},
        {"spatial": "on"},
        {"main": "yes"},
        {"main_generation": True},
        {"main_generation": 1.0},
    ):
        with pytest.raises(ValueError):
            model.configure_phase(bad)


def test_overfits_a_small_batch() -> None:
    torch.manual_seed(0)
    classes = 6
    sizes = {"hidden_size": 24, "attention_hidden_size": 16, "spatial_fc_size": 16}
    model = STALSTM(num_classes=classes, num_joints=5, num_bodies=2, in_channels=3, dropout=0.0, **sizes)
    batch = make_batch([10, 8, 10, 6, 9, 7], joints=5, seed=12)
    batch["label"] = torch.arange(classes)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(300):
        out = model(batch)
        loss = nn.functional.cross_entropy(out.logits, batch["label"]) + sum(out.regularization.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 9 and (out.logits.argmax(1) == batch["label"]).all():
            break
    model.eval()
    with torch.no_grad():
        assert (model(batch).logits.argmax(1) == batch["label"]).all(), f"not fitted after {step + 1} steps"


#: the Algorithm 1 steps each variant keeps (docs/models/sta-lstm.md, "Algorithm 1 for the ablations")
VARIANT_STEPS = {
    "sta_lstm": [2, 3, 4, 5, 6, 7, 8, 9],
    "ta_lstm": [2, 3, 4, 8, 9],
    "ta_lstm_noreg": [2, 3, 4, 8, 9],
    "sa_lstm": [5, 6, 7, 8, 9],
    "sa_lstm_noreg": [5, 6, 7, 8, 9],
    "lstm": [8, 9],
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_algorithm_1_phases_of_each_variant_fit_its_model(variant: str) -> None:
    assert set(VARIANT_STEPS) == set(VARIANTS)
    phases = algorithm_1_phases(pretrain_epochs=2, n1_epochs=3, n2_epochs=1, variant=variant)
    assert [p["step"] for p in phases] == VARIANT_STEPS[variant]
    model = build_sta_lstm(num_classes=3, num_joints=4, num_bodies=2, in_channels=3, variant=variant, **SMALL)
    flags = VARIANTS[variant]
    for phase in phases:
        model.check_phase(phase)
        if not flags["spatial_attention"]:
            assert phase["spatial"] == "ones"
        if not flags["temporal_attention"]:
            assert phase["temporal"] == "ones"
    # the step-5 reset only separates spatial pre-training from a main network trained in steps 2-4
    assert any(p["main_generation"] for p in phases) == (variant == "sta_lstm")
    # steps 8-9 (train the main network, then fine-tune jointly) always end the schedule
    assert [(p["name"], p["epochs"]) for p in phases[-2:]] == [("train_main", 3), ("joint_finetune", 1)]


def test_full_algorithm_1_is_rejected_for_a_variant_before_any_change() -> None:
    lstm = build_sta_lstm(num_classes=3, num_joints=4, num_bodies=2, in_channels=3, variant="ta_lstm", **SMALL)
    before = {k: v.clone() for k, v in lstm.state_dict().items()}
    with pytest.raises(ValueError, match=r"phase 'pretrain_spatial' sets spatial='learned'.*no spatial attention"):
        lstm.check_phase(ALGORITHM_1_PHASES[3])
    assert all(torch.equal(v, before[k]) for k, v in lstm.state_dict().items())
    with pytest.raises(ValueError, match="unknown STA-LSTM variant"):
        algorithm_1_phases(variant="gru")


def test_trainer_checks_every_phase_before_the_first_epoch() -> None:
    from skeleton_attention.training.trainer import Trainer

    model = build_sta_lstm(num_classes=3, num_joints=4, num_bodies=2, in_channels=3, variant="sa_lstm", **SMALL)
    # the first phase (pretrain_temporal) already fails: nothing is trained, no checkpoint written
    with pytest.raises(ValueError, match=r"training.phases\[0\]: phase 'pretrain_temporal'.*no temporal attention"):
        Trainer(model, {"phases": ALGORITHM_1_PHASES, "device": "cpu", "progress": False})
    phases = algorithm_1_phases(variant="sa_lstm")
    assert len(Trainer(model, {"phases": phases, "device": "cpu", "progress": False}).phases) == 5
