"""``kedro run --pipelines=fuse_dsta_net``: fuse the test and validation scores of the DSTA-Net
stream runs of ``run.dataset`` / ``run.protocol`` (/ ``run.fold``) with ``fuse_dsta_net.weights``.

The outputs are named ``train_dsta_net_fused.<artifact>``, so catalog_train.yml's factories place
them (``metrics/train_dsta_net_fused/<run dir>/metrics.json`` under DVC,
``data/08_reporting/train_dsta_net_fused/<run dir>/``) and log them to the MLflow run, which the
run-group driver makes the streams' parent run.
"""

from __future__ import annotations

from kedro.pipeline import Pipeline, node, pipeline

from skeleton_attention.pipelines.fuse_dsta_net.nodes import fuse_streams, report_fusion

NAME = "fuse_dsta_net"
OUTPUTS = "train_dsta_net_fused"


def create_pipeline(**kwargs) -> Pipeline:
    base = Pipeline(
        [
            node(
                fuse_streams,
                inputs=["params:train_dsta_net_config", "params:fuse_dsta_net"],
                outputs=["test_scores", "val_scores", "test_metrics"],
                name="fuse_scores",
            ),
            node(
                report_fusion,
                inputs=["test_metrics", "params:fuse_dsta_net"],
                outputs=["confusion_plot", "dvc_metrics", "mlflow_test_metrics"],
                name="report_fusion",
            ),
        ]
    )
    params = {"params:train_dsta_net_config", "params:fuse_dsta_net"}
    return pipeline(base, namespace=OUTPUTS, parameters={p: p for p in params})
