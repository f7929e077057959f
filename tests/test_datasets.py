"""The registered datasets on LMDB and on folders: options checked, training crops and their
augmentation equal to the source frames, natural frame order."""
import cv2
import numpy as np
import pytest

from datasets_lmdb.__main__ import main as cli
from hoffr_arch.data.frame_io import bicubic_downscale
from hoffr_arch.data.vsrdb_dataset import VSRDBRecurrentDataset, VSRDBTestDataset

from conftest import as_bgr_uint8, load_dir, make_reds, real_clip


def test_dataset_options_are_checked():
    with pytest.raises(KeyError, match="'dataroot_gt'"):
        VSRDBTestDataset({'name': 'x', 'dataroot_lq': 'a', 'io_backend': {'type': 'disk'}})


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


def test_frame_folders_are_natural_sorted(tmp_path):
    """im1 .. im12 read in their numbers' order (a name sort would put im10 after im1)."""
    from hoffr_arch.data.video_io import read_frames
    frames = real_clip()
    for i, img in enumerate(frames):
        cv2.imwrite(str(tmp_path / f'im{i + 1}.png'), img)
    read = read_frames(tmp_path)
    assert len(read) == 12 and all(np.array_equal(a, b) for a, b in zip(read, frames))
