"""``skeleton-attention`` command line: checks a user can run on their own downloads, and the
one-line summary of a training run.

    skeleton-attention check-views /data/nturgb+d_skeletons     # multi-view alignment residuals
    skeleton-attention summary data/08_reporting/train_sta_lstm/embedded/ntu/ntu60_xsub/metrics.json  # one line
    skeleton-attention register-best   # best model of each family (validation top-1) -> MLflow model registry

A user error (a missing path, an unreadable file) is one line on stderr and exit status 2, never a
traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PROG = "skeleton-attention"


class UserError(Exception):
    """A problem with what the user passed: printed as one line, exit status 2."""


def _check_views(args: argparse.Namespace) -> int:
    from skeleton_attention.skeletons.errors import MalformedSkeletonFile
    from skeleton_attention.skeletons.views import print_report

    try:
        return print_report(args)
    except (OSError, MalformedSkeletonFile) as err:
        raise UserError(str(err)) from err


def summary_line(metrics: Mapping[str, Any], metrics_path: str, details: str | None = None) -> str:
    """``test top-1 0.9083 (top-5 1.0000) on 120 samples, best epoch 51/53: <paths>``."""
    try:
        top1, top5 = float(metrics["test_top1"]), float(metrics["test_top5"])
        count = int(metrics["num_test_samples"])
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(
            f"{metrics_path} is not a training metrics file (needs test_top1, test_top5, num_test_samples): {err}"
        ) from err
    if not (math.isfinite(top1) and math.isfinite(top5)):
        raise UserError(f"{metrics_path}: non-finite accuracy (top-1 {top1}, top-5 {top5})")
    line = f"test top-1 {top1:.4f} (top-5 {top5:.4f}) on {count} samples"
    if "best_epoch" in metrics and "epochs_run" in metrics:
        line += f", best epoch {int(metrics['best_epoch'])}/{int(metrics['epochs_run'])}"
    return line + f": {metrics_path}" + (f", plots in {details}" if details else "")


def _summary(args: argparse.Namespace) -> int:
    path = Path(args.metrics)
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise UserError(f"no metrics file at {path} (run the training pipeline first)") from err
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from err
    if not isinstance(metrics, Mapping):
        raise UserError(f"{path} is not a training metrics file (not a JSON object)")
    print(summary_line(metrics, str(path), args.details))
    return 0


def mlflow_settings(conf_source: str, env: str) -> tuple[str, str]:
    """``(tracking URI, base experiment name)`` as kedro-mlflow reads them from ``conf/<env>/mlflow.yml``."""
    from kedro.config import OmegaConfigLoader

    from skeleton_attention.settings import CONFIG_LOADER_ARGS

    if not Path(conf_source, "base").is_dir():
        raise UserError(f"no Kedro configuration at {conf_source}/base (run in the project root, or --conf-source)")
    args = {**CONFIG_LOADER_ARGS, "default_run_env": env, "config_patterns": {"mlflow": ["mlflow*", "mlflow*/**"]}}
    config = OmegaConfigLoader(conf_source, **args)["mlflow"]
    return str(config["server"]["mlflow_tracking_uri"]), str(config["tracking"]["experiment"]["name"])


def _register_best(args: argparse.Namespace) -> int:
    from skeleton_attention.model_registry import describe, register_best

    uri, base = mlflow_settings(args.conf_source, args.env)
    outcomes = register_best(args.tracking_uri or uri, args.experiment or base, dry_run=args.dry_run)
    for outcome in outcomes:
        print(describe(outcome))
    if not outcomes:
        print(f"no finished training run with a logged model under experiments {args.experiment or base}/* "
              f"in {args.tracking_uri or uri}")  # fmt: skip
    return 0


def build_parser() -> argparse.ArgumentParser:
    from skeleton_attention.skeletons.views import CHECK_VIEWS_DESCRIPTION, add_report_arguments

    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    check = commands.add_parser(
        "check-views",
        help="align the camera views of every complete NTU recording and print residuals",
        description=CHECK_VIEWS_DESCRIPTION,
    )
    add_report_arguments(check).set_defaults(run=_check_views)
    summary = commands.add_parser(
        "summary",
        help="one line with the test accuracy of a training run (its metrics JSON)",
        description="Print the test accuracy of a training run from the metrics JSON it wrote.",
    )
    summary.add_argument(
        "metrics", help="metrics JSON of a training run, e.g. data/08_reporting/train_sta_lstm/<run>/metrics.json"
    )
    summary.add_argument("--details", default=None, help="where that run's plots and reports are, to name them")
    summary.set_defaults(run=_summary)
    register = commands.add_parser(
        "register-best",
        help="register the best model of each family (highest validation top-1) in MLflow's model registry",
        description="For every experiment (data set and protocol), environment and model family, register "
        "the logged model of the finished run with the highest validation top-1 (never a test metric) "
        "under <experiment base>.<env>.<dataset>.<protocol>.<model>, alias 'best' (docs/reporting.md).",
    )
    register.add_argument("--tracking-uri", default=None, help="default: conf/<env>/mlflow.yml (MLFLOW_TRACKING_URI)")
    register.add_argument("--experiment", default=None, help="base experiment name; default: conf/<env>/mlflow.yml")
    register.add_argument("--env", default="local", help="Kedro environment whose mlflow.yml is read")
    register.add_argument("--conf-source", default="conf", help="the project's conf/ folder")
    register.add_argument("--dry-run", action="store_true", help="print what would be registered, change nothing")
    register.set_defaults(run=_register_best)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except UserError as err:
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
