"""Kedro project settings."""

import os

from kedro.config import OmegaConfigLoader

from skeleton_attention.hooks import FailureSummaryHooks, ProgressHooks
from skeleton_attention.mlflow_hooks import MlflowRunHooks

HOOKS = (ProgressHooks(), MlflowRunHooks(), FailureSummaryHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # conf/<env>/parameters_*.yml override single keys of conf/base instead of whole top-level blocks
    "merge_strategy": {"parameters": "soft"},
    # ${env:NAME,default}: lets MLFLOW_TRACKING_URI (tests, CI, servers) override conf/base/mlflow.yml
    "custom_resolvers": {"env": lambda name, default=None: os.environ.get(name, default)},
}
