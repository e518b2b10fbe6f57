"""Kedro hooks."""

from __future__ import annotations

import logging
import time

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)


class ProgressHooks:
    """Logs each node's wall time, so a user sees where a long run spends it."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    @hook_impl
    def before_node_run(self, node) -> None:
        self._started[node.name] = time.perf_counter()

    @hook_impl
    def after_node_run(self, node) -> None:
        started = self._started.pop(node.name, None)
        if started is not None:
            logger.info("node %s finished in %.2f s", node.name, time.perf_counter() - started)
