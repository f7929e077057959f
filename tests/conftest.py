"""Shared fixtures. ``../shared/data`` (real frames) is used when present; tests that need it skip otherwise."""
from pathlib import Path

import cv2
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


def smooth_frames(n, h, w, seed):
    """n (h, w, 3) uint8 frames of a smooth random texture drifting right: real-looking, compressible."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.random((h // 4 + 2, (w + 2 * n) // 4 + 2, 3)).astype(np.float32), (w + 2 * n, h + 8),
                      interpolation=cv2.INTER_CUBIC)
    return [np.clip(base[4:4 + h, 2 * i:2 * i + w] * 255, 0, 255).astype(np.uint8) for i in range(n)]


def write_clip(folder, frames, name='{:08d}.png'):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(frames):
        cv2.imwrite(str(folder / name.format(i)), img)


def make_reds(root, clips, prefix='train', h=32, w=48):
    """REDS layout with all four kinds; ``clips`` maps clip name -> number of frames."""
    from datasets_lmdb.pack import bicubic_downscale
    for seed, (clip, n) in enumerate(clips.items()):
        sharp = smooth_frames(n, h, w, seed)
        blur = [cv2.GaussianBlur(f, (5, 5), 1.5) for f in sharp]
        write_clip(root / f'{prefix}_sharp' / clip, sharp)
        write_clip(root / f'{prefix}_blur' / clip, blur)
        write_clip(root / f'{prefix}_sharp_bicubic' / 'X4' / clip, [bicubic_downscale(f, 4) for f in sharp])
        write_clip(root / f'{prefix}_blur_bicubic' / 'X4' / clip, [bicubic_downscale(f, 4) for f in blur])
    return root
