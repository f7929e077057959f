"""How well a POF estimates motion on real frames it was not trained on.

    python -m hoffr_arch.benchmarks.flow [--ckpt POF_OR_HOFFR.pth ...] [--data VIDEO_OR_FOLDER ...]

Sharp HR frames (default: the bundled clip from frame 224 on, which the demo holds out and the shipped
POF never saw) are MATLAB-bicubic downscaled x4 to LR. For every consecutive pair, the photometric
error of frame t-1 backward-warped onto frame t (``calculate_warp_error``: mean absolute error in
0-255, a 4-pixel border excluded) for zero flow, OpenCV DIS (medium preset) and each checkpoint's
POF at its half-LR and LR levels; at HR, the POF's HR flow against its LR flow bilinearly
upscaled x4 (and DIS's, likewise). Then the end-point error (LR pixels, 8-pixel border excluded) on
real LR frames shifted by known sub-pixel translations of up to ``--max-shift`` LR pixels in eight
directions (the HR frame is shifted, then downscaled, so the pair looks like real footage), of the
LR flow and of each coarser POF level's (a level that learned nothing scores as zero flow does).

A checkpoint is a POF's (``FlowPretrainModel``, ``hoffr_arch/assets/pof_x4.pth``) or a whole HOFFR's
(its ``pof.*`` weights are used); the POF's options are read from the weights' shapes. Prints a
Markdown table and writes it as CSV (``--csv``).
"""
import argparse
import csv
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

import hoffr_arch  # noqa: F401  (compat, registries)
from hoffr_arch.archs.pof import COARSE_NAMES, POF
from hoffr_arch.archs.warp import upscale_flow
from hoffr_arch.checkpoint import CheckpointError, read_state_dict
from hoffr_arch.metrics.flow_metric import calculate_warp_error, level_frames

BUNDLED = Path(hoffr_arch.__file__).parent / 'assets' / 'sam2_01_dog.mp4'
SHIFT_BORDER = 8


def pof_from_checkpoint(path):
    """A POF with the options its weights imply, weights loaded, in eval mode."""
    state, _ = read_state_dict(path)
    if any(k.startswith('pof.') for k in state):  # a whole HOFFR
        state = {k[4:]: v for k, v in state.items() if k.startswith('pof.')}
    if 'level_lr.body.0.weight' not in state:
        raise CheckpointError(f'{path}: neither a POF nor a HOFFR checkpoint (no level_lr weights)')
    num_feat, in_ch = state['level_lr.body.0.weight'].shape[:2]
    num_block = sum(1 for k in state if k.startswith('level_lr.body.') and k.endswith('conv1.weight'))
    num_coarse = len({k.split('.')[1] for k in state if k.startswith('coarse.')})
    scale = int(math.isqrt(state['level_hr.body.{}.weight'.format(num_block + 2)].shape[0] // 2))
    cost = in_ch - 2 * 3 - 2  # RGB frames: the rest of the LR level's input is the cost volume
    net = POF(scale=scale, num_feat=num_feat, num_block=num_block, num_coarse=num_coarse,
              cost_radius=(math.isqrt(cost) - 1) // 2)
    try:
        net.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(f'{path}: POF weights of a layout this version does not build') from None
    return net.eval()


def read_pairs(sources, scale=4, max_frames=None):
    """[(HR clip (t, 3, H, W), LR clip (t, 3, H/s, W/s))] in [0, 1] RGB, sizes cropped to multiples of 8s."""
    from hoffr_arch.data.frame_io import bicubic_downscale
    from hoffr_arch.data.video_io import read_frames
    clips = []
    for source in sources:
        start = 0
        if source == BUNDLED:
            start, max_frames_ = 224, None  # the demo's held-out frames (its last two clips)
        else:
            max_frames_ = max_frames
        frames = read_frames(source, start=start, max_frames=max_frames_)
        m = 8 * scale
        h, w = frames[0].shape[0] // m * m, frames[0].shape[1] // m * m
        hr = [f[:h, :w] for f in frames]
        lr = [bicubic_downscale(f, scale) for f in hr]

        def tensor(imgs):
            return torch.from_numpy(np.stack(imgs)[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255.
        clips.append((str(source), tensor(hr), tensor(lr)))
    return clips


def dis_flow(prev, cur):
    """DIS (medium) flow warping ``prev`` onto ``cur`` ((n, 3, h, w) in [0, 1]) -> (n, 2, h, w)."""
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    out = []
    for p, c in zip(prev, cur):
        grey = [cv2.cvtColor((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY)
                for x in (p, c)]
        out.append(torch.from_numpy(dis.calc(grey[1], grey[0], None)).permute(2, 0, 1))  # cur -> prev
    return torch.stack(out)


def shifted_pair(hr, dx, dy, scale):
    """A real frame and the same frame moved so that flow (dx, dy) LR pixels warps the first onto the second."""
    from hoffr_arch.data.frame_io import bicubic_downscale
    img = (hr.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    # second[p] = first[p + d]: sample the HR frame at p + scale * d
    m = np.float32([[1, 0, scale * dx], [0, 1, scale * dy]])
    moved = cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REFLECT)
    lr = [bicubic_downscale(x, scale) for x in (img, moved)]
    return [torch.from_numpy(x.astype(np.float32) / 255.).permute(2, 0, 1)[None] for x in lr]


def shifts(max_shift):
    """Eight directions x three magnitudes up to ``max_shift``, off the pixel grid."""
    out = []
    for magnitude in (max_shift / 4 + 0.1, max_shift / 2 + 0.15, max_shift):
        for k in range(8):
            angle = math.pi / 4 * k + 0.3
            out.append((round(magnitude * math.cos(angle), 3), round(magnitude * math.sin(angle), 3)))
    return out


def endpoint_error(flow, dx, dy, lr_width=None):
    """Mean end-point error (LR pixels) of ``flow`` against the translation (dx, dy) LR pixels.

    ``flow`` may be a coarser level's (pixels of its scale): given the LR frame's width, it is scaled
    to LR pixels and the border shrinks with it.
    """
    ratio = 1 if lr_width is None else lr_width / flow.shape[-1]
    b = max(1, round(SHIFT_BORDER / ratio))
    inner = flow[..., b:-b, b:-b] * ratio
    return float(torch.sqrt((inner[:, 0] - dx) ** 2 + (inner[:, 1] - dy) ** 2).mean())


def measure(methods, clips, scale, max_shift):
    """{method: {column: value}} for every method (name -> callable (prev, cur) -> flows dict or None)."""
    rows = {name: {} for name in methods}
    sums = {name: {} for name in methods}
    for _, hr, lr in clips:
        prev, cur = lr[:-1], lr[1:]
        hr_prev, hr_cur = hr[:-1], hr[1:]
        for name, fn in methods.items():
            flows = fn(prev, cur)
            cols = {}
            if flows is None:
                zero = torch.zeros_like(prev[:, :2])
                cols['lr'] = calculate_warp_error(prev, cur, zero)
                half = level_frames(prev, ((prev.shape[-2] + 1) // 2, (prev.shape[-1] + 1) // 2))
                cols['half'] = calculate_warp_error(half, level_frames(cur, half.shape[-2:]),
                                                    torch.zeros_like(half[:, :2]))
                cols['hr'] = calculate_warp_error(hr_prev, hr_cur, torch.zeros_like(hr_prev[:, :2]), border=4 * scale)
            else:
                cols['lr'] = calculate_warp_error(prev, cur, flows['lr'])
                if 'half' in flows:
                    half = flows['half']
                    cols['half'] = calculate_warp_error(level_frames(prev, half.shape[-2:]),
                                                        level_frames(cur, half.shape[-2:]), half)
                cols['hr_from_lr'] = calculate_warp_error(hr_prev, hr_cur, upscale_flow(flows['lr'], scale),
                                                          border=4 * scale)
                if 'hr' in flows:
                    cols['hr'] = calculate_warp_error(hr_prev, hr_cur, flows['hr'], border=4 * scale)
            for k, v in cols.items():
                sums[name].setdefault(k, []).append((v, prev.shape[0]))
    for name in methods:
        for k, values in sums[name].items():
            rows[name][k] = sum(v * n for v, n in values) / sum(n for _, n in values)
    # known translations, on the middle frame of the first clip
    _, hr, _ = clips[0]
    frame = hr[hr.shape[0] // 2]
    for name, fn in methods.items():
        errors, by_level = [], {}
        for dx, dy in shifts(max_shift):
            a, b = shifted_pair(frame, dx, dy, scale)
            flows = fn(a, b)
            flow = torch.zeros_like(a[:, :2]) if flows is None else flows['lr']
            errors.append(endpoint_error(flow, dx, dy))
            for level, f in (flows or {}).items():
                if level in LEVEL_NAMES:  # what each level of the pyramid has found so far
                    by_level.setdefault(level, []).append(endpoint_error(f, dx, dy, a.shape[-1]))
        rows[name]['epe_shift'] = float(np.mean(errors))
        rows[name]['epe_shift_max'] = float(np.max(errors))
        rows[name].update({f'epe_{level}': float(np.mean(v)) for level, v in by_level.items()})
    return rows


COLUMNS = [('half', 'half-LR warp MAE'), ('lr', 'LR warp MAE'), ('hr', 'HR warp MAE (own HR flow)'),
           ('hr_from_lr', 'HR warp MAE (LR flow x4 bilinear)'), ('epe_shift', 'EPE known shifts (LR px)'),
           ('epe_shift_max', 'worst EPE')]
# the POF's levels below LR, coarsest first; a level that learned nothing has the error of zero flow
LEVEL_NAMES = {name: f'1/{factor}' for factor, name in sorted(COARSE_NAMES.items(), reverse=True)}
LEVEL_COLUMNS = [(f'epe_{k}', f'EPE known shifts, {v} level (LR px)') for k, v in LEVEL_NAMES.items()]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--ckpt', nargs='*', default=[], metavar='[NAME=]PATH',
                        help='POF or HOFFR checkpoints (default: the shipped hoffr_arch/assets/pof_x4.pth)')
    parser.add_argument('--data', nargs='*', default=None,
                        help='sharp videos or frame folders not used in training (default: the bundled '
                        "clip's held-out frames)")
    parser.add_argument('--max-frames', type=int, default=32, help='frames per source (default 32)')
    parser.add_argument('--max-shift', type=float, default=4.0, help='largest known translation, LR pixels')
    parser.add_argument('--scale', type=int, default=4)
    parser.add_argument('--csv', default='benchmark_results/flow.csv')
    args = parser.parse_args(argv)
    with torch.no_grad():  # local: main is also called in-process (tests), where grad mode must survive
        return _run(args)


def _run(args):
    ckpts = args.ckpt or [str(Path(hoffr_arch.__file__).parent / 'assets' / 'pof_x4.pth')]
    methods = {'zero flow': lambda p, c: None, 'DIS medium': lambda p, c: {'lr': dis_flow(p, c)}}
    try:
        for spec in ckpts:
            name, _, path = spec.rpartition('=')
            net = pof_from_checkpoint(path)
            methods[name or Path(path).stem] = net
    except CheckpointError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    sources = [Path(s) for s in args.data] if args.data else [BUNDLED]
    for s in sources:
        if not s.exists():
            print(f'error: {s}: no such video file or frame folder', file=sys.stderr)
            return 2
    clips = read_pairs(sources, args.scale, args.max_frames)
    rows = measure(methods, clips, args.scale, args.max_shift)

    dis = rows['DIS medium']['lr']
    levels = [(k, label) for k, label in LEVEL_COLUMNS if any(k in cols for cols in rows.values())]
    header = ['method'] + [label for _, label in COLUMNS] + ['LR MAE / DIS'] + [label for _, label in levels]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    table = []
    for name, cols in rows.items():
        values = [cols.get(k) for k, _ in COLUMNS] + [cols['lr'] / dis] + [cols.get(k) for k, _ in levels]
        table.append([name] + values)
        lines.append('| ' + ' | '.join([name] + ['' if v is None else f'{v:.3f}' for v in values]) + ' |')
    print(f'{len(clips)} source(s), {sum(c[2].shape[0] - 1 for c in clips)} pairs: ' +
          ', '.join(Path(c[0]).name for c in clips))
    print('\n'.join(lines))
    out = Path(args.csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(table)
    print(f'written: {out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
