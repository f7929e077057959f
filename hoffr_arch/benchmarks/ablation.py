"""Is HOFFR's alignment worth it? The demo recipe trained with different flows, same budget and seed.

    python -m hoffr_arch.benchmarks.ablation [--variants pretrained zero-init no-flow] [--iters N]

Variants (everything else is ``options/demo/train_demo.yml``):
- ``pretrained``: the shipped self-supervised ``pof_x4.pth``, frozen (the demo as it is);
- ``pretrained-joint``: the same POF trained on with the rest, with the warping loss (``FlowWarpLoss``,
  0.01);
- ``zero-init``: the POF starts at zero motion (``pof_path: ~``) and learns only in joint training,
  with that warping loss;
- ``no-flow``: no alignment at all: the previous output recurs unwarped (``use_flow: false``);
- ``recurrent-base`` / ``deblurred-base``: the demo with ``network_g.upsample_base`` set so;
- ``clips-10``: training clips of 10 frames instead of 5 (nine frames of history a sample for the
  recurrence to learn from) for half the iterations: the same minutes.
Each is trained through BasicSR's runner in its own process on the demo data, then scored on the
held-out clips with the demo's own evaluation (PSNR/SSIM, gains of first and later frames, the
POF's warping error). Prints a Markdown table and writes ``OUT/ablation.md`` and ``.csv``.
"""
import argparse
import sys
import time
from pathlib import Path

import torch
import yaml

from hoffr_arch._entry import project_root
from hoffr_arch.benchmarks.isolated import train_isolated
from hoffr_arch.benchmarks.tables import markdown, write_csv
from hoffr_arch.demo import build_data, evaluate

JOINT_FLOW = {'flow_lr_mul': 1, 'flow_opt': {'type': 'FlowWarpLoss', 'loss_weight': 0.01}}
VARIANTS = {
    'pretrained': {},
    'pretrained-joint': {'train': JOINT_FLOW},
    'zero-init': {'network_g': {'pof_path': None}, 'train': JOINT_FLOW},
    'no-flow': {'network_g': {'use_flow': False, 'pof_path': None}},
    'recurrent-base': {'network_g': {'upsample_base': 'recurrent'}},
    'deblurred-base': {'network_g': {'upsample_base': 'deblurred'}},
    'clips-10': {'datasets': {'train': {'num_frame': 10}}, 'iter_share': 0.5},
}


def _merge(opt, changes):
    """``changes`` into ``opt`` in place, section by section (a dict value updates, anything else replaces)."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(opt.get(key), dict):
            _merge(opt[key], value)
        else:
            opt[key] = value


def variant_options(base, name, changes, iters):
    """The base options with a variant's changes (nested keys merged); ``iter_share`` scales the
    iterations (``iters``, else the base's), so a variant with dearer steps gets the same minutes."""
    opt = yaml.safe_load(Path(base).read_text())
    opt['name'] = f'ablation_{name}'
    changes = dict(changes)
    share = changes.pop('iter_share', 1)
    _merge(opt, changes)
    if iters or share != 1:
        iters = round((iters or opt['train']['total_iter']) * share)
        opt['train']['total_iter'] = iters
        opt['train']['scheduler']['periods'] = [iters]
        opt['val']['val_freq'] = iters
        opt['logger']['save_checkpoint_freq'] = iters
    return opt


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--variants', nargs='+', default=['pretrained', 'zero-init', 'no-flow'], choices=VARIANTS)
    parser.add_argument('--opt', default=None, help='base options (default: options/demo/train_demo.yml)')
    parser.add_argument('--iters', type=int, default=None, help='override train.total_iter for every variant')
    parser.add_argument('--out', default='benchmark_results/ablation')
    parser.add_argument('--reuse', action='store_true',
                        help='score a variant already trained (its net_g_latest.pth exists) without training it again')
    return parser.parse_args(argv)


def train_variant(name, opt, out, root, reuse=False):
    """Trains variant ``name`` (options ``opt``) through BasicSR's runner in its own process, logged to
    ``out/<name>.log``; ``reuse``: not when its weights exist. Returns (weights, training minutes: NaN
    when reused), or None when training failed (said on stderr)."""
    weights = root / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth'
    if reuse and weights.exists():
        return weights, float('nan')
    path = out / f'{name}.yml'
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    print(f'training {name} ...', flush=True)
    start = time.time()
    status = train_isolated(['-opt', str(path)], out / f'{name}.log', root)
    if status:
        print(f'error: training {name} failed (exit {status}); see {out / name}.log', file=sys.stderr)
        return None
    return weights, (time.time() - start) / 60


TABLE = [('variant', '{variant}'), ('iterations', '{iterations}'), ('PSNR', '{psnr:.2f}'), ('SSIM', '{ssim:.4f}'),
         ('gain over bicubic, first frames', '{gain_first:+.2f}'), ('later frames', '{gain_later:+.2f}'),
         ('recurrence adds', '{recurrence:+.2f}'), ('POF warp error / no flow', '{warp_ratio:.2f}'),
         ('training min', '{train_minutes:.1f}')]


def write_table(rows, out, heading):
    """The rows as a Markdown table under ``heading`` (``out/ablation.md``) and as ``out/ablation.csv``."""
    lines = [heading, ''] + markdown([dict(r, recurrence=r['gain_later'] - r['gain_first']) for r in rows], TABLE)
    table = '\n'.join(lines)
    (out / 'ablation.md').write_text(table + '\n')
    write_csv(out / 'ablation.csv', rows, list(rows[0]))
    return table


def main(argv=None):
    args = parse_args(argv)
    root = project_root()
    base = Path(args.opt or root / 'options' / 'demo' / 'train_demo.yml')
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    lmdb_root = build_data(root / 'datasets' / 'demo')
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    rows = []
    for name in args.variants:
        opt = variant_options(base, name, VARIANTS[name], args.iters)
        trained = train_variant(name, opt, out, root, args.reuse)
        if trained is None:
            return 1
        weights, minutes = trained
        r = evaluate(opt, weights, lmdb_root, device)
        rows.append({'variant': name, 'iterations': opt['train']['total_iter'], 'psnr': r['model'][0],
                     'ssim': r['model'][1], 'bicubic_psnr': r['bicubic'][0],
                     'gain_first': r['gain_first'], 'gain_later': r['gain_later'],
                     'warp_ratio': r['warp_pof'] / r['warp_zero'], 'train_minutes': minutes})
        print(f"  {name}: PSNR {r['model'][0]:.2f} dB ({minutes:.1f} min)", flush=True)
    print(write_table(rows, out, f'Demo data, held-out clips, seed {opt["manual_seed"]}, {device}'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
