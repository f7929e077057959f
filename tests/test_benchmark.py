"""python -m hoffr_arch.benchmarks.compare on a tiny dataset: every column for every model, equal budget."""
import csv
import json
import math

import pytest

from datasets_lmdb.__main__ import main as datasets_cli
from hoffr_arch.benchmarks.compare import COLUMNS, MODELS, main as benchmark

from conftest import make_reds

TINY = {  # the published sizes are too slow for a test; the code path is the same
    'HOFFR': {'num_feat': 8, 'sr_num_feat': 8, 'sr_num_block': 1, 'db_num_feat': 8, 'db_num_block': 1,
              'squeeze_factor': 4, 'pof_num_feat': 4, 'pof_num_block': 1, 'pof_path': None},
    'BasicVSR': {'num_feat': 8, 'num_block': 1},
    'IconVSR': {'num_feat': 8, 'num_block': 1},
    'BasicVSRPlusPlus': {'mid_channels': 16, 'num_blocks': 1},
    'EDVR': {'num_feat': 16, 'deformable_groups': 2, 'num_extract_block': 1, 'num_reconstruct_block': 1},
}


def test_benchmark_equal_budget_every_column(tmp_path):
    src = make_reds(tmp_path / 'REDS', {'000': 6, '001': 6}, h=256, w=256)  # SpyNet needs LR >= 64
    assert datasets_cli(['reds', '--input', str(src), '--output', str(tmp_path / 'lmdb')]) == 0
    split = tmp_path / 'lmdb' / 'train'
    args = ['--data', str(split), '--train-data', str(split), '--train-iters', '1', '--batch', '1', '--gt-size', '256',
            '--num-frame', '5', '--max-frames', '5', '--out', str(tmp_path / 'out'), '--device', 'cpu']
    for name, spec in TINY.items():
        args += ['--network', f'{name}={json.dumps(spec)}']
    rows = benchmark(args)
    assert [r['model'] for r in rows] == list(MODELS)
    for row in rows:
        for column in COLUMNS[1:]:
            assert isinstance(row[column], (int, float)) and math.isfinite(row[column]), (row['model'], column)
        assert row['frames'] == 10 and row['peak_mem_MiB'] > 0 and row['sec_per_frame'] > 0
        if row['model'] != 'bicubic':
            assert row['params_M'] > 0 and row['gflops_per_frame'] > 0
    # bicubic's row by value: BasicSR's MATLAB bicubic of the blurry LR frames against the GT
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img
    from basicsr.utils.matlab_functions import imresize
    from hoffr_arch.evaluation import test_dataset
    data = test_dataset(split)
    want = [calculate_psnr(tensor2img(imresize(c['lq'][i], 4).clamp(0, 1)), tensor2img(c['gt'][i]), 0)
            for c in (data[0], data[1]) for i in range(5)]
    assert rows[-1]['psnr'] == pytest.approx(sum(want) / len(want), abs=1e-6)
    for name in TINY:
        assert (tmp_path / 'out' / 'experiments' / f'bench_{name}' / 'models' / 'net_g_latest.pth').exists()
    with open(tmp_path / 'out' / 'benchmark.csv') as f:
        assert [r['model'] for r in csv.DictReader(f)] == list(MODELS)
    table = (tmp_path / 'out' / 'benchmark.md').read_text()
    assert 'equal budget: 1 iterations' in table and table.count('\n| ') == 7
    assert (tmp_path / 'out' / 'benchmark.png').stat().st_size > 10000


def test_equal_minutes_gives_learning_curves(tmp_path):
    """--train-minutes: each model trains for the same wall-clock time (hoffr_arch.train --time-budget),
    checkpoints on the way are scored, the curve is written."""
    src = make_reds(tmp_path / 'REDS', {'000': 6}, h=64, w=64)
    assert datasets_cli(['reds', '--input', str(src), '--output', str(tmp_path / 'lmdb')]) == 0
    split = tmp_path / 'lmdb' / 'train'
    out = tmp_path / 'out'
    benchmark(['--data', str(split), '--train-data', str(split), '--train-minutes', '0.1', '--curve-every', '0.05',
               '--batch', '1', '--gt-size', '32', '--num-frame', '3', '--max-frames', '3', '--out', str(out),
               '--device', 'cpu', '--models', 'HOFFR', 'bicubic', '--network', f'HOFFR={json.dumps(TINY["HOFFR"])}'])
    with open(out / 'learning_curves.csv') as f:
        rows = list(csv.DictReader(f))
    minutes = [float(r['minutes']) for r in rows]
    iters = [int(r['iter']) for r in rows]
    assert len(rows) >= 2 and all(r['model'] == 'HOFFR' for r in rows)
    assert minutes == sorted(minutes) and iters == sorted(iters) and iters[0] > 0
    assert 0.1 <= minutes[-1] < 0.4  # stopped at the budget (one iteration past it at most)
    assert 'equal time: 0.1 training minutes' in (out / 'benchmark.md').read_text()
    assert (out / 'learning_curves.png').stat().st_size > 10000


def test_spynet_models_refuse_small_patches_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        benchmark(['--data', str(tmp_path), '--train-data', str(tmp_path), '--train-minutes', '1', '--gt-size', '128',
                   '--models', 'HOFFR', 'BasicVSR', '--out', str(tmp_path / 'out')])
    assert exit_.value.code == 2
    assert 'BasicVSR train on LR patches of at least 64' in capsys.readouterr().err
    assert not (tmp_path / 'out' / 'experiments').exists()
