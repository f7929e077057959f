"""Shared fixtures. ``../shared/data`` (real frames) is used when present; tests that need it skip otherwise."""
from pathlib import Path

import numpy as np
import pytest
import torch

import hoffr_arch  # noqa: F401  (compat first, then the registries)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture
def real_frame():
    """A real 540x960 RGB frame in [0, 1], float32 (n=1, c=3, h, w); made-up texture without shared/."""
    import cv2
    path = SHARED_DATA / 'bedroom' / '00000.jpg'
    if path.exists():
        img = cv2.imread(str(path))[:, :, ::-1].astype(np.float32) / 255.
    else:  # smooth random texture: enough structure for flow to be recoverable
        rng = np.random.default_rng(0)
        img = cv2.resize(rng.random((34, 60, 3)).astype(np.float32), (960, 540), interpolation=cv2.INTER_CUBIC)
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].clamp(0, 1)
