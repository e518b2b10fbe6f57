"""A Kedro pipeline as a graph of Kubeflow tasks: which nodes each task runs, what it waits for,
and a task name Kubernetes accepts. No Kedro import: the pipeline is read through ``.nodes``
(topologically sorted, each with ``name``, ``namespace``, ``tags``) and ``.node_dependencies``
(``{node: {nodes it reads from}}``), which every ``kedro.pipeline.Pipeline`` has.

A task runs one node (``group_by="none"``) or every node of one top-level namespace
(``group_by="namespace"``: e.g. the five nodes of ``train_sta_lstm`` in one pod, which saves the
pod start-up and image pull per node); nodes without a namespace run alone. Whatever the grouping,
nodes that hand data over in memory (a ``MemoryDataset``, which dies with its ``kedro run``) share a
task (e.g. ``evaluate_model`` and ``report`` of every training pipeline). A task waits for
the tasks that run the producers of its inputs; a grouping that would make two tasks wait for each
other is refused.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import Any, Literal

GroupBy = Literal["none", "namespace"]
GROUP_BY: tuple[GroupBy, ...] = ("none", "namespace")

#: a task name must be a DNS-1123 label: KFP turns it into pod names and labels (at most 63 characters)
MAX_TASK_NAME = 63
_HASH_LENGTH = 8
_INVALID = re.compile(r"[^a-z0-9-]+")


@dataclass(frozen=True)
class TaskPlan:
    """One Kubeflow task: its (valid, unique) name, the Kedro node names it runs, the tasks it
    waits for, and its tags (the union of its nodes' tags, which select resources)."""

    name: str
    display_name: str
    nodes: tuple[str, ...]
    after: tuple[str, ...]
    tags: frozenset[str]


def _sanitize(name: str) -> str:
    """Lower case, runs of anything but ``[a-z0-9-]`` to one ``-``, no leading / trailing ``-``,
    starting with a letter (KFP's compiler applies the same rule, and then de-duplicates by order)."""
    cleaned = _INVALID.sub("-", name.lower()).strip("-")
    cleaned = re.sub("-{2,}", "-", cleaned)
    return cleaned if cleaned[:1].isalpha() else f"n-{cleaned}".rstrip("-")


def _hashed(base: str, name: str) -> str:
    digest = hashlib.sha1(name.encode("utf-8")).hexdigest()[:_HASH_LENGTH]
    return f"{base[: MAX_TASK_NAME - _HASH_LENGTH - 1].rstrip('-')}-{digest}"


def task_names(names: Iterable[str], reserved: Iterable[str] = ()) -> dict[str, str]:
    """A valid, unique task name for each name, independent of order: the sanitized name, or, when
    it is too long or two names (or a reserved one) sanitize alike, the sanitized name cut short
    plus 8 hex digits of the name's SHA-1 (``a.b[1]`` and ``a_b_1`` -> ``a-b-1-<hash>`` each)."""
    names = list(dict.fromkeys(names))
    base = {name: _sanitize(name) for name in names}
    counts: dict[str, int] = {}
    for value in [*base.values(), *reserved]:
        counts[value] = counts.get(value, 0) + 1
    result = {
        name: _hashed(value, name) if counts[value] > 1 or len(value) > MAX_TASK_NAME else value
        for name, value in base.items()
    }
    taken = set(reserved)
    for name, value in result.items():  # a hash clash is astronomically rare, but never silent
        if value in taken:
            raise ValueError(f"task name {value!r} of node {name!r} is not unique")
        taken.add(value)
    return result


def _group_key(node: Any, group_by: GroupBy) -> str:
    if group_by == "namespace" and node.namespace:
        return node.namespace.split(".")[0]
    return node.name


def _merge_in_memory(nodes: list[Any], key_of: dict[str, str], in_memory: Collection[str]) -> dict[str, str]:
    """Group keys after putting each in-memory dataset's producer and consumers in one group: a
    ``MemoryDataset`` lives in one process, so its nodes must share one ``kedro run``."""
    parent = {key: key for key in key_of.values()}

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    rank: dict[str, int] = {}
    for index, node in enumerate(nodes):
        rank.setdefault(key_of[node.name], index)
    producer = {output: node.name for node in nodes for output in node.outputs}
    for node in nodes:
        for name in node.inputs:
            if name not in in_memory:
                continue
            if name not in producer:
                raise ValueError(
                    f"node {node.name!r} reads {name!r}, which is kept in memory and made by no node of the "
                    "pipeline: a task cannot receive it; declare it as a file dataset in the catalog"
                )
            a, b = find(key_of[producer[name]]), find(key_of[node.name])
            if a != b:  # the group whose first node comes first names the merged one
                first, second = sorted((a, b), key=rank.__getitem__)
                parent[second] = first
    return {name: find(key) for name, key in key_of.items()}


def plan_tasks(
    pipeline: Any, group_by: GroupBy = "none", reserved: Iterable[str] = (), in_memory: Collection[str] = ()
) -> list[TaskPlan]:
    """The tasks of ``pipeline`` in an order where every task comes after those it waits for.

    ``in_memory``: the names of datasets that do not outlive a ``kedro run`` (``MemoryDataset``,
    declared or by default): nodes joined by one run in the same task, whatever ``group_by`` says.
    """
    if group_by not in GROUP_BY:
        raise ValueError(f"group_by must be one of {GROUP_BY}, not {group_by!r}")
    nodes = list(pipeline.nodes)
    if not nodes:
        raise ValueError("the pipeline has no nodes")
    key_of = _merge_in_memory(nodes, {node.name: _group_key(node, group_by) for node in nodes}, in_memory)
    groups: dict[str, list[Any]] = {}
    for node in nodes:
        groups.setdefault(key_of[node.name], []).append(node)
    waits: dict[str, set[str]] = {key: set() for key in groups}
    dependencies: Mapping[Any, set[Any]] = pipeline.node_dependencies
    for node in nodes:
        for parent in dependencies.get(node, ()):
            if key_of[parent.name] != key_of[node.name]:
                waits[key_of[node.name]].add(key_of[parent.name])
    try:
        TopologicalSorter(waits).prepare()
    except CycleError as error:
        raise ValueError(
            f"the grouping (by {group_by}, and of nodes sharing in-memory data) makes tasks wait for each "
            f"other ({' -> '.join(error.args[1])}); use group_by='none' or persist the in-memory datasets"
        ) from error
    # a stable order: Kedro's node order among tasks that are ready together
    first = {key: min(nodes.index(node) for node in members) for key, members in groups.items()}
    order = _stable_topological(waits, first)
    display = {key: _display_name(key, groups[key]) for key in order}
    names = task_names([display[key] for key in order], reserved)
    return [
        TaskPlan(
            name=names[display[key]],
            display_name=display[key],
            nodes=tuple(node.name for node in groups[key]),
            after=tuple(sorted(names[display[parent]] for parent in waits[key])),
            tags=frozenset().union(*(node.tags for node in groups[key])),
        )
        for key in order
    ]


def _display_name(key: str, members: list[Any]) -> str:
    """A node's name; a namespace's; or, for nodes joined by in-memory data, their names with ``+``."""
    names = [node.name for node in members]
    return key if len(names) == 1 or key not in names else "+".join(names)


def _stable_topological(waits: Mapping[str, set[str]], rank: Mapping[str, int]) -> list[str]:
    """Kahn's algorithm taking the lowest-ranked ready key first (the graph is known to be acyclic)."""
    remaining = {key: set(parents) for key, parents in waits.items()}
    order: list[str] = []
    while remaining:
        ready = min((key for key, parents in remaining.items() if not parents), key=rank.__getitem__)
        order.append(ready)
        del remaining[ready]
        for parents in remaining.values():
            parents.discard(ready)
    return order
