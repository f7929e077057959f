"""Scoring a trained HOFFR on held-out clips: the one evaluation loop the demo, the ablation and the
starter model's card use.

    python -m hoffr_arch.evaluation --data datasets/corpus/val                # the shipped HOFFR-S
    python -m hoffr_arch.evaluation --data DIR --model net_g_latest.pth [--tile 64]

``evaluate(step, dataset)`` runs a step callable (``hoffr_arch.streaming``: the network, tiled or
not, or ONNX Runtime) over every clip of a ``VSRDBTestDataset`` and returns PSNR/SSIM (RGB, no
border crop, all frames; BasicSR's ``calculate_psnr``/``calculate_ssim``) of the output and of
bicubic upscaling of the blurry input, and the gain over bicubic of each clip's first frame (which
has no previous frame to draw on) and of its later frames: the recurrence pays when the second is
larger. With the network itself (``net=``), also the warping error of its own LR flow on the sharp
LR frames against no flow.
"""
import argparse
import sys

import numpy as np
import torch

from basicsr.metrics import calculate_psnr, calculate_ssim
from basicsr.utils import tensor2img
from basicsr.utils.matlab_functions import imresize
from hoffr_arch.metrics.flow_metric import calculate_warp_error


def evaluate(step, dataset, scale=4, device='cpu', net=None):
    """Scores on ``dataset`` (``VSRDBTestDataset``; ``lq_sharp`` needed for the warping error).

    Returns a dict: 'HOFFR' and 'bicubic' (mean PSNR, SSIM over all frames), 'gain_first' and
    'gain_later' (dB over bicubic, averaged over clips), 'per_clip' [(clip, first, later)],
    'warp_pof' and 'warp_zero' (NaN without ``net``), 'picture' (bicubic, output, GT of one frame).
    """
    scores = {'bicubic': [], 'HOFFR': []}
    per_clip, warp, picture = [], {'pof': [], 'zero': []}, None
    for index in range(len(dataset)):
        clip = dataset[index]
        lq = clip['lq'].to(device)
        state, gains = None, []
        with torch.inference_mode():
            for i in range(lq.shape[0]):
                hr, state, _ = step(lq[i:i + 1], state)
                gt = tensor2img(clip['gt'][i])
                results = {'bicubic': tensor2img(imresize(clip['lq'][i], scale).clamp(0, 1)), 'HOFFR': tensor2img(hr[0].cpu())}
                for name, img in results.items():
                    scores[name].append((calculate_psnr(img, gt, 0), calculate_ssim(img, gt, 0)))
                gains.append(scores['HOFFR'][-1][0] - scores['bicubic'][-1][0])
                if picture is None and i == lq.shape[0] // 2:
                    picture = (results['bicubic'], results['HOFFR'], gt)
            if net is not None and 'lq_sharp' in clip and lq.shape[0] > 1:
                # the POF alone on the blurry pairs, as the network runs it (not a second full pass)
                flow = net.pof(lq[:-1], lq[1:])['lr']
                sharp = clip['lq_sharp'].to(device)
                warp['pof'].append(calculate_warp_error(sharp[:-1], sharp[1:], flow))
                warp['zero'].append(calculate_warp_error(sharp[:-1], sharp[1:], torch.zeros_like(flow)))
        per_clip.append((clip.get('folder', str(index)), gains[0],
                         float(np.mean(gains[1:])) if len(gains) > 1 else float('nan')))
    result = {k: tuple(np.mean(v, axis=0)) for k, v in scores.items()}
    result.update(gain_first=float(np.mean([c[1] for c in per_clip])),
                  gain_later=float(np.nanmean([c[2] for c in per_clip])), per_clip=per_clip,
                  warp_pof=float(np.mean(warp['pof'])) if warp['pof'] else float('nan'),
                  warp_zero=float(np.mean(warp['zero'])) if warp['zero'] else float('nan'), picture=picture)
    return result


def test_dataset(root, name='heldout'):
    """The ``VSRDBTestDataset`` of a packed split folder (sharp.lmdb, blur_bicubic.lmdb[, sharp_bicubic.lmdb])."""
    from pathlib import Path
    from hoffr_arch.data.vsrdb_dataset import VSRDBTestDataset
    root = Path(root)
    opt = {'name': name, 'dataroot_gt': str(root / 'sharp.lmdb'), 'dataroot_lq': str(root / 'blur_bicubic.lmdb'),
           'io_backend': {'type': 'lmdb'}}
    if (root / 'sharp_bicubic.lmdb').exists():
        opt['dataroot_lq_sharp'] = str(root / 'sharp_bicubic.lmdb')
    return VSRDBTestDataset(opt)


def report(result):
    """The lines that say what ``evaluate`` found."""
    (p, s), (bp, bs) = result['HOFFR'], result['bicubic']
    lines = [f'HOFFR {p:.2f} dB / {s:.4f}, bicubic {bp:.2f} dB / {bs:.4f}: {p - bp:+.2f} dB',
             f'first frames {result["gain_first"]:+.2f} dB, later frames {result["gain_later"]:+.2f} dB over bicubic '
             f'(the recurrence adds {result["gain_later"] - result["gain_first"]:+.2f} dB)']
    if not np.isnan(result['warp_pof']):
        lines.append(f'POF warping error on sharp LR {result["warp_pof"]:.2f} vs {result["warp_zero"]:.2f} without flow '
                     f'({result["warp_pof"] / result["warp_zero"]:.2f}x)')
    return lines


def main(argv=None):
    from hoffr_arch.infer import InferError, add_model_arguments, load_model_from_args
    from hoffr_arch.data.frame_io import DatasetError
    from hoffr_arch.streaming import TiledStep, torch_step
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument('--data', required=True, help='packed split folder (sharp.lmdb, blur_bicubic.lmdb, ...)')
    parser.add_argument('--tile', type=int, default=0, help='also score N x N LR tiles against whole frames')
    parser.add_argument('--tile-overlap', type=int, default=16)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    args = parser.parse_args(argv)
    try:
        net = load_model_from_args(args, args.device)
        dataset = test_dataset(args.data)
    except (InferError, DatasetError, KeyError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    result = evaluate(torch_step(net), dataset, net.scale, args.device, net=net)
    print(f'{args.data}: {len(dataset)} clips')
    for clip, first, later in result['per_clip']:
        print(f'  {clip}: first frame {first:+.2f} dB, later frames {later:+.2f} dB over bicubic')
    print('\n'.join(report(result)))
    if args.tile:
        tiled = evaluate(TiledStep(torch_step(net), net.scale, args.tile, args.tile_overlap), dataset, net.scale,
                         args.device)
        print(f'tiles {args.tile} (overlap {args.tile_overlap}): {tiled["HOFFR"][0]:.3f} dB vs whole frames '
              f'{result["HOFFR"][0]:.3f} dB ({tiled["HOFFR"][0] - result["HOFFR"][0]:+.3f} dB)')
    return result


if __name__ == '__main__':
    outcome = main()
    sys.exit(outcome if isinstance(outcome, int) else 0)
