"""Kubeflow Pipelines: a Kedro pipeline compiled to a KFP v2 pipeline spec (docs/kubeflow.md).

``graph`` and ``settings`` need neither Kedro nor kfp; ``compiler`` needs the kfp 2 SDK (the
``kubeflow`` extra), imported only when compiling.
"""
