"""VSRDB datasets (REDS, DVD, synthesised) for BasicSR: training crops and whole test clips.

Both read what ``python -m datasets_lmdb`` writes (LMDBs, keys ``<clip>/<frame:08d>``) or plain
frame folders (``<root>/<clip>/<frame>.png``), and return, as (t, c, h, w) RGB float tensors in [0, 1]:
``lq`` (blurry LR), ``gt`` (sharp HR) and, when ``dataroot_lq_sharp`` is given, ``lq_sharp`` (sharp
LR, for the deblurring and flow losses).

We do not subclass BasicSR's ``REDSRecurrentDataset`` / ``VideoRecurrentTestDataset``: the first
assumes 100 frames per clip and the REDS4 split, the second refuses LMDB, accepts only the names
vid4/reds4/redsofficial and pairs GT and LQ folders by sort order.
"""
import logging
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils import data

from basicsr.data.transforms import augment
from basicsr.utils import FileClient, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY

from .frame_io import DatasetError, decode_frame, frame_shape, list_clips, list_frames
from .lmdb_integrity import check_whole
from .meta_info import clips_of_lmdb, read_clips

ROOTS = (('gt', 'dataroot_gt'), ('lq', 'dataroot_lq'), ('lq_sharp', 'dataroot_lq_sharp'))


def _require(opt, key, dataset):
    if opt.get(key) is None:
        raise KeyError(f'{dataset}: option {key!r} is required')
    return opt[key]


_LMDB_ENVS = {}  # (process id, resolved path) -> lmdb.Environment


def open_lmdb(path):
    """The read-only LMDB environment of ``path`` for this process, opened once and shared by every
    dataset (train, val and test may point at the same LMDB; LMDB refuses a second open of a path in
    one process). Keyed by process id, so a forked or spawned DataLoader worker opens its own.

    BasicSR's ``FileClient('lmdb')`` opens a new environment per dataset, hence this instead.
    """
    import lmdb
    pid, real = os.getpid(), os.path.realpath(path)
    env = _LMDB_ENVS.get((pid, real))
    if env is None:
        # a forked DataLoader worker inherits its parent's handle, which LMDB must not use across a
        # fork and which makes it refuse a new open: close the child's copy (the parent's stays open)
        for stale in [k for k in _LMDB_ENVS if k[1] == real]:
            _LMDB_ENVS.pop(stale).close()
        check_whole(path)  # a truncated data.mdb would kill this process with SIGBUS on a read
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False)
        _LMDB_ENVS[(pid, real)] = env
    return env


class _FrameReader:
    """Reads frame ``i`` of ``clip`` from one of the roots: LMDB (``open_lmdb``) or disk (BasicSR's
    FileClient).

    Nothing is opened until the first read, in the process that reads (LMDB handles do not survive
    fork or pickling into DataLoader workers).
    """

    def __init__(self, opt, roots, name):
        self.io_opt = dict(opt.get('io_backend') or {'type': 'disk'})
        self.backend = self.io_opt.get('type', 'disk')
        if self.backend not in ('lmdb', 'disk'):
            raise DatasetError(f'{name}: io_backend type must be lmdb or disk, got {self.backend!r}')
        self.roots = roots  # {client key: path}
        self.client = None
        self.files = {}  # disk: {client key: {clip: [paths]}}
        if self.backend == 'lmdb':
            for key, root in roots.items():
                if not Path(root).is_dir():
                    raise DatasetError(f'{name}: {key} LMDB {root} not found')
                if (os.getpid(), os.path.realpath(root)) not in _LMDB_ENVS:  # else checked when opened
                    check_whole(root)
        else:
            for key, root in roots.items():
                self.files[key] = {c.name: list_frames(c) for c in list_clips(Path(root))}

    def clips(self, key):
        """{clip: nframes} present under root ``key``."""
        if self.backend == 'lmdb':
            return clips_of_lmdb(self.roots[key])
        return {clip: len(frames) for clip, frames in self.files[key].items()}

    def read(self, key, clip, index):
        """(stored bytes, where) of frame ``index`` of ``clip`` under root ``key``."""
        if self.backend == 'lmdb':
            with open_lmdb(self.roots[key]).begin(write=False) as txn:
                buf = txn.get(f'{clip}/{index:08d}'.encode('ascii'))
            where = f'{self.roots[key]} key {clip}/{index:08d}'
        else:
            if self.client is None:
                self.client = FileClient('disk')
            path = self.files[key][clip][index]
            buf = self.client.get(str(path))
            where = str(path)
        if buf is None:
            raise DatasetError(f'{where}: frame not found')
        return buf, where

    def shape(self, key, clip, index):
        """(h, w, c) of a frame, from its header where the format has one."""
        buf, where = self.read(key, clip, index)
        try:
            return frame_shape(buf)
        except ValueError as err:
            raise DatasetError(f'{where}: {err}') from None

    def get(self, key, clip, index, crop=None):
        """Frame ``index`` of ``clip`` as (h, w, 3) uint8 BGR, cropped to (top, left, h, w) if given."""
        buf, where = self.read(key, clip, index)
        try:
            return decode_frame(buf, crop)
        except ValueError as err:
            raise DatasetError(f'{where}: {err}') from None

    def __getstate__(self):
        state = dict(self.__dict__)
        state['client'] = None
        return state


def _to_tensor(frames):
    """list of (h, w, 3) uint8 BGR -> (t, 3, h, w) float RGB in [0, 1]."""
    return torch.stack(img2tensor([f.astype(np.float32) / 255. for f in frames], bgr2rgb=True, float32=True))


def _pair_clips(reader, keys, name):
    """{clip: nframes} common to every root; clips are paired BY NAME and must agree."""
    found = {key: reader.clips(key) for key in keys}
    ref_key, ref = keys[0], found[keys[0]]
    for key in keys[1:]:
        other = found[key]
        only_ref, only_other = sorted(set(ref) - set(other)), sorted(set(other) - set(ref))
        if only_ref or only_other:
            raise DatasetError(f'{name}: GT and LQ clips differ: only in {ref_key}: {only_ref or "none"}; '
                               f'only in {key}: {only_other or "none"}')
        for clip, n in ref.items():
            if other[clip] != n:
                raise DatasetError(f'{name}: clip {clip} has {n} frames in {ref_key} but {other[clip]} in {key}')
    return ref


def _open_clips(opt, name):
    """The frame reader of a dataset's roots and its {clip: nframes}, GT and LQ paired by name,
    restricted to the clips of ``meta_info_file`` when one is given."""
    roots = {key: _require(opt, opt_key, name) for key, opt_key in ROOTS[:2]}
    if opt.get('dataroot_lq_sharp'):
        roots['lq_sharp'] = opt['dataroot_lq_sharp']
    reader = _FrameReader(opt, roots, name)
    clips = _pair_clips(reader, list(roots), name)
    if opt.get('meta_info_file'):
        listed = {clip: n for clip, (n, _) in read_clips(opt['meta_info_file']).items()}
        for clip, n in listed.items():
            if clips.get(clip, 0) < n:
                raise DatasetError(f"{opt['meta_info_file']}: clip {clip} with {n} frames is not in {roots['gt']} "
                                   f'(found {clips.get(clip, 0)} frames)')
        clips = listed
    return reader, clips


@DATASET_REGISTRY.register()
class VSRDBRecurrentDataset(data.Dataset):
    """Training clips of ``num_frame`` frames with random crop, flips, rotation, interval and reversal.

    Options (YAML ``datasets.train``):
        dataroot_gt, dataroot_lq (str): sharp HR and blurry LR (LMDB folders or frame folders).
        dataroot_lq_sharp (str, optional): sharp LR, returned as ``lq_sharp``.
        meta_info_file (str, optional): ``<clip> <nframes> (h,w,c)`` lines; default: what the roots hold.
        io_backend (dict): ``{type: lmdb}`` or ``{type: disk}``.
        num_frame (int): frames per sample. gt_size (int): HR crop size (LR crop = gt_size / scale).
        scale (int): set by BasicSR from the top-level ``scale``.
        interval_list (list[int]): frame intervals to draw from. Default [1].
        random_reverse (bool): reverse the clip with probability 0.5. use_hflip, use_rot (bool).
        center_gt (bool): return only the centre frame's ``gt`` (c, H, W), for sliding-window models
            such as EDVR (BasicSR's ``EDVRModel``).

    Every frame of every clip is one index (longer clips are drawn more often); as in BasicSR's
    REDS dataset, the window starts at that frame, or at a random frame where it would overrun the clip.
    Returns ``lq``, ``gt``, (``lq_sharp``) and ``key`` (``clip/start``).
    """
    # the YAML keys it reads (the option checker takes them from here)
    OPTIONS = ('dataroot_gt', 'dataroot_lq', 'dataroot_lq_sharp', 'meta_info_file', 'num_frame', 'gt_size',
               'interval_list', 'random_reverse', 'use_hflip', 'use_rot', 'center_gt')


    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        name = f"dataset {opt.get('name', type(self).__name__)}"
        self.scale = int(_require(opt, 'scale', name))
        self.num_frame = int(_require(opt, 'num_frame', name))
        self.gt_size = int(_require(opt, 'gt_size', name))
        if self.gt_size % self.scale:
            raise DatasetError(f'{name}: gt_size {self.gt_size} is not a multiple of scale {self.scale}')
        self.interval_list = list(opt.get('interval_list') or [1])
        self.reader, clips = _open_clips(opt, name)
        need = (self.num_frame - 1) * min(self.interval_list) + 1
        short = [c for c, n in clips.items() if n < need]
        if short:
            raise DatasetError(f'{name}: clip {short[0]} has {clips[short[0]]} frames; num_frame {self.num_frame} '
                               f'needs {need}')
        self.clips = clips
        self.keys = [(clip, i) for clip, n in clips.items() for i in range(n)]
        # BasicSR's logger by name, not get_root_logger(): that would initialise it (without the run's
        # log file) when the entry points build a dataset to check it before the run
        logging.getLogger('basicsr').info(f'{name}: {len(clips)} clips, {len(self.keys)} frames')

    def __len__(self):
        return len(self.keys)

    def __getitem__(self, index):
        clip, frame = self.keys[index]
        n = self.clips[clip]
        start = frame
        intervals = [i for i in self.interval_list if (self.num_frame - 1) * i + 1 <= n]
        interval = random.choice(intervals)
        last_start = n - (self.num_frame - 1) * interval - 1
        if start > last_start:
            start = random.randint(0, last_start)
        indices = list(range(start, start + self.num_frame * interval, interval))
        if self.opt.get('random_reverse') and random.random() < 0.5:
            indices.reverse()

        h, w = self.reader.shape('lq', clip, indices[0])[:2]  # the LR size decides the crop window
        size = self.gt_size // self.scale
        if h < size or w < size:
            raise DatasetError(f'clip {clip}: LR frames are {h}x{w}, smaller than the crop {size}x{size} '
                               f'(gt_size {self.gt_size} / scale {self.scale})')
        top, left = random.randint(0, h - size), random.randint(0, w - size)
        lr_crop = (top, left, size, size)
        hr_crop = (top * self.scale, left * self.scale, self.gt_size, self.gt_size)
        groups = {key: [self.reader.get(key, clip, i, hr_crop if key == 'gt' else lr_crop) for i in indices]
                  for key in self.reader.roots}
        for key, frames in groups.items():
            want = self.gt_size if key == 'gt' else size
            if frames[0].shape[:2] != (want, want):
                raise DatasetError(f'clip {clip}: {key} frame {indices[0]:08d} does not hold the {want}x{want} '
                                   f'crop: is HR {self.scale} x LR?')
        # BasicSR's augment applies one random flip/rotation to the whole list
        keys = list(groups)
        flat = augment([f for k in keys for f in groups[k]], self.opt.get('use_hflip', False),
                       self.opt.get('use_rot', False))
        out = {'key': f'{clip}/{frame:08d}'}  # the index's frame, as BasicSR's REDS dataset does
        for j, key in enumerate(keys):
            out[key] = _to_tensor(flat[j * self.num_frame:(j + 1) * self.num_frame])
        if self.opt.get('center_gt'):
            out['gt'] = out['gt'][self.num_frame // 2]
        return out


@DATASET_REGISTRY.register()
class VSRDBTestDataset(data.Dataset):
    """Whole test clips, GT and LQ paired by clip name, from LMDB or frame folders.

    Options (YAML ``datasets.val`` / ``datasets.test_*``):
        dataroot_gt, dataroot_lq, dataroot_lq_sharp (optional), io_backend: as for training.
        meta_info_file (str, optional): restricts to the listed clips.
        max_frames (int, optional): use only the first frames of each clip (quicker validation).

    Each index is one clip: ``lq`` (t, c, h, w), ``gt`` (t, c, H, W), (``lq_sharp``), ``folder`` (the
    clip name), ``lq_path`` (the clip name). ``data_info['folder']`` lists each clip once per frame,
    as BasicSR's video validation expects.
    """
    OPTIONS = ('dataroot_gt', 'dataroot_lq', 'dataroot_lq_sharp', 'meta_info_file', 'max_frames')


    def __init__(self, opt):
        super().__init__()
        self.opt = opt
        name = f"dataset {opt.get('name', type(self).__name__)}"
        self.reader, clips = _open_clips(opt, name)
        if opt.get('max_frames'):
            clips = {c: min(n, int(opt['max_frames'])) for c, n in clips.items()}
        self.clips = clips
        self.folders = list(clips)
        self.data_info = {'folder': [c for c, n in clips.items() for _ in range(n)]}

    def __len__(self):
        return len(self.folders)

    def __getitem__(self, index):
        clip = self.folders[index]
        out = {key: _to_tensor([self.reader.get(key, clip, i) for i in range(self.clips[clip])])
               for key in self.reader.roots}
        out.update(folder=clip, lq_path=clip)
        return out
