"""datasets_lmdb: every bad input or output is one clear line (exit 2) before anything is written."""
import os
import re

import cv2
import numpy as np
import pytest

from datasets_lmdb.__main__ import main as cli

from conftest import make_reds, smooth_frames, write_clip


def _bad(kind):
    """Mutations of a valid REDS tree -> the error they must give."""
    def missing(root):
        (root / 'train_blur' / '001' / '00000001.png').unlink()
    def extra(root):
        cv2.imwrite(str(root / 'train_blur' / '001' / '00000003.png'), np.zeros((32, 48, 3), np.uint8))
    def corrupt(root):
        (root / 'train_sharp' / '001' / '00000002.png').write_bytes(b'\x89PNG\r\n\x1a\n garbage')
    def size(root):
        cv2.imwrite(str(root / 'train_sharp_bicubic' / 'X4' / '000' / '00000000.png'), np.zeros((9, 12, 3), np.uint8))
    def frame_size(root):
        cv2.imwrite(str(root / 'train_sharp' / '001' / '00000002.png'), np.zeros((36, 48, 3), np.uint8))
    def clip_missing(root):
        import shutil
        shutil.rmtree(root / 'train_blur_bicubic' / 'X4' / '001')
    def empty(root):
        for p in (root / 'train_sharp' / '000').iterdir():
            p.unlink()
    def stray(root):
        (root / 'train_sharp' / '000' / 'notes.txt').write_text('hi')
    def non_ascii(root):
        (root / 'train_blur' / '000').rename(root / 'train_blur' / 'clïp')
    def space(root):
        for kind in ('train_sharp', 'train_blur', 'train_sharp_bicubic/X4', 'train_blur_bicubic/X4'):
            (root / kind / '001').rename(root / kind / 'my clip')
    def zero_byte(root):
        (root / 'train_blur' / '001' / '00000002.png').write_bytes(b'')
    def lr_frame_size(root):  # mid-clip, in an LR kind packed after the HR ones
        cv2.imwrite(str(root / 'train_blur_bicubic' / 'X4' / '001' / '00000001.png'), np.zeros((9, 12, 3), np.uint8))
    cases = {
        'missing': (missing, r'clip 001 .*missing frame 1'),
        'extra': (extra, r'clip 001 has 4 frames in blur but 3 in sharp: extra frame .*00000003.png'),
        'corrupt': (corrupt, r'00000002.png: unreadable or corrupt image'),
        'size': (size, r'clip 000: sharp is 32x48 but sharp_bicubic is 9x12; HR must be 4 x LR'),
        'frame_size': (frame_size, r'00000002.png: frame 001/00000002 is 36x48, the rest of clip 001 is 32x48'),
        'clip_missing': (clip_missing, r'clip 001 is in sharp but not in blur_bicubic'),
        'empty': (empty, r'train_sharp/000: empty clip'),
        'stray': (stray, r'notes.txt: stray non-image file in clip 000'),
        'non_ascii': (non_ascii, r'clïp: non-ASCII clip folder name'),
        'space': (space, r'my clip: clip folder name holds whitespace'),
        'zero_byte': (zero_byte, r'00000002.png: empty file \(0 bytes\)'),
        'lr_frame_size': (lr_frame_size, r'00000001.png: frame 001/00000001 is 9x12, the rest of clip 001 is 8x12'),
    }
    return cases[kind]


@pytest.mark.parametrize('kind', ['missing', 'extra', 'corrupt', 'size', 'frame_size', 'clip_missing', 'empty',
                                  'stray', 'non_ascii', 'space', 'zero_byte', 'lr_frame_size'])
def test_bad_input_gives_one_clear_error(tmp_path, capsys, kind):
    src = make_reds(tmp_path / 'REDS', {'000': 3, '001': 3})
    mutate, message = _bad(kind)
    mutate(src)
    assert cli(['reds', '--input', str(src), '--output', str(tmp_path / 'out')]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert [line for line in err if 'error' in line.lower()] == err[-1:], err  # one error line, the last
    err = err[-1]
    assert re.search(message, err), err
    assert not list((tmp_path / 'out').glob('*/*.lmdb')), 'a failed conversion must not leave a complete LMDB'
    assert not list((tmp_path / 'out').glob('*/*.partial')), 'every input is checked before anything is written'


def test_bad_output_paths_are_one_line(tmp_path, capsys):
    src = make_reds(tmp_path / 'REDS', {'000': 2})
    a_file = tmp_path / 'file'
    a_file.write_text('mine')
    cases = [(a_file, 'exists and is not a folder'),
             (src / 'train_sharp' / 'lmdb', 'the output is inside the input folder')]
    read_only = tmp_path / 'ro'
    read_only.mkdir()
    read_only.chmod(0o500)
    if not os.access(read_only, os.W_OK):  # root writes anywhere: then this case cannot be shown
        cases.append((read_only / 'out', 'Permission denied'))
    for out, message in cases:
        assert cli(['reds', '--input', str(src), '--output', str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert a_file.read_text() == 'mine'


def test_dvd_formats_that_differ_are_named(tmp_path, capsys):
    clip = tmp_path / 'DVD' / 'quantitative_datasets' / 'IMG_0001'
    frames = smooth_frames(2, 32, 48, 0)
    write_clip(clip / 'GT', frames, '{:05d}.png')
    write_clip(clip / 'input', frames, '{:05d}.jpg')
    assert cli(['dvd', '--input', str(tmp_path / 'DVD'), '--output', str(tmp_path / 'out')]) == 2
    assert 'GT/00000.png and input/00000.jpg differ in format' in capsys.readouterr().err


def test_existing_output_is_refused(tmp_path, capsys):
    src = make_reds(tmp_path / 'REDS', {'000': 2})
    out = tmp_path / 'out'
    assert cli(['reds', '--input', str(src), '--output', str(out)]) == 0
    assert cli(['reds', '--input', str(src), '--output', str(out)]) == 2
    assert 'already exists; pass --overwrite' in capsys.readouterr().err
    assert cli(['reds', '--input', str(src), '--output', str(out), '--overwrite']) == 0
    assert cli(['verify', str(out)]) == 0
