"""Scoring a restoration model on held-out clips: the one evaluation loop that the demo, the
ablation, the starter model's card and the comparison with other VSR models (``benchmarks.compare``) use.

    python -m hoffr_arch.evaluation --data datasets/corpus/val                # the shipped HOFFR-S
    python -m hoffr_arch.evaluation --data DIR --model net_g_latest.pth [--tile 64]

``evaluate(run_clip, dataset)`` runs a model over every clip of a ``VSRDBTestDataset``: ``run_clip``
takes a clip's blurry LR frames and yields its HR frames one by one, so a streaming model is scored
frame by frame (``streamed(step)``, for the step callables of ``hoffr_arch.streaming``: the network,
tiled or not, or ONNX Runtime) and a whole-clip model (BasicVSR, ...) yields from its output.
Scores, all on RGB, by the protocols of ``hoffr_arch.metrics.protocol`` (which validation uses too):
PSNR/SSIM of every frame with no border crop (BasicSR's protocol) of the output and of bicubic
upscaling of the blurry input; FMA-Net's protocol (the first and last frame of each clip left out,
4-pixel border crop); each the mean over every scored frame (clips weighted by their frames; BasicSR's
validation weights clips alike); tOF; the
gain over bicubic of each clip's first frame (which has no previous frame to draw on) and of its
later frames: the recurrence pays when the second is larger. With the network itself (``net=``),
also the warping error of its own LR flow on the sharp LR frames against no flow.
``--no-recurrence`` also scores the network with nothing carried between frames (each run as a
clip's first): the later frames' difference is what the recurrence adds, free of what the first-
against-later comparison mixes in (the first frames' content, and the blur of each).
``--dtype auto|fp32|bf16|fp16`` picks the compute path as ``infer`` does (``hoffr_arch.precision``).
"""
import argparse
import sys
import time

import numpy as np
import torch

from basicsr.utils import tensor2img
from basicsr.utils.matlab_functions import imresize
from hoffr_arch.metrics.flow_metric import calculate_warp_error
from hoffr_arch.metrics.protocol import BASICSR, FMA, TOF, ClipScore, mean_over_clips


def streamed(step, recur=True):
    """A step callable (``hoffr_arch.streaming``) as a clip runner: (t, c, h, w) -> its HR frames
    (c, s*h, s*w), one at a time, the recurrent state carried from frame to frame; ``recur=False``
    runs every frame as a clip's first (no previous output): what the recurrence adds is the
    difference."""
    def run_clip(lq):
        state = None
        for i in range(lq.shape[0]):
            hr, state, _ = step(lq[i:i + 1], state if recur else None)
            yield hr[0]
    return run_clip


def evaluate(run_clip, dataset, scale=4, device='cpu', net=None, tof=False, pictures=False, pof=None, exposures=None):
    """Scores on ``dataset`` (``VSRDBTestDataset``; ``lq_sharp`` needed for the warping error).

    Returns a dict: 'model' and 'bicubic' (PSNR, SSIM by BasicSR's protocol), 'fma' (PSNR, SSIM by
    FMA-Net's), each the mean over every scored frame (``hoffr_arch.metrics.protocol``), 'tof' (mean
    over clips; NaN unless ``tof``: it costs two optical flows a frame), 'gain_first' and 'gain_later'
    (dB over bicubic, averaged over clips), 'per_clip' [(clip, first, later)], 'clip_scores'
    [(clip, {'model'|'bicubic'|'fma': protocol scores, 'frames': {same: frames scored}})],
    'warp_pof' and 'warp_zero' (NaN without ``net``),
    'picture' (bicubic, output, GT of one frame), 'frames' and 'seconds' (the time spent in
    ``run_clip`` alone, synchronised on CUDA), 'frame_gains' [(clip, [dB over bicubic of each frame])];
    with ``pictures`` (for ``hoffr_arch.report``), 'pictures': per clip its middle frame (clip, index,
    frames, bicubic, output, gt), the LR pair ending there ('lq') and the LR flow of ``pof`` (default
    ``net.pof``; None without) on that pair ('flow'), 'by_clip' and 'by_exposure' (``group_scores`` with
    ``exposures``, {'<clip>/<frame:08d>': exposure}, by default ``dataset_exposures``).
    """
    device = torch.device(device)
    if pof is None and getattr(net, 'use_flow', False):
        pof = net.pof
    clips = []
    with torch.inference_mode():
        for index in range(len(dataset)):
            clip = dataset[index]
            lq = clip['lq'].to(device)
            scored = score_clip(run_clip, clip, lq, scale, device, tof)
            scored['name'] = clip.get('folder', str(index))
            if pictures:
                scored['middle'].update(clip=scored['name'], **middle_pair(clip, lq, scored['middle']['index'], pof))
            if net is not None and 'lq_sharp' in clip and lq.shape[0] > 1:
                scored['warp'] = warp_errors(net, lq, clip['lq_sharp'].to(device))
            clips.append(scored)
    result = summarise(clips)
    if pictures:
        result['pictures'] = [c['middle'] for c in clips]
    keys = [(c['name'], i) for c in clips for i in range(len(c['gains']))]  # (clip, frame index) of each frame
    frame_scores = {k: [v for c in clips for v in c['frame_scores'][k]] for k in ('model', 'bicubic')}
    result.update(group_scores(frame_scores, keys, dataset_exposures(dataset) if exposures is None else exposures))
    return result


def score_clip(run_clip, clip, lq, scale, device, tof):
    """One clip through ``run_clip``, each HR frame scored as it comes (``hoffr_arch.metrics.protocol``):
    ``lq`` is ``clip['lq']`` (t, c, h, w) on ``device``. Returns {'scores': {'model'|'bicubic'|'fma'
    (|'tof'): clip scores}, 'frames': {same: frames scored}, 'frame_scores': {'model'|'bicubic':
    [(PSNR, SSIM) of each frame]}, 'gains' [dB over bicubic of each frame], 'seconds' (in ``run_clip``),
    'middle': {'index', 'frames', 'bicubic', 'output', 'gt'} (the middle frame's images)}."""
    t = lq.shape[0]
    scorers = {'model': ClipScore(BASICSR.metrics, t), 'bicubic': ClipScore(BASICSR.metrics, t),
               'fma': ClipScore(FMA.metrics, t, FMA.skip_border_frames), **({'tof': ClipScore(TOF, t)} if tof else {})}
    frame_scores, seconds, middle = {'model': [], 'bicubic': []}, 0., None
    frames_out = iter(run_clip(lq))
    for i in range(t):
        start = time.perf_counter()
        hr = next(frames_out)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - start
        gt, out = tensor2img(clip['gt'][i]), tensor2img(hr.float().cpu())
        bicubic = tensor2img(imresize(clip['lq'][i], scale).clamp(0, 1))
        for what, img in (('model', out), ('bicubic', bicubic)):
            found = scorers[what].add(img, gt)
            frame_scores[what].append((found['psnr'], found['ssim']))
        for what in ('fma', 'tof'):
            if what in scorers:
                scorers[what].add(out, gt)
        if i == t // 2:
            middle = dict(index=i, frames=t, bicubic=bicubic, output=out, gt=gt)
    gains = [m[0] - b[0] for m, b in zip(frame_scores['model'], frame_scores['bicubic'])]
    return dict(scores={k: s.result() for k, s in scorers.items()}, frames={k: s.frames for k, s in scorers.items()},
                frame_scores=frame_scores, gains=gains, seconds=seconds, middle=middle)


def middle_pair(clip, lq, i, pof):
    """The LR pair ending at frame ``i`` of ``clip`` ('lq', (2, c, h, w) on the CPU; None for a first
    frame) and the LR flow of ``pof`` (the network's first stage) on it ('flow', (2, h, w); None
    without ``pof``); ``lq`` is ``clip['lq']`` on the device."""
    flow = pof(lq[i - 1:i], lq[i:i + 1])['lr'][0].float().cpu() if i and pof is not None else None
    return {'lq': clip['lq'][i - 1:i + 1] if i else None, 'flow': flow}


def warp_errors(net, lq, sharp):
    """(POF, zero flow) warping errors on the sharp LR frames ``sharp`` (t, c, h, w) of the flow the
    network's POF finds on the blurry pairs of ``lq`` (t, c, h, w), as the network runs it."""
    flow = net.pof(lq[:-1], lq[1:])['lr']
    return (calculate_warp_error(sharp[:-1], sharp[1:], flow),
            calculate_warp_error(sharp[:-1], sharp[1:], torch.zeros_like(flow)))


def _mean(values):
    return float(np.mean(values)) if len(values) else float('nan')


def summarise(clips):
    """``evaluate``'s dataset-wide figures from the ``score_clip`` results of its clips (with 'name',
    and 'warp' where measured): PSNR/SSIM weighted by the frames each clip scored, the rest by clip."""
    result = {}
    for what in ('model', 'bicubic', 'fma'):
        means = mean_over_clips([c['scores'][what] for c in clips], [c['frames'][what] for c in clips])
        result[what] = (means['psnr'], means['ssim']) if means else (float('nan'), float('nan'))
    per_clip = [(c['name'], c['gains'][0], _mean(c['gains'][1:])) for c in clips]
    warps = [c['warp'] for c in clips if 'warp' in c]
    result.update(
        tof=mean_over_clips([c['scores']['tof'] for c in clips if 'tof' in c['scores']]).get('tof', float('nan')),
        gain_first=_mean([c[1] for c in per_clip]),
        gain_later=float(np.nanmean([c[2] for c in per_clip])) if per_clip else float('nan'),
        per_clip=per_clip, frames=sum(len(c['gains']) for c in clips), seconds=sum(c['seconds'] for c in clips),
        warp_pof=_mean([w[0] for w in warps]), warp_zero=_mean([w[1] for w in warps]),
        picture=tuple(clips[0]['middle'][k] for k in ('bicubic', 'output', 'gt')) if clips else None,
        frame_gains=[(c['name'], c['gains']) for c in clips],
        clip_scores=[(c['name'], {'frames': c['frames'], **c['scores']}) for c in clips])
    return result


def dataset_exposures(dataset):
    """{'<clip>/<frame:08d>': exposure} from the ``exposures.txt`` beside the dataset's GT (a packed
    split's, or a synth root's for its ``train_*``/``val_*`` folders), else {}; a malformed file is
    one warning line on stderr (the scores are then not grouped by exposure)."""
    from pathlib import Path
    from hoffr_arch.data.frame_io import DatasetError
    from hoffr_arch.data.meta_info import EXPOSURES, read_exposures
    gt = Path(str(getattr(dataset, 'opt', {}).get('dataroot_gt', '')))
    if not gt.name or not (gt.parent / EXPOSURES).is_file():
        return {}
    try:
        recorded = read_exposures(gt.parent / EXPOSURES)
    except DatasetError as err:
        print(f'warning: {err}; scores not grouped by exposure', file=sys.stderr)
        return {}
    prefix = gt.name.split('_')[0] + '/'  # train_sharp -> the synth root's train/ keys
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in recorded.items()}


def group_scores(scores, keys, exposures):
    """Means of the per-frame (PSNR, SSIM) lists ``scores['model']`` and ``scores['bicubic']`` (aligned
    with ``keys``, [(clip, frame index)]) per clip and per exposure bin (``exposure_bin``: short < 0.75,
    medium 0.75-1.5, long > 1.5 frame intervals) of the frames ``exposures`` lists. Returns
    {'by_clip': {clip: group}, 'by_exposure': {bin: group}} ({} without exposures), a group being
    {'frames': n, 'model': (psnr, ssim), 'bicubic': (psnr, ssim), 'exposure': (min, max) or None}."""
    from hoffr_arch.data.meta_info import EXPOSURE_BINS, exposure_bin
    found = {'by_clip': {}, 'by_exposure': {name: None for name in EXPOSURE_BINS}}
    for j, (clip, i) in enumerate(keys):
        exposure = exposures.get(f'{clip}/{i:08d}')
        groups = [('by_clip', clip)] + ([('by_exposure', exposure_bin(exposure))] if exposure is not None else [])
        for what, name in groups:
            group = found[what][name] = found[what].get(name) or {'model': [], 'bicubic': [], 'exposure': []}
            for k in ('model', 'bicubic'):
                group[k].append(scores[k][j])
            group['exposure'] += [exposure] if exposure is not None else []
    return {what: {name: {'frames': len(g['model']), 'model': tuple(map(float, np.mean(g['model'], axis=0))),
                          'bicubic': tuple(map(float, np.mean(g['bicubic'], axis=0))),
                          'exposure': (min(g['exposure']), max(g['exposure'])) if g['exposure'] else None}
                   for name, g in groups.items() if g}
            for what, groups in found.items()}


BIN_LABELS = {'short': 'short (< 0.75)', 'medium': 'medium (0.75-1.5)', 'long': 'long (> 1.5)'}


def group_table(groups, what, model='HOFFR'):
    """Markdown lines of ``group_scores``' groups: one row each (PSNR / SSIM of the model and of
    bicubic, the gain); ``what`` names the first column ('clip' or 'exposure')."""
    lines = [f'| {what} | frames | {model} dB / SSIM | bicubic dB / SSIM | gain (dB) |', '|---|---|---|---|---|']
    for name, g in groups.items():
        (p, s), (bp, bs) = g['model'], g['bicubic']
        label = BIN_LABELS.get(name, name) if what == 'exposure' else name
        lines.append(f'| {label} | {g["frames"]} | {p:.2f} / {s:.4f} | {bp:.2f} / {bs:.4f} | {p - bp:+.2f} |')
    return lines


def exposure_table(rows):
    """Markdown lines: one row per (name, ``by_exposure``) of ``rows``, PSNR / SSIM in each exposure
    bin any of them has (how ``benchmarks.compare`` sets models side by side)."""
    bins = [b for b in BIN_LABELS if any(b in groups for _, groups in rows)]
    lines = ['| model | ' + ' | '.join(BIN_LABELS[b] for b in bins) + ' |', '|---|' + '---|' * len(bins)]
    for name, groups in rows:
        cells = [f'{groups[b]["model"][0]:.2f} / {groups[b]["model"][1]:.4f}' if b in groups else '-' for b in bins]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    return lines


def split_options(root, name='heldout', lq_sharp=None, meta_info=False):
    """BasicSR dataset options reading the packed split folder ``root`` (as ``datasets_lmdb`` writes it:
    sharp.lmdb the GT, blur_bicubic.lmdb the LR input, sharp_bicubic.lmdb the sharp LR frames,
    meta_info.txt): its name, roots and LMDB backend; ``lq_sharp``: with the sharp LR frames (None:
    when the split has them); ``meta_info``: with its clip list. Dataset-specific keys are the caller's."""
    from pathlib import Path
    root = Path(root)
    opt = {'name': name, 'dataroot_gt': str(root / 'sharp.lmdb'), 'dataroot_lq': str(root / 'blur_bicubic.lmdb'),
           'io_backend': {'type': 'lmdb'}}
    if lq_sharp or (lq_sharp is None and (root / 'sharp_bicubic.lmdb').exists()):
        opt['dataroot_lq_sharp'] = str(root / 'sharp_bicubic.lmdb')
    if meta_info:
        opt['meta_info_file'] = str(root / 'meta_info.txt')
    return opt


def test_dataset(root, name='heldout'):
    """The ``VSRDBTestDataset`` of a packed split folder (``split_options``, with the sharp LR frames
    when it has them)."""
    from hoffr_arch.data.vsrdb_dataset import VSRDBTestDataset
    return VSRDBTestDataset(split_options(root, name))


def report(result):
    """The lines that say what ``evaluate`` found."""
    (p, s), (bp, bs) = result['model'], result['bicubic']
    lines = [f'HOFFR {p:.2f} dB / {s:.4f}, bicubic {bp:.2f} dB / {bs:.4f}: {p - bp:+.2f} dB',
             f'first frames {result["gain_first"]:+.2f} dB, later frames {result["gain_later"]:+.2f} dB over bicubic '
             f'(the recurrence adds {result["gain_later"] - result["gain_first"]:+.2f} dB)']
    if not np.isnan(result['warp_pof']):
        lines.append(f'POF warping error on sharp LR {result["warp_pof"]:.2f} vs {result["warp_zero"]:.2f} '
                     'without flow '
                     f'({result["warp_pof"] / result["warp_zero"]:.2f}x)')
    return lines


def parse_args(argv=None):
    from hoffr_arch.infer import add_model_arguments
    from hoffr_arch.precision import CHOICES
    from hoffr_arch.streaming import overlap_size, tile_size
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument('--data', required=True, help='packed split folder (sharp.lmdb, blur_bicubic.lmdb, ...)')
    parser.add_argument('--tile', type=tile_size, default=0, help='also score N x N LR tiles against whole frames')
    parser.add_argument('--tile-overlap', type=overlap_size, default=16)
    parser.add_argument('--no-recurrence', action='store_true',
                        help='also score every frame run as a first frame (no previous output carried)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', choices=CHOICES, default='auto', help='compute path, as infer --dtype')
    parser.add_argument('--report', metavar='DIR', help='also write an offline HTML report there (scores with tOF, '
                        'per-frame gains, crops, flow; hoffr_arch.report)')
    return parser.parse_args(argv)


def print_result(result, data, clips):
    """What ``evaluate`` found on the split ``data`` of ``clips`` clips: per clip, overall, by exposure."""
    print(f'{data}: {clips} clips')
    for clip, first, later in result['per_clip']:
        print(f'  {clip}: first frame {first:+.2f} dB, later frames {later:+.2f} dB over bicubic')
    print('\n'.join(report(result)))
    print('\n'.join(group_table(result['by_clip'], 'clip')))
    if result['by_exposure']:
        print('by exposure (frame intervals, as synth --exposure):')
        print('\n'.join(group_table(result['by_exposure'], 'exposure')))


def other_runs(result, step, dataset, scale, device, no_recurrence=False, tile=0, tile_overlap=16):
    """The network's ``step`` scored again: with nothing carried between frames (``no_recurrence``) and on
    ``tile`` x ``tile`` LR tiles; each printed against ``result`` (the run as it is), which takes them as
    'no_recurrence' and 'tiled'."""
    from hoffr_arch.streaming import TiledStep
    if no_recurrence:
        alone = evaluate(streamed(step, recur=False), dataset, scale, device)
        print(f'every frame as a first frame (nothing carried): {alone["model"][0]:.3f} dB, later frames '
              f'{alone["gain_later"]:+.2f} dB over bicubic; carrying the previous output adds '
              f'{result["gain_later"] - alone["gain_later"]:+.2f} dB to the later frames')
        result['no_recurrence'] = alone
    if tile:
        tiled = evaluate(streamed(TiledStep(step, scale, tile, tile_overlap)), dataset, scale, device)
        print(f'tiles {tile} (overlap {tile_overlap}): {tiled["model"][0]:.3f} dB vs whole frames '
              f'{result["model"][0]:.3f} dB ({tiled["model"][0] - result["model"][0]:+.3f} dB)')
        result['tiled'] = tiled


def main(argv=None):
    from pathlib import Path
    from hoffr_arch import report as html_report
    from hoffr_arch.infer import InferError, load_model_from_args
    from hoffr_arch.data.frame_io import DatasetError
    from hoffr_arch.precision import choose
    from hoffr_arch.streaming import torch_step
    args = parse_args(argv)
    try:
        if args.report:
            html_report.check_dir(args.report)
        path = choose(args.dtype, args.device)
        print(path.describe(), file=sys.stderr)
        net = load_model_from_args(args, args.device)
        dataset = test_dataset(args.data)
    except (InferError, DatasetError, KeyError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    result = evaluate(streamed(torch_step(net, path)), dataset, net.scale, args.device, net=net,
                      tof=bool(args.report), pictures=bool(args.report))
    print_result(result, args.data, len(dataset))
    other_runs(result, torch_step(net, path), dataset, net.scale, args.device, args.no_recurrence, args.tile,
               args.tile_overlap)
    if args.report:
        name = Path(args.model).name if args.model else 'HOFFR-S (shipped)'
        runs = [(name, result)] + [(f'{name}, {what}', result[key]) for key, what in (
            ('no_recurrence', 'nothing carried'), ('tiled', f'tiles {args.tile}')) if key in result]
        facts = [('data', f'{args.data} ({len(dataset)} clips)'), ('model', args.model or 'the shipped HOFFR-S'),
                 ('compute path', path.describe().removeprefix('compute path: ')), ('torch', torch.__version__)]
        print(f'report: {html_report.write_report(args.report, runs, f"HOFFR evaluation: {args.data}", facts)}')
    return result


if __name__ == '__main__':
    outcome = main()
    sys.exit(outcome if isinstance(outcome, int) else 0)
