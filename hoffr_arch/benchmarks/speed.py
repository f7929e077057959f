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

    python -m hoffr_arch.benchmarks.speed --paths [--repeats 5]

``--paths`` measures the CPU compute paths instead (``hoffr_arch.precision``): one ``HOFFR.step`` with
explicit state (a continuing frame: the POF runs) at LR ``--height`` x ``--width``, for
the default HOFFR and HOFFR-S (the shipped starter's size; ``--nets`` one of them), on fp32 eager,
fp32 channels-last, bf16 autocast, bf16 autocast + channels-last, and the exported step
(``hoffr_arch.export``, where installed) on ONNX Runtime fp32, OpenVINO fp32 and OpenVINO bf16 (its
precision hint; only where the CPU has native bf16). Each path is warmed up, then the paths
alternate and each figure is the median of ``--repeats``; ratios are against fp32 eager in the same
run; GFLOP/s from torch's flop counter, as a fraction of this machine's fp32 and bf16 ``--matmul`` x
``--matmul`` matmul speed measured in the same run. Then (unless ``--no-train``) a HOFFR-S training
step (its recipe's batch, POF frozen) on each torch path, and the
PSNR change of each path against fp32 with the shipped HOFFR-S weights on real frames:
``--psnr-data`` (a packed split, e.g. ``datasets/corpus/val``, held out; the default when present),
else the bundled clip (``hoffr_arch/assets/sam2_01_dog.mp4``, which HOFFR-S trained on: a precision
check, not a held-out score). bf16 is timed only on CPUs with AMX-BF16/AVX512-BF16 (elsewhere it is
emulated and takes minutes a step; ``--force-bf16`` times it anyway); its PSNR change is measured
everywhere.
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
from hoffr_arch.models.hoffr_model import recipe_losses, training_step

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
    """One optimisation step of ``net`` with its own loss (HOFFR: ``HOFFRModel``'s ``training_step``
    with SR + DB + flow losses); returns a callable."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4, betas=(0.9, 0.999))
    if name.startswith('HOFFR'):
        losses = recipe_losses({'sr_opt': {'type': 'SRLoss'}, 'db_opt': {'type': 'DBLoss'},
                                'flow_opt': {'type': 'FlowWarpLoss'}}, lq.device)
        return lambda: training_step(net, optimizer, losses, lq, gt, sharp_lr)
    charbonnier = CharbonnierLoss()

    def run():
        optimizer.zero_grad(set_to_none=True)
        charbonnier(net(lq), gt).backward()
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


def matmul_gflops(dtype, n, repeats):
    """This machine's GFLOP/s multiplying two (n, n) matrices of ``dtype`` (best of ``repeats``)."""
    a, b = torch.rand(n, n).to(dtype), torch.rand(n, n).to(dtype)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b), torch.device('cpu')) for _ in range(repeats))
    return 2 * n ** 3 / best / 1e9


def step_flops(net, x, state):
    """FLOPs of one ``net.step(x, state)`` (torch's flop counter)."""
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        net.step(x, state)
    return counter.get_total_flops()


def cpu_paths(timed_bf16, onnx=True, ov_bf16=False):
    """{name: ComputePath, or (graph backend, dtype)}: the CPU paths to time: torch's (bf16 only if
    ``timed_bf16``), and with ``onnx`` the exported step on ONNX Runtime and OpenVINO in fp32 where
    installed (OpenVINO bf16 too with ``ov_bf16``: only where the CPU has native bf16)."""
    from hoffr_arch.backends import installed
    from hoffr_arch.precision import ComputePath
    cpu = torch.device('cpu')
    paths = {'fp32 eager': ComputePath(cpu), 'fp32 channels_last': ComputePath(cpu, channels_last=True)}
    if timed_bf16:
        paths['bf16 autocast'] = ComputePath(cpu, torch.bfloat16)
        paths['bf16 autocast + channels_last'] = ComputePath(cpu, torch.bfloat16, True)
    if onnx and installed('onnxruntime'):
        paths['onnxruntime fp32'] = ('onnxruntime', torch.float32)
    if onnx and installed('openvino'):
        paths['openvino fp32'] = ('openvino', torch.float32)
        if ov_bf16:
            paths['openvino bf16'] = ('openvino', torch.bfloat16)
    return paths


def path_step(net, path):
    """A step callable ``(lq, state) -> (hr, state, deblurred)`` of ``net`` (its own copy) on ``path``
    (the graph backends run ``net``'s export from the temporary cache, ``export.cached_export``)."""
    from hoffr_arch.streaming import OnnxStep, torch_step
    if isinstance(path, tuple):
        from hoffr_arch.backends import OpenVinoStep
        from hoffr_arch.export import cached_export
        backend, dtype = path
        graph = cached_export(copy.deepcopy(net))
        return OpenVinoStep(graph, dtype) if backend == 'openvino' else OnnxStep(graph)
    return torch_step(copy.deepcopy(net), path)


def time_paths(net, paths, size, repeats):
    """Median seconds of one continuing ``step`` (the POF runs) per path, paths alternating."""
    frames = torch.rand(2, 1, 3, *size)
    runs = {}
    for name, path in paths.items():
        step = path_step(net, path)
        with torch.inference_mode():
            _, state, _ = step(frames[0], None)

        def run(step=step, state=state):
            with torch.inference_mode():
                step(frames[1], state)
        runs[name] = run
        run()  # a second warm-up call: ``measure`` makes the first
    return measure(runs, repeats, torch.device('cpu'))


def psnr_frames(data, max_frames=6, crop=(64, 112)):
    """[(lq (t, 3, h, w), gt (t, 3, 4h, 4w))] real clips in [0, 1]: a packed split ``data`` (each
    clip's first ``max_frames``), or the bundled clip's first ``max_frames`` frames (an HR crop of
    ``crop`` x 4 from the frame's centre, its LR by MATLAB bicubic)."""
    from hoffr_arch.evaluation import test_dataset
    if data:
        dataset = test_dataset(data)
        clips = [dataset[i] for i in range(len(dataset))]
        return [(c['lq'][:max_frames], c['gt'][:max_frames]) for c in clips]
    from basicsr.utils.matlab_functions import imresize
    from hoffr_arch.checkpoint import resolve_asset
    from hoffr_arch.data.video_io import MediaReader, as_bgr
    reader = MediaReader(resolve_asset('hoffr_arch/assets/sam2_01_dog.mp4'))
    gts = []
    for frame, _ in zip(reader, range(max_frames)):
        img = torch.from_numpy(as_bgr(frame.image)[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255.
        top, left = (img.shape[1] - 4 * crop[0]) // 2, (img.shape[2] - 4 * crop[1]) // 2
        gts.append(img[:, top:top + 4 * crop[0], left:left + 4 * crop[1]])
    reader.close()
    gt = torch.stack(gts)
    return [(torch.stack([imresize(f, 0.25) for f in gt]).clamp(0, 1), gt)]


def psnr_changes(net, paths, clips):
    """{path: PSNR (dB, RGB, all frames) on ``clips``}, each clip streamed through the path's step."""
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img
    from hoffr_arch.evaluation import streamed
    scores = {}
    for name, path in paths.items():
        run_clip = streamed(path_step(net, path))
        values = []
        with torch.inference_mode():
            for lq, gt in clips:
                for hr, g in zip(run_clip(lq), gt):
                    values.append(calculate_psnr(tensor2img(hr.float()), tensor2img(g), 0))
        scores[name] = statistics.mean(values)
    return scores


def train_path_fn(net, path, batch=4, frames=8, size=32):
    """One HOFFR-S recipe training step (Adam, SR + DB Charbonnier losses, POF frozen; batch x frames
    of size x size LR patches) of a copy of ``net`` on ``path`` (as ``HOFFRModel`` with ``train.bf16``)."""
    net = path.prepare(copy.deepcopy(net)).train()
    net.pof.requires_grad_(False)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=2e-3)
    losses = recipe_losses({'sr_opt': {'type': 'SRLoss', 'criterion': 'charbonnier'},
                            'db_opt': {'type': 'DBLoss', 'loss_weight': 0.5, 'criterion': 'charbonnier'}})
    lq, sharp = torch.rand(batch, frames, 3, size, size), torch.rand(batch, frames, 3, size, size)
    gt = torch.rand(batch, frames, 3, 4 * size, 4 * size)
    return lambda: training_step(net, optimizer, losses, lq, gt, sharp, path.autocast())


def train_paths(starter, timed_bf16, repeats):
    """Seconds per HOFFR-S training step on each torch CPU path (the paths alternating), as a table."""
    runs = {name: train_path_fn(starter, path) for name, path in cpu_paths(timed_bf16, onnx=False).items()}
    for run in runs.values():
        run()  # a second warm-up (``measure`` makes the first): oneDNN builds kernels per shape
    times = measure(runs, repeats, torch.device('cpu'))
    lines = ['\nHOFFR-S training step (its recipe: batch 4 x 8 frames, 32x32 LR, POF frozen, Adam), '
             'median of the runs:', '', '| path | s/iteration | vs fp32 eager |', '|---|---|---|']
    lines += [f'| {name} | {sec:.3f} | {times["fp32 eager"] / sec:.2f}x |' for name, sec in times.items()]
    return '\n'.join(lines)


def paths_main(args):
    """The CPU-paths table (``--paths``): speed of each path for ``--nets``, training steps, PSNR changes."""
    from hoffr_arch.infer import load_model, STARTER
    from hoffr_arch.checkpoint import resolve_asset
    from hoffr_arch.precision import cpu_bf16_features
    from pathlib import Path
    from hoffr_arch._entry import project_root
    default = Path(project_root()) / 'datasets' / 'corpus' / 'val'
    if args.psnr_data is None and (default / 'sharp.lmdb').exists():
        args.psnr_data = str(default)
    native = cpu_bf16_features()
    timed_bf16 = bool(native) or args.force_bf16
    caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, 'get_capabilities') else {}
    print(f'CPU: {caps.get("cpu_name", "?")}, native bf16: {"/".join(native) or "none"}, '
          f'{torch.get_num_threads()} threads, torch {torch.__version__}')
    if not timed_bf16:
        print('bf16 paths not timed: no AMX-BF16/AVX512-BF16 here (emulated bf16; --force-bf16 times it)')
    ceilings = {'fp32': matmul_gflops(torch.float32, args.matmul, args.repeats)}
    if timed_bf16:
        ceilings['bf16'] = matmul_gflops(torch.bfloat16, args.matmul, args.repeats)
    print(f'matmul ceilings (GFLOP/s, {args.matmul}x{args.matmul}): '
          + ', '.join(f'{k} {v:.0f}' for k, v in ceilings.items()), flush=True)
    starter = load_model(resolve_asset(STARTER))
    size = (args.height, args.width)
    for name in args.nets:
        net = starter if name == 'HOFFR-S' else HOFFR().eval()
        x = torch.rand(1, 3, *size)
        with torch.inference_mode():
            _, state = net.step(x)
        flops = step_flops(net, x, state)
        times = time_paths(net, cpu_paths(timed_bf16, ov_bf16=bool(native)), size, args.repeats)
        print(paths_table(name, net, size, flops, times, ceilings), flush=True)
    if not args.no_train:
        print(train_paths(starter, timed_bf16, args.repeats), flush=True)
    clips = psnr_frames(args.psnr_data)
    where = args.psnr_data or 'the bundled clip (trained on: a precision check)'
    scores = psnr_changes(starter, cpu_paths(True, ov_bf16=bool(native)), clips)
    frames = sum(len(lq) for lq, _ in clips)
    print(f'\nPSNR change against fp32 eager, shipped HOFFR-S, {frames} frames of {where} '
          f'(fp32 eager {scores["fp32 eager"]:.3f} dB):')
    for name, value in scores.items():
        print(f'  {name:32s} {value - scores["fp32 eager"]:+.4f} dB')


def paths_table(name, net, size, flops, times, ceilings):
    """The markdown table of one network's paths: s/step, ratio to fp32 eager, GFLOP/s, ceilings."""
    params = sum(p.numel() for p in net.parameters()) / 1e6
    lines = [f'\n{name} ({params:.2f} M), one HOFFR.step at LR {size[0]}x{size[1]} (x4), '
             f'{flops / 1e9:.1f} GFLOP, median of the runs:', '',
             '| path | s/step | vs fp32 eager | GFLOP/s | of fp32 matmul | of bf16 matmul |',
             '|---|---|---|---|---|---|']
    for path, sec in times.items():
        rate = flops / sec / 1e9
        of_bf16 = f'{rate / ceilings["bf16"]:.0%}' if 'bf16' in ceilings else '-'
        lines.append(f'| {path} | {sec:.3f} | {times["fp32 eager"] / sec:.2f}x | {rate:.0f} | '
                     f'{rate / ceilings["fp32"]:.0%} | {of_bf16} |')
    return '\n'.join(lines)


def build_parser():
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
    parser.add_argument('--paths', action='store_true', help='instead: the CPU compute paths table (see above)')
    parser.add_argument('--force-bf16', action='store_true', help='--paths: time bf16 without native bf16')
    parser.add_argument('--matmul', type=int, default=4096, help='--paths: matmul size of the ceilings')
    parser.add_argument('--nets', nargs='+', choices=['HOFFR', 'HOFFR-S'], default=['HOFFR', 'HOFFR-S'],
                        help='--paths: the networks to time (default both)')
    parser.add_argument('--no-train', action='store_true', help='--paths: skip the training-step table')
    parser.add_argument('--psnr-data', default=None, help='--paths: packed split for the PSNR change '
                        '(default: datasets/corpus/val if present, else the bundled clip)')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.paths:
        torch.manual_seed(args.seed)
        return paths_main(args)

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
        print(f'\nstreaming HOFFR.step, {args.frames} frames at {args.height}x{args.width} (x4), CPU, '
              'seconds per frame:')
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
