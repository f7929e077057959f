"""Packing a plan (see ``layout``) into LMDBs, resumably and atomically.

Output: ``OUT/<split>/<kind>.lmdb`` (keys ``<clip>/<frame:08d>``, BasicSR's ``meta_info.txt`` inside)
and ``OUT/<split>/meta_info.txt`` (``<clip> <nframes> (h,w,c)`` of the sharp HR frames), readable
by BasicSR's ``FileClient``. An LMDB is written as ``<kind>.lmdb.partial`` and renamed when complete,
so a killed run never leaves an output that looks complete; ``resume=True`` continues it (LMDB
commits are atomic, so every committed frame is whole) and ``overwrite=True`` starts over.

We do not use BasicSR's ``LmdbMaker``/``make_lmdb_from_imgs``: they ``sys.exit`` when the target
exists (no resume) and always re-encode PNG, which loads slower than the source files.
"""
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import lmdb
import numpy as np
from PIL import Image
from tqdm import tqdm

from hoffr_arch.atomic import write_text
from hoffr_arch.data.frame_io import ENCODINGS, bicubic_downscale, encode_bmp, encode_png, frame_shape, stored_format
from hoffr_arch.data.lmdb_integrity import CHECKSUMS, checksum
from hoffr_arch.data.meta_info import EXPOSURES, clip_line, exposure_line, frame_line

from .layout import HR_KINDS, LR_OF, DatasetError

COMMIT_BYTES = 256 << 20


def load_frame(frame, encoding='bmp', png_level=1):
    """Read one planned frame -> (value bytes, (h, w, c)). Raises DatasetError naming the frame."""
    try:
        data = frame.path.read_bytes()
    except OSError as err:
        raise DatasetError(f'{frame.path}: cannot read frame {frame.key}: {err.strerror}') from None
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if img is None:
        raise DatasetError(f'{frame.path}: {"empty file (0 bytes)" if not data else "unreadable or corrupt image"} '
                           f'(frame {frame.key})')
    if frame.downscale:
        img = bicubic_downscale(img, frame.downscale)
    if encoding == 'bmp':
        return encode_bmp(img), img.shape
    if encoding == 'png' or frame.downscale:  # a generated frame has no source bytes: lossless PNG
        return encode_png(img, png_level), img.shape
    return data, img.shape


def header_size(path):
    """(h, w) from the image header only."""
    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except Exception:  # PIL raises several types for bad files
        raise DatasetError(f'{path}: unreadable or corrupt image') from None


def check_sizes(splits, scale):
    """Per split, kind and clip the (h, w) every frame must have; HR must be ``scale`` x LR.

    Reads only image headers, of every frame, so that size errors (a frame of another size in
    mid-clip), empty and unreadable files surface before anything is written.
    """
    sizes = {}
    for split, kinds in splits.items():
        sizes[split] = {}
        firsts = {}  # (kind, clip) -> header size of the clip's first stored file
        for kind, clips in kinds.items():
            sizes[split][kind] = {}
            for clip, frames in clips.items():
                h, w = firsts[kind, clip] = header_size(frames[0].path)
                if frames[0].downscale:
                    if h % scale or w % scale:
                        raise DatasetError(f'{frames[0].path}: {split} clip {clip}: HR size {h}x{w} is not a '
                                           f'multiple of the scale {scale}')
                    h, w = h // scale, w // scale
                sizes[split][kind][clip] = (h, w)
        for lr_kind, hr_kind in LR_OF.items():
            if lr_kind in kinds and hr_kind in kinds:
                for clip, (h, w) in sizes[split][lr_kind].items():
                    hh, hw = sizes[split][hr_kind][clip]
                    if (hh, hw) != (scale * h, scale * w):
                        raise DatasetError(f'{split} clip {clip}: {hr_kind} is {hh}x{hw} but {lr_kind} is {h}x{w}; '
                                           f'HR must be {scale} x LR ({kinds[lr_kind][clip][0].path})')
        for kind, clips in kinds.items():  # every other frame against its clip's first
            for clip, frames in clips.items():
                if frames[0].downscale:  # generated from an HR kind, whose files are checked already
                    continue
                first = firsts[kind, clip]
                for frame in frames[1:]:
                    if frame.path.stat().st_size == 0:
                        raise DatasetError(f'{frame.path}: empty file (0 bytes) (frame {frame.key})')
                    other = header_size(frame.path)
                    if other != first:
                        raise DatasetError(f'{frame.path}: frame {frame.key} is {other[0]}x{other[1]}, the rest of '
                                           f'clip {clip} is {first[0]}x{first[1]}')
    return sizes


def _target_state(path):
    partial = path.with_name(path.name + '.partial')
    return 'complete' if path.exists() else 'partial' if partial.exists() else 'absent'


def check_outputs(paths, overwrite, resume):
    """Refuse to touch existing outputs unless asked to."""
    if overwrite:
        return
    for path in paths:
        state = _target_state(path)
        if state == 'complete' and not resume:
            raise DatasetError(f'{path} already exists; pass --overwrite to redo it or --resume to keep it')
        if state == 'partial' and not resume:
            raise DatasetError(f'{path}.partial was left by an interrupted run; pass --resume to continue it '
                               'or --overwrite to start over')


def _bounded_map(fn, items, workers):
    """``map`` on a thread pool, at most a few chunks in flight (memory stays bounded)."""
    chunk = max(4 * workers, 8)
    with ThreadPoolExecutor(workers) as pool:
        for start in range(0, len(items), chunk):
            yield from pool.map(fn, items[start:start + chunk])


LMDB_FILES = {'data.mdb', 'lock.mdb', 'meta_info.txt', 'meta_info.txt.tmp', CHECKSUMS, CHECKSUMS + '.tmp'}


def is_packed_lmdb(path):
    """What ``--overwrite`` may replace: a folder holding nothing but an LMDB's files and ours."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and all(p.name in LMDB_FILES and p.is_file() for p in path.iterdir())


def write_lmdb(path, clips, expected, encoding='bmp', png_level=1, workers=None, overwrite=False,
               desc=None):
    """Pack ``{clip: [Frame]}`` into ``path`` (an ``.lmdb`` folder) via ``path.partial``.

    ``expected``: {clip: (h, w)} every frame of the clip must have. Returns the number of frames.
    """
    path = Path(path)
    partial = path.with_name(path.name + '.partial')
    if overwrite:
        for p in (path, partial):
            if p.exists():
                if not is_packed_lmdb(p):
                    raise DatasetError(f'{p}: holds files other than an LMDB this tool writes; --overwrite replaces '
                                       'only those, so it is left alone: remove it yourself or choose another output')
                shutil.rmtree(p)
    elif path.exists():
        return sum(len(f) for f in clips.values())  # complete, kept (resume)
    partial.mkdir(parents=True, exist_ok=True)
    frames = [f for clip_frames in clips.values() for f in clip_frames]
    env = lmdb.open(str(partial), map_size=1 << 40, subdir=True)  # sparse: 1 TiB is only an upper bound
    try:
        with env.begin() as txn:
            done = {bytes(k).decode('ascii') for k in txn.cursor().iternext(values=False)}
        todo = [f for f in frames if f.key not in done]
        workers = workers or os.cpu_count() or 1
        bar = tqdm(total=len(frames), initial=len(frames) - len(todo), unit='frame', desc=desc or path.name)
        txn, pending = env.begin(write=True), 0
        shapes = {}  # of the frames written now; resumed ones are read back from their headers
        try:
            for frame, (value, shape) in zip(todo, _bounded_map(lambda f: load_frame(f, encoding, png_level),
                                                                todo, workers)):
                clip = frame.key.split('/')[0]
                if shape[:2] != tuple(expected[clip]):
                    raise DatasetError(f'{frame.path}: frame {frame.key} is {shape[0]}x{shape[1]}, the rest of clip '
                                       f'{clip} is {expected[clip][0]}x{expected[clip][1]}')
                txn.put(frame.key.encode('ascii'), value)
                shapes[frame.key] = (tuple(shape), stored_format(value), checksum(value))
                pending += len(value)
                if pending >= COMMIT_BYTES:
                    txn.commit()
                    txn, pending = env.begin(write=True), 0
                bar.update(1)
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        finally:
            bar.close()
        lines, sums = _index(env, partial, frames, shapes, png_level if encoding == 'png' else 0)
        env.sync(True)
    finally:
        env.close()
    write_text(partial / 'meta_info.txt', lines)
    write_text(partial / CHECKSUMS, sums)
    os.replace(partial, path)
    return len(frames)


def _index(env, partial, frames, shapes, compression):
    """The LMDB's meta_info lines and checksums.txt lines, in frame order. ``shapes``: {key: ((h, w, c),
    format, crc)} of the frames written now; those of a resumed run's frames are read back here."""
    lines, sums = [], []
    with env.begin() as txn:
        for f in frames:
            if f.key not in shapes:
                value = txn.get(f.key.encode('ascii'))
                shapes[f.key] = (frame_shape(value), stored_format(value), checksum(value))
            shape, ext, crc = shapes[f.key]
            lines.append(frame_line(f.key, ext, shape, compression))
            sums.append(f'{f.key} {crc}\n')
        if txn.stat()['entries'] != len(frames):
            raise DatasetError(f'{partial} holds {txn.stat()["entries"]} frames, the input has {len(frames)}; '
                               'the input changed since the interrupted run: pass --overwrite')
    return ''.join(lines), ''.join(sums)


def pack(splits, out, encoding='bmp', png_level=1, workers=None, overwrite=False, resume=False, scale=4,
         exposures=None):
    """Pack every split and kind of a plan under ``out``; returns {split: {kind: frames}}.

    ``exposures`` ({split: {key: exposure}}, ``layout.reds_exposures``) is written beside each split's
    meta_info.txt as ``exposures.txt``; without it, ``--overwrite`` removes an earlier run's."""
    if encoding not in ENCODINGS:
        raise DatasetError(f'unknown encoding {encoding!r}; choose from {", ".join(ENCODINGS)}')
    out = Path(out)
    resolved = out.resolve()
    for kinds in splits.values():
        for clips in kinds.values():
            for frames in clips.values():
                source = frames[0].path.resolve().parent.parent  # the kind folder holding the clips
                if resolved == source or source in resolved.parents:
                    raise DatasetError(f'{out}: the output is inside the input folder {source}; later runs would '
                                       'read it as a clip. Choose an output outside the input kind folders')
                break
    if out.exists() and not out.is_dir():
        raise DatasetError(f'{out}: exists and is not a folder')
    sizes = check_sizes(splits, scale)
    targets = [out / split / f'{kind}.lmdb' for split, kinds in splits.items() for kind in kinds]
    sides = [out / split / 'meta_info.txt' for split in splits]
    sides += [out / split / EXPOSURES for split in splits] if exposures else []
    check_outputs(targets + sides, overwrite, resume)
    counts = {}
    for split, kinds in splits.items():
        counts[split] = {}
        for kind, clips in kinds.items():
            counts[split][kind] = write_lmdb(out / split / f'{kind}.lmdb', clips, sizes[split][kind], encoding,
                                             png_level, workers, overwrite, desc=f'{split}/{kind}')
        ref = next((k for k in HR_KINDS if k in kinds), next(iter(kinds)))
        lines = [clip_line(clip, len(frames), (*sizes[split][ref][clip][:2], 3)) for clip, frames in kinds[ref].items()]
        write_text(out / split / 'meta_info.txt', ''.join(lines))
        if exposures:
            keys = [f.key for frames in kinds[ref].values() for f in frames]
            write_text(out / split / EXPOSURES, ''.join(exposure_line(k, exposures[split][k]) for k in keys))
        elif overwrite and (out / split / EXPOSURES).is_file():  # an earlier run's, wrong for these frames
            (out / split / EXPOSURES).unlink()
    return counts
