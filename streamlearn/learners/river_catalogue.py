"""Which river estimators streamlearn stores and runs, and why the others are refused.

``tests/test_river_catalogue.py`` walks every estimator class river exports
(:func:`streamlearn.learners.river_spec.catalogue`): each is built with its own
unit-test parameters (``_unit_test_params``), trained on a small stream, stored in
a Parquet checkpoint, loaded, and must then give identical outputs. The classes
that cannot are listed in :data:`REFUSED` with the reason; the test fails if that
list is wrong in either direction, so the README's counts come from a check.

Of the stored classes, ``name = "river"`` (and :class:`streamlearn.OnlineModel`) runs
the classifiers, regressors and anomaly detectors (:data:`RUNNABLE_KINDS`);
transformers run as ``preprocessing`` steps; clusterers, forecasters, recommenders,
multi-output models and nearest-neighbour engines are stored correctly (as parts of
other models or in your own learner) but have no processor of their own yet.

>>> sorted(REFUSED)[:2]
['compose.FuncTransformer', 'compose.TargetTransformRegressor']
"""

from __future__ import annotations

__all__ = ["REFUSED", "RUNNABLE_KINDS"]

RUNNABLE_KINDS = ("classifier", "regressor", "anomaly")

_NEEDS_FUNCTION = "needs a Python function as a parameter; a function of yours cannot be stored without pickle"

#: river estimator (public name) → why streamlearn does not store it.
REFUSED: dict[str, str] = {
    "compose.FuncTransformer": _NEEDS_FUNCTION,
    "compose.TargetTransformRegressor": _NEEDS_FUNCTION,
    "feature_extraction.RandomTreesEmbedding": "keys its state by id() of its tree nodes; object identities do not survive a checkpoint",
    "misc.ZstdClassifier": "needs Python ≥ 3.14 (compression.zstd); its compressor is native state with no safe encoding",
    "preprocessing.LDA": "keeps numpy.ones as a factory: a numpy constructor named in a checkpoint could allocate without bound",
}
