"""Reading dataset folders (REDS, DVD, GoPro) into a packing plan, with one clear error per bad input.

A plan is ``{split: {kind: {clip: [Frame, ...]}}}``; kinds are ``sharp`` and ``blur`` (HR) and
``sharp_bicubic`` and ``blur_bicubic`` (LR). Frames are natural-sorted (``im2`` before ``im10``),
must be numbered without gaps, and are keyed ``<clip>/<position:08d>`` in the LMDB.
"""
from dataclasses import dataclass
from pathlib import Path

from hoffr_arch.data.frame_io import DatasetError, list_clips, list_frames, natural_key
from hoffr_arch.data.meta_info import EXPOSURES, read_exposures

HR_KINDS = ('sharp', 'blur')
LR_KINDS = ('sharp_bicubic', 'blur_bicubic')
LR_OF = {'sharp_bicubic': 'sharp', 'blur_bicubic': 'blur'}  # LR kind -> the HR kind it is made from
REDS4 = ('000', '011', '015', '020')
DVD_TEST = ('720p_240fps_2', 'IMG_0003', 'IMG_0021', 'IMG_0030', 'IMG_0031', 'IMG_0032', 'IMG_0033',
            'IMG_0037', 'IMG_0039', 'IMG_0049')


@dataclass(frozen=True)
class Frame:
    """One frame to pack: read ``path``; if ``downscale``, MATLAB-bicubic it by 1/downscale."""
    key: str
    path: Path
    downscale: int = 0


def scan_kind(folder, rename=None):
    """{clip: [frame paths]} of one kind folder; ``rename`` maps a clip folder name to its key name."""
    return {(rename or str)(c.name): list_frames(c) for c in list_clips(folder)}


def check_same_clips(found, split):
    """All kinds of a split must hold the same clips with the same frames (by position)."""
    kinds = list(found)
    ref_kind = kinds[0]
    ref = found[ref_kind]
    for kind in kinds[1:]:
        other = found[kind]
        for clip in sorted(set(ref) ^ set(other), key=natural_key):
            has, lacks = (ref_kind, kind) if clip in ref else (kind, ref_kind)
            raise DatasetError(f'{split}: clip {clip} is in {has} but not in {lacks}')
        for clip in ref:
            a, b = ref[clip], other[clip]
            if len(a) != len(b):
                longer, kind_l, kind_s = (a, ref_kind, kind) if len(a) > len(b) else (b, kind, ref_kind)
                raise DatasetError(f'{split}: clip {clip} has {len(longer)} frames in {kind_l} but '
                                   f'{min(len(a), len(b))} in {kind_s}: extra frame {longer[-1]}')


def to_plan(found, generate=(), scale=4):
    """{kind: {clip: [paths]}} -> {kind: {clip: [Frame]}}; ``generate``: LR kinds made from HR by 1/scale."""
    plan = {kind: {clip: [Frame(f'{clip}/{i:08d}', p) for i, p in enumerate(paths)]
                   for clip, paths in clips.items()}
            for kind, clips in found.items()}
    for lr_kind in generate:
        plan[lr_kind] = {clip: [Frame(f.key, f.path, downscale=scale) for f in frames]
                         for clip, frames in plan[LR_OF[lr_kind]].items()}
    return plan


REDS_FOLDERS = {'sharp': '{p}_sharp', 'blur': '{p}_blur', 'sharp_bicubic': '{p}_sharp_bicubic/X4',
                'blur_bicubic': '{p}_blur_bicubic/X4'}


def reds_plan(root, merge_val=False, reds4_test=False, generate_bicubic=False, scale=4):
    """Plan for a REDS-layout ROOT (``train_*`` and/or ``val_*`` folders, any clip names).

    merge_val: val clips join train renumbered +240 (000 -> 240), the usual protocol.
    reds4_test: clips 000, 011, 015, 020 of train go to a 'test' split.
    generate_bicubic: make missing ``*_bicubic/X4`` kinds from the HR kinds (MATLAB bicubic).
    """
    root = Path(root)
    splits = {}
    for prefix in ('train', 'val'):
        present = {k: root / f.format(p=prefix) for k, f in REDS_FOLDERS.items()}
        present = {k: folder for k, folder in present.items() if folder.is_dir()}
        if not present:
            continue
        if scale != 4 and any(k in present for k in LR_KINDS):
            raise DatasetError(f'{root}: REDS ships X4 bicubic folders; --scale {scale} needs --generate-bicubic '
                               'without them')
        rename = (lambda name: f'{int(name) + 240:03d}') if prefix == 'val' and merge_val else None
        if rename:
            for clip in list_clips(present[next(iter(present))]):
                if not clip.name.isdigit():
                    raise DatasetError(f'{clip}: --merge-val renumbers val clips, which needs numeric clip names')
        found = {kind: scan_kind(folder, rename) for kind, folder in present.items()}
        check_same_clips(found, f'{root}/{prefix}_*')
        generate = [k for k in LR_KINDS if k not in found and LR_OF[k] in found] if generate_bicubic else []
        plan = to_plan(found, generate, scale)
        target = 'train' if (prefix == 'val' and merge_val) else prefix
        for kind, clips in plan.items():
            splits.setdefault(target, {}).setdefault(kind, {}).update(clips)
    if not splits:
        raise DatasetError(f'{root}: no REDS folders (train_sharp, train_blur, train_sharp_bicubic/X4, '
                           'train_blur_bicubic/X4, val_*)')
    if reds4_test:
        train = splits.get('train', {})
        missing = [c for c in REDS4 if not all(c in clips for clips in train.values())]
        if missing:
            raise DatasetError(f'{root}: --reds4-test needs clips {", ".join(REDS4)} in train; '
                               f'missing {", ".join(missing)}')
        splits['test'] = {kind: {c: clips.pop(c) for c in REDS4} for kind, clips in train.items()}
    return splits


def check_pair(clip, sharp, blur, subs, layout):
    """The sharp and blurry frames of one clip (lists of paths in folders ``subs`` = (sharp, blur)
    names) must have the same names and extensions; else one error naming the frame."""
    names = ([p.name for p in sharp], [p.name for p in blur])
    stems = ([p.stem for p in sharp], [p.stem for p in blur])
    if names[0] != names[1] and stems[0] == stems[1]:  # same frames, other formats: say that
        i = next(i for i, (a, b) in enumerate(zip(*names)) if a != b)
        raise DatasetError(f'{clip}: {subs[0]}/{names[0][i]} and {subs[1]}/{names[1][i]} differ in format ({layout} '
                           f'clip {clip.name}); {subs[0]} and {subs[1]} frames must have the same names and extensions')
    if names[0] != names[1]:
        extra = sorted(set(names[0]) ^ set(names[1]), key=natural_key)[0]
        where = subs[0] if extra in names[0] else subs[1]
        raise DatasetError(f'{clip}: frame {extra} is in {where}/ only ({layout} clip {clip.name}: {subs[0]}/ has '
                           f'{len(sharp)} frames, {subs[1]}/ {len(blur)})')


def dvd_plan(root, scale=4, test_clips=DVD_TEST):
    """Plan for DeepVideoDeblurring's ``quantitative_datasets/<clip>/{input,GT}/``.

    ``input`` is the blurry HR clip, ``GT`` the sharp one; both LR kinds are made by MATLAB bicubic.
    The official 10 test clips form the 'test' split, the rest 'train'.
    """
    root = Path(root)
    base = root / 'quantitative_datasets' if (root / 'quantitative_datasets').is_dir() else root
    found = {'sharp': {}, 'blur': {}}
    for clip in list_clips(base):
        for kind, sub in (('sharp', 'GT'), ('blur', 'input')):
            folder = clip / sub
            if not folder.is_dir():
                raise DatasetError(f'{clip}: clip {clip.name} has no {sub}/ folder')
            found[kind][clip.name] = list_frames(folder)
        stray = [p for p in clip.iterdir() if p.name not in ('GT', 'input')]
        if stray:
            raise DatasetError(f'{stray[0]}: stray entry in DVD clip {clip.name} (expected GT/ and input/)')
        check_pair(clip, found['sharp'][clip.name], found['blur'][clip.name], ('GT', 'input'), 'DVD')
    plan = to_plan(found, LR_KINDS, scale)
    test = [c for c in test_clips if c in found['sharp']]
    splits = {'train': plan}
    if test:
        splits['test'] = {kind: {c: clips.pop(c) for c in test} for kind, clips in plan.items()}
    if not plan['sharp']:
        del splits['train']
    return splits


GOPRO_SPLITS = ('train', 'test')
GOPRO_FOLDERS = ('sharp', 'blur', 'blur_gamma')


def gopro_plan(root, blur='blur', scale=4):
    """Plan for GoPro (``GOPRO_Large``): ``train|test/<clip>/{blur,blur_gamma,sharp}/*.png``.

    ``sharp`` is the GT, ``blur`` (averaged frames) or ``blur_gamma`` (averaged in gamma-corrected
    space) the blurry HR kind; both LR kinds (t, h/scale, w/scale) are made by MATLAB bicubic. The
    ``train`` and ``test`` folders present become the splits of those names.
    """
    if blur not in GOPRO_FOLDERS[1:]:
        raise DatasetError(f'unknown GoPro blur folder {blur!r}; choose blur or blur_gamma')
    root = Path(root)
    splits = {}
    for split in GOPRO_SPLITS:
        if not (root / split).is_dir():
            continue
        found = {'sharp': {}, 'blur': {}}
        for clip in list_clips(root / split):
            stray = [p for p in clip.iterdir() if p.name not in GOPRO_FOLDERS]
            if stray:
                raise DatasetError(f'{stray[0]}: stray entry in GoPro clip {clip.name} (expected '
                                   f'{", ".join(GOPRO_FOLDERS)})')
            for kind, sub in (('sharp', 'sharp'), ('blur', blur)):
                if not (clip / sub).is_dir():
                    has = ', '.join(sorted(p.name for p in clip.iterdir())) or 'nothing'
                    raise DatasetError(f'{clip / sub}: GoPro clip {clip.name} has no {sub}/ frames (it has {has})')
                found[kind][clip.name] = list_frames(clip / sub)
            check_pair(clip, found['sharp'][clip.name], found['blur'][clip.name], ('sharp', blur), 'GoPro')
        splits[split] = to_plan(found, LR_KINDS, scale)
    if not splits:
        raise DatasetError(f'{root}: no train/ or test/ folder (GoPro layout: GOPRO_Large/train|test/<clip>/'
                           '{blur,blur_gamma,sharp}/)')
    return splits


def reds_exposures(root, splits, merge_val=False):
    """The exposures that ``synth`` recorded in ``ROOT/exposures.txt``, for the clips of a
    ``reds_plan`` (renamed and moved as it did): {split: {'<clip>/<frame:08d>': exposure}}, or None
    without that file. Every frame of every planned clip must be listed."""
    path = Path(root) / EXPOSURES
    if not path.is_file():
        return None
    recorded = read_exposures(path)
    found = {}
    for key, value in recorded.items():
        prefix, _, rest = key.partition('/')
        if prefix == 'val' and merge_val and rest.split('/')[0].isdigit():
            clip, _, frame = rest.partition('/')
            prefix, rest = 'train', f'{int(clip) + 240:03d}/{frame}'
        found[prefix, rest] = value
    exposures = {}
    for split, kinds in splits.items():
        source = 'train' if split == 'test' else split  # --reds4-test takes its clips from train
        exposures[split] = {}
        for frame in (f for frames in next(iter(kinds.values())).values() for f in frames):
            if (source, frame.key) not in found:
                raise DatasetError(f'{path}: no exposure for {split} frame {frame.key} (it lists every frame '
                                   'synth wrote; the clips changed since?)')
            exposures[split][frame.key] = found[source, frame.key]
    return exposures
