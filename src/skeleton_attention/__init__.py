"""skeleton-attention: raw skeleton recordings to trained, evaluated and compared attention models."""

import os
import sys

# MLflow 3 sends usage telemetry unless an environment variable says no; it reads no config file.
# Kedro imports this package (settings.py) before kedro-mlflow imports mlflow, so setting the
# default here turns it off for `kedro run`, the tests and the `skeleton-attention` command alike
# (an explicit MLFLOW_DISABLE_TELEMETRY=false still wins). Kedro's own telemetry is off through the
# committed `.telemetry` file, DVC's through `core.analytics = false` in `.dvc/config`.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
if "mlflow.telemetry.client" in sys.modules:  # mlflow came first (e.g. a notebook): drop its client
    sys.modules["mlflow.telemetry.client"].set_telemetry_client()

__version__ = "0.1.0"
