"""Imports every `*_model.py` module here so that its classes land in BasicSR's registries."""
from hoffr_arch._registry import import_modules

_modules = import_modules(__name__, __file__, '_model')
