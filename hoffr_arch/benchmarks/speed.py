"""Speed of HOFFR against BasicSR's BasicVSR, in one process, printed as ratios.

    python -m hoffr_arch.benchmarks.speed [--device cuda] [--repeats 3]

Inference: seconds per frame on a ``--frames``-frame clip at LR ``--height`` x ``--width`` (x4).
Training: seconds per step (batch 1, ``--train-frames`` frames, ``--patch`` LR patches, Adam), HOFFR
with its full loss (SR + DB + flow), BasicVSR with its Charbonnier loss.
BasicVSR is num_feat 64, num_block 15, SpyNet randomly initialised (no weights are downloaded).
The two models alternate and each figure is the median of ``--repeats`` runs, so a machine that
slows down part-way affects both alike. Targets: inference <= 0.5 x BasicVSR, training <= 0.7 x.
``--onnx`` adds streaming inference (``HOFFR.step`` frame by frame, as ``hoffr_arch.infer`` runs it):
torch against ONNX Runtime on the exported step (``hoffr_arch.export``), seconds per frame.
``--pof-per-frame`` adds the same HOFFR (same weights) with its POF called once per frame pair, as
before ``forward`` batched it over frame pairs (``HOFFR.pof_pairs_per_call`` and
``pof_pixels_per_call``), and prints the ratio.
"""
import argparse
import copy
import statistics
import time

import torch

import hoffr_arch  # noqa: F401  (compat first, registers HOFFR and its losses)
from basicsr.archs.basicvsr_arch import BasicVSR
from basicsr.losses.basic_loss import CharbonnierLoss
from hoffr_arch.archs.hoffr_arch import HOFFR
from hoffr_arch.losses.hoffr_loss import DBLoss, FlowWarpLoss, SRLoss

TARGETS = {'inference': 0.5, 'training': 0.7}
PER_FRAME = 'HOFFR, POF per frame'


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def make_models(device, scale=4):
    """The two networks of the comparison, on ``device``."""
    return {
        'HOFFR': HOFFR(scale=scale).to(device),
        'BasicVSR': BasicVSR(num_feat=64, num_block=15, spynet_path=None).to(device),
    }


def inference_fn(net, clip):
    def run():
        with torch.inference_mode():
            net(clip)
    return run


def training_fn(name, net, lq, gt, sharp_lr):
    """One optimisation step of ``net`` with its own loss; returns a callable."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999))
    if name.startswith('HOFFR'):
        sr, db, of = SRLoss(), DBLoss(), FlowWarpLoss()

        def loss_fn():
            out, aux = net(lq, return_aux=True)
            return sr(out, gt) + db(aux['deblurred'], sharp_lr) + of(aux['flows'], sharp_lr)
    else:
        charbonnier = CharbonnierLoss()

        def loss_fn():
            return charbonnier(net(lq), gt)

    def run():
        optimizer.zero_grad(set_to_none=True)
        loss_fn().backward()
        optimizer.step()
    return run


def streaming_fns(net, clip):
    """Frame-by-frame inference through torch and through ONNX Runtime on the exported step."""
    import tempfile
    from pathlib import Path
    from hoffr_arch.export import export
    from hoffr_arch.streaming import OnnxStep, torch_step
    path = Path(tempfile.mkdtemp()) / 'step.onnx'
    export(net, path)
    steps = {'torch': torch_step(net), 'onnxruntime': OnnxStep(path)}

    def runner(step):
        def run():
            state = None
            with torch.inference_mode():
                for i in range(clip.shape[1]):
                    _, state, _ = step(clip[:, i], state)
        return run
    return {name: runner(step) for name, step in steps.items()}


def measure(runs, repeats, device):
    """Median seconds of each named callable, alternating between them; one warm-up run each."""
    times = {name: [] for name in runs}
    for fn in runs.values():
        fn()
    for _ in range(repeats):
        for name, fn in runs.items():
            times[name].append(_timed(fn, device))
    return {name: statistics.median(values) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--frames', type=int, default=10)
    parser.add_argument('--height', type=int, default=180)
    parser.add_argument('--width', type=int, default=320)
    parser.add_argument('--train-frames', type=int, default=8)
    parser.add_argument('--patch', type=int, default=64)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--onnx', action='store_true', help='also: streaming torch vs ONNX Runtime (CPU)')
    parser.add_argument('--pof-per-frame', action='store_true',
                        help='also: HOFFR with one POF call per frame pair (forward batches it)')
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    models = make_models(device)
    if args.pof_per_frame:
        models[PER_FRAME] = copy.deepcopy(models['HOFFR'])
        models[PER_FRAME].pof_pairs_per_call = 1
    print(f'device {device}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads')
    for name, net in models.items():
        print(f'{name}: {sum(p.numel() for p in net.parameters()) / 1e6:.3f} M parameters')

    clip = torch.rand(1, args.frames, 3, args.height, args.width, device=device)
    for net in models.values():
        net.eval()
    inf = measure({name: inference_fn(net, clip) for name, net in models.items()}, args.repeats, device)

    p, t = args.patch, args.train_frames
    lq = torch.rand(1, t, 3, p, p, device=device)
    gt = torch.rand(1, t, 3, 4 * p, 4 * p, device=device)
    sharp_lr = torch.rand(1, t, 3, p, p, device=device)
    for net in models.values():
        net.train()
    train = measure({name: training_fn(name, net, lq, gt, sharp_lr) for name, net in models.items()},
                    args.repeats, device)

    results = {}
    print(f'\ninference, {args.frames} frames at {args.height}x{args.width} (x4), seconds per frame:')
    for name, sec in inf.items():
        print(f'  {name:20s} {sec / args.frames:.4f}')
    results['inference'] = inf['HOFFR'] / inf['BasicVSR']
    print(f'\ntraining step, batch 1, {t} frames, {p}x{p} LR, Adam, seconds per step:')
    for name, sec in train.items():
        print(f'  {name:20s} {sec:.4f}')
    results['training'] = train['HOFFR'] / train['BasicVSR']
    if args.onnx:
        net = models['HOFFR'].cpu().eval()
        stream = measure(streaming_fns(net, clip.cpu()), args.repeats, torch.device('cpu'))
        print(f'\nstreaming HOFFR.step, {args.frames} frames at {args.height}x{args.width} (x4), CPU, seconds per frame:')
        for name, sec in stream.items():
            print(f'  {name:12s} {sec / args.frames:.4f}')
        print(f'  onnxruntime / torch: {stream["onnxruntime"] / stream["torch"]:.3f}')
    if args.pof_per_frame:
        print(f'\nHOFFR (POF batched over frame pairs) / {PER_FRAME}: '
              f'inference {inf["HOFFR"] / inf[PER_FRAME]:.3f}, '
              f'training {train["HOFFR"] / train[PER_FRAME]:.3f}')
    print('\nHOFFR / BasicVSR:')
    for key, ratio in results.items():
        verdict = 'meets' if ratio <= TARGETS[key] else 'MISSES'
        print(f'  {key:9s} {ratio:.3f}  ({verdict} the target <= {TARGETS[key]})')
    return results


if __name__ == '__main__':
    main()
