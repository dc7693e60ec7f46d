"""The estimator registry (one instance of the project's generic Registry)."""
from bench.registry import Registry

ESTIMATORS = Registry("estimator")
