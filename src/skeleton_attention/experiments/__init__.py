"""Experiments: composing a training configuration and running cross-validated protocols.

``config`` is plain Python (no Kedro): it composes a model family's parameter block with a data
set's block and the run selectors, and names the output directory of a run. ``cross_validation``
aggregates the folds of a cross-validated protocol; ``driver`` runs them as Kedro sessions.
"""
