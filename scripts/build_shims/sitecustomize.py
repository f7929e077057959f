"""Build-time shim for BasicSR 1.4.2's ``setup.py`` on Python 3.13+ (the Makefile puts this folder on
``PYTHONPATH`` only while pip builds BasicSR from its sdist, the only form PyPI has).

Its ``get_version()`` runs ``exec(code)`` inside a function and then reads ``locals()['__version__']``.
Python 3.13 (PEP 667) made ``locals()`` in a function a fresh snapshot, so the name set by ``exec`` is
not there and metadata generation fails with ``KeyError: '__version__'``. Here ``exec`` called with
no namespaces runs in the caller's frame namespace (``frame.f_locals``, a write-through view in 3.13),
which is what it did before 3.13; calls that pass namespaces are untouched. BasicSR itself is not
changed or copied.
"""
import builtins
import sys

_exec = builtins.exec


def _exec_in_caller(source, globals=None, locals=None, /, **kwargs):
    if globals is None and locals is None:
        frame = sys._getframe(1)
        return _exec(source, frame.f_globals, frame.f_locals, **kwargs)
    return _exec(source, globals, locals, **kwargs)


builtins.exec = _exec_in_caller
