"""LMDB conversion of REDS, DVD and GoPro, VSRDB synthesis from sharp footage, and verification.

Run ``python -m datasets_lmdb --help``.
"""
from .layout import DatasetError, dvd_plan, gopro_plan, reds_plan
from .pack import pack
from .synth import synth
from .verify import verify

__all__ = ['DatasetError', 'dvd_plan', 'gopro_plan', 'pack', 'reds_plan', 'synth', 'verify']
