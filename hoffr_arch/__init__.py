"""HOFFR for BasicSR: importing this package registers its networks, losses, models and datasets.

``compat`` comes first: it makes ``basicsr`` 1.4.2 importable on today's torchvision.
"""
# flake8: noqa
from . import compat
from . import archs, data, losses, metrics, models

__version__ = '0.1.0'
