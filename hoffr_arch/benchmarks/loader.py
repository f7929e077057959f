"""Training-sample loading speed: our LMDB against BasicSR's stock LMDB of the same frames, one run.

    python -m hoffr_arch.benchmarks.loader [--frames 100] [--samples 200]

Frames: the bundled 1280x720 clip as sharp HR (REDS size) and its MATLAB-bicubic x4 as LR, written
once as PNG. Stock: BasicSR's ``make_lmdb_from_imgs`` (PNG re-encoded at level 1) read by BasicSR's
``REDSRecurrentDataset``. Ours: ``datasets_lmdb`` with each ``--encodings`` read by
``VSRDBRecurrentDataset``. A sample is 8 LR + 8 HR frames, a 256x256 HR crop, flips and rotation.
The loaders alternate in rounds and each figure is the median, so machine noise hits all alike.
Prints samples/s, the ratio to stock (target >= 20 x for our default, bmp) and bytes on disk.
"""
import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import cv2

import hoffr_arch  # noqa: F401  (compat first)
from basicsr.data.reds_dataset import REDSRecurrentDataset
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from datasets_lmdb import pack, reds_plan
from hoffr_arch.data.frame_io import bicubic_downscale
from hoffr_arch.data.video_io import read_frames
from hoffr_arch.data.vsrdb_dataset import VSRDBRecurrentDataset

BUNDLED = Path(hoffr_arch.__file__).parent / 'assets' / 'sam2_01_dog.mp4'
CLIP = '001'  # not a REDS4 name: BasicSR's dataset drops those from training


def disk_bytes(folder):
    """Bytes actually allocated on disk under ``folder`` (LMDB files are sparse)."""
    return sum(p.stat().st_blocks * 512 for p in Path(folder).rglob('*') if p.is_file())


def prepare(work, source, frames, encodings, log):
    reds = work / 'reds'
    hr_dir, lr_dir = reds / 'train_sharp' / CLIP, reds / 'train_sharp_bicubic' / 'X4' / CLIP
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir(parents=True)
    for i, img in enumerate(read_frames(source, max_frames=frames)):
        cv2.imwrite(str(hr_dir / f'{i:08d}.png'), img)
        cv2.imwrite(str(lr_dir / f'{i:08d}.png'), bicubic_downscale(img, 4))
    n = len(list(hr_dir.iterdir()))
    if n < 100:
        raise SystemExit(f'BasicSR\'s REDSRecurrentDataset needs 100 frames per clip; {source} gave {n}')
    h, w = cv2.imread(str(hr_dir / '00000000.png')).shape[:2]
    meta = work / 'meta_info.txt'
    meta.write_text(f'{CLIP} {n} ({h},{w},3)\n')
    names = [f'{i:08d}.png' for i in range(n)]
    keys = [f'{CLIP}/{i:08d}' for i in range(n)]
    log(f'source PNG: HR {disk_bytes(hr_dir) / 2**20:.1f} MiB, LR {disk_bytes(lr_dir) / 2**20:.1f} MiB '
        f'({n} frames {w}x{h})')
    roots = {}
    stock = work / 'stock'
    stock.mkdir()
    for kind, folder in (('gt', hr_dir), ('lq', lr_dir)):
        make_lmdb_from_imgs(str(folder), str(stock / f'{kind}.lmdb'), names, keys)
    roots['stock'] = (stock / 'gt.lmdb', stock / 'lq.lmdb')
    for enc in encodings:
        out = work / f'ours_{enc}'
        pack(reds_plan(reds), out, encoding=enc, workers=os.cpu_count())
        roots[enc] = (out / 'train' / 'sharp.lmdb', out / 'train' / 'sharp_bicubic.lmdb')
    return meta, roots


def make_loader(name, meta, gt, lq, num_frame, gt_size):
    opt = dict(name=name, dataroot_gt=str(gt), dataroot_lq=str(lq), meta_info_file=str(meta),
               io_backend={'type': 'lmdb'}, num_frame=num_frame, gt_size=gt_size, scale=4, interval_list=[1],
               random_reverse=False, use_hflip=True, use_rot=True, val_partition='REDS4', test_mode=False)
    return (REDSRecurrentDataset if name == 'stock' else VSRDBRecurrentDataset)(opt)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--source', default=str(BUNDLED), help='sharp video or frame folder (>= 100 frames)')
    parser.add_argument('--frames', type=int, default=100)
    parser.add_argument('--samples', type=int, default=60, help='samples per loader per round')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--num-frame', type=int, default=8)
    parser.add_argument('--gt-size', type=int, default=256)
    parser.add_argument('--encodings', nargs='+', default=['bmp', 'png', 'source'])
    parser.add_argument('--workdir', default=None, help='keep the LMDBs here (default: a temporary folder)')
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        meta, roots = prepare(Path(tmp), args.source, args.frames, args.encodings, print)
        loaders = {name: make_loader(name, meta, gt, lq, args.num_frame, args.gt_size)
                   for name, (gt, lq) in roots.items()}
        rates = {name: [] for name in loaders}
        random.seed(0)
        for _ in range(args.rounds):
            for name, ds in loaders.items():
                idx = [random.randrange(len(ds)) for _ in range(args.samples)]
                start = time.perf_counter()
                for i in idx:
                    ds[i]
                rates[name].append(args.samples / (time.perf_counter() - start))
        stock = statistics.median(rates['stock'])
        print(f'\n{args.num_frame} LR + {args.num_frame} HR frames per sample, {args.gt_size}x{args.gt_size} HR crop, '
              f'flip + rotation; median of {args.rounds} rounds of {args.samples} samples')
        print(f'{"loader":22s} {"samples/s":>10s} {"x stock":>8s} {"MiB on disk":>12s}')
        for name, (gt, lq) in roots.items():
            rate = statistics.median(rates[name])
            label = 'BasicSR stock (PNG-1)' if name == 'stock' else f'ours, {name}'
            size = (disk_bytes(gt) + disk_bytes(lq)) / 2**20
            print(f'{label:22s} {rate:10.1f} {rate / stock:8.2f} {size:12.1f}')


if __name__ == '__main__':
    main()
