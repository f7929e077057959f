"""The one way this package writes a file atomically: into a temporary file beside it, flushed to
disk, then renamed over it. A reader (``--auto_resume``, a dataset, a browser) sees the old file or
the new one, never half of one; a failed write leaves the old file and no temporary.

``atomic_path`` is the general form (for writers that want a path: ``torch.onnx.export``);
``write_bytes``, ``write_text`` and ``torch_save`` cover the usual cases. Temporary names end in
``.tmp`` (``hoffr_arch.compat`` never takes one for a checkpoint; ``datasets_lmdb`` knows them).
Whole folders (an LMDB, a frame folder) are written as ``<name>.partial`` and renamed by their
writers (``datasets_lmdb.pack``, ``hoffr_arch.data.video_io``): resumable, which a file rename is not.
"""
import os
from contextlib import contextmanager
from pathlib import Path

import torch


def _fsync(path):
    with open(path, 'rb+') as f:
        os.fsync(f.fileno())


@contextmanager
def atomic_path(path, tmp_name=None):
    """Yield a temporary path beside ``path`` (``tmp_name``, default ``<name>.tmp``); when the block
    ends without an error, that file is synced and renamed onto ``path``; on an error it is removed."""
    path = Path(path)
    tmp = path.with_name(tmp_name or path.name + '.tmp')
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path, data, tmp_name=None):
    """``data`` (bytes) as the file ``path``, atomically; returns ``path``."""
    with atomic_path(path, tmp_name) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def write_text(path, text):
    """``text`` (UTF-8) as the file ``path``, atomically; returns ``path``."""
    return write_bytes(path, text.encode('utf-8'))


def torch_save(obj, path):
    """``torch.save(obj)`` as the file ``path``, atomically; returns ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
