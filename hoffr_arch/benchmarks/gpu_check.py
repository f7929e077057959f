"""One short GPU check, one table: ``bash scripts/gpu_check.sh`` (about 6 minutes on one GPU).

1. training at the REDS shape (batch 4, 8 frames, 64x64 LR, Adam, SR + DB + flow losses), the
   default HOFFR from the pretrained POF, ``--iters`` iterations in fp32 and in bf16 autocast:
   iterations per second and peak memory;
2. inference, seconds per frame at LR 180x320 (x4), HOFFR against BasicVSR (``benchmarks.speed``);
3. a one-GPU ``torchrun`` (nccl) run of ``hoffr_arch.train`` on data synthesised from the bundled clip;
4. HOFFR-S trained for ``--minutes`` on that data or on a corpus (``--data``), its EMA weights packed
   as a release file and scored on the held-out clips against bicubic (``hoffr_arch.evaluation``).
On a CPU (``--device cpu --iters 2 --minutes 0.2``) it checks its own code paths.
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

import hoffr_arch  # noqa: F401  (compat, registries)
from hoffr_arch._entry import project_root
from hoffr_arch.archs.hoffr_arch import HOFFR
from hoffr_arch.benchmarks import speed
from hoffr_arch.models.hoffr_model import recipe_losses, training_step

LOSSES = {'sr_opt': {'type': 'SRLoss'}, 'db_opt': {'type': 'DBLoss'}, 'flow_opt': {'type': 'FlowWarpLoss'}}
LOSSES_FROZEN_POF = {'sr_opt': {'type': 'SRLoss'}, 'db_opt': {'type': 'DBLoss'}}  # no flow loss: HOFFR-S's recipe


def train_speed(net, device, iters, batch=4, frames=8, lr_size=64, bf16=False, scale=4, warmup=1,
                frozen_pof=False):
    """(iterations per second, peak MiB) of training ``net`` (Adam; SR + DB + flow losses) on random
    clips of ``batch`` x ``frames`` x ``lr_size``^2 LR (the REDS shape by default), after ``warmup``
    steps; ``frozen_pof``: the POF frozen and no flow loss (``train.flow_lr_mul: 0``, HOFFR-S's recipe)."""
    net = net.to(device).train()
    if frozen_pof:
        net.pof.requires_grad_(False)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=2e-4)
    losses = recipe_losses(LOSSES_FROZEN_POF if frozen_pof else LOSSES, device)
    lq = torch.rand(batch, frames, 3, lr_size, lr_size, device=device)
    gt = torch.rand(batch, frames, 3, lr_size * scale, lr_size * scale, device=device)
    sharp = torch.rand(batch, frames, 3, lr_size, lr_size, device=device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == 'cuda')

    def step():
        training_step(net, opt, losses, lq, gt, sharp, autocast)
    for _ in range(warmup):
        step()
    speed._sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        step()
    speed._sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == 'cuda' else float('nan')
    return iters / seconds, peak


def make_data(root):
    """The bundled clip, synthesised and packed (train / test split), under ``root``."""
    from hoffr_arch.demo import build_data
    return build_data(root)


def point_to_corpus(opt, corpus):
    """A copy of training options ``opt`` reading ``corpus/train`` and validating on ``corpus/val`` or
    ``corpus/test``; without either, no validation. Returns (options, held-out split folder or None)."""
    opt = yaml.safe_load(yaml.safe_dump(opt))
    corpus = Path(corpus)
    held = next((corpus / s for s in ('val', 'test') if (corpus / s / 'meta_info.txt').exists()), None)
    if held is None:  # nothing held out: no validation (BasicSR's runner validates after the last iteration)
        opt['datasets'].pop('val', None)
        opt.pop('val', None)
    for phase, split in (('train', corpus / 'train'), ('val', held)):
        if phase in opt['datasets']:
            point_to_split(opt['datasets'][phase], split)
    return opt, held


def point_to_split(ds, split):
    """Dataset options ``ds`` changed in place to read the packed split folder ``split``: each of the
    roots and the clip list they name (``evaluation.split_options``), the rest as it was."""
    from hoffr_arch.evaluation import split_options
    ds.update({k: v for k, v in split_options(split, lq_sharp=True, meta_info=True).items()
               if k in ds and k.startswith(('dataroot_', 'meta_info'))})


def final_checkpoint(experiment, total):
    """(iterations, checkpoint) that a ``hoffr_arch.train --time-budget`` run in ``experiment`` ended
    with: ``net_g_latest.pth`` when the schedule ran to ``total``, else its last budget checkpoint."""
    experiment = Path(experiment)
    latest = experiment / 'models' / 'net_g_latest.pth'
    if latest.exists():
        return total, latest
    done = (experiment / 'time_budget.csv').read_text().splitlines()[1:]
    if not done:
        raise FileNotFoundError(f'{experiment}: the run saved no checkpoint')
    _, it, ckpt = done[-1].split(',')
    return int(it), Path(ckpt)


def score_weights(path, network_g, held, scale, device, dataset=None):
    """``hoffr_arch.evaluation.evaluate``'s result for the weights at ``path`` (a checkpoint or release
    file of the network ``network_g``) on the held-out split folder ``held`` (or ``dataset``, a part of it)."""
    from basicsr.archs import build_network
    from hoffr_arch import evaluation
    from hoffr_arch.checkpoint import load_weights
    from hoffr_arch.streaming import torch_step
    net = load_weights(build_network(dict(network_g, pof_path=None)), path).to(device).eval()
    dataset = evaluation.test_dataset(held) if dataset is None else dataset
    return evaluation.evaluate(evaluation.streamed(torch_step(net)), dataset, scale, device, net=net)


def train_hoffr_s(opt, corpus, out, env, device, minutes, batch=None, gt_size=None, workers=None):
    """HOFFR-S (training options ``opt``) trained through BasicSR's runner for ``minutes`` on
    ``corpus/train`` (``batch``, ``gt_size``, ``workers``: None keeps the options'): a cosine schedule
    sized from the measured speed (0.8 of the minutes), ``--time-budget`` as the backstop.
    Its EMA weights are packed (``out/HOFFR_S_x4_gpu.pth``) and scored on ``corpus/val`` or
    ``corpus/test`` against bicubic when the corpus has one. One row of the table.
    (``hoffr_arch.benchmarks.gpu_train`` is the run that continues the shipped weights.)"""
    from basicsr.archs import build_network
    from hoffr_arch.checkpoint import pack_release
    opt, held = point_to_corpus(opt, corpus)
    train_ds = opt['datasets']['train']
    for key, value in (('batch_size_per_gpu', batch), ('gt_size', gt_size), ('num_worker_per_gpu', workers)):
        if value is not None:
            train_ds[key] = value
    torch.manual_seed(0)
    its, _ = train_speed(build_network(dict(opt['network_g'], pof_path=None)), device, 10,
                         train_ds['batch_size_per_gpu'], train_ds['num_frame'], train_ds['gt_size'] // opt['scale'],
                         scale=opt['scale'])
    total = max(10, int(its * minutes * 60 * 0.8))
    opt['name'] = 'gpu_check_hoffr_s'
    opt['train'] = dict(opt['train'], total_iter=total, scheduler=dict(opt['train']['scheduler'], periods=[total],
                                                                       restart_weights=[1]))
    (out / 'hoffr_s.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    label = (f'HOFFR-S, {minutes:g} min, batch {train_ds["batch_size_per_gpu"]} x {train_ds["num_frame"]} '
             f'frames, {train_ds["gt_size"]}px GT')
    ok, sec = run_train([sys.executable, '-m', 'hoffr_arch.train', '-opt', str(out / 'hoffr_s.yml'),
                         '--time-budget', str(minutes * 1.5)], env, 'HOFFR-S training')
    if not ok:
        return label, 'FAILED', ''
    it, ckpt = final_checkpoint(out / 'experiments' / opt['name'], total)
    release = pack_release(ckpt, opt['network_g'], out / 'HOFFR_S_x4_gpu.pth', param_key='params_ema')
    label += f' ({it} iterations in {sec / 60:.1f} min)'
    if held is None:
        return label, f'weights: {release.name}', 'no held-out split in the corpus'
    res = score_weights(release, opt['network_g'], held, opt['scale'], device)
    return (label, f'{res["model"][0]:.2f} dB vs bicubic {res["bicubic"][0]:.2f}',
            f'first {res["gain_first"]:+.2f}, later {res["gain_later"]:+.2f} dB')


def run_train(args, env, label):
    start = time.time()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    ok = proc.returncode == 0
    if not ok:
        print(f'{label} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}', file=sys.stderr)
    return ok, time.time() - start


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--iters', type=int, default=200)
    parser.add_argument('--minutes', type=float, default=2.0)
    parser.add_argument('--out', default='gpu_check')
    parser.add_argument('--data', default=None, help='packed corpus (train/, and val/ or test/, as `python -m '
                        'datasets_lmdb reds` writes) for the HOFFR-S run; default: the demo data of the bundled clip')
    parser.add_argument('--batch', type=int, default=None, help='HOFFR-S batch size (default: its YAML)')
    parser.add_argument('--gt-size', type=int, default=None, help='HOFFR-S GT patch size (default: its YAML)')
    parser.add_argument('--workers', type=int, default=None, help='HOFFR-S data workers (default: its YAML)')
    return parser.parse_args(argv)


def training_rows(device, iters):
    """Rows 1: the default HOFFR trained at the REDS shape in fp32 and in bf16 autocast."""
    rows = []
    for bf16 in (False, True):
        torch.manual_seed(0)
        its, peak = train_speed(HOFFR(pof_path='hoffr_arch/assets/pof_x4.pth'), device, iters, bf16=bf16)
        rows.append((f'training, REDS shape, {"bf16" if bf16 else "fp32"}', f'{its:.2f} it/s', f'peak {peak:.0f} MiB'))
        print(rows[-1], flush=True)
    return rows


def inference_row(device):
    """Row 2: seconds per frame of HOFFR and BasicVSR at LR 180x320 (``benchmarks.speed``)."""
    torch.manual_seed(0)
    models = {k: v.eval() for k, v in speed.make_models(device).items()}
    clip = torch.rand(1, 10, 3, 180, 320, device=device)
    inf = speed.measure({k: speed.inference_fn(v, clip) for k, v in models.items()}, 3, device)
    return ('inference s/frame, LR 180x320 x4', f'HOFFR {inf["HOFFR"] / 10:.4f}',
            f'BasicVSR {inf["BasicVSR"] / 10:.4f} ({inf["HOFFR"] / inf["BasicVSR"]:.2f}x)')


def demo_options(data):
    """HOFFR-S's training options reading the demo data ``data`` (train/, test/ held out), for this check:
    every GPU, no validation or checkpoint before the end."""
    with open(project_root() / 'options' / 'train' / 'train_HOFFR_S_x4.yml') as f:
        opt = yaml.safe_load(f)
    for phase, split in (('train', 'train'), ('val', 'test')):
        point_to_split(opt['datasets'][phase], data / split)
    opt['num_gpu'] = 'auto'
    opt['val']['val_freq'] = 10 ** 9
    opt['logger']['save_checkpoint_freq'] = 10 ** 9
    return opt


def torchrun_row(opt, out, env, device):
    """Row 3: 20 iterations of ``hoffr_arch.train`` under a one-process ``torchrun``."""
    ddp = dict(opt, name='gpu_check_torchrun', train=dict(opt['train'], total_iter=20))
    (out / 'torchrun.yml').write_text(yaml.safe_dump(ddp, sort_keys=False))
    launcher = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node=1', '--master_port=29517',
                '-m', 'hoffr_arch.train', '-opt', str(out / 'torchrun.yml'), '--launcher', 'pytorch']
    ok, sec = run_train(launcher, env, 'torchrun')
    return ('torchrun, 1 process, ' + ('nccl' if device.type == 'cuda' else 'gloo'), 'ok' if ok else 'FAILED',
            f'{sec:.0f} s for 20 iterations')


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = training_rows(device, args.iters)
    rows.append(inference_row(device))
    print(rows[-1], flush=True)
    data = make_data(out / 'data')
    env = dict(os.environ, HOFFR_ROOT=str(out))
    opt = demo_options(data)
    rows.append(torchrun_row(opt, out, env, device))
    print(rows[-1], flush=True)
    rows.append(train_hoffr_s(opt, Path(args.data) if args.data else data, out, env, device, args.minutes,
                              args.batch, args.gt_size, args.workers))
    print(rows[-1], flush=True)
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'
    lines = [f'GPU check on {name} (torch {torch.__version__})', '', '| check | result | |', '|---|---|---|']
    lines += [f'| {a} | {b} | {c} |' for a, b, c in rows]
    table = '\n'.join(lines)
    (out / 'gpu_check.md').write_text(table + '\n')
    print('\n' + table)
    return 0 if all('FAILED' not in r[1] for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
