"""BasicSR's train and test pipelines driving HOFFR on CPU, end to end: validation by value, resume
from elsewhere past the old end, the test pipeline's metrics, a loader worker, stock BasicVSR."""
import json

import cv2
import numpy as np
import pytest
import yaml

from datasets_lmdb.__main__ import main as datasets_cli

from conftest import copy_run, smooth_frames, write_clip
from pipeline import (batch_keys, edit_options, logged_metrics, metrics_by_value, read_logs, run, saved_frames,
                      train_options)


def test_validation_logs_what_the_saved_checkpoint_scores(trained_run, lmdb_data):
    """The run's validation at iteration 6: its images are the checkpoint's EMA weights run on the
    held-out clip, and the PSNR / tOF it logged are those images' scores."""
    import torch
    from basicsr.utils import tensor2img
    from hoffr_arch.archs.hoffr_arch import HOFFR
    from hoffr_arch.evaluation import test_dataset
    exp = trained_run / 'experiments' / 'cut'
    assert (exp / 'models' / 'net_g_6.pth').exists() and (exp / 'training_states' / '6.state').exists()
    outputs = saved_frames(exp / 'visualization' / 'tiny_val' / '002', 6)
    opt = yaml.safe_load((exp / 'cut.yml').read_text())['network_g']
    net = HOFFR(**{k: v for k, v in opt.items() if k != 'type'}).eval()
    net.load_state_dict(torch.load(exp / 'models' / 'net_g_6.pth', weights_only=True)['params_ema'])
    with torch.no_grad():
        want = net(test_dataset(lmdb_data[1])[0]['lq'][None])[0]
    for got, frame in zip(outputs, want):
        assert np.abs(got.astype(int) - tensor2img(frame).astype(int)).max() <= 1
    logged = logged_metrics(read_logs(trained_run, 'cut'))
    assert len(logged) == 2  # at iteration 6 and at the end (7)
    recomputed = metrics_by_value(outputs, lmdb_data[1])
    assert logged[0] == pytest.approx(recomputed, abs=1e-4)


def test_resume_from_another_directory_continues_the_data_past_the_old_end(tmp_path, lmdb_data, trained_run):
    """'cut' stopped after 7 of what a reference ran in 14 iterations (10 per epoch: the resume crosses
    an epoch boundary); resumed from elsewhere with ``--force_yml train:total_iter=14`` it sees the
    reference's batches from iteration 7 on, and its schedule follows the new end (BasicSR's cosine
    scheduler failed with a TypeError at the first iteration past its periods)."""
    root = tmp_path / 'root'
    ref = train_options(tmp_path, lmdb_data, name='ref', total_iter=14, save_freq=14)
    run('hoffr_arch.train', ref, root, tmp_path)
    ref_keys = batch_keys(read_logs(root, 'ref'))
    assert sorted(ref_keys) == list(range(1, 15))
    first = batch_keys(read_logs(trained_run, 'cut'))
    assert first == {i: ref_keys[i] for i in range(1, 8)}, 'the same seed, the same batches'

    copy_run(trained_run, root / 'copy')
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    opt = train_options(tmp_path, lmdb_data, name='cut', total_iter=7, save_freq=6)
    run('hoffr_arch.train', opt, root / 'copy', elsewhere, '--auto_resume', '--force_yml', 'train:total_iter=14')
    log = read_logs(root / 'copy', 'cut')
    assert 'Resuming training from epoch: 0, iter: 6.' in log
    keys = batch_keys(log.split('Resuming training')[1])
    assert keys == {i: ref_keys[i] for i in range(7, 15)}, 'resume replayed or skipped data'
    exp = root / 'copy' / 'experiments' / 'cut'
    assert (exp / 'models' / 'net_g_12.pth').exists()
    saved = yaml.safe_load((exp / 'cut.yml').read_text())
    assert saved['train']['total_iter'] == 14 and saved['train']['scheduler']['periods'] == [14]
    assert not list(elsewhere.iterdir()), 'nothing is written to the working directory'


def test_test_pipeline_writes_metrics_and_images(tmp_path, lmdb_data, trained_run):
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img
    from hoffr_arch.evaluation import test_dataset
    root = tmp_path / 'root'
    _, test = lmdb_data
    exp = trained_run / 'experiments' / 'cut'
    opt = {'name': 'tiny_test', 'model_type': 'HOFFRModel', 'scale': 4, 'num_gpu': 'auto', 'manual_seed': 0,
           'datasets': {'test_1': {'name': 'held_out', 'type': 'VSRDBTestDataset',
                                   'dataroot_gt': str(test / 'sharp.lmdb'),
                                   'dataroot_lq': str(test / 'blur_bicubic.lmdb'),
                                   'io_backend': {'type': 'lmdb'}}},
           'network_g': yaml.safe_load((exp / 'cut.yml').read_text())['network_g'],
           'path': {'pretrain_network_g': str(exp / 'models' / 'net_g_latest.pth'),
                    'param_key_g': 'params_ema', 'strict_load_g': True},
           'val': {'save_img': True, 'skip_border_frames': 1,
                   'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 4, 'test_y_channel': False},
                               'ssim': {'type': 'calculate_ssim', 'crop_border': 4, 'test_y_channel': False},
                               'tof': {'type': 'calculate_tof'}}}}
    path = tmp_path / 'test.yml'
    path.write_text(yaml.safe_dump(opt))
    run('hoffr_arch.test', path, root, tmp_path)
    metrics = json.loads((root / 'results' / 'tiny_test' / 'metrics_held_out.json').read_text())
    assert set(metrics['average']) == {'psnr', 'ssim', 'tof'} and set(metrics['clips']) == {'002'}
    assert metrics['skip_border_frames'] == 1
    frames = sorted(p.name for p in (root / 'results' / 'tiny_test' / 'visualization' / 'held_out' / '002').iterdir())
    assert frames == [f'{i:08d}_tiny_test.png' for i in range(4)]
    # the FMA-Net protocol by value: frames 1 and 2 of 4 (first and last skipped), 4-pixel crop
    gts = test_dataset(test)[0]['gt']
    outs = [cv2.imread(str(root / 'results' / 'tiny_test' / 'visualization' / 'held_out' / '002' / name))
            for name in frames]
    want = sum(calculate_psnr(outs[i], tensor2img(gts[i]), 4) for i in (1, 2)) / 2
    assert metrics['clips']['002']['psnr'] == pytest.approx(want, abs=1e-6)
    assert metrics['average']['psnr'] == pytest.approx(want, abs=1e-6)  # one clip: its score is the average
    every = sum(calculate_psnr(outs[i], tensor2img(gts[i]), 4) for i in range(4)) / 4
    assert abs(every - want) > 1e-3  # the skipped frames count: this check can tell


def test_train_and_val_on_the_same_lmdb_with_a_loader_worker(tmp_path, lmdb_data):
    """A quick check often validates on the training data: one LMDB opened by both datasets."""
    train, _ = lmdb_data
    root = tmp_path / 'root'
    opt = train_options(tmp_path, (train, train), name='same', total_iter=2, save_freq=2)

    def one_worker(cfg):
        cfg['datasets']['train']['num_worker_per_gpu'] = 1
        cfg['datasets']['val']['max_frames'] = 3
    run('hoffr_arch.train', edit_options(opt, one_worker), root, tmp_path)
    log = read_logs(root, 'same')
    assert sorted(batch_keys(log)) == [1, 2] and all(len(k.split()) == 2 for k in batch_keys(log).values())
    logged = logged_metrics(log)
    assert len(logged) == 2  # at iteration 2 and at the end
    assert logged[0]['psnr'] == logged[1]['psnr'] and 10 < logged[0]['psnr'] < 60  # the same weights


def test_stock_basicvsr_trains_on_our_lmdb_with_basicsr_reds_dataset(tmp_path):
    """Our LMDBs are BasicSR's: its own REDSRecurrentDataset and VideoRecurrentModel train on them,
    and the checkpoint is its BasicVSR's."""
    import re
    import torch
    from basicsr.archs.basicvsr_arch import BasicVSR
    # the two kinds it reads: 100 frames (as REDS has), LR >= 64 pixels (SpyNet)
    sharp = smooth_frames(100, 256, 256, 0)
    write_clip(tmp_path / 'REDS' / 'train_sharp' / '001', sharp)
    write_clip(tmp_path / 'REDS' / 'train_blur_bicubic' / 'X4' / '001',
               [cv2.resize(cv2.blur(f, (5, 5)), (64, 64), interpolation=cv2.INTER_AREA) for f in sharp])
    src = tmp_path / 'REDS'
    out = tmp_path / 'lmdb'
    assert datasets_cli(['reds', '--input', str(src), '--output', str(out)]) == 0
    train = out / 'train'
    opt = {'name': 'stock', 'model_type': 'VideoRecurrentModel', 'scale': 4, 'num_gpu': 'auto', 'manual_seed': 0,
           'datasets': {'train': {
               'name': 'reds', 'type': 'REDSRecurrentDataset', 'dataroot_gt': str(train / 'sharp.lmdb'),
               'dataroot_lq': str(train / 'blur_bicubic.lmdb'), 'meta_info_file': str(train / 'meta_info.txt'),
               'val_partition': 'REDS4', 'test_mode': False, 'io_backend': {'type': 'lmdb'}, 'num_frame': 3,
               'gt_size': 256, 'interval_list': [1], 'random_reverse': False, 'use_hflip': True, 'use_rot': True,
               'num_worker_per_gpu': 0, 'batch_size_per_gpu': 1, 'dataset_enlarge_ratio': 1, 'prefetch_mode': None}},
           'network_g': {'type': 'BasicVSR', 'num_feat': 8, 'num_block': 1, 'spynet_path': None},
           'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
           'train': {'optim_g': {'type': 'Adam', 'lr': 1e-4, 'betas': [0.9, 0.99]},
                     'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [2], 'restart_weights': [1],
                                   'eta_min': 1e-7},
                     'total_iter': 2, 'warmup_iter': -1, 'fix_flow': 0,
                     'pixel_opt': {'type': 'CharbonnierLoss', 'loss_weight': 1.0, 'reduction': 'mean'}},
           'logger': {'print_freq': 1, 'save_checkpoint_freq': 2, 'use_tb_logger': False}}
    path = tmp_path / 'stock.yml'
    path.write_text(yaml.safe_dump(opt))
    root = tmp_path / 'root'
    run('hoffr_arch.train', path, root, tmp_path)
    losses = [float(v) for v in re.findall(r'l_pix: ([-+\d.eE]+)', read_logs(root, 'stock'))]
    assert len(losses) == 2 and all(0 < v < 1 for v in losses), losses  # Charbonnier of [0, 1] images
    net = BasicVSR(num_feat=8, num_block=1)
    net.load_state_dict(torch.load(root / 'experiments' / 'stock' / 'models' / 'net_g_2.pth',
                                   weights_only=True)['params'])  # strict: BasicSR's own network
