"""The training pipeline every model family shares: split -> train -> evaluate -> report.

A model pipeline is one call to :func:`training_pipeline`: it wires the shared nodes below under a
namespace (e.g. ``train_sta_lstm``) with the family's composed configuration
(``params:train_<family>_config``, see :mod:`skeleton_attention.experiments.config`) and the
prepared table of the chosen data set (``training_samples``). Every output is named
``<namespace>.<artifact>``; ``conf/base/catalog_train.yml`` maps those names (by dataset factory
patterns ``train_{family}.<artifact>``) into the run's directory under ``data/`` and to MLflow, so a
new model pipeline needs no catalog entries of its own.

The nodes are thin: the work happens in :mod:`skeleton_attention.training` (data, trainer,
metrics, plots). They read one parameters dict (see docs/training.md for every key)::

    run:       {dataset, protocol, fold, name, tag}   (the run selectors)
    model:     {name, variant, kwargs}
    data:      {dataset, protocol, fold (from run), streams, num_bodies, val_fraction, val_seed,
                sampling, augmentation, batch_size, eval_batch_size, num_workers, shuffle, ...}
    training:  TrainerConfig keys (optimizer, schedule, phases, epochs, early_stopping, device, amp,
               checkpoint_dir, resume, ...); ``phases`` may be a preset
               {preset: "skeleton_attention.models.<module>:<function>", kwargs: {...}}
    evaluation: {attention_samples}
    mlflow:    {log_epochs}
    seed:      int (model init, sampler, trainer)
"""

from __future__ import annotations

import functools
import importlib
import inspect
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from kedro.io import AbstractDataset, DatasetError
from kedro.pipeline import Pipeline, node, pipeline
from matplotlib.figure import Figure

from skeleton_attention.experiments.config import config_run_dir, fingerprint, run_dir
from skeleton_attention.models.base import attention_hints
from skeleton_attention.models.registry import build_model, model_input_spec
from skeleton_attention.skeletons.layouts import LAYOUTS
from skeleton_attention.training.callbacks import Callback, MlflowCallback
from skeleton_attention.training.checkpoints import (
    load_model_artifact,
    model_artifact,
    save_model_artifact,
    seed_everything,
)
from skeleton_attention.training.data import (
    DataSettings,
    SplitRows,
    TrainingData,
    as_sample_table,
    build_loaders,
    build_training_data,
    protocol_splits,
)
from skeleton_attention.training.labels import LabelMap
from skeleton_attention.training.metrics import classification_summary, scores_frame
from skeleton_attention.training.plots import plot_attention, plot_confusion_matrix, plot_training_curves
from skeleton_attention.training.skeleton_plots import plot_skeleton_attention
from skeleton_attention.training.trainer import Trainer, TrainerConfig

logger = logging.getLogger(__name__)

PARAM_SECTIONS = ("model", "data", "training", "evaluation", "mlflow", "seed", "run")


# --- parameters -------------------------------------------------------------------------------------


def check_params(params: Mapping[str, Any]) -> None:
    """Fail early and clearly on a malformed parameters block."""
    unknown = set(params) - set(PARAM_SECTIONS)
    if unknown:
        raise ValueError(f"unknown parameter sections {sorted(unknown)}; known: {list(PARAM_SECTIONS)}")
    for section in ("model", "data", "training"):
        if not isinstance(params.get(section), Mapping):
            raise ValueError(f"the parameters need a {section!r} mapping")
    if "name" not in params["model"]:
        raise ValueError("model.name is required (a name registered in skeleton_attention.models)")


def resolve_phases(phases: Any, model: Mapping[str, Any] | None = None) -> list[dict[str, Any]] | None:
    """A phase list as given, or one built by a preset function of a model module.

    ``{"preset": "skeleton_attention.models.sta_lstm:algorithm_1_phases", "kwargs": {...}}`` calls
    that function; only functions inside ``skeleton_attention.models`` may be named. ``model`` is
    the parameters' ``model`` block: a preset that takes ``variant`` (or ``num_main_layers``) and is
    not given it in ``kwargs`` gets the model's, so ``--params=<run>.model.variant=ta_lstm`` builds
    the phases of that variant; a preset ``variant`` that contradicts the model's is an error.
    """
    if phases is None or isinstance(phases, list | tuple):
        return None if phases is None else [dict(p) for p in phases]
    if not isinstance(phases, Mapping) or "preset" not in phases:
        raise ValueError("training.phases must be a list of phase dicts or {preset: module:function, kwargs}")
    module_name, _, function_name = str(phases["preset"]).partition(":")
    if not module_name.startswith("skeleton_attention.models.") or not function_name:
        raise ValueError(f"phase preset {phases['preset']!r} must be 'skeleton_attention.models.<module>:<function>'")
    function = getattr(importlib.import_module(module_name), function_name)
    extra = set(phases) - {"preset", "kwargs"}
    if extra:
        raise ValueError(f"unknown phase preset keys {sorted(extra)}")
    kwargs = dict(phases.get("kwargs") or {})
    accepted = inspect.signature(function).parameters
    model = model or {}
    model_kwargs = model.get("kwargs") or {}
    from_model = {"variant": model.get("variant"), "num_main_layers": model_kwargs.get("num_main_layers")}
    for key, value in from_model.items():
        if value is None or key not in accepted:
            continue
        if key not in kwargs:
            kwargs[key] = value
        elif kwargs[key] != value:
            raise ValueError(
                f"training.phases.kwargs.{key}={kwargs[key]!r} contradicts the model's {key}={value!r}; "
                "leave it out of the preset kwargs (it is taken from the model)"
            )
    return [dict(p) for p in function(**kwargs)]


def run_directory(params: Mapping[str, Any]) -> str:
    """The run's sub-directory (``<tag>/<dataset>/<protocol>[/<name>][/fold<k>]``), as in the catalog."""
    if "run" in params:
        return config_run_dir(params)
    data = params["data"]  # a block built by hand (tests, notebooks): the data settings name the run
    return run_dir("base", str(data.get("dataset") or "data"), str(data["protocol"]), data.get("fold"))


def trainer_config(params: Mapping[str, Any], run_key: str) -> TrainerConfig:
    """The TrainerConfig of a parameters block; the checkpoint directory defaults to
    ``data/06_models/<run_key>/<run dir>/checkpoints``, beside the run's model."""
    training = dict(params["training"])
    training["phases"] = resolve_phases(training.get("phases"), params.get("model"))
    training.setdefault("seed", int(params.get("seed", 0)))
    if not training.get("checkpoint_dir"):
        training["checkpoint_dir"] = str(Path("data") / "06_models" / run_key / run_directory(params) / "checkpoints")
    return TrainerConfig.from_config(training)


#: data settings that do not change what is trained (speed and I/O only): left out of the resume check
_IO_ONLY = (
    "dataset",
    "eval_batch_size",
    "num_workers",
    "cache_row_groups",
    "pin_memory",
    "persistent_workers",
    "prefetch_factor",
)


def trajectory_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """The model and data settings a resumed run must share with its checkpoint."""
    data = {k: v for k, v in dict(params["data"]).items() if k not in _IO_ONLY}
    return {"model": dict(params["model"]), "data": data, "seed": int(params.get("seed", 0))}


def model_build_kwargs(params: Mapping[str, Any]) -> dict[str, Any]:
    model = params["model"]
    kwargs = dict(model.get("kwargs") or {})
    if model.get("variant") is not None:
        kwargs["variant"] = model["variant"]
    return kwargs


def rebuild_model(artifact: Mapping[str, Any]) -> torch.nn.Module:
    """The trained model of an artifact: build, replay its selection phase, load the weights.

    ``model_kwargs`` holds the data description as a plain dict under ``data`` (or, in artifacts
    written before descriptions, the four integers); ``build_model`` accepts both.
    """
    model = build_model(artifact["model_name"], **artifact["model_kwargs"])
    configure = getattr(model, "configure_phase", None)
    if artifact.get("phase") is not None and callable(configure):
        configure(artifact["phase"])
    model.load_state_dict(artifact["state_dict"])
    model.eval()
    return model


def _data(samples: Any, splits: pd.DataFrame, params: Mapping[str, Any]) -> tuple[TrainingData, DataSettings]:
    settings = DataSettings.from_config(params["data"])
    table = as_sample_table(samples)
    rows = SplitRows.from_frame(splits, table.metadata(), settings.protocol, settings.fold)
    # the model's declared input chooses the dataset form (single / multi-view) and is checked here
    spec = model_input_spec(params["model"]["name"])
    data = build_training_data(table, settings, seed=int(params.get("seed", 0)), splits=rows, input_spec=spec)
    return data, settings


# --- nodes --------------------------------------------------------------------------------------------


def split_samples(samples: Any, params: Mapping[str, Any]) -> pd.DataFrame:
    """The protocol's train / val / test rows (val carved from train), persisted for auditing."""
    check_params(params)
    settings = DataSettings.from_config(params["data"])
    table = as_sample_table(samples)
    meta = table.metadata()
    splits = protocol_splits(
        meta, settings.protocol, settings.val_fraction, settings.val_seed, settings.val_group, settings.fold
    )
    logger.info("%s: %s", settings.protocol, splits.counts())
    return splits.as_frame(meta)


#: fewer optimizer steps per epoch than this is almost always a batch size meant for a larger set
MIN_STEPS_PER_EPOCH = 5


def train_model(
    samples: Any,
    splits: pd.DataFrame,
    params: Mapping[str, Any],
    *,
    run_key: str,
    callbacks: tuple[Callback, ...] = (),
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train on the train rows, select on the validation rows; returns the model artifact of the
    best validation epoch and the per-epoch history."""
    check_params(params)
    data, settings = _data(samples, splits, params)
    loaders = build_loaders(data, settings, seed=int(params.get("seed", 0)))
    steps = len(loaders["train"])
    if steps < MIN_STEPS_PER_EPOCH:
        logger.warning(
            "%s: only %d optimizer step(s) per epoch (%d training samples, batch %d); a small data set "
            "needs a smaller data.batch_size (e.g. `--env=embedded` for the embedded data)",
            run_key,
            steps,
            len(data.splits.train),
            settings.batch_size,
        )
    config = trainer_config(params, run_key)
    assert data.description is not None
    # the description travels in the artifact as a plain dict, so rebuild_model needs no table
    kwargs = {"data": data.description.to_dict(), **model_build_kwargs(params)}
    seed_everything(int(params.get("seed", 0)))
    model = build_model(params["model"]["name"], **kwargs)
    all_callbacks = list(callbacks)
    if (params.get("mlflow") or {}).get("log_epochs", True):
        all_callbacks.append(MlflowCallback())
    trainer = Trainer(model, config, callbacks=all_callbacks, fingerprint_extra=trajectory_settings(params))
    n_params = sum(p.numel() for p in model.parameters())
    logger.info(
        "training %s (%d parameters) on %s for %d epochs in %d phase(s)",
        params["model"]["name"],
        n_params,
        trainer.device,
        config.total_epochs,
        len(trainer.phases),
    )
    result = trainer.fit(loaders["train"], loaders["val"])
    phase = trainer.phases[result.best_phase_index]
    label_map = data.label_map or LabelMap.identity(data.num_classes, data.class_names)
    info = {
        **label_map.as_info(),  # class_names, and label_ids: the table label of each model output
        "streams": list(settings.streams),
        "protocol": settings.protocol,
        "layout": data.layout,
        "dataset": data.dataset_name,
        "best_epoch": result.best_epoch,
        "best_metric": result.best_metric,
        "monitor": result.monitor,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "num_parameters": n_params,
        "num_train": len(data.train),
        "num_val": len(data.val) if data.val else 0,
        "num_test": len(data.test),
        # samples cut under data.bodies_policy / views_policy: keep_first (0 under the default, error)
        **{
            f"truncated_{what}": sum(getattr(ds, f"truncated_{what}") for ds in (data.train, data.val, data.test) if ds)
            for what in ("bodies", "views")
        },
    }
    artifact = model_artifact(
        model_name=params["model"]["name"], model_kwargs=kwargs, state_dict=result.best_state, phase=phase, info=info
    )
    return artifact, pd.DataFrame(result.history)


def run_identity(params: Mapping[str, Any], artifact: Mapping[str, Any]) -> dict[str, Any]:
    """Model, variant, streams, seed and size of a run, and ``replicate_fingerprint``: the digest of
    its configuration without the seed and the run name, equal for runs that differ only by seed
    (the report shows those as one row, mean +- std over seeds)."""
    run = dict(params.get("run") or {})
    run.pop("name", None)
    replicate = {k: v for k, v in params.items() if k not in ("seed", "run")}
    return {
        "model": str(params["model"]["name"]),
        "variant": str(params["model"].get("variant") or params["model"]["name"]),
        "streams": list(artifact["info"].get("streams") or []),
        "seed": int(params.get("seed", 0)),
        "num_parameters": artifact["info"].get("num_parameters"),
        "replicate_fingerprint": fingerprint({**replicate, "run": run}),
    }


def evaluate_model(
    samples: Any,
    splits: pd.DataFrame,
    artifact: Mapping[str, Any],
    params: Mapping[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Test-set metrics, per-sample class scores of the test and the validation sets (the same
    format; validation scores let score fusion weights be chosen without the test set), and the
    attention maps of a few test samples."""
    check_params(params)
    data, settings = _data(samples, splits, params)
    label_map = LabelMap.from_info(artifact["info"])
    if data.label_map is not None and data.label_map.original != label_map.original:
        raise ValueError(
            f"the model's classes are labels {list(label_map.original)[:20]} but protocol "
            f"{settings.protocol!r} now uses labels {list(data.label_map.original)[:20]}; retrain"
        )
    loaders = build_loaders(data, settings, seed=int(params.get("seed", 0)))
    model = rebuild_model(artifact)
    training = params["training"]
    evaluator = Trainer(
        model, TrainerConfig(device=training.get("device", "auto"), amp=training.get("amp"), progress=False)
    )
    keep = int((params.get("evaluation") or {}).get("attention_samples", 4))
    # how the model wants its maps drawn; "views" maps are small and kept for every test sample
    kinds = attention_hints(getattr(model, "attention_kinds", None))
    collect = [name for name, hint in kinds.items() if hint["kind"] == "views"]
    preds = evaluator.predict(loaders["test"], keep_attention=keep, collect_attention=collect)
    names = list(artifact["info"]["class_names"])
    summary = classification_summary(preds.logits, preds.labels, names)
    summary.update(
        {
            "loss": preds.loss,
            "ce": preds.ce,
            "protocol": settings.protocol,
            "label_ids": list(label_map.original),
            "best_epoch": artifact["info"]["best_epoch"],
            "best_" + artifact["info"]["monitor"]: artifact["info"]["best_metric"],
            # which configuration produced these numbers: cross-validation resumes only matching folds
            "config_fingerprint": fingerprint(params),
            # what the comparison report (reporting/results.py) shows beside the numbers
            **run_identity(params, artifact),
        }
    )
    sample_ids = [data.test.sample_ids[i] for i in preds.indices]
    scores = scores_frame(sample_ids, preds.labels, preds.logits, label_map.original)
    if loaders["val"] is not None and data.val is not None:
        val_preds = evaluator.predict(loaders["val"])
        val_ids = [data.val.sample_ids[i] for i in val_preds.indices]
        val_scores = scores_frame(val_ids, val_preds.labels, val_preds.logits, label_map.original)
    else:  # no validation set: an empty frame with the same columns
        val_scores = scores.iloc[0:0].copy()
    attention = []
    for i, maps in enumerate(preds.attention):
        label, pred = int(preds.labels[i]), int(preds.logits[i].argmax())
        attention.append(
            {
                "title": f"{sample_ids[i]}: true {names[label]}, predicted {names[pred]}",
                "length": int(preds.lengths[i]),
                "attention": maps,
                **({"kinds": kinds} if kinds else {}),
                # the joints at the frames the model saw, to draw the attention on the skeleton
                **_positions(data.test, int(preds.indices[i])),
            }
        )
    if preds.attention_all:
        # every test sample's small maps (e.g. view weights): their distribution, and the mean per slot
        attention.append(
            {"title": f"all {len(preds.labels)} test samples", "distribution": preds.attention_all, "kinds": kinds}
        )
        summary["attention_mean"] = {name: _nanmean_columns(maps) for name, maps in preds.attention_all.items()}
    logger.info("test top-1 %.4f top-5 %.4f on %d samples", summary["top1"], summary["top5"], summary["num_samples"])
    return summary, scores, val_scores, attention


def _positions(dataset: Any, index: int) -> dict[str, np.ndarray]:
    """``{"positions": joints}`` of test sample ``index``, or nothing when the table has no joint stream."""
    try:
        return {"positions": dataset.positions(index)}
    except KeyError as error:
        logger.info("attention on the skeleton is not drawn: %s", error)
        return {}


def _nanmean_columns(maps: Any) -> list[float | None]:
    """Mean of each slot of (N, slots) maps over the samples where it is defined (None: never)."""
    array = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    counts = np.isfinite(array).sum(axis=0)
    sums = np.where(np.isfinite(array), array, 0.0).sum(axis=0)
    return [float(s / c) if c else None for s, c in zip(sums, counts, strict=True)]


def report(
    history: pd.DataFrame,
    test_metrics: Mapping[str, Any],
    attention: list[dict[str, Any]],
    artifact: Mapping[str, Any],
    val_scores: pd.DataFrame | None = None,
) -> tuple[Figure, Figure, Figure, Figure, dict[str, float], dict[str, dict[str, float]]]:
    """Figures (curves, confusion, attention maps, attention on the skeleton), the flat metrics file
    for DVC and the test metrics for MLflow. With ``val_scores`` the flat metrics also carry the
    selected model's validation accuracy (``val_top1``)."""
    info = artifact["info"]
    records = history.to_dict("records")
    curves = plot_training_curves(records, monitor=info["monitor"], best_epoch=int(info["best_epoch"]))
    confusion = plot_confusion_matrix(test_metrics["confusion_matrix"], info["class_names"])
    layout = LAYOUTS.get(str(info.get("layout")))
    attention_fig = plot_attention(attention, joint_names=layout.joint_names if layout else None)
    skeleton_fig = plot_skeleton_attention([a for a in attention if "distribution" not in a], layout)
    flat = {
        "test_top1": float(test_metrics["top1"]),
        "test_top5": float(test_metrics["top5"]),
        "test_mean_class_acc": float(test_metrics["mean_class_acc"]),
        "test_loss": float(test_metrics["loss"]),
        "num_test_samples": int(test_metrics["num_samples"]),
        "best_epoch": int(info["best_epoch"]),
        f"best_{info['monitor']}": float(info["best_metric"]),
        "epochs_run": int(info["epochs_run"]),
    }
    if val_scores is not None and len(val_scores):
        flat["val_top1"] = float((val_scores["label"] == val_scores["pred"]).mean())
        flat["num_val_samples"] = len(val_scores)
    step = int(info["best_epoch"])
    mlflow_metrics = {
        key: {"value": float(test_metrics[key]), "step": step} for key in ("top1", "top5", "mean_class_acc", "loss")
    }
    # mean attention per slot (e.g. each camera's mean view weight over the test samples)
    for name, means in (test_metrics.get("attention_mean") or {}).items():
        for slot, value in enumerate(means, start=1):
            if value is not None:
                flat[f"test_mean_{name}_attention_{slot}"] = float(value)
                mlflow_metrics[f"mean_{name}_attention_{slot}"] = {"value": float(value), "step": step}
    return curves, confusion, attention_fig, skeleton_fig, flat, mlflow_metrics


def prediction_table(test_scores: pd.DataFrame, artifact: Mapping[str, Any]) -> pd.DataFrame:
    """``sample_id, actual, predicted`` (class names) per test sample: the CSV that ``dvc plots``
    draws as a confusion matrix (its ``confusion`` template reads one row per sample, not a matrix)."""
    label_map = LabelMap.from_info(artifact["info"])
    names = dict(zip(label_map.original, label_map.names, strict=True))
    return pd.DataFrame(
        {
            "sample_id": test_scores["sample_id"].astype(str),
            "actual": [names[int(i)] for i in test_scores["label"]],
            "predicted": [names[int(i)] for i in test_scores["pred"]],
        }
    )


def export_model(artifact: Mapping[str, Any]) -> torch.nn.Module:
    """The selected model as an ``nn.Module`` on the CPU, for MLflow's pytorch flavor."""
    return rebuild_model(artifact).cpu()


# --- the pipeline --------------------------------------------------------------------------------------


def _bound(function: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
    bound = functools.partial(function, **kwargs)
    functools.update_wrapper(bound, function)
    return bound


def training_pipeline(
    *,
    run_key: str,
    samples: str,
    params: str,
    nodes: Mapping[str, Callable[..., Any]] | None = None,
) -> Pipeline:
    """The shared training pipeline under namespace ``run_key`` (must start with ``train_``).

    ``samples``: the catalog entry of the prepared table (``training_samples``: the run's data set);
    ``params``: the parameters key of the composed configuration (e.g. ``train_sta_lstm_config``).
    ``nodes`` may replace any of the node functions
    ``split``, ``train``, ``evaluate``, ``report``, ``export`` (same signatures).
    """
    if not run_key.startswith("train_"):
        raise ValueError(f"training pipeline namespaces start with 'train_' (catalog patterns), got {run_key!r}")
    functions = {
        "split": split_samples,
        "train": train_model,
        "evaluate": evaluate_model,
        "report": report,
        "export": export_model,
        **dict(nodes or {}),
    }
    p = f"params:{params}"
    base = Pipeline(
        [
            node(functions["split"], inputs=["samples", p], outputs="splits", name="split_samples"),
            node(
                _bound(functions["train"], run_key=run_key),
                inputs=["samples", "splits", p],
                outputs=["trained_model", "history"],
                name="train_model",
                tags=["training"],
            ),
            node(
                functions["evaluate"],
                inputs=["samples", "splits", "trained_model", p],
                outputs=["test_metrics", "test_scores", "val_scores", "attention_maps"],
                name="evaluate_model",
            ),
            node(
                functions["report"],
                inputs=["history", "test_metrics", "attention_maps", "trained_model", "val_scores"],
                outputs=[
                    "curves_plot",
                    "confusion_plot",
                    "attention_plot",
                    "skeleton_attention_plot",
                    "dvc_metrics",
                    "mlflow_test_metrics",
                ],
                name="report",
            ),
            node(functions["export"], inputs="trained_model", outputs="mlflow_model", name="export_model"),
            node(prediction_table, ["test_scores", "trained_model"], "predictions", name="prediction_table"),
        ]
    )
    return pipeline(base, namespace=run_key, inputs={"samples": samples}, parameters={p: p})


# --- a Kedro dataset for the model artifact ---------------------------------------------------------


class TorchModelDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A model artifact (:func:`~skeleton_attention.training.checkpoints.model_artifact`) as one
    ``torch.save`` file, written atomically and read with ``weights_only=True``."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None) -> None:
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        if not self._filepath.is_file():
            raise DatasetError(f"no trained model at {self._filepath}; run the training pipeline first")
        return load_model_artifact(self._filepath)

    def save(self, data: dict[str, Any]) -> None:
        save_model_artifact(data, self._filepath)

    def _exists(self) -> bool:
        return self._filepath.is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": os.fspath(self._filepath)}
