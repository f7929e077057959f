"""BasicSR's train/test pipelines driving HOFFR on CPU: end to end, resume, torchrun, kill, NaN."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from datasets_lmdb.__main__ import main as datasets_cli
from hoffr_arch import compat
from hoffr_arch._entry import project_root
from hoffr_arch.options import OptionsError, check_options

from conftest import make_reds

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def lmdb_data(tmp_path_factory):
    """Two 10-frame clips for training, one 4-frame clip held out, as LMDB."""
    tmp = tmp_path_factory.mktemp('data')
    src = make_reds(tmp / 'REDS', {'000': 10, '001': 10, '002': 4}, h=64, w=96)
    out = tmp / 'lmdb'
    assert datasets_cli(['reds', '--input', str(src), '--output', str(out)]) == 0
    train, test = out / 'train', out / 'test'
    test.mkdir()
    # hold clip 002 out: a test split with its own LMDBs
    src_test = tmp / 'REDS_test'
    for folder in ('train_sharp', 'train_blur', 'train_sharp_bicubic/X4', 'train_blur_bicubic/X4'):
        shutil.copytree(src / folder / '002', src_test / folder / '002')
    assert datasets_cli(['reds', '--input', str(src_test), '--output', str(tmp / 'lmdb_test')]) == 0
    (train / 'meta_info.txt').write_text('000 10 (64,96,3)\n001 10 (64,96,3)\n')
    return train, tmp / 'lmdb_test' / 'train'


def train_options(root, data, name='tiny', total_iter=6, save_freq=3, **train_extra):
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


def run(module, opt_path, root, cwd, *extra, launcher=None, timeout=300, check=True):
    env = dict(os.environ, HOFFR_ROOT=str(root), OMP_NUM_THREADS='1')
    if launcher:
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=2', '--master_port=29617',
               '-m', module, '-opt', str(opt_path), '--launcher', 'pytorch', *extra]
    else:
        cmd = [sys.executable, '-m', module, '-opt', str(opt_path), *extra]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def batch_keys(log_text):
    """{iteration: batch keys} from the training log (train.log_batch_keys)."""
    return {int(m.group(1)): m.group(2) for m in re.finditer(r'iter (\d+) batch keys: (.*)', log_text)}


def read_logs(root, name):
    return '\n'.join(p.read_text() for p in sorted((Path(root) / 'experiments' / name).glob('train_*.log')))


def test_train_then_resume_from_another_directory_continues_the_data(tmp_path, lmdb_data):
    root = tmp_path / 'root'
    root.mkdir()
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    # reference: 14 uninterrupted iterations (10 per epoch: the resume crosses an epoch boundary)
    ref = train_options(tmp_path, lmdb_data, name='ref', total_iter=14, save_freq=6)
    run('hoffr_arch.train', ref, root, tmp_path)
    ref_keys = batch_keys(read_logs(root, 'ref'))
    assert sorted(ref_keys) == list(range(1, 15))

    # the same run stopped after 7 iterations (last checkpoint: 6), then auto-resumed from elsewhere
    opt = train_options(tmp_path, lmdb_data, name='cut', total_iter=7, save_freq=6)
    run('hoffr_arch.train', opt, root, tmp_path)
    exp = root / 'experiments' / 'cut'
    assert (exp / 'models' / 'net_g_6.pth').exists() and (exp / 'training_states' / '6.state').exists()
    log = read_logs(root, 'cut')
    assert 'Validation tiny_val' in log and '# psnr:' in log and '# tof:' in log
    assert list((exp / 'visualization' / 'tiny_val' / '002').glob('00000003_6.png')), 'images saved during training'

    opt = train_options(tmp_path, lmdb_data, name='cut', total_iter=14, save_freq=6)
    run('hoffr_arch.train', opt, root, elsewhere, '--auto_resume')
    log = read_logs(root, 'cut')
    assert 'Resuming training from epoch: 0, iter: 6.' in log
    keys = batch_keys(log.split('Resuming training')[1])
    assert sorted(keys) == list(range(7, 15))
    assert keys == {i: ref_keys[i] for i in range(7, 15)}, 'resume replayed or skipped data'
    assert (exp / 'models' / 'net_g_12.pth').exists()
    assert not list(elsewhere.iterdir()), 'nothing is written to the working directory'


def test_test_pipeline_writes_metrics_and_images(tmp_path, lmdb_data):
    root = tmp_path / 'root'
    run('hoffr_arch.train', train_options(tmp_path, lmdb_data, total_iter=2, save_freq=2), root, tmp_path)
    _, test = lmdb_data
    opt = {'name': 'tiny_test', 'model_type': 'HOFFRModel', 'scale': 4, 'num_gpu': 'auto', 'manual_seed': 0,
           'datasets': {'test_1': {'name': 'held_out', 'type': 'VSRDBTestDataset',
                                   'dataroot_gt': str(test / 'sharp.lmdb'),
                                   'dataroot_lq': str(test / 'blur_bicubic.lmdb'),
                                   'io_backend': {'type': 'lmdb'}}},
           'network_g': yaml.safe_load((tmp_path / 'tiny.yml').read_text())['network_g'],
           'path': {'pretrain_network_g': str(root / 'experiments' / 'tiny' / 'models' / 'net_g_latest.pth'),
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
    import cv2
    from basicsr.metrics import calculate_psnr
    from hoffr_arch.evaluation import test_dataset
    gts = test_dataset(test)[0]['gt']
    outs = [cv2.imread(str(root / 'results' / 'tiny_test' / 'visualization' / 'held_out' / '002' / name))
            for name in frames]
    from basicsr.utils import tensor2img
    want = sum(calculate_psnr(outs[i], tensor2img(gts[i]), 4) for i in (1, 2)) / 2
    assert metrics['clips']['002']['psnr'] == pytest.approx(want, abs=1e-6)
    every = sum(calculate_psnr(outs[i], tensor2img(gts[i]), 4) for i in range(4)) / 4
    assert abs(every - want) > 1e-3  # the skipped frames count: this check can tell


def test_train_and_val_on_the_same_lmdb_with_a_loader_worker(tmp_path, lmdb_data):
    """A quick check often validates on the training data: one LMDB opened by both datasets."""
    train, _ = lmdb_data
    root = tmp_path / 'root'
    opt = train_options(tmp_path, (train, train), name='same', total_iter=2, save_freq=2)
    cfg = yaml.safe_load(opt.read_text())
    cfg['datasets']['train']['num_worker_per_gpu'] = 1
    cfg['datasets']['val']['max_frames'] = 3
    opt.write_text(yaml.safe_dump(cfg))
    run('hoffr_arch.train', opt, root, tmp_path)
    log = read_logs(root, 'same')
    assert log.count('Validation tiny_val') == 2  # at iteration 2 and at the end


def test_data_errors_are_one_line_before_any_experiment_folder(tmp_path, lmdb_data):
    root = tmp_path / 'root'
    cases = [({'dataroot_gt': str(tmp_path / 'nowhere.lmdb')}, 'nowhere.lmdb not found'),
             ({'gt_size': 512}, 'smaller than the crop 128x128'),
             ({'num_frame': 40}, 'num_frame 40 needs 40')]
    for change, message in cases:
        opt = train_options(tmp_path, lmdb_data, name='bad')
        cfg = yaml.safe_load(opt.read_text())
        cfg['datasets']['train'].update(change)
        opt.write_text(yaml.safe_dump(cfg))
        proc = run('hoffr_arch.train', opt, root, tmp_path, check=False)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr[-2000:]
        assert 'Traceback' not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not (root / 'experiments' / 'bad').exists()


def test_torchrun_two_processes_on_cpu(tmp_path, lmdb_data):
    root = tmp_path / 'root'
    opt = train_options(tmp_path, lmdb_data, name='ddp', total_iter=4, save_freq=2)
    proc = run('hoffr_arch.train', opt, root, tmp_path, launcher=True)
    log = read_logs(root, 'ddp')
    assert 'World size (gpu number): 2' in log, proc.stdout[-2000:]
    assert 'Validation tiny_val' in log
    assert (root / 'experiments' / 'ddp' / 'models' / 'net_g_4.pth').exists()


def test_sigkill_then_auto_resume_loses_at_most_one_interval(tmp_path, lmdb_data):
    root = tmp_path / 'root'
    opt = train_options(tmp_path, lmdb_data, name='killed', total_iter=400, save_freq=3)
    states = root / 'experiments' / 'killed' / 'training_states'
    env = dict(os.environ, HOFFR_ROOT=str(root), OMP_NUM_THREADS='1')
    proc = subprocess.Popen([sys.executable, '-m', 'hoffr_arch.train', '-opt', str(opt)], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(states.glob('*.state'))) < 2 and proc.poll() is None:
        time.sleep(0.1)
    assert proc.poll() is None, f'the training ended early (exit {proc.returncode})'
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = max(int(p.stem) for p in states.glob('*.state'))
    # what a kill during a save leaves behind: temporary files, never a complete-looking one
    (states / f'{saved + 3}.state.tmp').write_bytes(b'partial')
    (root / 'experiments' / 'killed' / 'models' / f'net_g_{saved + 3}.pth.tmp').write_bytes(b'partial')
    # and a network saved without its training state (killed between the two files)
    shutil.copy(root / 'experiments' / 'killed' / 'models' / f'net_g_{saved}.pth',
                root / 'experiments' / 'killed' / 'models' / f'net_g_{saved + 3}.pth')
    opt = train_options(tmp_path, lmdb_data, name='killed', total_iter=saved + 2, save_freq=3)
    run('hoffr_arch.train', opt, root, tmp_path, '--auto_resume')
    log = read_logs(root, 'killed')
    assert f'Resuming training from epoch: 0, iter: {saved}.' in log
    assert f'iter {saved + 2} batch keys' in log


def test_nan_loss_stops_with_a_clear_message_and_keeps_checkpoints(tmp_path, lmdb_data):
    root = tmp_path / 'root'
    run('hoffr_arch.train', train_options(tmp_path, lmdb_data, name='nan', total_iter=4, save_freq=2), root, tmp_path)
    models = root / 'experiments' / 'nan' / 'models'
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    opt = train_options(tmp_path, lmdb_data, name='nan', total_iter=8, save_freq=2)
    cfg = yaml.safe_load(opt.read_text())
    cfg['train']['sr_opt']['loss_weight'] = float('nan')
    opt.write_text(yaml.safe_dump(cfg))
    proc = run('hoffr_arch.train', opt, root, tmp_path, '--auto_resume', check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: non-finite loss at iteration 5 (l_sr=nan'), last
    assert 'Last good checkpoint: iteration 4' in last
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before


def test_bad_option_file_fails_at_start_naming_the_key(tmp_path, lmdb_data):
    opt = train_options(tmp_path, lmdb_data)
    cfg = yaml.safe_load(opt.read_text())
    cfg['train']['totl_iter'] = cfg['train'].pop('total_iter')
    opt.write_text(yaml.safe_dump(cfg))
    # the README's example, as it prints: the misspelling is named, not the key it misses
    with pytest.raises(OptionsError, match=r"unknown key 'train.totl_iter' \(did you mean 'total_iter'\?\)"):
        check_options(opt)
    cfg['train']['total_iter'] = cfg['train'].pop('totl_iter')
    del cfg['train']['scheduler']
    opt.write_text(yaml.safe_dump(cfg))
    with pytest.raises(OptionsError, match=r"missing key 'train.scheduler'"):
        check_options(opt)
    cfg['train']['scheduler'] = {'type': 'CosineAnnealingRestartLR', 'periods': [100], 'restart_weights': [1]}
    cfg['network_g']['num_blocks'] = 3
    cfg['datasets']['train']['gt_sise'] = 32
    opt.write_text(yaml.safe_dump(cfg))
    with pytest.raises(OptionsError, match=r"unknown key 'network_g.num_blocks'"):
        check_options(opt)
    del cfg['network_g']['num_blocks']
    opt.write_text(yaml.safe_dump(cfg))
    with pytest.raises(OptionsError, match=r"unknown key 'datasets.train.gt_sise' \(did you mean 'gt_size'\?\)"):
        check_options(opt)
    proc = run('hoffr_arch.train', opt, tmp_path, tmp_path, check=False)
    assert proc.returncode == 2 and "unknown key 'datasets.train.gt_sise'" in proc.stderr
    assert 'Traceback' not in proc.stderr
    for shipped in sorted((REPO / 'options').rglob('*.yml')):
        check_options(shipped, is_train='/test/' not in str(shipped))


def test_force_yml_is_checked_as_it_will_run(tmp_path, lmdb_data, monkeypatch):
    """The options are checked with ``--force_yml`` applied: an override can point a YAML whose data is
    elsewhere at real data (it failed on the un-overridden path before), and cannot smuggle in a typo."""
    from hoffr_arch._entry import prepare
    opt = train_options(tmp_path, lmdb_data)
    cfg = yaml.safe_load(opt.read_text())
    real = cfg['datasets']['train']['dataroot_gt']
    cfg['datasets']['train']['dataroot_gt'] = str(tmp_path / 'elsewhere' / 'sharp.lmdb')
    opt.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv('HOFFR_ROOT', str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'argv', ['train'])
    with pytest.raises(SystemExit) as missing:
        prepare(['-opt', str(opt)], is_train=True)
    assert missing.value.code == 2
    prepare(['-opt', str(opt), '--force_yml', f'datasets:train:dataroot_gt={real}', 'train:total_iter=3'], True)
    forced = check_options(opt, force=[f'datasets:train:dataroot_gt={real}', 'train:total_iter=3',
                                       'train:scheduler:periods=[3]', 'val:save_img=false'])
    assert forced['datasets']['train']['dataroot_gt'] == real and forced['train']['total_iter'] == 3
    assert forced['train']['scheduler']['periods'] == [3] and forced['val']['save_img'] is False
    with pytest.raises(OptionsError, match=r"unknown key 'train.totl_iter'"):
        check_options(opt, force=['train:totl_iter=3'])
    with pytest.raises(OptionsError, match=r"no section 'trian'"):
        check_options(opt, force=['trian:total_iter=3'])


def test_project_root_does_not_depend_on_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv('HOFFR_ROOT', raising=False)
    monkeypatch.chdir(tmp_path)
    assert project_root() == REPO
    monkeypatch.setenv('HOFFR_ROOT', str(tmp_path))
    assert project_root() == tmp_path


def test_find_resume_state_ignores_partial_and_orphan_files(tmp_path):
    (tmp_path / 'training_states').mkdir()
    (tmp_path / 'models').mkdir()
    for it in (5, 10):
        (tmp_path / 'training_states' / f'{it}.state').write_bytes(b'x')
        (tmp_path / 'models' / f'net_g_{it}.pth').write_bytes(b'x')
    (tmp_path / 'training_states' / '15.state.tmp').write_bytes(b'x')
    (tmp_path / 'training_states' / '20.state').write_bytes(b'x')  # its network file is missing
    assert compat.find_resume_state(tmp_path) == str(tmp_path / 'training_states' / '10.state')


def test_stock_basicvsr_trains_on_our_lmdb_with_basicsr_reds_dataset(tmp_path):
    """Our LMDBs are BasicSR's: its own REDSRecurrentDataset and VideoRecurrentModel train on them."""
    src = make_reds(tmp_path / 'REDS', {'001': 100}, h=256, w=256)  # 100 frames (REDS), LR >= 64 (SpyNet)
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
    log = read_logs(root, 'stock')
    assert 'l_pix' in log and (root / 'experiments' / 'stock' / 'models' / 'net_g_2.pth').exists()


def build_in_process(opt, root):
    """``opt`` (a train_options dict) built into its model as BasicSR's train_pipeline does, on CPU."""
    from basicsr.models import build_model
    opt = dict(opt, is_train=True, dist=False, rank=0, world_size=1, num_gpu=0)
    opt['path'] = dict(opt['path'], experiments_root=str(root), models=str(root), training_states=str(root))
    return build_model(opt)


def test_flow_lr_mul_makes_a_slower_pof_group_or_freezes_it(tmp_path, lmdb_data):
    opt = yaml.safe_load(train_options(tmp_path, lmdb_data, name='groups').read_text())
    model = build_in_process(dict(opt, train=dict(opt['train'], flow_lr_mul=0.125)), tmp_path)
    rest, pof = model.optimizer_g.param_groups
    pof_params = set(map(id, model.net_g.pof.parameters()))
    assert pof['lr'] == pytest.approx(0.125 * rest['lr']) and rest['lr'] == pytest.approx(1e-3)
    assert set(map(id, pof['params'])) == pof_params and not pof_params & set(map(id, rest['params']))
    frozen = build_in_process(dict(opt, train=dict(opt['train'], flow_lr_mul=0)), tmp_path)
    assert len(frozen.optimizer_g.param_groups) == 1
    assert not any(p.requires_grad for p in frozen.net_g.pof.parameters())
    assert not set(map(id, frozen.net_g.pof.parameters())) & set(map(id, frozen.optimizer_g.param_groups[0]['params']))


def test_validation_runs_the_ema_weights(tmp_path, lmdb_data):
    import torch
    opt = yaml.safe_load(train_options(tmp_path, lmdb_data, name='ema').read_text())
    model = build_in_process(opt, tmp_path)
    with torch.no_grad():
        model.net_g_ema.db_head.bias += 0.25  # EMA and live weights now differ visibly (output + 0.25)
    lq = torch.rand(1, 3, 3, 16, 24)
    model.feed_data({'lq': lq})
    model.test()
    with torch.no_grad():
        assert torch.allclose(model.output, model.net_g_ema(lq))
        assert (model.output - model.net_g(lq)).abs().mean() > 0.1


def test_a_new_loss_term_is_a_registered_class_and_one_yaml_entry(tmp_path, lmdb_data):
    """train.losses: any registered loss with named inputs, BasicSR's own included; any optimiser
    later BasicSR releases support. Built and stepped as BasicSR's train_pipeline would."""
    import torch
    from torch import nn
    from basicsr.utils.registry import LOSS_REGISTRY
    from hoffr_arch.data.vsrdb_dataset import VSRDBRecurrentDataset

    class GradientLoss(nn.Module):  # the "one new file": a loss on the deblurred frames' gradients
        inputs = ('deblurred', 'lq_sharp')

        def __init__(self, loss_weight=1.0):
            super().__init__()
            self.loss_weight = loss_weight

        def forward(self, deblurred, sharp):
            return self.loss_weight * (deblurred.diff(dim=-1) - sharp.diff(dim=-1)).abs().mean()

    if 'GradientLoss' not in LOSS_REGISTRY:
        LOSS_REGISTRY.register(GradientLoss)
    path = train_options(tmp_path, lmdb_data, name='losses')
    opt = yaml.safe_load(path.read_text())
    train = opt['train']
    for key in ('sr_opt', 'db_opt', 'flow_opt'):
        del train[key]
    train['losses'] = [{'type': 'SRLoss', 'criterion': 'charbonnier'},
                       {'type': 'L1Loss', 'loss_weight': 0.5, 'inputs': ['deblurred', 'lq_sharp'], 'name': 'l_db_l1'},
                       {'type': 'GradientLoss', 'loss_weight': 0.1}]
    train['optim_g'] = {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': 0.01}
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    check_options(path, is_train=True)
    bad = dict(opt, train=dict(train, losses=train['losses'] + [{'type': 'SRLoss', 'inputs': ['output', 'gtt']}]))
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    with pytest.raises(OptionsError, match=r"losses\[3\]\.inputs': unknown \['gtt'\]"):
        check_options(path, is_train=True)

    model = build_in_process(opt, tmp_path)
    assert type(model.optimizer_g) is torch.optim.AdamW
    dataset = VSRDBRecurrentDataset(dict(opt['datasets']['train'], phase='train', scale=4))
    sample = dataset[0]
    model.feed_data(dict({k: v.unsqueeze(0) for k, v in sample.items() if torch.is_tensor(v)}, key=[sample['key']]))
    model.optimize_parameters(1)
    logged = model.get_current_log()
    assert list(logged) == ['l_sr', 'l_db_l1', 'l_gradient', 'l_total']
    assert logged['l_gradient'] > 0
    assert logged['l_total'] == pytest.approx(logged['l_sr'] + logged['l_db_l1'] + logged['l_gradient'], rel=1e-5)


def test_a_longer_total_iter_trains_past_the_old_end(tmp_path, lmdb_data):
    """The schedule follows ``total_iter``: a run resumed with a larger one trains on (BasicSR's cosine
    scheduler failed with a TypeError at the first iteration past its periods)."""
    root = tmp_path / 'root'
    opt = train_options(tmp_path, lmdb_data, name='longer', total_iter=4, save_freq=2)
    run('hoffr_arch.train', opt, root, tmp_path)
    proc = run('hoffr_arch.train', opt, root, tmp_path, '--auto_resume', '--force_yml', 'train:total_iter=7')
    log = read_logs(root, 'longer')
    assert 'Resuming training from epoch: 0, iter: 4.' in log and 'iter 7 batch keys' in log, proc.stderr[-2000:]
    saved = yaml.safe_load((root / 'experiments' / 'longer' / 'longer.yml').read_text())
    assert saved['train']['total_iter'] == 7 and saved['train']['scheduler']['periods'] == [7]
    cfg = yaml.safe_load(opt.read_text())
    cfg['train']['scheduler']['periods'] = [4]
    opt.write_text(yaml.safe_dump(cfg))
    short = r"'train.scheduler.periods' end at iteration 4, before 'train.total_iter' 7"
    with pytest.raises(OptionsError, match=short):
        check_options(opt, force=['train:total_iter=7'])


BAD_RUNS = {  # --force_yml entries -> what the one line must name
    'num_feat': (['network_g:num_feat=abc'], "'network_g.num_feat' must be an integer, got 'abc'"),
    'lr': (['train:optim_g:lr=fast'], "'train.optim_g.lr' must be a number, got 'fast'"),
    'batch': (['datasets:train:batch_size_per_gpu=0'], "'datasets.train.batch_size_per_gpu' must be an integer >= 1"),
    'num_frame': (['datasets:train:num_frame=-1'], "'datasets.train.num_frame' must be an integer >= 1, got -1"),
    'name': (['name=../../x'], "'name' '../../x' must be a plain folder name"),
    'size': (['network_g:num_feat=-4'], 'network_g: cannot build HOFFR with these options'),
    'pretrain': (['path:pretrain_network_g=missing.pth'], 'missing.pth: no such checkpoint'),
    'bad_pretrain': (['path:pretrain_network_g=bad.pth'], 'bad.pth: not a readable checkpoint'),
}


@pytest.mark.parametrize('case', sorted(BAD_RUNS))
def test_bad_options_are_one_line_before_any_folder(tmp_path, lmdb_data, monkeypatch, capsys, case):
    from hoffr_arch._entry import prepare
    force, message = BAD_RUNS[case]
    opt = train_options(tmp_path, lmdb_data, name='bad')
    (tmp_path / 'bad.pth').write_bytes(b'\x00' * 64)
    monkeypatch.setenv('HOFFR_ROOT', str(tmp_path))
    monkeypatch.setattr(sys, 'argv', ['train'])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        prepare(['-opt', str(opt), '--force_yml', *force], is_train=True)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'experiments' / 'bad').exists() and not (tmp_path.parent / 'x').exists()


def test_a_running_experiment_name_is_refused_until_its_process_ends(tmp_path, lmdb_data, monkeypatch, capsys):
    from hoffr_arch._entry import prepare
    opt = train_options(tmp_path, lmdb_data, name='busy')
    monkeypatch.setenv('HOFFR_ROOT', str(tmp_path))
    monkeypatch.setattr(sys, 'argv', ['train'])
    monkeypatch.chdir(tmp_path)
    holder = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        lock = tmp_path / 'experiments' / 'busy.lock'
        lock.parent.mkdir()
        lock.write_text(f'{holder.pid}\n')
        with pytest.raises(SystemExit) as exit_:
            prepare(['-opt', str(opt)], is_train=True)
        assert exit_.value.code == 2 and f'in use by a running process (PID {holder.pid})' in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    prepare(['-opt', str(opt)], is_train=True)  # the holder is gone: its lock is taken over
    assert lock.read_text().split()[0] == str(os.getpid())
