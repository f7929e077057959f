"""datasets_lmdb: REDS/DVD trees -> LMDB -> datasets equal the source; bad inputs; resume; synth."""
import importlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest

from datasets_lmdb.__main__ import main as cli
from hoffr_arch.data.frame_io import bicubic_downscale
from datasets_lmdb.synth import blur_clip
from hoffr_arch.data.video_io import read_frames
from hoffr_arch.data.frame_io import decode_frame
from hoffr_arch.data.vsrdb_dataset import VSRDBRecurrentDataset, VSRDBTestDataset

from conftest import SHARED_DATA, make_reds, smooth_frames, write_clip

REPO = Path(__file__).resolve().parents[1]
pack_module = importlib.import_module('datasets_lmdb.pack')  # the package exports a function of that name


def load_dir(folder):
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sorted(folder.iterdir())]


def as_bgr_uint8(t):
    """(c, h, w) RGB float tensor in [0, 1] -> (h, w, c) BGR uint8."""
    return np.rint(t.numpy().transpose(1, 2, 0)[:, :, ::-1] * 255).astype(np.uint8)


def test_dataset_options_are_checked():
    with pytest.raises(KeyError, match="'dataroot_gt'"):
        VSRDBTestDataset({'name': 'x', 'dataroot_lq': 'a', 'io_backend': {'type': 'disk'}})


@pytest.mark.parametrize('encoding', ['bmp', 'png', 'source'])
def test_reds_to_lmdb_items_equal_source(tmp_path, encoding):
    src = make_reds(tmp_path / 'REDS', {'000': 4, '011': 3, '015': 3, '020': 3, '100': 6})
    make_reds(src, {'000': 5}, prefix='val')
    out = tmp_path / 'lmdb'
    assert cli(['reds', '--input', str(src), '--output', str(out), '--merge-val', '--reds4-test',
                '--encoding', encoding]) == 0
    assert cli(['verify', str(out)]) == 0
    assert (out / 'train' / 'meta_info.txt').read_text().splitlines() == ['100 6 (32,48,3)', '240 5 (32,48,3)']
    assert sorted(p.name for p in (out / 'test').iterdir()) == [
        'blur.lmdb', 'blur_bicubic.lmdb', 'meta_info.txt', 'sharp.lmdb', 'sharp_bicubic.lmdb']

    test = VSRDBTestDataset({'name': 'reds4', 'dataroot_gt': str(out / 'test' / 'sharp.lmdb'),
                             'dataroot_lq': str(out / 'test' / 'blur_bicubic.lmdb'),
                             'dataroot_lq_sharp': str(out / 'test' / 'sharp_bicubic.lmdb'),
                             'io_backend': {'type': 'lmdb'}})
    assert test.folders == ['000', '011', '015', '020']
    assert test.data_info['folder'].count('000') == 4
    item = test[0]
    assert item['folder'] == '000' and item['lq'].shape == (4, 3, 8, 12) and item['gt'].shape == (4, 3, 32, 48)
    for key, folder in (('gt', 'train_sharp'), ('lq', 'train_blur_bicubic/X4'), ('lq_sharp', 'train_sharp_bicubic/X4')):
        for got, want in zip(item[key], load_dir(src / folder / '000')):
            assert np.array_equal(as_bgr_uint8(got), want), key

    # val clip 000 became train clip 240
    train = VSRDBTestDataset({'dataroot_gt': str(out / 'train' / 'sharp.lmdb'),
                              'dataroot_lq': str(out / 'train' / 'blur_bicubic.lmdb'), 'io_backend': {'type': 'lmdb'}})
    clip = train[train.folders.index('240')]
    for got, want in zip(clip['gt'], load_dir(src / 'val_sharp' / '000')):
        assert np.array_equal(as_bgr_uint8(got), want)


def test_stock_basicsr_decodes_every_value_pixel_identical(tmp_path, capsys):
    """BasicSR's imfrombytes (and so its stock datasets) decodes what we store, identically to the sources."""
    import lmdb
    from basicsr.utils import imfrombytes
    src = make_reds(tmp_path / 'REDS', {'001': 3, '002': 2}, h=36, w=52)  # odd LR widths: padded BMP rows
    out = tmp_path / 'lmdb'
    assert cli(['reds', '--input', str(src), '--output', str(out)]) == 0
    folders = {'sharp': 'train_sharp', 'blur_bicubic': 'train_blur_bicubic/X4'}
    for kind, folder in folders.items():
        env = lmdb.open(str(out / 'train' / f'{kind}.lmdb'), readonly=True, lock=False)
        with env.begin() as txn:
            values = dict(txn.cursor())
        env.close()
        assert len(values) == 5
        for key, value in values.items():
            clip, frame = key.decode().split('/')
            want = cv2.imread(str(src / folder / clip / f'{frame}.png'))
            got = imfrombytes(value, float32=False)
            assert got is not None and np.array_equal(got, want), key
            crop = decode_frame(value, (1, 2, 3, 4))  # our crop view: the same pixels
            assert np.array_equal(crop, want[1:4, 2:6])
    capsys.readouterr()
    assert cli(['verify', str(out)]) == 0
    assert 'sharp 5 frames (bmp)' in capsys.readouterr().out


def test_training_crops_match_source(tmp_path):
    src = make_reds(tmp_path / 'REDS', {'a': 7, 'b': 4}, h=64, w=96)
    out = tmp_path / 'lmdb'
    assert cli(['reds', '--input', str(src), '--output', str(out)]) == 0
    root = out / 'train'
    opt = {'name': 'train', 'dataroot_gt': str(root / 'sharp.lmdb'), 'dataroot_lq': str(root / 'blur_bicubic.lmdb'),
           'dataroot_lq_sharp': str(root / 'sharp_bicubic.lmdb'), 'meta_info_file': str(root / 'meta_info.txt'),
           'io_backend': {'type': 'lmdb'}, 'num_frame': 3, 'gt_size': 32, 'scale': 4, 'interval_list': [1, 2],
           'random_reverse': False, 'use_hflip': False, 'use_rot': False}
    ds = VSRDBRecurrentDataset(opt)
    assert len(ds) == 11
    disk = VSRDBRecurrentDataset(dict(opt, io_backend={'type': 'disk'}, meta_info_file=None,
                                      dataroot_gt=str(src / 'train_sharp'),
                                      dataroot_lq=str(src / 'train_blur_bicubic' / 'X4'),
                                      dataroot_lq_sharp=str(src / 'train_sharp_bicubic' / 'X4')))
    for dataset in (ds, disk):
        for index in (0, 5, 10):
            item = dataset[index]
            clip = item['key'].split('/')[0]
            assert item['lq'].shape == (3, 3, 8, 8) and item['gt'].shape == (3, 3, 32, 32)
            lq0 = as_bgr_uint8(item['lq'][0])
            # find where the LR crop came from (frame, position); the HR crop must be the same place x4
            lr_clip = load_dir(src / 'train_blur_bicubic' / 'X4' / clip)
            hits = [(j, y, x) for j, lr_src in enumerate(lr_clip) for y in range(16 - 8 + 1) for x in range(24 - 8 + 1)
                    if np.array_equal(lr_src[y:y + 8, x:x + 8], lq0)]
            assert hits, 'LR crop not found in its clip'
            start, y, x = hits[0]
            hr_src = load_dir(src / 'train_sharp' / clip)[start]
            assert np.array_equal(as_bgr_uint8(item['gt'][0]), hr_src[4 * y:4 * y + 32, 4 * x:4 * x + 32])
            sharp_src = load_dir(src / 'train_sharp_bicubic' / 'X4' / clip)[start]
            assert np.array_equal(as_bgr_uint8(item['lq_sharp'][0]), sharp_src[y:y + 8, x:x + 8])


def test_augmentation_applies_one_transform_to_all_frames(tmp_path):
    src = make_reds(tmp_path / 'REDS', {'a': 4}, h=64, w=64)
    opt = {'name': 'aug', 'dataroot_gt': str(src / 'train_sharp'),
           'dataroot_lq': str(src / 'train_sharp_bicubic' / 'X4'),
           'io_backend': {'type': 'disk'}, 'num_frame': 4, 'gt_size': 64, 'scale': 4, 'use_hflip': True,
           'use_rot': True, 'random_reverse': True}
    ds = VSRDBRecurrentDataset(opt)
    for i in range(6):
        item = ds[i % len(ds)]
        # LR still equals the MATLAB downscale of the (identically transformed) HR frames
        for lq, gt in zip(item['lq'], item['gt']):
            expected = bicubic_downscale(as_bgr_uint8(gt), 4).astype(int)
            assert np.abs(expected - as_bgr_uint8(lq)).max() <= 1


def make_dvd(root, clips):
    for seed, (clip, n) in enumerate(clips.items()):
        sharp = smooth_frames(n, 32, 48, seed)
        write_clip(root / 'quantitative_datasets' / clip / 'GT', sharp, '{:05d}.jpg')
        write_clip(root / 'quantitative_datasets' / clip / 'input', [cv2.blur(f, (3, 3)) for f in sharp], '{:05d}.jpg')
    return root


def test_dvd_jpg_clips_of_different_lengths(tmp_path):
    src = make_dvd(tmp_path / 'DVD', {'IMG_0003': 3, 'IMG_0100': 5, 'clip_b': 2})
    out = tmp_path / 'lmdb'
    assert cli(['dvd', '--input', str(src), '--output', str(out), '--encoding', 'source']) == 0
    assert cli(['verify', str(out)]) == 0
    assert (out / 'test' / 'meta_info.txt').read_text() == 'IMG_0003 3 (32,48,3)\n'
    assert (out / 'train' / 'meta_info.txt').read_text() == 'clip_b 2 (32,48,3)\nIMG_0100 5 (32,48,3)\n'
    ds = VSRDBTestDataset({'dataroot_gt': str(out / 'train' / 'sharp.lmdb'),
                           'dataroot_lq': str(out / 'train' / 'blur_bicubic.lmdb'),
                           'dataroot_lq_sharp': str(out / 'train' / 'sharp_bicubic.lmdb'),
                           'io_backend': {'type': 'lmdb'}})
    item = ds[ds.folders.index('IMG_0100')]
    gt_src = load_dir(src / 'quantitative_datasets' / 'IMG_0100' / 'GT')
    blur_src = load_dir(src / 'quantitative_datasets' / 'IMG_0100' / 'input')
    for i in range(5):
        assert np.array_equal(as_bgr_uint8(item['gt'][i]), gt_src[i])
        assert np.array_equal(as_bgr_uint8(item['lq'][i]), bicubic_downscale(blur_src[i], 4))
        assert np.array_equal(as_bgr_uint8(item['lq_sharp'][i]), bicubic_downscale(gt_src[i], 4))


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
    import re
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


def test_interrupted_conversion_resumes(tmp_path, monkeypatch, capsys):
    src = make_reds(tmp_path / 'REDS', {'000': 6, '001': 6})
    out = tmp_path / 'out'
    monkeypatch.setattr(pack_module, 'COMMIT_BYTES', 1)  # commit after every frame
    real_load, calls = pack_module.load_frame, []

    def dying_load(frame, *args):
        calls.append(frame.key)
        if len(calls) == 20:  # in the middle of the second LMDB
            raise KeyboardInterrupt
        return real_load(frame, *args)

    monkeypatch.setattr(pack_module, 'load_frame', dying_load)
    assert cli(['reds', '--input', str(src), '--output', str(out), '--workers', '1']) == 130
    partial = next((out / 'train').glob('*.lmdb.partial'))
    assert not (out / 'train' / partial.name[:-len('.partial')]).exists()
    assert cli(['verify', str(out)]) == 1  # nothing looks complete
    monkeypatch.setattr(pack_module, 'load_frame', real_load)
    assert cli(['reds', '--input', str(src), '--output', str(out)]) == 2
    assert '--resume' in capsys.readouterr().err
    calls.clear()
    monkeypatch.setattr(pack_module, 'load_frame', lambda f, *a: calls.append(f.key) or real_load(f, *a))
    assert cli(['reds', '--input', str(src), '--output', str(out), '--resume']) == 0
    assert len(calls) < 4 * 12 - 8, 'resume redid committed frames'
    assert cli(['verify', str(out)]) == 0
    ds = VSRDBTestDataset({'dataroot_gt': str(out / 'train' / 'blur.lmdb'),
                           'dataroot_lq': str(out / 'train' / 'blur_bicubic.lmdb'), 'io_backend': {'type': 'lmdb'}})
    for got, want in zip(ds[1]['gt'], load_dir(src / 'train_blur' / '001')):
        assert np.array_equal(as_bgr_uint8(got), want)


def test_conversion_killed_with_sigkill_then_resumed(tmp_path):
    src = tmp_path / 'REDS'
    for clip in range(3):
        write_clip(src / 'train_sharp' / f'{clip:03d}', smooth_frames(40, 256, 384, clip))
    out = tmp_path / 'out'
    cmd = [sys.executable, '-m', 'datasets_lmdb', 'reds', '--input', str(src), '--output', str(out),
           '--generate-bicubic', '--workers', '1']
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list((out / 'train').glob('*.partial')) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.2)  # mid-way through the first LMDB
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the conversion ended before it could be killed'
    assert not (out / 'train' / 'sharp_bicubic.lmdb').exists()
    rerun = subprocess.run(cmd + ['--resume'], cwd=REPO, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert cli(['verify', str(out)]) == 0


def test_verify_finds_a_missing_frame(tmp_path, capsys):
    src = make_reds(tmp_path / 'REDS', {'000': 3})
    out = tmp_path / 'out'
    assert cli(['reds', '--input', str(src), '--output', str(out)]) == 0
    env = lmdb.open(str(out / 'train' / 'blur.lmdb'))
    with env.begin(write=True) as txn:
        txn.delete(b'000/00000001')
    env.close()
    assert cli(['verify', str(out)]) == 1
    assert 'frames missing, e.g. 000/00000001' in capsys.readouterr().err


def _real_frames():
    folder = SHARED_DATA / 'basketballpass'
    if folder.is_dir():
        return read_frames(folder, max_frames=12), folder
    clip = REPO / 'hoffr_arch' / 'assets' / 'sam2_01_dog.mp4'
    return read_frames(clip, start=90, max_frames=12, resize=(416, 240)), None


def test_frame_folders_are_natural_sorted():
    frames, folder = _real_frames()
    if folder is None:
        pytest.skip('needs ../shared/data/basketballpass (im1.png .. im100.png)')
    assert np.array_equal(frames[1], cv2.imread(str(folder / 'im2.png')))
    assert np.array_equal(frames[9], cv2.imread(str(folder / 'im10.png')))


def test_synth_blur_grows_with_exposure():
    frames, _ = _real_frames()
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
