"""The two ``meta_info.txt`` formats, read and written in one place.

- The dataset's, ``OUT/<split>/meta_info.txt``: one line per clip, ``<clip> <nframes> (h,w,c)``
  (BasicSR's REDS/Vimeo format; h, w, c of the sharp HR frames).
- BasicSR's LMDB one, ``<kind>.lmdb/meta_info.txt``: one line per frame,
  ``<clip>/<frame:08d>.<ext> (h,w,c) <compression>``.
"""
from pathlib import Path

from .frame_io import DatasetError


def clip_line(clip, nframes, shape):
    h, w, c = shape
    return f'{clip} {nframes} ({h},{w},{c})\n'


def read_clips(path):
    """Dataset meta_info -> {clip: (nframes, (h, w, c) or None)}; a malformed line names its number."""
    clips = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            raise DatasetError(f'{path}:{number}: expected "<clip> <nframes> (h,w,c)", got {line!r}')
        shape = None
        if len(parts) > 2:
            try:
                shape = tuple(int(v) for v in parts[2].strip('()').split(','))
            except ValueError:
                raise DatasetError(f'{path}:{number}: bad shape {parts[2]!r} (expected (h,w,c))') from None
        clips[parts[0]] = (int(parts[1]), shape)
    if not clips:
        raise DatasetError(f'{path}: no clips listed')
    return clips


def frame_line(key, ext, shape, compression=0):
    h, w, c = shape
    return f'{key}.{ext} ({h},{w},{c}) {compression}\n'


def read_frames_meta(lmdb_path):
    """BasicSR's meta_info inside an LMDB folder -> {key ('<clip>/<frame>'): (h, w, c)}."""
    meta = Path(lmdb_path) / 'meta_info.txt'
    if not meta.exists():
        raise DatasetError(f'{meta}: missing (is {lmdb_path} an LMDB written by datasets_lmdb?)')
    frames = {}
    for line in meta.read_text().splitlines():
        if line.strip():
            name, shape = line.split()[:2]
            frames[name.rsplit('.', 1)[0]] = tuple(int(v) for v in shape.strip('()').split(','))
    return frames


def clips_of_lmdb(lmdb_path):
    """{clip: nframes} from BasicSR's meta_info inside an LMDB folder."""
    clips = {}
    for key in read_frames_meta(lmdb_path):
        clip = key.split('/')[0]
        clips[clip] = clips.get(clip, 0) + 1
    return clips
