"""Helpers of the training tests: tiny option files, running BasicSR's pipelines in a process of their own
as a user does (``python -m hoffr_arch.train``), reading what they logged, and building a model in process."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from datasets_lmdb.__main__ import main as datasets_cli

from conftest import make_reds, python_m

REPO = Path(__file__).resolve().parents[1]


def make_lmdb_data(tmp):
    """Two 10-frame clips for training, one 4-frame clip held out, as LMDB: (train split, test split)."""
    src = make_reds(tmp / 'REDS', {'000': 10, '001': 10, '002': 4}, h=64, w=96)
    out = tmp / 'lmdb'
    assert datasets_cli(['reds', '--input', str(src), '--output', str(out)]) == 0
    train = out / 'train'
    # hold clip 002 out: a test split with its own LMDBs
    src_test = tmp / 'REDS_test'
    for folder in ('train_sharp', 'train_blur', 'train_sharp_bicubic/X4', 'train_blur_bicubic/X4'):
        shutil.copytree(src / folder / '002', src_test / folder / '002')
    assert datasets_cli(['reds', '--input', str(src_test), '--output', str(tmp / 'lmdb_test')]) == 0
    (train / 'meta_info.txt').write_text('000 10 (64,96,3)\n001 10 (64,96,3)\n')
    return train, tmp / 'lmdb_test' / 'train'


def train_options(root, data, name='tiny', total_iter=6, save_freq=3, **train_extra):
    """A tiny HOFFR training YAML at ``root/<name>.yml`` on ``data`` (train split, validation split)."""
    train, test = data
    opt = {
        'name': name, 'model_type': 'HOFFRModel', 'scale': 4, 'num_gpu': 'auto', 'manual_seed': 0,
        'datasets': {
            'train': {'name': 'tiny_train', 'type': 'VSRDBRecurrentDataset',
                      'dataroot_gt': str(train / 'sharp.lmdb'), 'dataroot_lq': str(train / 'blur_bicubic.lmdb'),
                      'dataroot_lq_sharp': str(train / 'sharp_bicubic.lmdb'),
                      'meta_info_file': str(train / 'meta_info.txt'), 'io_backend': {'type': 'lmdb'},
                      'num_frame': 3, 'gt_size': 32, 'interval_list': [1], 'random_reverse': False,
                      'use_hflip': True, 'use_rot': True, 'num_worker_per_gpu': 0, 'batch_size_per_gpu': 2,
                      'dataset_enlarge_ratio': 1, 'prefetch_mode': None},
            'val': {'name': 'tiny_val', 'type': 'VSRDBTestDataset', 'dataroot_gt': str(test / 'sharp.lmdb'),
                    'dataroot_lq': str(test / 'blur_bicubic.lmdb'), 'io_backend': {'type': 'lmdb'}},
        },
        'network_g': {'type': 'HOFFR', 'num_feat': 8, 'sr_num_feat': 8, 'sr_num_block': 1, 'db_num_feat': 8,
                      'db_num_block': 1, 'fusion_num_rcab': 1, 'squeeze_factor': 4, 'pof_num_feat': 8,
                      'pof_num_block': 1},
        'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None},
        'train': {'ema_decay': 0.9, 'optim_g': {'type': 'Adam', 'lr': 1e-3, 'betas': [0.9, 0.999]},
                  'scheduler': {'type': 'CosineAnnealingRestartLR', 'eta_min': 1e-5},  # periods: total_iter
                  'total_iter': total_iter, 'warmup_iter': -1, 'log_batch_keys': True,
                  'sr_opt': {'type': 'SRLoss', 'loss_weight': 1.0},
                  'db_opt': {'type': 'DBLoss', 'loss_weight': 0.5},
                  'flow_opt': {'type': 'FlowWarpLoss', 'loss_weight': 0.01}, **train_extra},
        'val': {'val_freq': save_freq, 'save_img': True,
                'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0, 'test_y_channel': False},
                            'tof': {'type': 'calculate_tof', 'better': 'lower'}}},
        'logger': {'print_freq': 1, 'save_checkpoint_freq': save_freq, 'use_tb_logger': False},
    }
    path = Path(root) / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def edit_options(path, edit):
    """Rewrite the YAML at ``path`` with ``edit(cfg)`` applied; returns ``path``."""
    cfg = yaml.safe_load(Path(path).read_text())
    edit(cfg)
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run(module, opt_path, root, cwd, *extra, launcher=None, timeout=300, check=True):
    """``python -m module -opt opt_path *extra`` with HOFFR_ROOT=root (under torchrun with two CPU
    processes if ``launcher``); asserts exit 0 unless ``check`` is False."""
    if launcher:
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29617',
               '-m', module, '-opt', str(opt_path), '--launcher', 'pytorch', *extra]
        env = dict(os.environ, HOFFR_ROOT=str(root), OMP_NUM_THREADS='1')
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    else:
        proc = python_m(module, '-opt', opt_path, *extra, cwd=cwd, env={'HOFFR_ROOT': root}, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def batch_keys(log_text):
    """{iteration: batch keys} from the training log (train.log_batch_keys)."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(r'iter (\d+) batch keys: (.*)', log_text)}


def logged_metrics(log_text, dataset='tiny_val'):
    """[{metric: value}] of each validation of ``dataset`` in the log, in order."""
    out = []
    for block in log_text.split(f'Validation {dataset}')[1:]:
        values = {}
        for m in re.finditer(r'^\s*# (\w+): ([-+\d.eE]+|nan|inf)', block, re.MULTILINE):
            if m.group(1) in values:
                break  # the best-so-far lines follow
            values[m.group(1)] = float(m.group(2))
        out.append(values)
    return out


def saved_frames(folder, suffix, n=4):
    return [cv2.imread(str(folder / f'{i:08d}_{suffix}.png')) for i in range(n)]


def metrics_by_value(outputs, test_split):
    """{'psnr', 'tof'} of the held-out clip 002 as ``train_options``' ``val.metrics`` define them,
    recomputed here from the saved (h, w, 3) uint8 outputs: the mean frame PSNR, the clip's tOF."""
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img
    from basicsr.utils.registry import METRIC_REGISTRY
    from hoffr_arch.evaluation import test_dataset
    gts = [tensor2img(f) for f in test_dataset(test_split)[0]['gt']]
    return {'psnr': float(np.mean([calculate_psnr(o, g, 0) for o, g in zip(outputs, gts)])),
            'tof': METRIC_REGISTRY.get('calculate_tof')(outputs, gts)}


def read_logs(root, name):
    return '\n'.join(p.read_text() for p in sorted((Path(root) / 'experiments' / name).glob('train_*.log')))


def build_in_process(opt, root):
    """``opt`` (a train_options dict) built into its model as BasicSR's train_pipeline does, on CPU."""
    from basicsr.models import build_model
    opt = dict(opt, is_train=True, dist=False, rank=0, world_size=1, num_gpu=0)
    opt['path'] = dict(opt['path'], experiments_root=str(root), models=str(root), training_states=str(root))
    return build_model(opt)
