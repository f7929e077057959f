"""Imports every `*_metric.py` module here so that its functions land in BasicSR's METRIC_REGISTRY."""
from hoffr_arch._registry import import_modules

_modules = import_modules(__name__, __file__, '_metric')
