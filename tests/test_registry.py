"""Model registry: discovery of families, building by name, clear errors."""

from __future__ import annotations

import pytest
import torch

from skeleton_attention.models import registry
from skeleton_attention.models.base import DataDescription, ModelOutput, SkeletonModel
from skeleton_attention.models.sta_lstm import STALSTM, build_sta_lstm

DIMS = {"num_classes": 5, "num_joints": 4, "num_bodies": 2, "in_channels": 3}


@pytest.fixture
def scratch_registry(monkeypatch: pytest.MonkeyPatch) -> dict:
    """A copy of the registry, so that test registrations do not leak into other tests."""
    registry.available_models()  # discover the real families first
    copy = dict(registry._REGISTRY)
    monkeypatch.setattr(registry, "_REGISTRY", copy)
    return copy


def test_sta_lstm_is_discovered_and_built_with_its_variants() -> None:
    assert "sta_lstm" in registry.available_models()
    model = registry.build_model("sta_lstm", **DIMS, variant="ta_lstm", hidden_size=8)
    assert isinstance(model, STALSTM) and isinstance(model, SkeletonModel)
    assert model.spatial is None and model.temporal is not None
    assert model.main_lstms[0].hidden_size == 8
    x = torch.randn(2, 2, 6, 4, 3)
    out = model({"x": x, "mask": torch.ones(2, 6, dtype=torch.bool)})
    assert isinstance(out, ModelOutput) and out.logits.shape == (2, 5)


def test_unknown_name_lists_the_known_models() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'sta-lstm'; known models: .*sta_lstm"):
        registry.build_model("sta-lstm", **DIMS)


def test_unknown_variant_lists_the_variants() -> None:
    with pytest.raises(ValueError, match=r"known: \['lstm', 'sa_lstm', .*'ta_lstm_noreg'\]"):
        registry.build_model("sta_lstm", **DIMS, variant="sta")


def test_register_build_and_reject_duplicates(scratch_registry: dict) -> None:
    class Tiny(SkeletonModel):
        def __init__(self, data: DataDescription) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(data.num_bodies * data.num_joints * data.in_channels, data.num_classes)

        def forward(self, batch):
            return ModelOutput(logits=self.fc(batch["x"].mean(2).flatten(1)))

    assert registry.register_model("tiny_test")(Tiny) is Tiny
    assert registry.register_model("tiny_test")(Tiny) is Tiny  # same builder again: harmless
    assert "tiny_test" in registry.available_models()
    assert isinstance(registry.build_model("tiny_test", **DIMS), Tiny)
    with pytest.raises(ValueError, match="already registered"):
        registry.register_model("sta_lstm")(Tiny)
    with pytest.raises(ValueError, match="non-empty"):
        registry.register_model("")


def test_builder_must_return_a_skeleton_model(scratch_registry: dict) -> None:
    registry.register_model("not_a_model")(lambda **_: torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="not a SkeletonModel"):
        registry.build_model("not_a_model", **DIMS)


def test_registered_builder_is_the_sta_lstm_factory() -> None:
    registry.available_models()
    assert registry._REGISTRY["sta_lstm"] is build_sta_lstm


def test_base_model_defaults() -> None:
    base = SkeletonModel()
    base.configure_phase({"anything": 1})  # no-op hook
    out = ModelOutput(logits=torch.zeros(1, 2))
    assert out.head_logits == {} and out.regularization == {} and out.attention == {}
    assert ModelOutput(logits=torch.zeros(1, 2)).attention is not out.attention  # no shared default
