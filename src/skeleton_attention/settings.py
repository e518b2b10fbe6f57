"""Kedro project settings."""

import os
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import DictConfig, ListConfig, OmegaConf

from skeleton_attention.experiments.config import compose, run_dir
from skeleton_attention.hooks import DistributedHooks, FailureSummaryHooks, ProgressHooks
from skeleton_attention.mlflow_hooks import MlflowExperimentHooks, MlflowRunHooks, MlflowTerminationHooks
from skeleton_attention.training.distributed import is_main_process

HOOKS = (
    ProgressHooks(),
    MlflowExperimentHooks(),
    MlflowRunHooks(),
    MlflowTerminationHooks(),
    FailureSummaryHooks(),
    DistributedHooks(),
)

# Under torchrun, ranks other than 0 load no plugin hooks that write: kedro-mlflow's would set up
# the tracking store and experiment on every rank at once (a fresh sqlite store then fails its
# schema migration in a race) and open a run per rank; kedro-viz's would write its run statistics
# from every rank. Rank 0 tracks; docs/training.md "Distributed training". (Distribution names as
# the entry points report them.)
DISABLE_HOOKS_FOR_PLUGINS = () if is_main_process() else ("kedro_mlflow", "kedro-viz")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value


def _compose(family: Any, run: Any) -> dict[str, Any]:
    """``${compose:${train_<family>},${run}}``: the effective training configuration (experiments/config.py)."""
    return compose(_plain(family), _plain(run))


def _run_dir(tag: Any, dataset: Any, protocol: Any, fold: Any = None, name: Any = None) -> str:
    """``${run_dir:tag,dataset,protocol,fold,name}``: a run's output sub-directory (catalog_train.yml)."""
    return run_dir(
        None if tag in (None, "null") else str(tag),
        str(dataset),
        None if protocol in (None, "null") else str(protocol),
        None if fold in (None, "null", "") else int(fold),
        None if name in (None, "null", "") else str(name),
    )


class ProjectConfigLoader(OmegaConfigLoader):
    """Kedro's loader, except that parameters are resolved once, after base + env + ``--params`` merge.

    Kedro resolves each environment's parameters on their own and merges the results, so an
    interpolation in ``conf/base`` (``${compose:${train_sta_lstm},${run}}``) never sees a key that
    ``conf/embedded`` overrides. Merging the raw files first (deep, like ``merge_strategy: soft``)
    and resolving once makes every override reach every block that refers to it. Relies on the
    private ``_resolve_from_raw_config`` of kedro 1.7 (pinned <1.8; tests/test_config.py checks it).
    """

    def _resolve_from_raw_config(self, key, base_configs, env_configs, base_path, env_path, processed_files):
        if key != "parameters" or not env_configs:
            return super()._resolve_from_raw_config(
                key, base_configs, env_configs, base_path, env_path, processed_files
            )
        merged = OmegaConf.unsafe_merge(*base_configs.values(), *env_configs.values(), self.runtime_params)
        return OmegaConf.to_container(merged, resolve=True)


CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/<env>/ files override single keys of conf/base instead of whole top-level blocks
    "merge_strategy": {"parameters": "soft", "globals": "soft"},
    "custom_resolvers": {
        # ${env:NAME,default}: lets MLFLOW_TRACKING_URI (tests, CI, servers) override conf/base/mlflow.yml
        "env": lambda name, default=None: os.environ.get(name, default),
        "compose": _compose,
        "run_dir": _run_dir,
    },
}
