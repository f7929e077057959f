"""The main job: ``python -m hoffr_arch.demo``.

1. makes a VSRDB dataset from the bundled real clip (``datasets_lmdb synth``: motion blur along
   optical flow, MATLAB bicubic x4) and packs it to LMDB, holding out the last clips as the test set;
2. trains HOFFR on it with BasicSR's ``train_pipeline`` (``options/demo/train_demo.yml``, validating
   during training; CPU in about 10 minutes on 2 cores, the GPU where there is one);
3. prints a table on the held-out clips, HOFFR against bicubic upsampling of the blurry input
   (PSNR/SSIM, RGB, no border crop, all frames), and writes it with a side-by-side PNG (input,
   HOFFR, ground truth) to ``demo_output/``.
"""
import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import hoffr_arch
from basicsr.archs import build_network
from datasets_lmdb import pack, reds_plan, synth, verify
from hoffr_arch import evaluation
from hoffr_arch import report as html_report
from hoffr_arch._entry import project_root
from hoffr_arch.checkpoint import load_weights
from hoffr_arch.options import load_yaml
from hoffr_arch.streaming import torch_step

BUNDLED = Path(hoffr_arch.__file__).parent / 'assets' / 'sam2_01_dog.mp4'
# the demo data: 144 frames (every 2nd of the clip) at 448x256 (LR 112x64: SpyNet-based models in the
# benchmark train on 64x64 LR patches), clips of 16, the last 2 held out
SYNTH = dict(exposure=1.5, scale=4, clip_length=16, max_frames=144, resize=(448, 256), step=2)
TEST_CLIPS = 2


def build_data(data_root, force=False):
    """Synthesise and pack the demo dataset under ``data_root`` unless a verified one is there."""
    lmdb_root = data_root / 'lmdb'
    if not force and (lmdb_root / 'test' / 'meta_info.txt').exists() and not verify(lmdb_root)[0]:
        print(f'demo data: using {lmdb_root}')
        return lmdb_root
    start = time.time()
    synth([BUNDLED], data_root / 'reds', overwrite=True, **SYNTH)
    splits = reds_plan(data_root / 'reds')
    held_out = sorted(splits['train']['sharp'])[-TEST_CLIPS:]
    splits['test'] = {kind: {c: clips.pop(c) for c in held_out} for kind, clips in splits['train'].items()}
    pack(splits, lmdb_root, overwrite=True)
    print(f'demo data: {lmdb_root} ({time.time() - start:.0f} s; test clips {", ".join(held_out)})')
    return lmdb_root


def evaluate(opt, weights, lmdb_root, device, pictures=False):
    """Scores of the trained network on the held-out clips (``hoffr_arch.evaluation.evaluate``);
    ``pictures``: with tOF and what ``hoffr_arch.report`` shows."""
    opt_net = dict(opt['network_g'], pof_path=None)  # the checkpoint holds the trained POF
    net = load_weights(build_network(opt_net), weights, what='HOFFR').to(device).eval()
    dataset = evaluation.test_dataset(lmdb_root / 'test', 'demo_test')
    return evaluation.evaluate(evaluation.streamed(torch_step(net)), dataset, opt['scale'], device, net=net,
                               tof=pictures, pictures=pictures)


def report(result, out_dir, wall):
    """The demo's table (``out_dir/results.md``) and picture (``out_dir/side_by_side.png``) from
    ``hoffr_arch.evaluation.evaluate``'s result of a run with the network (``net=``); ``wall`` says how
    long the demo took, on what. Returns the table."""
    scores = {k: result[k] for k in ('bicubic', 'model')}
    out_dir = Path(out_dir)
    out_dir.mkdir(exist_ok=True)
    gain = scores['model'][0] - scores['bicubic'][0]
    lines = ['| method (held-out clips, RGB, all frames) | PSNR (dB) | SSIM |', '|---|---|---|']
    lines += [f'| {"bicubic x4 of the blurry input" if k == "bicubic" else "HOFFR (this demo)"} | {p:.2f} | {s:.4f} |'
              for k, (p, s) in scores.items()]
    recurrence = result['gain_later'] - result['gain_first']
    lines.append(f'\nHOFFR - bicubic: {gain:+.2f} dB; first frames {result["gain_first"]:+.2f} dB, later frames '
                 f'{result["gain_later"]:+.2f} dB (the recurrence adds {recurrence:+.2f} dB); '
                 f'POF warping error on sharp LR {result["warp_pof"]:.2f} vs {result["warp_zero"]:.2f} without flow '
                 f'({result["warp_pof"] / result["warp_zero"]:.2f}x). Total wall time {wall}.')
    table = '\n'.join(lines)
    (out_dir / 'results.md').write_text(table + '\n')
    labelled = []
    for img, label in zip(result['picture'], ('input (bicubic x4)', 'HOFFR', 'ground truth')):
        img = img.copy()
        cv2.putText(img, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        labelled.append(img)
    cv2.imwrite(str(out_dir / 'side_by_side.png'), np.hstack(labelled))
    print('\n' + table)
    height = result['picture'][2].shape[0]
    print(f'written: {out_dir / "results.md"}, {out_dir / "side_by_side.png"} ({height}p frames)')
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--opt', default=None, help='training options (default: options/demo/train_demo.yml)')
    parser.add_argument('--iters', type=int, default=None, help='override train.total_iter')
    parser.add_argument('--rebuild-data', action='store_true', help='synthesise the demo data again')
    parser.add_argument('--report', metavar='DIR', help='also write an offline HTML report there (hoffr_arch.report)')
    args = parser.parse_args(argv)
    if args.report:
        try:
            html_report.check_dir(args.report)
        except html_report.ReportError as err:
            print(f'error: {err}', file=sys.stderr)
            raise SystemExit(2) from None

    root = project_root()
    opt_path = Path(args.opt or root / 'options' / 'demo' / 'train_demo.yml').resolve()
    start = time.time()
    lmdb_root = build_data(root / 'datasets' / 'demo', args.rebuild_data)

    train_args = ['-opt', str(opt_path)]
    if args.iters:
        train_args += ['--force_yml', f'train:total_iter={args.iters}']
    from hoffr_arch.train import main as train_main
    train_main(train_args)

    opt = load_yaml(opt_path)
    weights = root / 'experiments' / opt['name'] / 'models' / 'net_g_latest.pth'
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    result = evaluate(opt, weights, lmdb_root, device, pictures=bool(args.report))
    report(result, root / 'demo_output', f'{time.time() - start:.0f} s on {device}')
    if args.report:
        facts = [('data', f'{lmdb_root / "test"} (the held-out clips)'), ('weights', weights), ('device', device),
                 ('torch', torch.__version__)]
        print(f'report: {html_report.write_report(args.report, [("HOFFR (this demo)", result)], "HOFFR demo", facts)}')
    return result


if __name__ == '__main__':
    main()
