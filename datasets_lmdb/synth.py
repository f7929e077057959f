"""VSRDB data from any sharp footage, made the way REDS and GoPro made theirs.

For each sharp frame S_t, motion blur integrates the exposure along the real motion: dense optical
flow (OpenCV DIS) to the neighbouring frames gives each pixel's path, the frame is resampled at
sub-frame times spread over the exposure (``exposure`` frame intervals centred on t, enough samples
for steps under a pixel), and the samples are averaged in linear light (gamma 2.2), then re-encoded.
Then ``*_bicubic/X4`` come from MATLAB-style bicubic downsampling (BasicSR's ``imresize``).

Output, in REDS layout under ROOT: ``train_sharp/<clip>/%08d.png``, ``train_blur/``,
``train_sharp_bicubic/X4/``, ``train_blur_bicubic/X4/`` (``val_*`` for sources marked ``split=val``),
and ``exposures.txt``: every frame's exposure (``<train|val>/<clip>/<frame:08d> <exposure>``), which
``datasets_lmdb reds`` carries into the packed splits. It is written to ``ROOT.partial`` and renamed
when complete.

Exposures (``exposure_mode``) from a range A:B: one per clip (``clip``), one per frame drawn
independently (``frame``, like REDS-RE), or a linear ramp over the clip from A to B or B to A
(``ramp``, direction drawn per clip, like a camera adapting); a single number is every frame's.
"""
import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from hoffr_arch.data.frame_io import bicubic_downscale
from hoffr_arch.data.meta_info import EXPOSURES, exposure_line
from hoffr_arch.data.video_io import check_apart, read_frames

from .layout import REDS_FOLDERS, DatasetError

GAMMA = 2.2
MAX_SAMPLES = 65


def dense_flow(src, dst, dis=None):
    """DIS optical flow (h, w, 2) from ``src`` to ``dst`` (BGR uint8): src[p] moves to p + flow[p]."""
    dis = dis or cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return dis.calc(cv2.cvtColor(src, cv2.COLOR_BGR2GRAY), cv2.cvtColor(dst, cv2.COLOR_BGR2GRAY), None)


def blur_frame(frame, flow_next, flow_prev, exposure):
    """Integrate ``exposure`` frame intervals centred on ``frame`` along its motion.

    Args:
        frame: (h, w, 3) uint8 sharp frame t.
        flow_next, flow_prev: (h, w, 2) flows from t to t+1 and from t to t-1 (either may be None at a
            clip end: the other one, negated, stands in).
        exposure (float): exposure length in frame intervals (0 = no blur, 1 = the whole interval).

    Returns:
        (h, w, 3) uint8 blurry frame.
    """
    if exposure <= 0:
        return frame.copy()
    flow_next = flow_next if flow_next is not None else -flow_prev
    flow_prev = flow_prev if flow_prev is not None else -flow_next
    reach = max(np.abs(flow_next).max(), np.abs(flow_prev).max()) * exposure / 2
    n = int(min(MAX_SAMPLES, max(3, 2 * math.ceil(reach) + 1)))
    linear = (frame.astype(np.float32) / 255.)**GAMMA
    h, w = frame.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    acc = np.zeros_like(linear)
    for tau in np.linspace(-exposure / 2, exposure / 2, n).tolist():
        # the content at p at time t + tau came from about p - |tau| * (motion towards that side)
        flow = flow_next if tau > 0 else flow_prev
        acc += cv2.remap(linear, gx - abs(tau) * flow[..., 0], gy - abs(tau) * flow[..., 1], cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    return np.clip(np.rint((acc / n)**(1 / GAMMA) * 255.), 0, 255).astype(np.uint8)


def blur_clip(frames, exposure, workers=None):
    """Blurry versions of a list of sharp frames (flows computed between neighbours).

    Args:
        frames: list of t (h, w, 3) uint8 sharp frames.
        exposure: one exposure (frame intervals) for every frame, or a sequence of t, one per frame.

    Returns:
        list of t (h, w, 3) uint8 blurry frames.
    """
    exposures = [float(exposure)] * len(frames) if np.ndim(exposure) == 0 else [float(e) for e in exposure]
    if len(exposures) != len(frames):
        raise ValueError(f'{len(exposures)} exposures for {len(frames)} frames')

    def blur_one(i):
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        nxt = dense_flow(frames[i], frames[i + 1], dis) if i + 1 < len(frames) else None
        prv = dense_flow(frames[i], frames[i - 1], dis) if i > 0 else None
        if nxt is None and prv is None:  # a one-frame clip has no motion
            nxt = np.zeros(frames[i].shape[:2] + (2,), np.float32)
        return blur_frame(frames[i], nxt, prv, exposures[i])

    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        return list(pool.map(blur_one, range(len(frames))))


SOURCE_KEYS = {'start': int, 'max_frames': int, 'step': int, 'exposure': str, 'resize': str, 'split': str,
               'clip_length': int, 'exposure_mode': str}
EXPOSURE_MODES = ('clip', 'frame', 'ramp')


def parse_source(spec, defaults):
    """``PATH[@key=value,...]`` -> (path, options): ``defaults`` overridden by the source's own keys.

    Keys: start, max_frames, step, clip_length, resize (``WxH``), exposure (a number, or ``A:B`` for
    a range drawn from, uniformly, reproducibly), exposure_mode (``clip``, ``frame`` or ``ramp``: see
    ``frame_exposures``), split (``train`` or ``val``: which REDS folders the source's clips go to;
    hold whole sources out with ``split=val``).
    """
    path, _, extra = str(spec).partition('@')
    opts = dict(defaults)
    for item in filter(None, extra.split(',')):
        key, eq, value = item.partition('=')
        if not eq or key not in SOURCE_KEYS:
            raise DatasetError(f'{spec}: bad source option {item!r} (PATH@key=value,...; keys: '
                               f'{", ".join(SOURCE_KEYS)})')
        try:
            if key == 'resize':
                w, h = (int(v) for v in value.lower().split('x'))
                value = (w, h)
            elif key == 'exposure':
                value = tuple(float(v) for v in value.split(':')) if ':' in value else float(value)
            elif key == 'split':
                if value not in ('train', 'val'):
                    raise ValueError
            elif key == 'exposure_mode':
                if value not in EXPOSURE_MODES:
                    raise ValueError
            else:
                value = SOURCE_KEYS[key](value)
        except ValueError:
            raise DatasetError(f'{spec}: bad value in source option {item!r}') from None
        opts[key] = value
    return path, opts


def clip_exposure(exposure, index):
    """The exposure of clip ``index``: the number, or a draw from the range (A, B) seeded by the index."""
    if isinstance(exposure, tuple):
        low, high = exposure
        return float(np.random.default_rng(index).uniform(low, high))
    return float(exposure)


def frame_exposures(exposure, index, n, mode='clip'):
    """The n exposures (frame intervals) of clip ``index``, seeded by the index (reproducible).

    ``exposure`` is a number (every frame's, whatever the mode) or a range (A, B): ``clip`` draws one
    for the whole clip (``clip_exposure``), ``frame`` draws each frame's independently, ``ramp`` goes
    linearly from A to B over the clip, or from B to A (the direction drawn). Returns a list of n floats.
    """
    if mode not in EXPOSURE_MODES:
        raise DatasetError(f'unknown exposure mode {mode!r}; choose from {", ".join(EXPOSURE_MODES)}')
    if mode == 'clip' or not isinstance(exposure, tuple):
        return [clip_exposure(exposure, index)] * n
    low, high = exposure
    rng = np.random.default_rng(index)
    if mode == 'frame':
        return [float(e) for e in rng.uniform(low, high, n)]
    ends = (low, high) if rng.random() < 0.5 else (high, low)
    return [float(e) for e in np.linspace(*ends, n)] if n > 1 else [float(np.mean(ends))]


MARKER = '.datasets_lmdb_synth'  # what makes a folder ours to replace
KIND_FOLDERS = {f'{split}_{kind}' for split in ('train', 'val')
                for kind in ('sharp', 'blur', 'sharp_bicubic', 'blur_bicubic')}


def check_replaceable(folder, overwrite):
    """Refuse to replace ``folder`` unless ``overwrite`` is given and it is a synth output: it holds
    our marker and nothing but the REDS-layout folders synth writes (never a user's files)."""
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_dir() and not folder.is_symlink() and not any(folder.iterdir()):
        return
    if not overwrite:
        raise DatasetError(f'{folder} already exists; pass --overwrite to replace an earlier synth output')
    entries = {p.name for p in folder.iterdir()} if folder.is_dir() and not folder.is_symlink() else set()
    if MARKER not in entries or entries - KIND_FOLDERS - {MARKER, EXPOSURES}:
        other = sorted(entries - KIND_FOLDERS - {MARKER, EXPOSURES})
        raise DatasetError(f'{folder}: not a folder synth wrote{f" (it holds {other[0]})" if other else ""}; '
                           '--overwrite replaces only those, so it is left alone: choose another output')


def write_clip(partial, split, name, sharp, blurry, scale):
    """Write one clip's four REDS kinds (``layout.REDS_FOLDERS``) as ``%08d.png``: ``sharp`` and
    ``blurry`` are lists of t (h, w, 3) uint8 frames, the LR kinds their (h/scale, w/scale) bicubic."""
    out = {'sharp': sharp, 'blur': blurry, 'sharp_bicubic': [bicubic_downscale(f, scale) for f in sharp],
           'blur_bicubic': [bicubic_downscale(f, scale) for f in blurry]}
    for kind, imgs in out.items():
        folder = partial / REDS_FOLDERS[kind].format(p=split) / name
        folder.mkdir(parents=True)
        for i, img in enumerate(imgs):
            if not cv2.imwrite(str(folder / f'{i:08d}.png'), img):
                raise DatasetError(f'{folder}: cannot write frame {i:08d}.png')


def synth(inputs, root, exposure=1.0, scale=4, clip_length=None, start=0, max_frames=None, resize=None,
          overwrite=False, workers=None, first_clip=0, step=1, exposure_mode='clip'):
    """Make a REDS-layout VSRDB set under ``root`` from sharp videos or frame folders.

    Each input is cut into clips of ``clip_length`` frames (default: one clip per input); clips are
    named 000, 001, ... from ``first_clip``, across all inputs. An input may carry its own options
    (``parse_source``: ``PATH@step=2,resize=480x270,exposure=0.5:2,split=val``); the arguments here
    are the defaults. ``exposure`` may be a range (A, B), drawn from per ``exposure_mode``
    (``frame_exposures``); every frame's exposure goes to ``ROOT/exposures.txt``. Returns
    {clip: number of frames}.
    """
    root = Path(root)
    partial = root.with_name(root.name + '.partial')
    defaults = dict(start=start, max_frames=max_frames, step=step, exposure=exposure, resize=resize,
                    split='train', clip_length=clip_length, exposure_mode=exposure_mode)
    sources = [parse_source(spec, defaults) for spec in inputs]  # every spec checked before any work
    frame_exposures(exposure, 0, 1, exposure_mode)  # an unknown mode is refused before any work
    for target in (root, partial):
        check_apart(target, [source for source, _ in sources])
    check_replaceable(root, overwrite)
    check_replaceable(partial, True)  # an interrupted synth's (its marker says so), never a user's folder
    if partial.exists():  # frames are cheap to redo
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    (partial / MARKER).write_text('written by python -m datasets_lmdb synth; --overwrite may replace this folder\n')
    clips, index, lines = {}, first_clip, []
    bar = tqdm(unit='frame', desc='synth')
    for source, opts in sources:
        frames = read_frames(source, opts['start'], opts['max_frames'], opts['resize'], opts['step'])
        h, w = frames[0].shape[:2]
        if h % scale or w % scale:
            raise DatasetError(f'{source}: frame size {w}x{h} is not a multiple of the scale {scale}; '
                               'pass --resize W H')
        length = opts['clip_length'] or len(frames)
        for begin in range(0, len(frames), length):
            sharp, name = frames[begin:begin + length], f'{index:03d}'
            exposures = frame_exposures(opts['exposure'], index, len(sharp), opts['exposure_mode'])
            write_clip(partial, opts['split'], name, sharp, blur_clip(sharp, exposures, workers), scale)
            lines += [exposure_line(f'{opts["split"]}/{name}/{i:08d}', e) for i, e in enumerate(exposures)]
            clips[name] = len(sharp)
            bar.update(len(sharp))
            index += 1
    bar.close()
    (partial / EXPOSURES).write_text(''.join(lines))
    if root.exists():
        shutil.rmtree(root)
    os.replace(partial, root)
    return clips
