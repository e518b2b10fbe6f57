"""Run a project pipeline with the project's own conf/, writing every relative path under a tmp dir."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.pipeline import Pipeline
from kedro.runner import SequentialRunner

REPO_ROOT = Path(__file__).resolve().parents[1]
#: what ``mlflow.set_tracking_uri`` / ``set_experiment`` and a joined run leave in ``os.environ``
MLFLOW_ENV_LEFTOVERS = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")


def config_loader(env: str = "local", runtime_params: dict | None = None) -> OmegaConfigLoader:
    """The project's config loader (settings.py) over the repository's conf/."""
    from skeleton_attention.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    return CONFIG_LOADER_CLASS(
        conf_source=str(REPO_ROOT / "conf"),
        env=env,
        runtime_params=runtime_params or {},
        **{k: v for k, v in CONFIG_LOADER_ARGS.items() if k != "default_run_env"},
    )


def load_config(runtime_params: dict | None = None, env: str = "local") -> tuple[dict, dict]:
    loader = config_loader(env, runtime_params)
    return dict(loader["catalog"]), dict(loader["parameters"])


def run_pipeline(name: str | list[str], workdir: Path, runtime_params: dict | None = None, params: dict | None = None):
    """Run pipeline(s) ``name`` inside ``workdir`` (relative catalog paths resolve there)."""
    names = [name] if isinstance(name, str) else list(name)
    catalog_conf, parameters = load_config(runtime_params)
    for key, value in (params or {}).items():
        parameters[key] = {**parameters.get(key, {}), **value}
    old = Path.cwd()
    os.chdir(workdir)
    try:
        catalog = DataCatalog.from_config(catalog_conf)
        for key, value in parameters.items():
            catalog[f"params:{key}"] = value
            if isinstance(value, dict):
                for sub, subvalue in value.items():
                    catalog[f"params:{key}.{sub}"] = subvalue
        pipeline = sum(
            (importlib.import_module(f"skeleton_attention.pipelines.{n}").create_pipeline() for n in names),
            Pipeline([]),
        )
        SequentialRunner().run(pipeline, catalog)
        return catalog
    finally:
        os.chdir(old)
