"""The shipped HOFFR-S starter weights: used by infer without --model, they restore real blurry
frames better than bicubic, and a built wheel carries every asset."""
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from basicsr.metrics import calculate_psnr
from basicsr.utils.matlab_functions import imresize
from datasets_lmdb import synth
from hoffr_arch.infer import main as infer

REPO = Path(__file__).resolve().parents[1]
# what the shipped weights gain over bicubic on these frames, which come from a training source (the
# bundled clip): +1.07 dB on average, +1.01 .. +1.13 per frame; a wrong or broken model lands below bicubic
GAIN = 1.07
BUNDLED = REPO / 'hoffr_arch' / 'assets' / 'sam2_01_dog.mp4'


def test_infer_without_model_uses_the_starter_weights_and_beats_bicubic(tmp_path, capsys):
    # real motion blur, as the corpus was made: 8 frames of the bundled clip at 256x144
    synth([BUNDLED], tmp_path / 'reds', exposure=1.5, scale=4, clip_length=8, max_frames=8, resize=(256, 144),
          start=150, step=2)
    lq = tmp_path / 'reds' / 'train_blur_bicubic' / 'X4' / '000'
    gt = tmp_path / 'reds' / 'train_sharp' / '000'
    out = tmp_path / 'out'
    assert infer(['--input', str(lq), '--output', str(out)]) == 0
    assert 'shipped HOFFR-S starter weights' in capsys.readouterr().err
    gains = []
    for i in range(8):
        sharp = cv2.imread(str(gt / f'{i:08d}.png'))
        blurry = cv2.imread(str(lq / f'{i:08d}.png')).astype(np.float32) / 255.
        bicubic = np.clip(imresize(blurry, 4) * 255, 0, 255).round().astype(np.uint8)
        restored = cv2.imread(str(out / f'{i:08d}.png'))
        assert restored.shape == sharp.shape == (144, 256, 3)
        gains.append(calculate_psnr(restored, sharp, 0) - calculate_psnr(bicubic, sharp, 0))
    assert np.mean(gains) == pytest.approx(GAIN, abs=0.05) and min(gains) > GAIN - 0.1, gains


def test_wheel_holds_every_asset(tmp_path):
    proc = subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
                           '-w', str(tmp_path), str(REPO)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob('hoffr-*.whl'))
    names = set(zipfile.ZipFile(wheel).namelist())
    for asset in ('HOFFR_S_x4.pth', 'pof_x4.pth', 'sam2_01_dog.mp4', 'README.md'):
        assert f'hoffr_arch/assets/{asset}' in names


def test_evaluation_measures_what_the_recurrence_adds(tmp_path, capsys):
    """``python -m hoffr_arch.evaluation --no-recurrence``: the shipped weights scored once carrying the
    previous output and once running every frame as a clip's first; the first frames run alike."""
    from datasets_lmdb.__main__ import main as datasets_cli
    from hoffr_arch.evaluation import main as evaluation
    synth([BUNDLED], tmp_path / 'reds', exposure=1.5, scale=4, clip_length=6, max_frames=6, resize=(128, 72),
          start=150, step=2)
    assert datasets_cli(['reds', '--input', str(tmp_path / 'reds'), '--output', str(tmp_path / 'lmdb')]) == 0
    result = evaluation(['--data', str(tmp_path / 'lmdb' / 'train'), '--no-recurrence', '--device', 'cpu'])
    alone = result['no_recurrence']
    assert alone['gain_first'] == result['gain_first'] and alone['frames'] == result['frames'] == 6
    # the carried output makes the later frames better: +0.037 dB on these frames
    added = result['gain_later'] - alone['gain_later']
    assert added == pytest.approx(0.037, abs=0.015), added
    assert f'carrying the previous output adds {added:+.2f} dB' in capsys.readouterr().out
