"""Composition of training configurations (experiments/config.py) and the project's config loader."""

from __future__ import annotations

import pytest

from skeleton_attention.experiments.config import ConfigError, compose, deep_merge, fingerprint, run_dir
from tests.kedro_helpers import load_config

FAMILY = {
    "seed": 0,
    "model": {"name": "m", "kwargs": {"a": 1, "b": 2}},
    "data": {"batch_size": 256, "streams": ["joint"], "sampling": {"mode": "full"}},
    "training": {"monitor": "val_acc", "phases": {"preset": "p", "kwargs": {"n": 1}}},
    "datasets": {"sbu": {"model": {"kwargs": {"a": 10}}, "data": {"batch_size": 8}}},
}
RUN = {"dataset": "sbu", "protocol": "sbu_fold", "fold": None, "name": None, "tag": "base"}


def test_compose_merges_the_data_set_block_deeply_and_fills_the_run():
    config = compose(FAMILY, RUN)
    assert config["model"] == {"name": "m", "kwargs": {"a": 10, "b": 2}}  # b kept, a overridden
    assert config["data"]["batch_size"] == 8
    assert config["data"]["sampling"] == {"mode": "full"}
    assert (config["data"]["dataset"], config["data"]["protocol"], config["data"]["fold"]) == ("sbu", "sbu_fold", None)
    assert config["run"] == RUN
    assert "datasets" not in config
    # a data set without a block trains with the family block as it is
    plain = compose(FAMILY, {**RUN, "dataset": "ntu", "protocol": "ntu60_xsub"})
    assert plain["data"]["batch_size"] == 256 and plain["model"]["kwargs"]["a"] == 1
    assert FAMILY["data"]["batch_size"] == 256  # inputs untouched


@pytest.mark.parametrize(
    ("family", "run", "message"),
    [
        ({**FAMILY, "datasets": {"sbu": {"data": {"batchsize": 8}}}}, RUN, "unknown key 'data.batchsize'"),
        ({**FAMILY, "datasets": {"sbu": {"trainig": {}}}}, RUN, "unknown key 'trainig'"),
        ({**FAMILY, "data": {**FAMILY["data"], "table": "x"}}, RUN, "data.table does not exist"),
        ({**FAMILY, "data": {**FAMILY["data"], "protocol": "x"}}, RUN, "data.protocol is set by the run"),
        ({**FAMILY, "extra": {}}, RUN, "unknown parameter sections"),
        (FAMILY, {**RUN, "protocol": None}, "no default protocol"),
        (FAMILY, {**RUN, "dataset": None}, "run.dataset is required"),
        (FAMILY, {**RUN, "fold": 0}, "fold number >= 1"),
        (FAMILY, {**RUN, "seed": 1}, "unknown run selectors"),
    ],
)
def test_compose_refuses_what_it_cannot_honour(family, run, message):
    with pytest.raises(ConfigError, match=message):
        compose(family, run)


def test_deep_merge_replaces_lists_and_leaves_nested_option_maps_open():
    merged = deep_merge(
        {"data": {"streams": ["a", "b"], "sampling": {"mode": "x"}}},
        {"data": {"streams": ["c"], "sampling": {"length": 3}}},
    )
    assert merged == {"data": {"streams": ["c"], "sampling": {"mode": "x", "length": 3}}}


def test_run_dir_names_every_selector_and_refuses_paths():
    assert run_dir("embedded", "ntu", "ntu60_xsub") == "embedded/ntu/ntu60_xsub"
    assert run_dir("base", "sbu", "sbu_fold", 2, "ta_lstm") == "base/sbu/sbu_fold/ta_lstm/fold2"
    with pytest.raises(ConfigError, match="plain name"):
        run_dir("base", "../x", "p")


def test_fingerprint_is_stable_and_sensitive():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})


def test_run_selectors_choose_the_table_protocol_outputs_and_parameters_together():
    catalog, params = load_config({"run": {"dataset": "sbu", "fold": 3}})
    config = params["train_sta_lstm_config"]
    assert config["data"]["protocol"] == "sbu_fold" and config["data"]["fold"] == 3
    assert config["data"]["batch_size"] == 8  # the paper's SBU batch
    assert config["model"]["kwargs"]["lambda_weights"] == pytest.approx(0.0005)
    assert catalog["training_samples"]["path"] == "data/04_feature/sbu"
    model = catalog["train_{family}.trained_model"]["filepath"]
    assert model == "data/06_models/train_{family}/base/sbu/sbu_fold/fold3/model.pt"
    metrics = catalog["train_{family}.dvc_metrics"]["filepath"]
    assert metrics == "data/08_reporting/train_{family}/base/sbu/sbu_fold/fold3/metrics.json"


def test_embedded_environment_and_command_line_reach_the_composed_configuration():
    catalog, params = load_config(
        {"train_sta_lstm": {"model": {"variant": "ta_lstm"}}, "metrics_dir": "metrics"}, env="embedded"
    )
    config = params["train_sta_lstm_config"]
    assert config["model"]["variant"] == "ta_lstm"
    assert config["data"]["batch_size"] == 32 and config["run"]["tag"] == "embedded"
    assert catalog["train_{family}.dvc_metrics"]["filepath"] == (
        "metrics/train_{family}/embedded/ntu/ntu60_xsub/metrics.json"
    )


def test_every_data_set_block_of_every_family_composes():
    _, params = load_config()
    defaults = load_config()[1]["run"]
    assert defaults["dataset"] == "ntu"
    families = [key for key in params if key.startswith("train_") and not key.endswith("_config")]
    assert families
    for family in families:
        for dataset in params[family].get("datasets", {}):
            _, composed = load_config({"run": {"dataset": dataset}})
            assert composed[f"{family}_config"]["data"]["dataset"] == dataset
