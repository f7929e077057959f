"""datasets_lmdb synth: blur that grows with the exposure, a REDS layout that packs."""
from pathlib import Path

import cv2
import numpy as np

from datasets_lmdb.__main__ import main as cli
from datasets_lmdb.synth import blur_clip

from conftest import real_clip

REPO = Path(__file__).resolve().parents[1]


def test_synth_blur_grows_with_exposure():
    frames = real_clip()
    assert all(np.array_equal(a, b) for a, b in zip(frames, blur_clip(frames, 0.0)))
    psnr = [np.mean([cv2.PSNR(s, b) for s, b in zip(frames, blur_clip(frames, e))]) for e in (0.5, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in zip(psnr, psnr[1:])), psnr
    assert psnr[0] - psnr[-1] > 6, psnr  # 8x the exposure: clearly blurrier


def test_synth_makes_a_reds_layout_that_packs(tmp_path):
    out = tmp_path / 'synth'
    video = REPO / 'hoffr_arch' / 'assets' / 'sam2_01_dog.mp4'
    assert cli(['synth', '--input', str(video), '--output', str(out), '--resize', '160', '96', '--max-frames', '10',
                '--clip-length', '5', '--step', '2']) == 0
    for folder in ('train_sharp', 'train_blur', 'train_sharp_bicubic/X4', 'train_blur_bicubic/X4'):
        assert sorted(p.name for p in (out / folder).iterdir()) == ['000', '001']
    lr = cv2.imread(str(out / 'train_blur_bicubic' / 'X4' / '001' / '00000004.png'))
    assert lr.shape == (24, 40, 3)
    assert cli(['reds', '--input', str(out), '--output', str(tmp_path / 'lmdb')]) == 0
    assert cli(['verify', str(tmp_path / 'lmdb')]) == 0
