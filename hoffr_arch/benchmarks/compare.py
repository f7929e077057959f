"""Compare HOFFR with BasicSR's VSR models on one test set: ``python -m hoffr_arch.benchmarks.compare``.

    python -m hoffr_arch.benchmarks.compare --data datasets/REDS_lmdb/test --ckpt HOFFR=... --ckpt BasicVSR=...
    python -m hoffr_arch.benchmarks.compare --data datasets/demo/lmdb/test --train-data datasets/demo/lmdb/train \\
        --train-iters 300        # equal budget: every model trained first, same data/iterations/batch/patch

Models: HOFFR, BasicVSR, IconVSR, BasicVSRPlusPlus, EDVR (M) at their published sizes, and bicubic
upsampling. Each is trained and evaluated in a process of its own (``benchmarks.isolated``: forked from
a server that imported the libraries once, so peak memory is its own) on whole clips
(EDVR: 5-frame windows, BasicSR's reflection-circle padding). Columns: PSNR/SSIM with BasicSR's
protocol (RGB, no crop, all frames) and FMA-Net's (RGB, 4-pixel crop, first and last frame skipped),
tOF, parameters, FLOPs per frame (torch's flop counter: deformable convolutions are not counted),
seconds per frame and peak memory (CUDA: max allocated; CPU: peak RSS of the process, which counts
the pages of the libraries it touches, not those it shares untouched with the server).
Output: ``OUT/benchmark.md``, ``OUT/benchmark.csv`` and ``OUT/benchmark.png`` (PSNR against seconds
per frame, marker area by parameters).

    python -m hoffr_arch.benchmarks.compare --data datasets/corpus/val --train-data datasets/corpus/train \
        --train-minutes 10 --models HOFFR-S HOFFR BasicVSR bicubic   # equal wall-clock minutes each

``--train-minutes M`` gives every model the same training time on this machine (``hoffr_arch.train
--time-budget``: a checkpoint every ``--curve-every`` minutes), each with its own recipe's learning
rate held constant (the number of iterations is not known in advance): HOFFR-S as
``options/train/train_HOFFR_S_x4.yml``, the others Adam 2e-4 (BasicVSR's). Every checkpoint is then
scored on the test set: ``OUT/learning_curves.png`` and ``.csv`` (PSNR against training minutes, one
line per model), and the table holds the last one.

HOFFR and HOFFR-S run on the compute path ``--dtype`` picks (``auto``: as ``infer``, see
``hoffr_arch.precision``; named in the table title); the other models run in fp32.

Without checkpoints and without ``--train-iters``/``--train-minutes`` the networks are untrained: the
table then only measures cost. BasicSR's official weights load with ``--ckpt NAME=PATH`` (``params`` or ``params_ema``).
"""
import argparse
import csv
import json
import resource
import sys
import textwrap
import time
from pathlib import Path

import torch
import yaml
from torch.nn import functional as F

from hoffr_arch.benchmarks.isolated import run_isolated, train_isolated
from hoffr_arch.benchmarks.tables import markdown, write_csv

MODELS = ('HOFFR', 'BasicVSR', 'IconVSR', 'BasicVSRPlusPlus', 'EDVR', 'bicubic')
CHOICES = MODELS + ('HOFFR-S',)  # HOFFR-S: the starter model's size and recipe (train_HOFFR_S_x4.yml)
# models whose network and training recipe are a training YAML's (HOFFR-S: the starter model's)
RECIPE_FILES = {'HOFFR-S': Path(__file__).resolve().parents[2] / 'options' / 'train' / 'train_HOFFR_S_x4.yml'}
RECIPE_KEYS = ('optim_g', 'ema_decay', 'losses', 'sr_opt', 'db_opt', 'flow_opt', 'flow_lr_mul')  # taken from one


def _recipe_file(name):
    """The options of a model whose size and recipe come from a training YAML (``RECIPE_FILES``)."""
    from hoffr_arch.options import load_yaml
    path = RECIPE_FILES[name]
    if not path.exists():
        raise SystemExit(f'error: {path}: {name} needs the options/ folder of a source checkout')
    return load_yaml(path)


NETWORKS = {
    'HOFFR': {'type': 'HOFFR', 'pof_path': 'hoffr_arch/assets/pof_x4.pth'},
    'BasicVSR': {'type': 'BasicVSR', 'num_feat': 64, 'num_block': 30},
    'IconVSR': {'type': 'IconVSR', 'num_feat': 64, 'num_block': 30, 'keyframe_stride': 5, 'temporal_padding': 2},
    'BasicVSRPlusPlus': {'type': 'BasicVSRPlusPlus', 'mid_channels': 64, 'num_blocks': 7},
    # EDVR-M, with the pre-deblurring module BasicSR uses for REDS blur_bicubic
    'EDVR': {'type': 'EDVR', 'num_feat': 64, 'num_frame': 5, 'deformable_groups': 8, 'num_extract_block': 5,
             'num_reconstruct_block': 10, 'with_predeblur': True, 'with_tsa': True},
}
CHARBONNIER = {'pixel_opt': {'type': 'CharbonnierLoss', 'loss_weight': 1.0, 'reduction': 'mean'}}
# how each network type trains in the equal-budget runs: BasicSR's model for it, its losses, what its
# training data adds ('lq_sharp': the sharp LR frames HOFFR's losses read); other types as DEFAULT_RECIPE
RECIPES = {
    'HOFFR': {'model_type': 'HOFFRModel', 'lq_sharp': True,
              'train': {'sr_opt': {'type': 'SRLoss', 'criterion': 'charbonnier'},
                        'db_opt': {'type': 'DBLoss', 'criterion': 'charbonnier'},
                        'flow_opt': {'type': 'FlowWarpLoss', 'loss_weight': 0.1, 'criterion': 'charbonnier',
                                     'level_weights': {'half': 0.1, 'lr': 0.2, 'hr': 1.0}}}},
    'EDVR': {'model_type': 'EDVRModel', 'train': CHARBONNIER, 'dataset': {'num_frame': 5, 'center_gt': True}},
}
DEFAULT_RECIPE = {'model_type': 'VideoRecurrentModel', 'train': CHARBONNIER}
SPYNET_MODELS = ('BasicVSR', 'IconVSR', 'BasicVSRPlusPlus')
MIN_SIZE = 64  # SpyNet and BasicVSR++ need LR frames of at least 64 pixels; smaller ones are padded


def build(name, network_opt=None):
    """A network of the comparison (``network_opt`` overrides the published size)."""
    import hoffr_arch  # noqa: F401
    from basicsr.archs import build_network
    # (on CPU, hoffr_arch.compat gives BasicVSR++ back the deformable alignment BasicSR skips)
    opt = dict(network_opt or NETWORKS[name])
    return build_network(opt)


def _pad(lq, multiple=4, minimum=MIN_SIZE):
    """Reflect-pad (n, t, c, h, w) so h, w are multiples of ``multiple`` and at least ``minimum``."""
    h, w = lq.shape[-2:]
    ph = max(minimum, -(-h // multiple) * multiple) - h
    pw = max(minimum, -(-w // multiple) * multiple) - w
    if not (ph or pw):
        return lq
    n, t = lq.shape[:2]
    flat = F.pad(lq.flatten(0, 1), (0, pw, 0, ph), mode='replicate')
    return flat.view(n, t, *flat.shape[1:])


def restore(name, net, lq, scale=4):
    """Whole clip (1, t, c, h, w) -> (t, c, s*h, s*w) with ``name``'s way of running."""
    from basicsr.data.data_util import generate_frame_indices
    from basicsr.utils.matlab_functions import imresize
    h, w = lq.shape[-2:]
    if name == 'bicubic':
        return torch.stack([imresize(f, scale).clamp(0, 1) for f in lq[0].cpu()])
    x = _pad(lq, 16 if name == 'EDVR' else 4)
    if name == 'EDVR':
        t = x.shape[1]
        windows = [generate_frame_indices(i, t, 5, padding='reflection_circle') for i in range(t)]
        out = torch.stack([net(x[:, window])[0] for window in windows])
    else:
        out = net(x)[0]
    return out[..., :scale * h, :scale * w].float().clamp(0, 1)


def flops_per_frame(name, net, lq):
    """FLOPs of one frame by torch's flop counter, on a short clip of the test size."""
    from torch.utils.flop_counter import FlopCounterMode
    if name == 'bicubic':
        return 0.
    clip = lq[:, :min(lq.shape[1], 5)]
    with FlopCounterMode(display=False) as counter:
        restore(name, net, clip)
    return counter.get_total_flops() / clip.shape[1]


def evaluate(name, data_opt, device, network_opt=None, ckpt=None, max_frames=None, dtype='auto', report=False):
    """Runs in its own process: metrics, cost and peak memory of one model on the test set, scored
    by the one evaluation loop (``hoffr_arch.evaluation.evaluate``, each clip run whole). HOFFR runs
    on the compute path ``dtype`` picks (``hoffr_arch.precision.choose``), the others in fp32.
    ``report``: the row also holds that loop's whole result ('result', with pictures and the POF's flow)."""
    import hoffr_arch  # noqa: F401  (compat in this process too)
    from hoffr_arch import evaluation
    from hoffr_arch.precision import choose
    from hoffr_arch.data.vsrdb_dataset import VSRDBTestDataset
    from hoffr_arch.checkpoint import load_weights
    torch.set_grad_enabled(False)  # this function runs in its own process
    device = torch.device(device)
    net = None
    params = 0
    if name != 'bicubic':
        net = build(name, network_opt)
        if ckpt:
            load_weights(net, ckpt, what=name)
        net = net.to(device).eval()
        params = sum(p.numel() for p in net.parameters())
    path = choose(dtype if name.startswith('HOFFR') else 'fp32', device)
    if net is not None:
        path.prepare(net)
    dataset = VSRDBTestDataset(dict(data_opt, max_frames=max_frames))
    flops = flops_per_frame(name, net, dataset[0]['lq'][None].to(device)) if len(dataset) else 0.
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)

    def run_clip(lq):
        with path.autocast():
            out = restore(name, net, lq[None])
        yield from out

    pof = net.pof if report and name.startswith('HOFFR') else None
    result = evaluation.evaluate(run_clip, dataset, device=device, tof=True, pictures=report, pof=pof)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == 'cuda'
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {'model': name, 'params_M': params / 1e6, 'gflops_per_frame': flops / 1e9,
            'sec_per_frame': result['seconds'] / max(result['frames'], 1), 'peak_mem_MiB': peak / 2**20,
            'frames': result['frames'], 'psnr': result['model'][0], 'ssim': result['model'][1],
            'psnr_fma': result['fma'][0], 'ssim_fma': result['fma'][1], 'tof': result['tof'],
            'by_exposure': result['by_exposure'], **({'result': result} if report else {})}


def recipe(name, network_opt):
    """How model ``name`` (network options ``network_opt``) trains: {'model_type', 'train' (options over
    the common ones; a 'scheduler' entry updates the common schedule), 'dataset' (changes), 'lq_sharp'}:
    its recipe file's (``RECIPE_FILES``), else its network type's (``RECIPES``)."""
    if name not in RECIPE_FILES:
        return dict(RECIPES.get(network_opt['type'], DEFAULT_RECIPE))
    own = _recipe_file(name)
    train = {k: own['train'][k] for k in RECIPE_KEYS if k in own['train']}
    train['scheduler'] = {'eta_min': own['train']['scheduler']['eta_min']}
    return {'model_type': own['model_type'], 'train': train,
            'lq_sharp': bool(own['datasets']['train'].get('dataroot_lq_sharp'))}


def _train_yaml(name, network_opt, train_root, iters, batch, gt_size, num_frame, out, constant_lr=False):
    """BasicSR options training ``name`` on ``train_root`` (no validation: that is this benchmark) by its
    ``recipe``; ``constant_lr`` for a time budget, whose number of iterations is not known in advance."""
    from hoffr_arch.evaluation import split_options
    how = recipe(name, network_opt)
    dataset = dict(split_options(train_root, 'bench_train', lq_sharp=how.get('lq_sharp', False), meta_info=True),
                   type='VSRDBRecurrentDataset', num_frame=num_frame, gt_size=gt_size, interval_list=[1],
                   random_reverse=False, use_hflip=True, use_rot=True, num_worker_per_gpu=0, batch_size_per_gpu=batch,
                   dataset_enlarge_ratio=100, prefetch_mode=None)
    dataset.update(how.get('dataset', {}))
    # pretrained flow networks (HOFFR's POF, the SpyNets) learn 8x slower, as BasicVSR's recipe has it
    train = {'optim_g': {'type': 'Adam', 'lr': 2e-4, 'betas': [0.9, 0.99]}, 'total_iter': iters, 'warmup_iter': -1,
             'flow_lr_mul': 0.125,
             'scheduler': {'type': 'CosineAnnealingRestartLR', 'periods': [iters], 'restart_weights': [1],
                           'eta_min': 1e-7}}
    own = dict(how['train'])
    train['scheduler'].update(own.pop('scheduler', {}))
    train.update(own)
    if constant_lr:
        train['scheduler'] = {'type': 'MultiStepRestartLR', 'milestones': [iters], 'gamma': 1.0}
    opt = {'name': f'bench_{name}', 'model_type': how['model_type'], 'scale': 4, 'num_gpu': 'auto', 'manual_seed': 0,
           'datasets': {'train': dataset}, 'network_g': network_opt, 'path': {'pretrain_network_g': None},
           'train': train, 'logger': {'print_freq': max(iters // 10, 1), 'save_checkpoint_freq': iters,
                                      'use_tb_logger': False}}
    path = out / f'train_{name}.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


def train_equal_budget(names, networks, train_root, iters, batch, gt_size, num_frame, out, minutes=None,
                       curve_every=None):
    """Train every network through BasicSR's runner with the same budget; returns {name: checkpoint}.

    ``minutes``: the same training time for each instead of ``iters`` (constant learning rate,
    a checkpoint every ``curve_every`` minutes, listed in its experiment's time_budget.csv).
    """
    ckpts = {}
    for name in names:
        if name == 'bicubic':
            continue
        opt = _train_yaml(name, networks[name], train_root, 10 ** 7 if minutes else iters, batch, gt_size, num_frame,
                          out, constant_lr=bool(minutes))
        what = f'{minutes:g} minutes' if minutes else f'{iters} iterations'
        print(f'training {name}: {what} (batch {batch}, {num_frame} frames, {gt_size}x{gt_size} HR)', flush=True)
        start = time.time()
        log = out / f'train_{name}.log'
        argv = ['-opt', str(opt)]
        if minutes:
            argv += ['--time-budget', str(minutes), '--save-every-minutes', str(curve_every or minutes)]
        status = train_isolated(argv, log, out)
        if status:
            tail = ''.join(log.read_text().splitlines(keepends=True)[-20:])
            raise RuntimeError(f'training {name} failed (exit {status}); end of {log}:\n{tail}')
        print(f'  {time.time() - start:.0f} s (log: {log})', flush=True)
        ckpts[name] = str(out / 'experiments' / f'bench_{name}' / 'models' / 'net_g_latest.pth')
        if minutes:
            ckpts[name] = curve_points(out, name)[-1][2]
    return ckpts


def curve_points(out, name):
    """[(minutes, iteration, checkpoint)] of a time-budget run, in order."""
    with open(out / 'experiments' / f'bench_{name}' / 'time_budget.csv') as f:
        rows = list(csv.DictReader(f))
    return [(float(r['minutes']), int(r['iter']), r['checkpoint']) for r in rows]


def learning_curves(names, networks, data_opt, device, out, max_frames, title, dtype='auto'):
    """Score every checkpoint of the time-budget runs; write learning_curves.csv/.png; returns the rows."""
    rows = []
    for name in names:
        if name == 'bicubic':
            continue
        for minutes, it, ckpt in curve_points(out, name):
            row = run_isolated(evaluate, name, data_opt, device, networks.get(name), ckpt, max_frames, dtype)
            rows.append({'model': name, 'minutes': minutes, 'iter': it, 'psnr': row['psnr'], 'ssim': row['ssim']})
            print(f'  {name} at {minutes:.1f} min (iteration {it}): {row["psnr"]:.2f} dB', flush=True)
    write_csv(out / 'learning_curves.csv', rows, ['model', 'minutes', 'iter', 'psnr', 'ssim'])
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in dict.fromkeys(r['model'] for r in rows):
        pts = [(r['minutes'], r['psnr']) for r in rows if r['model'] == name]
        ax.plot(*zip(*pts), marker='o', label=name)
    if 'bicubic' in names:
        bic = run_isolated(evaluate, 'bicubic', data_opt, device, None, None, max_frames)['psnr']
        ax.axhline(bic, color='grey', linestyle='--', label='bicubic')
    ax.set_xlabel('training minutes (wall clock, this machine)')
    ax.set_ylabel('PSNR (dB, held-out clips)')
    ax.set_title('\n'.join(textwrap.wrap(title, 90)), fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / 'learning_curves.png', dpi=120)
    plt.close(fig)
    return rows


COLUMNS = ['model', 'psnr', 'ssim', 'psnr_fma', 'ssim_fma', 'tof', 'params_M', 'gflops_per_frame',
           'sec_per_frame', 'peak_mem_MiB', 'frames']
TABLE = [('model', '{model}'), ('PSNR', '{psnr:.2f}'), ('SSIM', '{ssim:.4f}'), ('PSNR (FMA)', '{psnr_fma:.2f}'),
         ('SSIM (FMA)', '{ssim_fma:.4f}'), ('tOF', '{tof:.3f}'), ('params (M)', '{params_M:.2f}'),
         ('GFLOPs/frame', '{gflops_per_frame:.1f}'), ('s/frame', '{sec_per_frame:.3f}'),
         ('peak mem (MiB)', '{peak_mem_MiB:.0f}')]


def write_outputs(rows, out, title):
    write_csv(out / 'benchmark.csv', rows, COLUMNS)
    lines = [title, ''] + markdown(rows, TABLE)
    if any(r['by_exposure'] for r in rows):  # the data records each frame's exposure: PSNR / SSIM per bin
        from hoffr_arch.evaluation import exposure_table
        lines += ['', 'Per exposure (frame intervals):', ''] + exposure_table([(r['model'], r['by_exposure'])
                                                                               for r in rows])
    (out / 'benchmark.md').write_text('\n'.join(lines) + '\n')
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        size = 40 + 60 * r['params_M']
        ax.scatter(max(r['sec_per_frame'], 1e-4), r['psnr'], s=size, alpha=0.6)
        ax.annotate(r['model'], (max(r['sec_per_frame'], 1e-4), r['psnr']), textcoords='offset points', xytext=(6, 4))
    ax.set_xscale('log')
    ax.set_xlabel('seconds per frame (log)')
    ax.set_ylabel('PSNR (dB, BasicSR protocol)')
    ax.set_title('\n'.join(textwrap.wrap(title, 90)), fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / 'benchmark.png', dpi=120)
    plt.close(fig)
    return '\n'.join(lines)


def parse_args(argv=None):
    from hoffr_arch.precision import CHOICES as DTYPE_CHOICES
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--data', help='packed test split (sharp.lmdb, blur_bicubic.lmdb), or use --gt/--lq')
    parser.add_argument('--gt', help='sharp HR clip folders (REDS layout), instead of --data')
    parser.add_argument('--lq', help='blurry LR clip folders, instead of --data')
    parser.add_argument('--models', nargs='+', default=list(MODELS), choices=CHOICES)
    parser.add_argument('--ckpt', action='append', default=[], metavar='NAME=PATH', help='weights for a model')
    parser.add_argument('--hoffr-opt', help='YAML whose network_g configures HOFFR (default: the paper size)')
    parser.add_argument('--network', action='append', default=[], metavar='NAME=JSON',
                        help='override a network\'s options, e.g. BasicVSR=\'{"num_block": 10}\'')
    parser.add_argument('--spynet', default='none',
                        help='SpyNet weights for BasicVSR, IconVSR and BasicVSR++: official ones when you have '
                        'them, or one pretrained by the POF\'s own self-supervised recipe '
                        '(options/pretrain/pretrain_SpyNet.yml); default "none": a random SpyNet, said in the '
                        'table title')
    parser.add_argument('--train-data', help='packed training split: train every model first (equal budget)')
    parser.add_argument('--train-iters', type=int, default=0)
    parser.add_argument('--train-minutes', type=float, default=0,
                        help='equal wall-clock training minutes per model instead of --train-iters')
    parser.add_argument('--curve-every', type=float, default=None,
                        help='with --train-minutes: minutes between learning-curve points (default M/5)')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--gt-size', type=int, default=128)
    parser.add_argument('--num-frame', type=int, default=5)
    parser.add_argument('--max-frames', type=int, default=None, help='frames per test clip')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', choices=DTYPE_CHOICES, default='auto',
                        help="HOFFR's compute path, as infer --dtype")
    parser.add_argument('--out', default='benchmark_results')
    parser.add_argument('--report', metavar='DIR', help='also write an offline HTML report there (hoffr_arch.report)')
    return parser, parser.parse_args(argv)


def data_options(data=None, gt=None, lq=None):
    """The test set's dataset options: a packed split ``data``, or HR and LR clip folders ``gt``, ``lq``."""
    from hoffr_arch.evaluation import split_options
    if data:
        return split_options(data, 'bench', lq_sharp=False)
    if gt and lq:
        return {'name': 'bench', 'dataroot_gt': gt, 'dataroot_lq': lq, 'io_backend': {'type': 'disk'}}
    raise ValueError('give --data, or --gt and --lq')


def network_options(models, hoffr_opt=None, spynet=None, overrides=()):
    """{model: network options}: the published sizes, HOFFR-S's from its recipe file, HOFFR's from the
    ``network_g`` of the YAML ``hoffr_opt``, the SpyNet weights ``spynet`` (a file, or None for random)
    for the SpyNet models, then each ``NAME=JSON`` of ``overrides``."""
    from hoffr_arch.options import load_yaml
    networks = {k: dict(v) for k, v in NETWORKS.items()}
    networks.update({m: dict(_recipe_file(m)['network_g']) for m in models if m in RECIPE_FILES})
    if hoffr_opt:
        found = load_yaml(hoffr_opt)
        if not isinstance(found, dict) or not isinstance(found.get('network_g'), dict):
            raise ValueError(f'--hoffr-opt {hoffr_opt}: no network_g section')
        networks['HOFFR'] = dict(found['network_g'])
    if spynet and not Path(spynet).is_file():
        raise ValueError(f'--spynet {spynet}: no such file')
    for name in SPYNET_MODELS:
        networks[name]['spynet_path'] = spynet and str(Path(spynet).resolve())
    for entry in overrides:
        name, _, spec = entry.partition('=')
        try:
            networks[name].update(json.loads(spec))
        except (KeyError, ValueError) as err:
            raise ValueError(f'--network {entry}: {"no model " + name if isinstance(err, KeyError) else err}') from None
    return networks


def train_models(models, networks, train_root, out, iters=0, minutes=0, curve_every=None, batch=4, gt_size=128,
                 num_frame=5, device='cpu'):
    """Trains ``models`` (bicubic, if named, needs none) on ``train_root`` with ``iters`` iterations or
    ``minutes`` each (a learning-curve point every ``curve_every`` minutes, default a fifth). Returns
    ({model: checkpoint}, the budget in words, the models of the learning curves or None)."""
    common = f'batch {batch}, {num_frame} frames, {gt_size}x{gt_size} HR patches'
    if minutes:
        ckpts = train_equal_budget(models, networks, train_root, 0, batch, gt_size, num_frame, out, minutes,
                                   curve_every or minutes / 5)
        return ckpts, f'equal time: {minutes:g} training minutes each on {device}, {common}', models
    ckpts = train_equal_budget(models, networks, train_root, iters, batch, gt_size, num_frame, out)
    return ckpts, f'equal budget: {iters} iterations, {common}', None


def evaluate_models(models, data_opt, device, networks, ckpts, max_frames=None, dtype='auto', report=False):
    """``evaluate``'s row of each model, each in a process of its own (its peak memory is its own)."""
    rows = []
    for name in models:
        print(f'evaluating {name} ...', flush=True)
        rows.append(run_isolated(evaluate, name, data_opt, device, networks.get(name), ckpts.get(name), max_frames,
                                 dtype, report))
    return rows


def html_report(where, rows, data, budget, flow, device, path_name):
    """The offline HTML report of the comparison (``hoffr_arch.report``); the rows give up their 'result'."""
    from hoffr_arch.report import write_report
    extra = {r['model']: {'params (M)': f"{r['params_M']:.2f}", 'GFLOPs/frame': f"{r['gflops_per_frame']:.1f}",
                          'peak mem (MiB)': f"{r['peak_mem_MiB']:.0f}"} for r in rows}
    facts = [('data', data), ('budget', budget), ('flow network of the SpyNet models', flow),
             ('device', f'{device}, HOFFR {path_name}, others fp32'), ('torch', torch.__version__)]
    models = [(r['model'], r.pop('result')) for r in rows]
    where = write_report(where, models, f'VSR comparison: {data}', facts, extra, 'no HOFFR model in this comparison')
    print(f'report: {where}')


def check_inputs(parser, args):
    """(compute path of HOFFR, test options, network options) from the arguments; bad input is one line, exit 2."""
    from hoffr_arch.precision import choose
    from hoffr_arch.report import ReportError, check_dir
    if args.report:
        try:
            check_dir(args.report)
        except ReportError as err:
            print(f'error: {err}', file=sys.stderr)
            raise SystemExit(2) from None
    trained = [m for m in args.models if m not in dict(e.split('=', 1) for e in args.ckpt)]
    spynets = [m for m in trained if m in SPYNET_MODELS]
    try:
        if args.train_data and (args.train_minutes or args.train_iters) and spynets and args.gt_size // 4 < MIN_SIZE:
            raise ValueError(f'--gt-size {args.gt_size}: {", ".join(spynets)} train on LR patches of at least '
                             f'{MIN_SIZE} pixels (SpyNet), i.e. --gt-size {MIN_SIZE * 4} or more')
        spynet = None if args.spynet.lower() == 'none' else args.spynet
        return (choose(args.dtype, args.device), data_options(args.data, args.gt, args.lq),
                network_options(args.models, args.hoffr_opt, spynet, args.network))
    except ValueError as err:
        parser.error(str(err))


def main(argv=None):
    parser, args = parse_args(argv)
    hoffr_path, data_opt, networks = check_inputs(parser, args)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ckpts = dict(entry.split('=', 1) for entry in args.ckpt)
    budget, curves = 'given checkpoints' if ckpts else 'untrained (cost only)', None
    if args.train_data and (args.train_minutes or args.train_iters):
        trained, budget, curves = train_models(
            [m for m in args.models if m not in ckpts], networks, Path(args.train_data).resolve(), out,
            args.train_iters, args.train_minutes, args.curve_every, args.batch, args.gt_size, args.num_frame,
            args.device)
        ckpts.update(trained)
    rows = evaluate_models(args.models, data_opt, args.device, networks, ckpts, args.max_frames, args.dtype,
                           bool(args.report))
    flow = 'SpyNet: random' if args.spynet.lower() == 'none' else f'SpyNet: {Path(args.spynet).name}'
    title = (f'VSRDB x4 on {args.data or args.lq} ({budget}; {flow}; {args.device}, HOFFR {hoffr_path.name}, '
             f'torch {torch.__version__})')
    print(write_outputs(rows, out, title))
    print(f'written: {out}/benchmark.md, benchmark.csv, benchmark.png')
    if args.report:
        html_report(args.report, rows, args.data or args.lq, budget, flow, args.device, hoffr_path.name)
    if curves is not None:
        print('learning curves:', flush=True)
        learning_curves(curves, networks, data_opt, args.device, out, args.max_frames, title, args.dtype)
        print(f'written: {out}/learning_curves.csv, learning_curves.png')
    return rows


if __name__ == '__main__':
    main()
