"""Compatibility of BasicSR 1.4.2 (the last PyPI release, 2022) with today's torch/torchvision/numpy.

``hoffr_arch/__init__.py`` imports this module before anything else, so every process that imports
``hoffr_arch`` (the training entry points, and the DataLoader workers: BasicSR forces the ``spawn``
start method, and a spawned worker imports our package again when it unpickles one of our datasets
or re-runs our ``__main__`` module) gets the same fixes. Nothing here edits site-packages: each fix is
applied at import time and only when the upstream failure is actually present.

Each fix names the upstream failure it works around; ``tests/test_compat.py`` shows each failure
without the fix. Later parts of the project (training, data) add their fixes here.
"""
import importlib
import sys
import types

__all__ = ['FIXES', 'applied_fixes']

_applied = []


def _alias_functional_tensor():
    """Failure 1: ``import basicsr`` raises ``ModuleNotFoundError: torchvision.transforms.functional_tensor``.

    ``basicsr/data/degradations.py`` imports ``rgb_to_grayscale`` from
    ``torchvision.transforms.functional_tensor``, which torchvision 0.17 renamed to the private
    ``_functional_tensor``. We register the old name as an alias of the new module.
    """
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return False
    try:
        importlib.import_module(name)
        return False  # an old torchvision: nothing to fix
    except ModuleNotFoundError:
        pass
    new = importlib.import_module('torchvision.transforms._functional_tensor')
    alias = types.ModuleType(name, doc=f'Alias of {new.__name__} installed by hoffr_arch.compat for basicsr 1.4.2.')
    alias.__dict__.update({k: v for k, v in vars(new).items() if not k.startswith('__')})
    sys.modules[name] = alias
    return True


FIXES = {
    'torchvision_functional_tensor': _alias_functional_tensor,
}


def apply():
    """Apply every fix whose upstream failure is present; idempotent."""
    for key, fix in FIXES.items():
        if key not in _applied and fix():
            _applied.append(key)


def applied_fixes():
    """Names of the fixes that were needed (and applied) in this process."""
    return list(_applied)


apply()
