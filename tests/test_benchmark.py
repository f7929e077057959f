"""python -m hoffr_arch.benchmarks.compare on a tiny dataset: every column for every model, equal budget."""
import csv
import json
import math

import cv2
import numpy as np
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


def plotted_colours(png, alpha):
    """The matplotlib default-cycle colours (C0, C1, ...) drawn with ``alpha`` over white in the (540, 840)
    figure ``png`` (7 x 4.5 inches at 120 dpi): how many pixels of each, in cycle order."""
    from matplotlib import colors, rcParams
    img = cv2.imread(str(png)).astype(int)
    assert img.shape == (540, 840, 3)
    counts = []
    for colour in rcParams['axes.prop_cycle'].by_key()['color']:
        bgr = np.array(colors.to_rgb(colour)[::-1]) * 255 * alpha + 255 * (1 - alpha)
        counts.append(int((np.abs(img - bgr) <= 2).all(-1).sum()))
    return counts


def test_benchmark_equal_budget_every_column(tmp_path, monkeypatch):
    src = make_reds(tmp_path / 'REDS', {'000': 6}, h=256, w=256)  # SpyNet needs LR >= 64
    assert datasets_cli(['reds', '--input', str(src), '--output', str(tmp_path / 'lmdb')]) == 0
    split = tmp_path / 'lmdb' / 'train'
    args = ['--data', str(split), '--train-data', str(split), '--train-iters', '1', '--batch', '1', '--gt-size', '256',
            '--num-frame', '5', '--max-frames', '5', '--out', str(tmp_path / 'out'), '--device', 'cpu']
    for name, spec in TINY.items():
        args += ['--network', f'{name}={json.dumps(spec)}']
    from matplotlib.axes import Axes
    scatter, markers = Axes.scatter, []

    def spy(ax, x, y, **kw):  # what each marker of benchmark.png stands for
        markers.append((x, y, kw['s']))
        return scatter(ax, x, y, **kw)

    monkeypatch.setattr(Axes, 'scatter', spy)
    rows = benchmark(args)
    assert [r['model'] for r in rows] == list(MODELS)
    for row in rows:
        for column in COLUMNS[1:]:
            assert isinstance(row[column], (int, float)) and math.isfinite(row[column]), (row['model'], column)
        assert row['frames'] == 5 and row['peak_mem_MiB'] > 100 and 0 < row['sec_per_frame'] < 60
    # the size columns by value: the parameters of each network as its training YAML builds it, none for bicubic
    from basicsr.archs import build_network
    from hoffr_arch.options import load_yaml
    for row in rows[:-1]:
        net = build_network(dict(load_yaml(tmp_path / 'out' / f'train_{row["model"]}.yml')['network_g']))
        assert row['params_M'] == pytest.approx(sum(p.numel() for p in net.parameters()) / 1e6, rel=1e-9)
        assert row['gflops_per_frame'] > 0
    assert rows[-1]['params_M'] == 0
    # bicubic's row by value: BasicSR's MATLAB bicubic of the blurry LR frames against the GT
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img
    from basicsr.utils.matlab_functions import imresize
    from hoffr_arch.evaluation import test_dataset
    clip = test_dataset(split)[0]
    want = [calculate_psnr(tensor2img(imresize(clip['lq'][i], 4).clamp(0, 1)), tensor2img(clip['gt'][i]), 0)
            for i in range(5)]
    assert rows[-1]['psnr'] == pytest.approx(sum(want) / len(want), abs=1e-6)
    for name in TINY:
        assert (tmp_path / 'out' / 'experiments' / f'bench_{name}' / 'models' / 'net_g_latest.pth').exists()
    with open(tmp_path / 'out' / 'benchmark.csv') as f:
        assert [r['model'] for r in csv.DictReader(f)] == list(MODELS)
    table = (tmp_path / 'out' / 'benchmark.md').read_text()
    assert 'equal budget: 1 iterations' in table and table.count('\n| ') == 7
    # one marker a row at (seconds per frame, PSNR), its area by parameters, each in its own colour: the
    # cycle's first six are drawn (alpha 0.6) and none of the later ones (C7 is grey, as text edges are);
    # how many pixels each keeps depends on where the markers overlap
    assert markers == [(max(r['sec_per_frame'], 1e-4), r['psnr'], 40 + 60 * r['params_M']) for r in rows]
    drawn = plotted_colours(tmp_path / 'out' / 'benchmark.png', 0.6)
    assert sum(drawn[:6]) >= 30 and drawn[6] == drawn[8] == drawn[9] == 0, drawn


def test_equal_minutes_gives_learning_curves(tmp_path):
    """--train-minutes: each model trains for the same wall-clock time (hoffr_arch.train --time-budget),
    checkpoints on the way are scored, the curve is written. 0.2 minutes: a first iteration slowed by a
    busy machine (another pytest worker) still leaves several checkpoints."""
    src = make_reds(tmp_path / 'REDS', {'000': 6}, h=64, w=64)
    assert datasets_cli(['reds', '--input', str(src), '--output', str(tmp_path / 'lmdb')]) == 0
    split = tmp_path / 'lmdb' / 'train'
    out = tmp_path / 'out'
    benchmark(['--data', str(split), '--train-data', str(split), '--train-minutes', '0.2', '--curve-every', '0.05',
               '--batch', '1', '--gt-size', '32', '--num-frame', '3', '--max-frames', '3', '--out', str(out),
               '--device', 'cpu', '--models', 'HOFFR', 'bicubic', '--network', f'HOFFR={json.dumps(TINY["HOFFR"])}'])
    with open(out / 'learning_curves.csv') as f:
        rows = list(csv.DictReader(f))
    minutes = [float(r['minutes']) for r in rows]
    iters = [int(r['iter']) for r in rows]
    assert len(rows) >= 2 and all(r['model'] == 'HOFFR' for r in rows)
    assert minutes == sorted(minutes) and iters == sorted(iters) and iters[0] > 0
    assert 0.2 <= minutes[-1] < 0.5  # stopped at the budget (one iteration past it at most)
    assert 'equal time: 0.2 training minutes' in (out / 'benchmark.md').read_text()
    # HOFFR's curve (the first colour, opaque), no other model's; bicubic's grey line (text edges alone
    # leave about 50 grey pixels, the line adds hundreds)
    drawn = plotted_colours(out / 'learning_curves.png', 1.0)
    assert drawn[0] >= 50 and not any(drawn[1:7] + drawn[8:]), drawn
    grey = (np.abs(cv2.imread(str(out / 'learning_curves.png')).astype(int) - 128) <= 2).all(-1).sum()
    assert grey >= 250, grey


def test_spynet_models_refuse_small_patches_before_training(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        benchmark(['--data', str(tmp_path), '--train-data', str(tmp_path), '--train-minutes', '1', '--gt-size', '128',
                   '--models', 'HOFFR', 'BasicVSR', '--out', str(tmp_path / 'out')])
    assert exit_.value.code == 2
    assert 'BasicVSR train on LR patches of at least 64' in capsys.readouterr().err
    assert not (tmp_path / 'out' / 'experiments').exists()


def test_one_evaluation_loop_scores_by_value(tmp_path):
    """hoffr_arch.evaluation.evaluate: bicubic output gains exactly 0; a model that is bicubic at each
    clip's first frame and better after gains only on later frames; FMA-Net's protocol by value;
    streamed() hands each step the state the previous one returned (none with recur=False)."""
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img
    from basicsr.utils.matlab_functions import imresize
    from hoffr_arch.evaluation import evaluate, streamed, test_dataset
    src = make_reds(tmp_path / 'REDS', {'000': 4, '001': 4}, h=64, w=64)
    assert datasets_cli(['reds', '--input', str(src), '--output', str(tmp_path / 'lmdb')]) == 0
    data = test_dataset(tmp_path / 'lmdb' / 'train')
    seen = []

    def bicubic_step(lq, state):
        seen.append(state)
        return imresize(lq[0], 4)[None], len(seen), None

    plain = evaluate(streamed(bicubic_step), data)
    assert plain['model'] == plain['bicubic'] and plain['gain_first'] == plain['gain_later'] == 0
    assert seen == [None, 1, 2, 3, None, 5, 6, 7]  # a new clip starts from no state
    seen.clear()
    evaluate(streamed(bicubic_step, recur=False), data)
    assert seen == [None] * 8  # --no-recurrence: every frame runs as a clip's first
    clips = iter([data[i] for i in range(len(data))])

    def better_after_first(lq):
        clip = next(clips)
        for i in range(lq.shape[0]):
            bicubic = imresize(clip['lq'][i], 4).clamp(0, 1)
            yield bicubic if i == 0 else (bicubic + clip['gt'][i]) / 2

    result = evaluate(better_after_first, data, tof=True)
    assert result['gain_first'] == 0 and result['frames'] == 8
    # each later frame gains what halving its distance to the ground truth gains over bicubic
    def psnr(img, gt):
        return calculate_psnr(tensor2img(img), tensor2img(gt), 0)
    gains = [psnr((imresize(c['lq'][i], 4).clamp(0, 1) + c['gt'][i]) / 2, c['gt'][i])
             - psnr(imresize(c['lq'][i], 4).clamp(0, 1), c['gt'][i]) for c in (data[0], data[1]) for i in (1, 2, 3)]
    assert result['gain_later'] == pytest.approx(np.mean(gains), abs=1e-6)
    assert all(g == pytest.approx(6.02, abs=0.3) for g in gains), gains  # half the error: a quarter the MSE
    assert [c[0] for c in result['per_clip']] == ['000', '001']
    fma = [calculate_psnr(tensor2img((imresize(c['lq'][i], 4).clamp(0, 1) + c['gt'][i]) / 2), tensor2img(c['gt'][i]), 4)
           for c in (data[0], data[1]) for i in (1, 2)]
    assert result['fma'][0] == pytest.approx(sum(fma) / 4, abs=1e-6)
    assert math.isfinite(result['tof']) and math.isnan(plain['tof'])


def test_demo_reports_what_the_evaluation_measured(tmp_path, checkpoint):
    """The demo's last step, as ``make demo`` runs it after training: a checkpoint scored on the held-out
    split by ``demo.evaluate``, then ``demo.report``'s table and picture carry those very numbers."""
    import cv2
    import torch
    import yaml
    from hoffr_arch import demo
    weights, net = checkpoint
    opt = yaml.safe_load((weights.parents[1] / 'x.yml').read_text())
    opt['scale'] = 4
    src = make_reds(tmp_path / 'REDS', {'000': 3, '001': 3}, h=64, w=64)
    assert datasets_cli(['reds', '--input', str(src), '--output', str(tmp_path / 'lmdb')]) == 0
    (tmp_path / 'lmdb' / 'train').rename(tmp_path / 'lmdb' / 'test')  # the demo's held-out split
    result = demo.evaluate(opt, weights, tmp_path / 'lmdb', torch.device('cpu'))
    table = demo.report(result, tmp_path / 'out', '1 s on cpu')
    assert (tmp_path / 'out' / 'results.md').read_text() == table + '\n'
    rows = {line.split('|')[1].strip(): line.split('|')[2:4] for line in table.splitlines()[2:4]}
    assert float(rows['HOFFR (this demo)'][0]) == pytest.approx(result['model'][0], abs=0.005)
    assert float(rows['bicubic x4 of the blurry input'][1]) == pytest.approx(result['bicubic'][1], abs=5e-5)
    assert f'{result["model"][0] - result["bicubic"][0]:+.2f} dB' in table
    assert f'({result["warp_pof"] / result["warp_zero"]:.2f}x)' in table and 0 < result['warp_zero']
    picture = cv2.imread(str(tmp_path / 'out' / 'side_by_side.png'))
    assert picture.shape == (64, 3 * 64, 3)  # input, HOFFR, ground truth of one held-out HR frame


def test_ablation_variants_change_only_what_they_name():
    """benchmarks.ablation: a variant's nested changes merge into the demo options (the rest of the
    section stays), and ``iter_share`` gives a variant with dearer steps the same minutes."""
    import yaml
    from hoffr_arch._entry import project_root
    from hoffr_arch.benchmarks.ablation import VARIANTS, variant_options
    base = project_root() / 'options' / 'demo' / 'train_demo.yml'
    demo = yaml.safe_load(base.read_text())
    opt = variant_options(base, 'clips-10', VARIANTS['clips-10'], None)
    assert opt['datasets']['train']['num_frame'] == 10
    assert {k: v for k, v in opt['datasets']['train'].items() if k != 'num_frame'} == \
        {k: v for k, v in demo['datasets']['train'].items() if k != 'num_frame'}
    half = demo['train']['total_iter'] // 2
    assert opt['train']['total_iter'] == opt['train']['scheduler']['periods'][0] == opt['val']['val_freq'] == half
    assert variant_options(base, 'clips-10', VARIANTS['clips-10'], 100)['train']['total_iter'] == 50
    flow = variant_options(base, 'no-flow', VARIANTS['no-flow'], None)
    assert flow['network_g']['use_flow'] is False and flow['network_g']['num_feat'] == demo['network_g']['num_feat']
    assert flow['train']['total_iter'] == demo['train']['total_iter'] and 'iter_share' not in flow
