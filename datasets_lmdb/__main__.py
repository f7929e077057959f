"""Command line: ``python -m datasets_lmdb {reds,dvd,gopro,synth,verify} --help``."""
import argparse
import sys
from pathlib import Path

import cv2

from . import DatasetError, dvd_plan, gopro_plan, pack, reds_plan, synth, verify
from .layout import GOPRO_SPLITS, reds_exposures
from .synth import EXPOSURE_MODES
from hoffr_arch.data.frame_io import ENCODINGS
from hoffr_arch.data.video_io import MediaError, check_apart


def _pack_options(p):
    p.add_argument('--output', required=True, help='output folder: OUT/<split>/<kind>.lmdb and meta_info.txt')
    p.add_argument('--scale', type=int, default=4, help='HR / LR size ratio (default 4)')
    p.add_argument('--encoding', choices=ENCODINGS, default='bmp',
                   help='how frames are stored: bmp (default: uncompressed, decoded by BasicSR\'s imfrombytes '
                   'and any image tool; our datasets copy only the training crop), png (at --png-level), '
                   'source (the source file bytes; generated LR frames as PNG)')
    p.add_argument('--png-level', type=int, default=1, help='zlib level for --encoding png (0-9)')
    p.add_argument('--workers', type=int, default=None, help='reading threads (default: all cores)')
    p.add_argument('--overwrite', action='store_true', help='redo outputs that exist')
    p.add_argument('--resume', action='store_true',
                   help='continue an interrupted run: keep complete LMDBs, continue partial ones')


def _exposure(text):
    return tuple(float(v) for v in text.split(':')) if ':' in text else float(text)


def build_parser():
    parser = argparse.ArgumentParser(prog='python -m datasets_lmdb', description=__doc__)
    sub = parser.add_subparsers(dest='command', required=True)

    p = sub.add_parser('reds', help='pack a REDS-layout folder into LMDBs',
                       description='Pack REDS (train_sharp/, train_blur/, train_*_bicubic/X4/, val_*) into LMDBs.')
    p.add_argument('--input', required=True, help='REDS root')
    p.add_argument('--merge-val', action='store_true', help='val clips join train as 240-269')
    p.add_argument('--reds4-test', action='store_true', help='clips 000, 011, 015, 020 form the test split')
    p.add_argument('--generate-bicubic', action='store_true',
                   help='make missing *_bicubic/X4 kinds from the HR frames (MATLAB bicubic)')
    _pack_options(p)

    p = sub.add_parser('dvd', help='pack DeepVideoDeblurring into LMDBs',
                       description='Pack DVD quantitative_datasets/<clip>/{input,GT}/ into LMDBs; the 10 '
                       'official test clips form the test split; LR by MATLAB bicubic.')
    p.add_argument('--input', required=True, help='DVD root (holding quantitative_datasets/) or that folder')
    _pack_options(p)

    p = sub.add_parser('gopro', help='pack GoPro (GOPRO_Large) into LMDBs',
                       description='Pack GOPRO_Large train|test/<clip>/{blur,blur_gamma,sharp}/ into LMDBs: '
                       'train and test splits, sharp as GT, LR by MATLAB bicubic.')
    p.add_argument('--input', required=True, help='GOPRO_Large root (holding train/ and/or test/)')
    p.add_argument('--blur', choices=('blur', 'blur_gamma'), default='blur',
                   help='the blurry frames: blur (default) or blur_gamma (averaged in gamma-corrected space)')
    _pack_options(p)

    p = sub.add_parser('synth', help='make a REDS-layout VSRDB set from sharp videos or frame folders',
                       description='Blur sharp footage along its optical flow in linear light, then '
                       'MATLAB-bicubic x4: a REDS-layout folder (train_sharp, train_blur, *_bicubic/X4).')
    p.add_argument('--input', required=True, nargs='+',
                   help='video files (mp4, ...) or frame folders, each optionally with its own options: '
                   'PATH@step=2,resize=480x270,exposure=0.5:2,max_frames=100,start=0,clip_length=20,split=val '
                   '(split=val puts its clips in val_* folders: a held-out source)')
    p.add_argument('--output', required=True, help='REDS-layout root to create')
    p.add_argument('--exposure', type=_exposure, default=1.0,
                   help='exposure length in frame intervals (0: no blur; default 1.0), or A:B to draw from '
                   'that range (see --exposure-mode); every frame\'s goes to OUT/exposures.txt')
    p.add_argument('--exposure-mode', choices=EXPOSURE_MODES, default='clip',
                   help='how a range A:B is drawn: clip (one per clip, default), frame (each frame its own, '
                   'REDS-RE-like) or ramp (linear from A to B or B to A over each clip)')
    p.add_argument('--scale', type=int, default=4)
    p.add_argument('--clip-length', type=int, default=None, help='cut inputs into clips of this many frames')
    p.add_argument('--start', type=int, default=0, help='first frame to use')
    p.add_argument('--max-frames', type=int, default=None, help='frames to use per input')
    p.add_argument('--step', type=int, default=1, help='use every STEP-th frame (more motion per frame)')
    p.add_argument('--resize', type=int, nargs=2, metavar=('W', 'H'), help='resize the sharp frames first')
    p.add_argument('--workers', type=int, default=None)
    p.add_argument('--overwrite', action='store_true')

    p = sub.add_parser('verify', help='decode every frame and check a packed dataset',
                       description='Decode every frame; check frame counts, HR = scale x LR and that all '
                       'kinds hold the same keys.')
    p.add_argument('output', help='the folder given to reds/dvd as --output')
    p.add_argument('--scale', type=int, default=4)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    # bad frames get our one-line error naming them; OpenCV's own decoder log would only repeat it
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        if args.command == 'verify':
            problems, counts, formats = verify(args.output, args.scale)
            for split, kinds in counts.items():
                print(f'{split}: ' + ', '.join(
                    f'{kind} {n} frames ({", ".join(formats[split].get(kind, {}))})' for kind, n in kinds.items()))
            for problem in problems:
                print(f'problem: {problem}', file=sys.stderr)
            print('verify: OK' if not problems else f'verify: {len(problems)} problem(s)')
            return 1 if problems else 0
        if args.command == 'synth':
            clips = synth(args.input, args.output, args.exposure, args.scale, args.clip_length, args.start,
                          args.max_frames, args.resize, args.overwrite, args.workers, step=args.step,
                          exposure_mode=args.exposure_mode)
            print(f'synth: {len(clips)} clip(s), {sum(clips.values())} frames -> {args.output}')
            return 0
        exposures = None
        if args.command == 'reds':
            splits = reds_plan(args.input, args.merge_val, args.reds4_test, args.generate_bicubic, args.scale)
            exposures = reds_exposures(args.input, splits, args.merge_val)
        elif args.command == 'gopro':
            # OUT/train/ must not be GOPRO_Large/train/ (nor inside it): later runs would read it as clips
            check_apart(args.output, [Path(args.input) / split for split in GOPRO_SPLITS])
            splits = gopro_plan(args.input, args.blur, args.scale)
        else:
            splits = dvd_plan(args.input, args.scale)
        counts = pack(splits, args.output, args.encoding, args.png_level, args.workers, args.overwrite,
                      args.resume, args.scale, exposures)
        for split, kinds in counts.items():
            print(f'{split}: {len(next(iter(splits[split].values())))} clips; ' +
                  ', '.join(f'{kind} {n} frames' for kind, n in kinds.items()))
        return 0
    except (DatasetError, MediaError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    except OSError as err:  # an output path that is a file, read-only, a full disk...
        print(f'error: {err.filename or args.output}: {err.strerror or err}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('interrupted: rerun the same command with --resume to continue', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
