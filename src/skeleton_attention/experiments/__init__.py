"""Experiments: composing a training configuration and running cross-validated protocols.

``config`` is plain Python (no Kedro): it composes a model family's parameter block with a data
set's block and the run selectors, and names the output directory of a run. ``cross_validation``
aggregates the folds of a cross-validated protocol. The drivers run an experiment's members as
``kedro run`` processes under one MLflow parent run: ``fold_driver`` every fold of a cross-validated
protocol, ``group_driver`` every named run of a run group (e.g. DSTA-Net's streams, per fold on a
cross-validated protocol) and their fusion; ``processes`` holds what they share.
"""
