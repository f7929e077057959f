"""synth --exposure-mode clip|frame|ramp: the draws, every frame's exposure recorded (and equal to the
one used), carried by ``reds`` beside meta_info.txt; evaluation's per-exposure-bin table."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets_lmdb.__main__ import main as cli
from datasets_lmdb.synth import blur_clip, clip_exposure, frame_exposures, parse_source
from hoffr_arch.data.frame_io import DatasetError
from hoffr_arch.data.meta_info import exposure_bin, read_exposures

from conftest import make_reds

REPO = Path(__file__).resolve().parents[1]
VIDEO = REPO / 'hoffr_arch' / 'assets' / 'sam2_01_dog.mp4'


def test_exposure_modes_draw_as_documented():
    # clip: today's draw, one per clip, the same for the same clip index
    assert frame_exposures((0.5, 2.0), 7, 4) == [float(np.random.default_rng(7).uniform(0.5, 2.0))] * 4
    assert frame_exposures((0.5, 2.0), 7, 4, 'clip') == [clip_exposure((0.5, 2.0), 7)] * 4
    frame = frame_exposures((0.25, 2.5), 3, 60, 'frame')
    assert frame == frame_exposures((0.25, 2.5), 3, 60, 'frame') != frame_exposures((0.25, 2.5), 4, 60, 'frame')
    assert len(set(frame)) == 60 and all(0.25 <= e <= 2.5 for e in frame)
    assert {exposure_bin(e) for e in frame} == {'short', 'medium', 'long'}
    ramps = [frame_exposures((0.5, 2.0), i, 5, 'ramp') for i in range(6)]
    for ramp in ramps:
        assert {ramp[0], ramp[-1]} == {0.5, 2.0} and np.allclose(np.diff(ramp), np.diff(ramp)[0])
    assert {r[0] for r in ramps} == {0.5, 2.0}  # both directions occur
    for mode in ('clip', 'frame', 'ramp'):
        assert frame_exposures(1.25, 9, 3, mode) == [1.25] * 3
    assert [exposure_bin(e) for e in (0.0, 0.7499, 0.75, 1.5, 1.5001)] == ['short', 'short', 'medium', 'medium', 'long']
    assert parse_source('a.mp4@exposure=0.5:2,exposure_mode=ramp', {})[1] == {'exposure': (0.5, 2.0),
                                                                            'exposure_mode': 'ramp'}
    with pytest.raises(DatasetError, match="bad value in source option 'exposure_mode=often'"):
        parse_source('a.mp4@exposure_mode=often', {})


def _synth(out, mode, overwrite=False):
    args = ['synth', '--output', str(out), '--resize', '64', '36', '--step', '2', '--clip-length', '3',
            '--exposure', '0.25:2.5', '--exposure-mode', mode, '--input', f'{VIDEO}@max_frames=6',
            f'{VIDEO}@start=30,max_frames=3,split=val']
    assert cli(args + (['--overwrite'] if overwrite else [])) == 0
    return read_exposures(out / 'exposures.txt')


def test_recorded_exposures_are_the_ones_used_and_reds_carries_them(tmp_path, capsys):
    out = tmp_path / 'synth'
    recorded = _synth(out, 'frame')
    clips = {'000': 'train', '001': 'train', '002': 'val'}
    assert list(recorded) == [f'{s}/{c}/{i:08d}' for c, s in clips.items() for i in range(3)]
    for clip, split in clips.items():
        used = [recorded[f'{split}/{clip}/{i:08d}'] for i in range(3)]
        assert used == frame_exposures((0.25, 2.5), int(clip), 3, 'frame') and len(set(used)) == 3
        sharp = [cv2.imread(str(p)) for p in sorted((out / f'{split}_sharp' / clip).iterdir())]
        written = [cv2.imread(str(p)) for p in sorted((out / f'{split}_blur' / clip).iterdir())]
        again = blur_clip(sharp, used, workers=1)  # the written blur is what the recorded exposures make
        assert all(np.array_equal(a, b) for a, b in zip(again, written)), clip
        assert not np.array_equal(blur_clip(sharp, [used[0]] * 3, workers=1)[1], written[1])

    lmdb = tmp_path / 'lmdb'
    assert cli(['reds', '--input', str(out), '--output', str(lmdb), '--merge-val']) == 0
    assert (lmdb / 'train' / 'meta_info.txt').read_text() == '000 3 (36,64,3)\n001 3 (36,64,3)\n242 3 (36,64,3)\n'
    packed = read_exposures(lmdb / 'train' / 'exposures.txt')
    assert packed == {k.replace('val/002/', '242/').replace('train/', ''): v for k, v in recorded.items()}
    assert cli(['verify', str(lmdb)]) == 0
    side = lmdb / 'train' / 'exposures.txt'
    side.write_text(''.join(side.read_text().splitlines(keepends=True)[:-1]))
    capsys.readouterr()
    assert cli(['verify', str(lmdb)]) == 1  # verify checks the side file against meta_info.txt
    assert f'problem: {side}: 1 frames without an exposure, e.g. 242/00000002' in capsys.readouterr().err
    side.unlink()

    ramp = _synth(out, 'ramp', overwrite=True)  # our exposures.txt does not stop --overwrite
    for clip, split in clips.items():
        values = [ramp[f'{split}/{clip}/{i:08d}'] for i in range(3)]
        assert sorted([values[0], values[-1]]) == [0.25, 2.5] and values[1] == pytest.approx(1.375)
    clip_mode = _synth(out, 'clip', overwrite=True)
    assert all(v == clip_exposure((0.25, 2.5), int(k.split('/')[1])) for k, v in clip_mode.items())


def test_a_bad_exposures_file_is_one_line(tmp_path, capsys):
    src = make_reds(tmp_path / 'REDS', {'000': 2, '001': 2})
    lines = [f'train/{c}/{i:08d} 1.0\n' for c in ('000', '001') for i in range(2)]
    (src / 'exposures.txt').write_text(''.join(lines[:3]))
    assert cli(['reds', '--input', str(src), '--output', str(tmp_path / 'a')]) == 2
    assert capsys.readouterr().err == (f'error: {src / "exposures.txt"}: no exposure for train frame 001/00000001 '
                                       '(it lists every frame synth wrote; the clips changed since?)\n')
    (src / 'exposures.txt').write_text(''.join(lines[:3]) + 'train/001/00000001 fast\n')
    assert cli(['reds', '--input', str(src), '--output', str(tmp_path / 'b')]) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and f'{src / "exposures.txt"}:4: expected' in err
    assert not (tmp_path / 'a').exists() and not (tmp_path / 'b').exists()


def test_evaluation_reports_each_exposure_bin(tmp_path, capsys):
    from basicsr.utils.matlab_functions import imresize
    from hoffr_arch.evaluation import evaluate, main as evaluation, test_dataset
    src = make_reds(tmp_path / 'REDS', {'000': 3, '001': 3})
    exposures = {'000': (0.5, 1.0, 2.0), '001': (0.6, 1.5, 1.6)}
    (src / 'exposures.txt').write_text(''.join(f'train/{c}/{i:08d} {e}\n' for c, es in exposures.items()
                                               for i, e in enumerate(es)))
    out = tmp_path / 'lmdb'
    assert cli(['reds', '--input', str(src), '--output', str(out)]) == 0
    result = evaluation(['--data', str(out / 'train'), '--device', 'cpu', '--dtype', 'fp32'])
    table = capsys.readouterr().out
    bins = result['by_exposure']
    assert list(bins) == ['short', 'medium', 'long'] and [b['frames'] for b in bins.values()] == [2, 2, 2]
    assert bins['long']['exposure'] == (1.6, 2.0) and bins['short']['exposure'] == (0.5, 0.6)
    overall = sum(b['frames'] * b['model'][0] for b in bins.values()) / 6
    assert overall == pytest.approx(result['model'][0])  # every frame in exactly one bin
    assert [c for c in result['by_clip']] == ['000', '001'] and result['by_clip']['000']['frames'] == 3
    for name, label in (('short', 'short (< 0.75)'), ('medium', 'medium (0.75-1.5)'), ('long', 'long (> 1.5)')):
        (p, s), (bp, bs) = bins[name]['model'], bins[name]['bicubic']
        assert f'| {label} | 2 | {p:.2f} / {s:.4f} | {bp:.2f} / {bs:.4f} | {p - bp:+.2f} |' in table
    assert '| 001 | 3 |' in table

    (out / 'train' / 'exposures.txt').unlink()  # a split without exposures: per clip only
    result = evaluate(lambda lq: (imresize(f, 4).clamp(0, 1) for f in lq), test_dataset(out / 'train'))
    assert result['by_exposure'] == {} and list(result['by_clip']) == ['000', '001']
    assert result['by_clip']['001']['model'] == pytest.approx(result['by_clip']['001']['bicubic'])
