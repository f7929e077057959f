"""datasets_lmdb reds / dvd: the packed LMDBs hold the source frames exactly, stock BasicSR decodes
every value, clips of any length pack; verify finds a missing frame."""
import cv2
import lmdb
import numpy as np
import pytest

from datasets_lmdb.__main__ import main as cli
from hoffr_arch.data.frame_io import bicubic_downscale, decode_frame
from hoffr_arch.data.vsrdb_dataset import VSRDBTestDataset

from conftest import as_bgr_uint8, load_dir, make_reds, smooth_frames, write_clip


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
