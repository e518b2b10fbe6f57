"""The model families the training benchmark measures, at their paper sizes, from ``conf/base``.

Each benchmark family names a training parameters file (``conf/base/parameters_train_<file>.yml``),
the prepared data set whose block is merged over the family block (the NTU tables, where the papers'
settings live), and the few settings that turn that block into the measured variant (e.g. SAN-V2
= the SAN block with one segment). Everything else (model name, variant and keyword arguments,
streams, bodies, the sampled frames, batch size, optimizer, gradient clipping) is read from the
file and composed with :func:`skeleton_attention.experiments.config.compose`, as a training run
composes it, so the benchmark measures the model the configuration trains.

The family files hold no interpolation into other files (conf/base/parameters_compose.yml says
why), so each file is resolved on its own: with OmegaConf (the project's config loader) when it is
installed, else with the small resolver below, which handles the one form the files use (a whole
value ``${dotted.key}``). The GPU machines of ``benchmarks/device_check.sh`` have torch, numpy,
pandas, pyarrow and PyYAML but no Kedro or OmegaConf, hence the fallback.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF = REPO_ROOT / "conf" / "base"

#: benchmark name -> parameters file, data set block, settings over the file (dotted keys; applied
#: before interpolations resolve, so SAN's sampling follows num_segments) and torch.compile options
#: (docs/training.md "Distributed training": DSTA-Net fails to compile with dynamic shapes)
FAMILIES: dict[str, dict[str, Any]] = {
    "sta_lstm": {
        "file": "sta_lstm",
        "dataset": "ntu",
        "label": "STA-LSTM",
        "tiny": {"hidden_size": 16, "attention_hidden_size": 16},
    },
    "view_attention": {
        "file": "view_attention",
        "dataset": "ntu_multiview",
        "label": "view-attention LSTM",
        "tiny": {
            "hidden_size": 16,
            "attention_hidden_size": 8,
            "spatial_fc_size": 8,
            "bilstm_size": 8,
            "view_fc_size": 8,
        },
    },
    "san_v2": {
        "file": "san",
        "dataset": "ntu",
        "set": {"train_san.model.kwargs.num_segments": 1},
        "label": "SAN-V2",
        "tiny": {"num_layers": 2, "num_heads": 2, "cnn_channels": [8, 8, 8, 8], "ff_dim": 16, "ffn_dim": 16},
    },
    "ts_san": {
        "file": "san",
        "dataset": "ntu",
        "set": {"train_san.model.kwargs.num_segments": 3},
        "label": "TS-SAN",
        "tiny": {"num_layers": 2, "num_heads": 2, "cnn_channels": [8, 8, 8, 8], "ff_dim": 16, "ffn_dim": 16},
    },
    "dsta_net": {
        "file": "dsta_net",
        "dataset": "ntu",
        "compile": {"dynamic": False},
        "label": "DSTA-Net",
        "tiny": {"channels": [8, 16], "strides": [2, 1], "num_heads": 2},
    },
    "mans9": {
        "file": "mans",
        "dataset": "ntu",
        "set": {"train_mans.model.kwargs.stcm": "mans9"},
        "label": "MANs-9",
        "tiny": {"image_size": 16, "hidden_size": 8},
    },
}
#: ``tiny`` above: model settings small enough for the tests and --dry-run checks (``--tiny``),
#: same family, variant, input contract and paths; never for a reported number

_REFERENCE = re.compile(r"^\$\{([A-Za-z0-9_.]+)\}$")


def _get(document: Mapping[str, Any], dotted: str) -> Any:
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(f"{dotted!r} is not a key of the parameters file")
        node = node[part]
    return node


def _set(document: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = document
    for part in parents:
        node = node[part]
    if last not in node:
        raise KeyError(f"{dotted!r} is not a key of the parameters file")
    node[last] = value


def _resolve_plain(node: Any, document: Mapping[str, Any]) -> Any:
    """Replace every whole-value ``${a.b.c}`` by the value at ``a.b.c`` (no other form is used)."""
    if isinstance(node, Mapping):
        return {key: _resolve_plain(value, document) for key, value in node.items()}
    if isinstance(node, list):
        return [_resolve_plain(value, document) for value in node]
    if isinstance(node, str):
        if "${" not in node:
            return node
        match = _REFERENCE.match(node)
        if match is None:
            raise ValueError(f"cannot resolve {node!r} without OmegaConf")
        return _resolve_plain(_get(document, match.group(1)), document)
    return node


def load_parameters(file: str, overrides: Mapping[str, Any], *, use_omegaconf: bool | None = None) -> dict[str, Any]:
    """``conf/base/parameters_train_<file>.yml`` with ``overrides`` set and interpolations resolved."""
    import yaml

    path = CONF / f"parameters_train_{file}.yml"
    raw = yaml.safe_load(path.read_text())
    for dotted, value in overrides.items():
        _set(raw, dotted, copy.deepcopy(value))
    if use_omegaconf is None:
        try:
            import omegaconf  # noqa: F401
        except ImportError:
            use_omegaconf = False
        else:
            use_omegaconf = True
    if use_omegaconf:
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.create(raw), resolve=True)
    return _resolve_plain(raw, raw)


def resolve_family(name: str, *, tiny: bool = False, use_omegaconf: bool | None = None) -> dict[str, Any]:
    """What a benchmark worker needs to build and train family ``name`` (plain JSON types);
    ``tiny``: with the family's tiny model settings over the paper's."""
    from skeleton_attention.experiments.config import compose
    from skeleton_attention.training.sampling import sampling_from_config

    if name not in FAMILIES:
        raise ValueError(f"unknown benchmark family {name!r}; known: {', '.join(FAMILIES)}")
    family = FAMILIES[name]
    document = load_parameters(family["file"], family.get("set", {}), use_omegaconf=use_omegaconf)
    block = document[f"train_{family['file']}"]
    config = compose(block, {"dataset": family["dataset"], "protocol": "benchmark"})
    data, training, model = config["data"], config["training"], config["model"]
    kwargs = dict(model.get("kwargs") or {})
    if model.get("variant") is not None:
        kwargs["variant"] = model["variant"]
    if tiny:
        kwargs.update(copy.deepcopy(family["tiny"]))
    return {
        "family": name,
        "label": family["label"] + (" (tiny)" if tiny else ""),
        "config_file": f"conf/base/parameters_train_{family['file']}.yml",
        "model": model["name"],
        "model_kwargs": kwargs,
        "streams": list(data.get("streams") or ["joint"]),
        "num_bodies": int(data["num_bodies"]),
        # the fixed T the sampling produces (None: every frame, padded and masked per batch)
        "fixed_frames": sampling_from_config(data.get("sampling")).fixed_length,
        "batch": int(data["batch_size"]),
        "optimizer": dict(training["optimizer"]),
        "grad_clip_norm": training.get("grad_clip_norm"),
        "compile": family.get("compile", True),
        "amp_default": training.get("amp"),
        "compile_default": training.get("compile"),
    }
