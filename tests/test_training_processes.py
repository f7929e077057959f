"""Training as processes: torchrun with two CPU processes, SIGKILL then auto-resume, a NaN loss."""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import copy_run
from pipeline import (batch_keys, edit_options, logged_metrics, metrics_by_value, read_logs, run, saved_frames,
                      train_options)


def test_torchrun_two_processes_on_cpu(tmp_path, lmdb_data):
    """Rank 0 trains on its half of the sampler's order only, and the validation gathered from both
    ranks logs what its saved images score."""
    from basicsr.data.data_sampler import EnlargedSampler
    root = tmp_path / 'root'
    opt = train_options(tmp_path, lmdb_data, name='ddp', total_iter=4, save_freq=2)
    proc = run('hoffr_arch.train', opt, root, tmp_path, launcher=True)
    log = read_logs(root, 'ddp')
    assert 'World size (gpu number): 2' in log, proc.stdout[-2000:]
    sampler = EnlargedSampler(list(range(20)), num_replicas=2, rank=0)  # 2 clips of 10 frames
    sampler.set_epoch(0)
    order = list(sampler)
    keys = batch_keys(log)
    assert sorted(keys) == [1, 2, 3, 4]
    for it, batch in keys.items():
        clips = [key.split('/')[0] for key in batch.split()]
        assert clips == [f'{index // 10:03d}' for index in order[2 * it - 2:2 * it]], (it, batch, order)
        for key, index in zip(batch.split(), order[2 * it - 2:2 * it]):
            if index % 10 <= 7:  # a window that fits starts at its frame; later ones start at random
                assert int(key.split('/')[1]) == index % 10, (key, index)
    exp = root / 'experiments' / 'ddp'
    assert (exp / 'models' / 'net_g_4.pth').exists()
    outputs = saved_frames(exp / 'visualization' / 'tiny_val' / '002', 4)
    logged = logged_metrics(log)
    assert len(logged) == 3  # at iterations 2, 4 and at the end
    assert logged[1] == logged[2] == pytest.approx(metrics_by_value(outputs, lmdb_data[1]), abs=1e-4)


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
    assert saved >= 6 and saved % 3 == 0
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
    assert sorted(batch_keys(log.split('Resuming training')[-1])) == [saved + 1, saved + 2]


def test_nan_loss_stops_with_a_clear_message_and_keeps_checkpoints(tmp_path, lmdb_data, trained_run):
    root = copy_run(trained_run, tmp_path / 'root')
    models = root / 'experiments' / 'cut' / 'models'
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    opt = train_options(tmp_path, lmdb_data, name='cut', total_iter=10, save_freq=2)
    edit_options(opt, lambda cfg: cfg['train']['sr_opt'].update(loss_weight=float('nan')))
    proc = run('hoffr_arch.train', opt, root, tmp_path, '--auto_resume', check=False)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('error: non-finite loss at iteration 7 (l_sr=nan'), last
    assert 'Last good checkpoint: iteration 6' in last
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before
