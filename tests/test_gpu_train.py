"""The GPU training call (``hoffr_arch.benchmarks.gpu_train``) dry-run on the CPU: it continues the
weights it is given and writes the model card's ledger entry; its corpus, built in parallel jobs,
is the one a single ``synth`` call makes."""
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from datasets_lmdb import synth
from datasets_lmdb.__main__ import main as datasets_cli
from hoffr_arch.benchmarks import gpu_train
from hoffr_arch.checkpoint import read_checkpoint

from conftest import make_reds, python_m, smooth_frames, write_clip

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / 'hoffr_arch' / 'assets'


def test_fp32_copy_is_the_shipped_weights_upcast():
    fp16, fp32 = read_checkpoint(ASSETS / 'HOFFR_S_x4.pth'), read_checkpoint(ASSETS / 'HOFFR_S_x4_fp32.pth')
    assert fp32['network_g'] == fp16['network_g']
    assert fp32['params_ema'].keys() == fp16['params_ema'].keys()
    for k, v in fp16['params_ema'].items():
        assert fp32['params_ema'][k].dtype == torch.float32
        assert torch.equal(fp32['params_ema'][k], v.float()), k


def test_corpus_jobs_number_clips_and_draw_exposures_as_one_synth_call(tmp_path):
    """Sources cut into jobs of whole clips, synthesised apart and merged: the same clips, names and
    blur (each clip's exposure is drawn from its number) as one ``synth`` call over all sources."""
    for name, n in (('a', 30), ('b', 7), ('c', 7)):
        write_clip(tmp_path / 'src' / name, smooth_frames(n, 32, 48, seed=len(name) + n))
    sources = [(tmp_path / 'src' / 'a', {}, 'a'), (tmp_path / 'src' / 'b', {'split': 'val', 'clip_length': 7}, 'b'),
               (tmp_path / 'src' / 'c', {'split': 'val', 'clip_length': 7}, 'c')]
    jobs = gpu_train.plan_jobs(sources)
    assert [(first, names) for _, first, names in jobs] == [(0, ['a']), (1, ['a']), (2, ['b', 'c'])]
    roots = [tmp_path / f'job{i}' for i in range(len(jobs))]
    for (specs, first, _), root in zip(jobs, roots):
        gpu_train.synth_job(specs, root, first, threads=1)
    gpu_train.merge_reds(roots, tmp_path / 'merged')
    whole = [gpu_train.spec(p, o) for p, o, _ in sources]
    synth(whole, tmp_path / 'one', exposure=gpu_train.EXPOSURE, clip_length=gpu_train.CLIP_LENGTH, workers=1)
    one = sorted(p.relative_to(tmp_path / 'one') for p in (tmp_path / 'one').rglob('*.png'))
    assert one == sorted(p.relative_to(tmp_path / 'merged') for p in (tmp_path / 'merged').rglob('*.png'))
    assert {p.parts[0] for p in one} >= {'train_blur', 'val_blur'}
    for rel in one:
        assert np.array_equal(cv2.imread(str(tmp_path / 'one' / rel)), cv2.imread(str(tmp_path / 'merged' / rel))), rel


@pytest.fixture
def corpus(tmp_path):
    """A packed corpus: two 4-frame training clips, two 3-frame held-out clips, 64x64 HR."""
    src = make_reds(tmp_path / 'REDS', {'000': 4, '001': 4}, h=64, w=64)
    make_reds(src, {'002': 3, '003': 3}, prefix='val', h=64, w=64)
    assert datasets_cli(['reds', '--input', str(src), '--output', str(tmp_path / 'corpus')]) == 0
    return tmp_path / 'corpus'


def test_dry_run_continues_the_given_weights_and_writes_the_ledger_entry(tmp_path, corpus):
    shipped = read_checkpoint(ASSETS / 'HOFFR_S_x4_fp32.pth')
    gen = torch.Generator().manual_seed(0)
    given = {k: v + 0.01 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
             for k, v in shipped['params_ema'].items()}
    start = tmp_path / 'start.pth'
    torch.save({'params_ema': given, 'network_g': shipped['network_g']}, start)
    out = tmp_path / 'out'
    proc = python_m('hoffr_arch.benchmarks.gpu_train', '--device', 'cpu', '--out', out, '--work', tmp_path / 'work',
                    '--data', corpus, '--weights', start, '--iters', '2', '--minutes', '1', '--batches', '1',
                    '--probe-iters', '1', '--gt-size', '64', '--num-frame', '3', '--workers', '0', '--lr', '1e-9',
                    '--ship-margin', '-100', '--sweep-seconds', '60', '--sweep-args',
                    "--batches-s 1 2 --batches-default 1 --compiled-batches-s --compiled-batches-default "
                    "--variants 'fp32 eager' --iters 1", cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f'Loading HOFFR model from {start}' in (out / 'train_basicsr.log').read_text()
    # resumed: the new EMA weights are the given ones moved by two steps at lr 1e-9, not the shipped ones
    new = read_checkpoint(out / 'HOFFR_S_x4_fp32.pth')
    assert new['network_g'] == shipped['network_g']
    for k, v in given.items():
        assert new['params_ema'][k].dtype == torch.float32
        assert torch.allclose(new['params_ema'][k], v, atol=1e-5), k
    assert max((new['params_ema'][k] - shipped['params_ema'][k]).abs().max() for k in given) > 1e-3
    entry = json.loads((out / 'ledger.json').read_text())
    assert entry['model'] == 'HOFFR-S' and entry['device'].startswith('CPU')
    assert entry['iterations'] == 2 and entry['batch'] == 1 and entry['samples_seen'] == 2
    assert entry['start_weights'] == str(start)
    assert entry['start_sha256'] == hashlib.sha256(start.read_bytes()).hexdigest()
    assert entry['total_iter'] == 2 and entry['minutes'] >= 0 and entry['date'] and entry['scored'] is True
    held = entry['heldout']
    assert held['frames'] == 6 and 0 < held['bicubic_psnr'] < 60 and 0 < held['psnr'] < 60
    assert {'first', 'later', 'ssim', 'bicubic_ssim'} <= set(held)
    assert entry['row'].startswith(f'| {entry["date"]} | CPU') and f'{held["psnr"]:.2f}' in entry['row']
    assert entry['shipped'] is True  # --ship-margin -100: the release candidate is packed, fp16
    release = read_checkpoint(out / 'HOFFR_S_x4.pth')
    assert next(iter(release['params_ema'].values())).dtype == torch.float16
    md = (out / 'gpu_train.md').read_text()
    assert entry['row'] in md
    # the batch sweep ran before training, at the training's shape (3 frames, 16x16 LR), and is reported
    sweep = entry['sweep']
    assert [(r['network'], r['variant'], r['batch']) for r in sweep] == [
        ('HOFFR-S', 'fp32 eager', 1), ('HOFFR-S', 'fp32 eager', 2), ('HOFFR', 'fp32 eager', 1)]
    assert all(r['samples_per_s'] > 0 and r['seconds'] > 0 and (r['num_frame'], r['lr_size']) == (3, 16) for r in sweep)
    table = [line for line in md.splitlines() if line.startswith(('| HOFFR-S | fp32 eager |',
                                                                   '| HOFFR | fp32 eager |'))]
    assert len(table) == 3 and all(float(line.split('|')[4]) > 0 for line in table), md
    assert entry['train_compile'] == 'none' and 'train.compile' not in (out / 'train.yml').read_text()
    assert len(list(out.iterdir())) <= 7  # the device returns at most 8 files


def test_sweep_decision_compiles_only_where_it_trains_more_samples():
    """The training takes the sweep's compiled setting only where it trains ``margin`` times the samples
    of the eager pick in the minutes left, its compiling included; other shapes and bf16 rows are ignored."""
    def row(variant, batch, sps, seconds=5., size='s', shape=(8, 64)):
        return dict(size=size, variant=variant, batch=batch, samples_per_s=sps, peak_mib=100., seconds=seconds,
                    num_frame=shape[0], lr_size=shape[1])
    eager = [row('fp32 eager', 8, 40.), row('fp32 eager', 16, 70.), row('fp32 eager', 32, 72.),
             row('bf16 eager', 16, 500.), row('fp32 eager', 16, 900., shape=(8, 32)),
             row('fp32 eager', 4, 9e3, size='default')]
    rows, mode, why = gpu_train.sweep_decision(eager, 's', (8, 64), minutes=4)
    assert mode == 'none' and gpu_train.choose_batch(rows) == (16, 70.) and why == 'no compiled row in the sweep'
    fast = eager + [row('fp32 compiled', 16, 150., seconds=60.), row('fp32 compiled', 64, 160., seconds=90.)]
    rows, mode, why = gpu_train.sweep_decision(fast, 's', (8, 64), minutes=4)
    assert mode == 'reduce-overhead' and gpu_train.choose_batch(rows) == (16, 150.)
    assert '1.34x the samples' in why  # 150 * (4 - 1.5) / (70 * 4): the longest compiled row counts
    rows, mode, _ = gpu_train.sweep_decision(fast, 's', (8, 64), minutes=2)  # compiling eats the gain
    assert mode == 'none' and gpu_train.choose_batch(rows) == (16, 70.)
    assert gpu_train.sweep_decision(fast, 'default', (8, 64), minutes=4)[1] == 'none'
    assert gpu_train.sweep_decision([], 's', (8, 64), minutes=4)[0] == []


def test_sweep_keeps_going_past_a_failed_row_and_stops_at_its_deadline(tmp_path, monkeypatch):
    """A variant that fails (a compiler error, out of memory) skips its larger batches, the others run;
    each row is appended as it ends; no row starts past the deadline."""
    from hoffr_arch.benchmarks import batch_sweep

    def measure(size, variant, batch, *args):
        if variant == 'fp32 compiled':
            raise RuntimeError('no\ncompiler')
        return dict(size=size, network=batch_sweep.NETWORKS[size][0], variant=variant, batch=batch,
                    samples_per_s=float(batch), peak_mib=None, seconds=1.0)
    monkeypatch.setattr(batch_sweep, 'measure', measure)
    rows = batch_sweep.plan({'s': [1, 2]}, {'s': [1, 2]})
    assert rows[:3] == [('s', 'fp32 eager', 1), ('s', 'fp32 eager', 2), ('s', 'fp32 compiled', 1)]
    out = tmp_path / 'rows.jsonl'
    done = batch_sweep.sweep(rows, torch.device('cpu'), out, 3, 16, 1, deadline=float('inf'))
    assert [(r['variant'], r['batch']) for r in done] == [
        ('fp32 eager', 1), ('fp32 eager', 2), ('fp32 compiled', 1), ('bf16 eager', 1), ('bf16 eager', 2),
        ('bf16 compiled', 1), ('bf16 compiled', 2)]
    assert done[2]['failed'] == 'RuntimeError: no compiler' and batch_sweep.read_rows(out) == done
    assert '| HOFFR-S | fp32 compiled | 1 | RuntimeError: no compiler | | |' in batch_sweep.table(done)
    assert batch_sweep.sweep(rows, torch.device('cpu'), tmp_path / 'none.jsonl', 3, 16, 1, deadline=0) == []


def test_bad_weights_are_one_line_and_exit_2(tmp_path):
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint')
    proc = python_m('hoffr_arch.benchmarks.gpu_train', '--device', 'cpu', '--out', tmp_path / 'out', '--weights', bad,
                    '--data', tmp_path, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f'error: {bad}: '), proc.stderr


def test_a_video_that_cannot_be_decoded_keeps_its_clip_numbers(tmp_path):
    write_clip(tmp_path / 'b', smooth_frames(7, 32, 48, seed=0))
    opts = {'split': 'val', 'clip_length': 7}
    jobs = gpu_train.plan_jobs([(None, {}, 'bikes'), (tmp_path / 'b', opts, 'b')])
    assert jobs == [([gpu_train.spec(tmp_path / 'b', dict(opts, max_frames=7))], 10, ['b'])]  # bikes: 250 frames
