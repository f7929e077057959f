"""The two ``meta_info.txt`` formats, read and written in one place.

- The dataset's, ``OUT/<split>/meta_info.txt``: one line per clip, ``<clip> <nframes> (h,w,c)``
  (BasicSR's REDS/Vimeo format; h, w, c of the sharp HR frames).
- BasicSR's LMDB one, ``<kind>.lmdb/meta_info.txt``: one line per frame,
  ``<clip>/<frame:08d>.<ext> (h,w,c) <compression>``.
"""
from pathlib import Path

from .frame_io import DatasetError


def numbered_lines(path):
    """(line number, line, its whitespace-split fields) of each non-blank line of a text side file:
    what every reader here (and ``lmdb_integrity.read_checksums``) parses."""
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            yield number, line, line.split()


def clip_line(clip, nframes, shape):
    h, w, c = shape
    return f'{clip} {nframes} ({h},{w},{c})\n'


def read_clips(path):
    """Dataset meta_info -> {clip: (nframes, (h, w, c) or None)}; a malformed line names its number."""
    clips = {}
    for number, line, parts in numbered_lines(path):
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


# The exposures side file, ``exposures.txt``: one line per frame, ``<key> <exposure>``, the exposure
# in frame intervals (``datasets_lmdb synth --exposure``), written with ``repr`` so it reads back as
# the very float that was used. In a synth (REDS-layout) root the key is ``<train|val>/<clip>/<frame:08d>``;
# in a packed split (beside meta_info.txt, which BasicSR parses and so cannot carry it) ``<clip>/<frame:08d>``.
EXPOSURES = 'exposures.txt'
EXPOSURE_BINS = ('short', 'medium', 'long')  # < 0.75, 0.75 to 1.5, > 1.5 frame intervals


def exposure_line(key, exposure):
    return f'{key} {float(exposure)!r}\n'


def read_exposures(path):
    """An exposures side file -> {key: exposure (float)}; a malformed line names its number."""
    exposures = {}
    for number, line, parts in numbered_lines(path):
        try:
            if len(parts) != 2:
                raise ValueError
            value = float(parts[1])
            if not value >= 0 or value == float('inf'):
                raise ValueError
        except ValueError:
            raise DatasetError(f'{path}:{number}: expected "<clip>/<frame> <exposure>" with a finite exposure >= 0, '
                               f'got {line!r}') from None
        exposures[parts[0]] = value
    return exposures


def exposure_bin(exposure):
    """'short' (< 0.75 frame intervals), 'medium' (0.75 to 1.5) or 'long' (> 1.5)."""
    return 'short' if exposure < 0.75 else 'medium' if exposure <= 1.5 else 'long'
