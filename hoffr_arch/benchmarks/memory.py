"""Peak memory of streaming HOFFR against BasicVSR on clips of growing length, one run.

    python -m hoffr_arch.benchmarks.memory [--frames 100 1000] [--size 64 64] [--device cpu]

HOFFR runs through ``HOFFR.step``, one frame in and out at a time (as ``hoffr_arch.infer`` does);
BasicVSR, bidirectional, needs the whole clip and keeps features of every frame. Frames are the
bundled clip's, resized to ``--size`` (h w) and looped to the length. Each (model, length) runs in
its own process, so each peak is its own: peak RSS on CPU, max allocated on CUDA.
Target: HOFFR's peak at the longest length within 1.1 x its peak at the shortest.
"""
import argparse
import multiprocessing as mp
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

from hoffr_arch.data.video_io import read_frames

BUNDLED = Path(__file__).resolve().parents[1] / 'assets' / 'sam2_01_dog.mp4'


def clip_frames(length, size):
    """``length`` LR frames (h, w, 3) uint8 BGR: the bundled clip resized, looped."""
    base = read_frames(BUNDLED, max_frames=min(length, 289), resize=(size[1], size[0]))
    for i in range(length):
        yield base[i % len(base)]


def _peak(device):
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(model, length, size, device, tile=0):
    """Runs in its own process: (peak bytes, seconds) of one model on one clip length
    (HOFFR in ``tile`` x ``tile`` LR tiles when ``tile``, as ``infer --tile`` runs it)."""
    import hoffr_arch  # noqa: F401
    from hoffr_arch.archs.hoffr_arch import HOFFR
    from hoffr_arch.infer import to_tensor
    from hoffr_arch.streaming import TiledStep, torch_step
    device = torch.device(device)
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.inference_mode():
        if model.startswith('HOFFR'):
            net = HOFFR().to(device).eval()
            step = TiledStep(torch_step(net), net.scale, tile, hr_dtype=torch.uint8) if tile else torch_step(net)
            state, checksum = None, 0.
            for img in clip_frames(length, size):
                hr, state, _ = step(to_tensor(img, device, torch.float32), state)
                checksum += float(hr.sum())  # the frame would be written out here
        else:
            from basicsr.archs.basicvsr_arch import BasicVSR
            net = BasicVSR(num_feat=64, num_block=15).to(device).eval()
            clip = torch.stack([to_tensor(img, device, torch.float32)[0] for img in clip_frames(length, size)])[None]
            checksum = float(net(clip).mean())
    return _peak(device), time.perf_counter() - start, checksum


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--frames', type=int, nargs='+', default=[100, 1000])
    parser.add_argument('--size', type=int, nargs=2, default=[64, 64], metavar=('H', 'W'))
    parser.add_argument('--models', nargs='+', default=['HOFFR', 'BasicVSR'])
    parser.add_argument('--tiles', type=int, nargs='+', default=[0],
                        help='HOFFR in N x N LR tiles (0: whole frames), e.g. --tiles 0 256')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    results = {}
    peak = 'allocated' if args.device == 'cuda' else 'RSS'
    print(f'LR {args.size[0]}x{args.size[1]}, x4, {args.device}; peak {peak}')
    print(f'{"model":16s} {"frames":>7s} {"peak MiB":>10s} {"seconds":>9s}')
    runs = [(m, t) for m in args.models for t in (args.tiles if m == 'HOFFR' else [0])]
    for model, tile in runs:
        name = f'{model} tile {tile}' if tile else model
        for n in args.frames:
            with ProcessPoolExecutor(1, mp_context=mp.get_context('spawn')) as pool:
                peak, sec, _ = pool.submit(measure, model, n, tuple(args.size), args.device, tile).result()
            results[(name, n)] = peak
            print(f'{name:16s} {n:7d} {peak / 2**20:10.1f} {sec:9.1f}', flush=True)
    lo, hi = min(args.frames), max(args.frames)
    if lo == hi:
        return results
    for model in sorted({k[0] for k in results}):
        ratio = results[(model, hi)] / results[(model, lo)]
        note = ''
        if model.startswith('HOFFR'):
            note = f'  ({"meets" if ratio <= 1.1 else "MISSES"} the target <= 1.1)'
        print(f'{model}: peak at {hi} frames / at {lo} frames = {ratio:.3f}{note}')
    return results


if __name__ == '__main__':
    main()
