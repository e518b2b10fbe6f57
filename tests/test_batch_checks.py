"""The models' batch checks: a clear error on the CPU, and no host sync or graph break elsewhere.

``require_on_device`` replaces ``bool(mask.any(...).all())``, which stalled the host once per forward
pass on a GPU and broke ``torch.compile`` graphs. Dynamo with ``fullgraph=True`` raises on any graph
break, so compiling the checks with it (the cheap ``eager`` backend) proves there is none.
"""

from __future__ import annotations

import pytest
import torch

from skeleton_attention.models.base import (
    all_true_without_sync,
    check_multiview_batch,
    check_sequence_batch,
    require_on_device,
)

DIMS = {"num_bodies": 2, "num_joints": 4, "in_channels": 3}


def sequence_batch(valid_frames: int = 5) -> dict[str, torch.Tensor]:
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[:, :valid_frames] = True
    return {"x": torch.randn(3, 2, 5, 4, 3), "mask": mask}


def test_an_empty_sample_is_a_value_error_on_the_cpu():
    batch = sequence_batch()
    batch["mask"][1] = False
    with pytest.raises(ValueError, match="a row of batch\\['mask'\\] is all False"):
        check_sequence_batch(batch, **DIMS)
    views = {
        "x": torch.randn(3, 2, 2, 5, 4, 3),
        "mask": sequence_batch()["mask"],
        "view_mask": torch.ones(3, 2, dtype=torch.bool),
    }
    views["view_mask"][2] = False
    with pytest.raises(ValueError, match="one present view"):
        check_multiview_batch(views, num_views=2, **DIMS)
    with pytest.raises(ValueError, match="has no frames"):
        check_sequence_batch({"x": torch.randn(3, 2, 0, 4, 3), "mask": torch.zeros(3, 0, dtype=torch.bool)}, **DIMS)


def test_the_checks_compile_without_a_graph_break_and_still_fail_a_bad_batch():
    def forward(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x, mask = check_sequence_batch({"x": x, "mask": mask}, **DIMS)
        return (x * mask[:, None, :, None, None]).sum()

    compiled = torch.compile(forward, backend="eager", fullgraph=True)
    good = sequence_batch(valid_frames=2)
    assert torch.allclose(compiled(good["x"], good["mask"]), forward(good["x"], good["mask"]))
    bad = sequence_batch()
    bad["mask"][0] = False
    with pytest.raises(RuntimeError, match="at least one valid frame"):
        compiled(bad["x"], bad["mask"])


def test_all_true_without_sync_answers_only_when_reading_is_free():
    assert all_true_without_sync(torch.ones(2, 3, dtype=torch.bool))
    assert not all_true_without_sync(torch.tensor([[True, False]]))

    def masked_path_taken(mask: torch.Tensor) -> torch.Tensor:
        return torch.tensor(0.0 if all_true_without_sync(mask) else 1.0)

    compiled = torch.compile(masked_path_taken, backend="eager", fullgraph=True)
    assert float(compiled(torch.ones(2, 3, dtype=torch.bool))) == 1.0  # compiled: the general path


def test_require_on_device_passes_a_true_condition_silently():
    require_on_device(torch.tensor(True), "never raised")
    with pytest.raises(ValueError, match="raised"):
        require_on_device(torch.tensor(False), "raised")
