"""The Kubeflow settings of ``conf/<env>/kubeflow.yml`` (keys documented there and in
docs/kubeflow.md), checked when read: an unknown key or a wrong type is an error naming the key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class KubeflowConfigError(ValueError):
    """A malformed ``kubeflow.yml``; the message names the key."""


@dataclass(frozen=True)
class Resources:
    """Kubernetes requests and limits of a task (``None``: not set, the cluster's default)."""

    cpu_request: str | None = None
    memory_request: str | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None


@dataclass(frozen=True)
class GpuResources(Resources):
    """Which nodes get a GPU (by tag or by name) and what those tasks request."""

    tags: tuple[str, ...] = ("training",)
    nodes: tuple[str, ...] = ()
    accelerator_type: str = "nvidia.com/gpu"
    accelerator_limit: int = 1
    tolerations: tuple[Mapping[str, Any], ...] = ()
    node_selector: Mapping[str, str] = field(default_factory=dict)

    def wants_gpu(self, node_names: tuple[str, ...], tags: frozenset[str]) -> bool:
        return bool(set(self.tags) & tags) or bool(set(self.nodes) & set(node_names))


@dataclass(frozen=True)
class Mount:
    """A directory of the shared volume (``sub_path``, "" = its root) at ``mount_path`` in the container."""

    mount_path: str
    sub_path: str = ""


@dataclass(frozen=True)
class KubeflowSettings:
    image: str | None = None
    image_pull_policy: str = "IfNotPresent"
    workdir: str = "/app"
    caching: bool = False
    mlflow_tracking_uri: str = "sqlite:////app/mlruns/mlflow.db"
    mlflow_single_run: bool = True
    pvc_name: str | None = None
    mounts: tuple[Mount, ...] = ()
    default_resources: Resources = Resources()
    gpu: GpuResources = GpuResources()
    env: Mapping[str, str] = field(default_factory=dict)


def _section(raw: Any, cls: type, where: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise KubeflowConfigError(f"{where} must be a mapping, not {type(raw).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise KubeflowConfigError(f"unknown key(s) {unknown} in {where}; known: {sorted(known)}")
    values = {}
    for key, value in raw.items():
        if key in ("tags", "nodes", "tolerations"):
            if not isinstance(value, list | tuple):
                raise KubeflowConfigError(f"{where}.{key} must be a list")
            value = tuple(value)
        elif key in ("cpu_request", "memory_request", "cpu_limit", "memory_limit") and value is not None:
            value = str(value)
        elif key == "accelerator_limit" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise KubeflowConfigError(f"{where}.accelerator_limit must be a positive integer, not {value!r}")
        values[key] = value
    return cls(**values)


def _mounts(raw: Any) -> tuple[Mount, ...]:
    if not isinstance(raw, list | tuple):
        raise KubeflowConfigError("volume.mounts must be a list of {sub_path, mount_path}")
    mounts = tuple(_section(item, Mount, f"volume.mounts[{i}]") for i, item in enumerate(raw))
    paths = [m.mount_path for m in mounts]
    if len(set(paths)) != len(paths) or not all(p.startswith("/") for p in paths):
        raise KubeflowConfigError(f"volume.mounts: mount paths must be absolute and distinct, got {paths}")
    return mounts


def _keys(raw: Any, known: set[str], where: str) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise KubeflowConfigError(f"{where} must be a mapping, not {type(raw).__name__}")
    unknown = sorted(set(raw) - known)
    if unknown:
        raise KubeflowConfigError(f"unknown key(s) {unknown} in {where}; known: {sorted(known)}")
    return raw


def read_settings(raw: Mapping[str, Any] | None) -> KubeflowSettings:
    """Settings from the ``kubeflow`` configuration (the parsed ``conf/<env>/kubeflow.yml``)."""
    raw = dict(raw or {})
    top = {
        "image",
        "image_pull_policy",
        "workdir",
        "caching",
        "mlflow_tracking_uri",
        "mlflow_single_run",
        "volume",
        "resources",
        "env",
    }
    unknown = sorted(set(raw) - top)
    if unknown:
        raise KubeflowConfigError(f"unknown key(s) {unknown} in kubeflow.yml; known: {sorted(top)}")
    volume = _keys(raw.get("volume"), {"pvc_name", "mounts"}, "volume")
    resources = _keys(raw.get("resources"), {"default", "gpu"}, "resources")
    env = raw.get("env") or {}
    if not isinstance(env, Mapping):
        raise KubeflowConfigError("env must be a mapping of variable names to values")
    for key in ("caching", "mlflow_single_run"):
        if key in raw and not isinstance(raw[key], bool):
            raise KubeflowConfigError(f"{key} must be true or false, not {raw[key]!r}")
    defaults = KubeflowSettings()
    return KubeflowSettings(
        image=raw.get("image"),
        image_pull_policy=str(raw.get("image_pull_policy", defaults.image_pull_policy)),
        workdir=str(raw.get("workdir", defaults.workdir)),
        caching=raw.get("caching", defaults.caching),
        mlflow_tracking_uri=str(raw.get("mlflow_tracking_uri", defaults.mlflow_tracking_uri)),
        mlflow_single_run=raw.get("mlflow_single_run", defaults.mlflow_single_run),
        pvc_name=volume.get("pvc_name"),
        mounts=_mounts(volume.get("mounts") or []),
        default_resources=_section(resources.get("default"), Resources, "resources.default"),
        gpu=_section(resources.get("gpu"), GpuResources, "resources.gpu"),
        env={str(k): str(v) for k, v in env.items()},
    )
