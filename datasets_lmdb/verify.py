"""``verify OUT``: decode every frame of every LMDB and check the packed dataset is whole."""
from pathlib import Path

import lmdb
from tqdm import tqdm

from hoffr_arch.data.frame_io import DatasetError, decode_frame, stored_format
from hoffr_arch.data.lmdb_integrity import checksum, read_checksums, truncation
from hoffr_arch.data.meta_info import EXPOSURES, read_clips, read_exposures, read_frames_meta

from .layout import LR_OF


def verify(out, scale=4):
    """Check every split under ``out``; returns (problems, {split: {kind: frames}}, {split: {kind: formats}})
    where formats counts the stored formats (``stored_format``: bmp, png or jpg)."""
    out = Path(out)
    problems, counts, formats = [], {}, {}
    splits = sorted(p for p in out.iterdir() if p.is_dir()) if out.is_dir() else []
    if not splits:
        return [f'{out}: no packed splits found'], counts, formats
    for split_dir in splits:
        split = split_dir.name
        for partial in split_dir.glob('*.partial'):
            problems.append(f'{partial}: left by an interrupted conversion (rerun with --resume)')
        if not (split_dir / 'meta_info.txt').exists():
            problems.append(f'{split_dir}/meta_info.txt: missing')
            continue
        clips = read_clips(split_dir / 'meta_info.txt')
        expected_keys = {f'{clip}/{i:08d}' for clip, (n, _) in clips.items() for i in range(n)}
        shapes = {}
        counts[split], formats[split] = {}, {}
        for lmdb_dir in sorted(split_dir.glob('*.lmdb')):
            kind = lmdb_dir.name[:-len('.lmdb')]
            seen = verify_lmdb(lmdb_dir, split, kind, problems, formats[split], shapes)
            if seen is None:
                continue
            counts[split][kind] = len(seen)
            for what, keys in (('frames missing', expected_keys - seen),
                               ('frames not in meta_info', seen - expected_keys)):
                if keys:
                    problems.append(f'{lmdb_dir}: {len(keys)} {what}, e.g. {sorted(keys)[0]}')
        verify_exposures(split_dir / EXPOSURES, expected_keys, problems)
        for lr_kind, hr_kind in LR_OF.items():
            for clip, (h, w, _) in shapes.get(lr_kind, {}).items():
                hr = shapes.get(hr_kind, {}).get(clip)
                if hr and hr[:2] != (scale * h, scale * w):
                    problems.append(f'{split} clip {clip}: {hr_kind} is {hr[0]}x{hr[1]}, {lr_kind} is {h}x{w}: '
                                    f'not {scale} x')
    return problems, counts, formats


def verify_lmdb(lmdb_dir, split, kind, problems, formats, shapes):
    """Check one ``<kind>.lmdb``: whole file (``truncation``), every value decoded, its shape against
    the LMDB's meta_info and its CRC against ``checksums.txt``. Appends to ``problems``, counts
    ``formats`` and records each clip's first shape in ``shapes[kind]``; returns the keys seen, or
    None when the LMDB cannot be read at all."""
    problem = truncation(lmdb_dir)
    if problem:
        problems.append(problem)
        return None
    try:
        meta, sums = read_frames_meta(lmdb_dir), read_checksums(lmdb_dir)
    except DatasetError as err:
        problems.append(str(err))
        return None
    if sums is None:
        print(f'{lmdb_dir}: no checksums.txt (packed by an older version): values are decoded, not checksummed')
    env = lmdb.open(str(lmdb_dir), readonly=True, lock=False, readahead=False)
    seen = set()
    with env.begin() as txn:
        for key, value in tqdm(txn.cursor(), total=txn.stat()['entries'], unit='frame', desc=f'{split}/{kind}'):
            key = bytes(key).decode('ascii', 'replace')
            seen.add(key)
            if sums is not None and sums.get(key) != checksum(value):
                problems.append(f'{lmdb_dir}: frame {key}: its bytes differ from those packed (checksum mismatch)')
                continue
            try:
                fmt, shape = stored_format(value), decode_frame(value).shape
            except Exception as err:  # noqa: BLE001 (a corrupt header fails in many ways)
                problems.append(f'{lmdb_dir}: frame {key}: not a decodable image ({type(err).__name__}: {err})')
                continue
            formats.setdefault(kind, {})[fmt] = formats.get(kind, {}).get(fmt, 0) + 1
            if key in meta and meta[key] != shape:
                problems.append(f'{lmdb_dir}: frame {key} is {shape}, its meta_info.txt says {meta[key]}')
            shapes.setdefault(kind, {}).setdefault(key.split('/')[0], shape)
    env.close()
    if set(meta) != seen:
        problems.append(f'{lmdb_dir}/meta_info.txt lists {len(meta)} keys, the LMDB holds {len(seen)}')
    return seen


def verify_exposures(path, expected_keys, problems):
    """A split's ``exposures.txt``, when there is one, must be readable and list exactly the frames
    of its meta_info.txt (``expected_keys``, '<clip>/<frame:08d>'); appends to ``problems``."""
    if not path.is_file():
        return
    try:
        listed = set(read_exposures(path))
    except DatasetError as err:
        problems.append(str(err))
        return
    for what, keys in (('frames without an exposure', expected_keys - listed),
                       ('exposures of frames not in meta_info', listed - expected_keys)):
        if keys:
            problems.append(f'{path}: {len(keys)} {what}, e.g. {sorted(keys)[0]}')
