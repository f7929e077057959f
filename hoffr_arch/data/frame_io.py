"""How frames are stored in our LMDBs, and how the datasets read them back.

A stored value is one of:
- ``bmp`` (the default): an uncompressed 24-bit Windows bitmap, as ``cv2.imencode('.bmp')`` writes it,
  so BasicSR's ``imfrombytes`` and any image tool decode it; we read it as a memory view of its pixel
  rows, so a training crop copies only the crop's pixels (chosen over PPM because OpenCV writes BMP
  rows padded and bottom-up in a fixed 54-byte header we can index directly, while PPM headers are
  free text);
- ``png`` / ``jpg``: an encoded image, decoded by OpenCV (BasicSR's ``imfrombytes`` format).

``decode_frame`` tells them apart by the header, so a reader needs no per-key format table.

Also the folder scanning shared by the datasets and the converters: natural sort, clip and frame
listing with one clear error per bad input; and ``bicubic_downscale``, how every LR frame we store
or compare against is made from its HR frame.
"""
import re
import struct

import cv2
import numpy as np

from basicsr.utils.matlab_functions import imresize  # hoffr_arch/__init__ has applied compat

ENCODINGS = ('bmp', 'png', 'source')
_BMP = struct.Struct('<2sIHHIIiiHHI')  # file header + the start of BITMAPINFOHEADER
IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')


class DatasetError(ValueError):
    """Bad input data; the message names the clip, frame or file and what is wrong."""


def natural_key(name):
    """Sort key that orders digit runs by value: im2 < im10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r'(\d+)', name)]


def _ascii(path, what):
    """Refuse names that LMDB keys (ASCII) and meta_info.txt (space-separated) cannot round-trip."""
    if not path.name.isascii():
        raise DatasetError(f'{path}: non-ASCII {what} name (LMDB keys must be ASCII); rename it')
    if any(c.isspace() for c in path.name):
        raise DatasetError(f'{path}: {what} name holds whitespace (meta_info.txt is space-separated); rename it')


def list_clips(folder):
    """Clip folders under ``folder``, natural-sorted; a stray file there is an error."""
    if not folder.is_dir():
        raise DatasetError(f'{folder}: folder not found')
    clips = []
    for entry in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        _ascii(entry, 'clip folder' if entry.is_dir() else 'file')
        if not entry.is_dir():
            raise DatasetError(f'{entry}: stray file among the clip folders of {folder}')
        clips.append(entry)
    if not clips:
        raise DatasetError(f'{folder}: no clip folders')
    return clips


def list_frames(clip_dir):
    """Image files of one clip, natural-sorted and checked: no stray files, no gaps, not empty."""
    frames = []
    for entry in clip_dir.iterdir():
        _ascii(entry, 'frame')
        if entry.is_dir() or entry.suffix.lower() not in IMAGE_EXTS:
            raise DatasetError(f'{entry}: stray {"folder" if entry.is_dir() else "non-image file"} in clip '
                               f'{clip_dir.name} (frames must be {"/".join(IMAGE_EXTS)})')
        frames.append(entry)
    if not frames:
        raise DatasetError(f'{clip_dir}: empty clip (no frames)')
    frames.sort(key=lambda p: natural_key(p.name))
    numbers = []
    for f in frames:
        digits = re.findall(r'\d+', f.stem)
        if not digits:
            raise DatasetError(f'{f}: frame name has no frame number')
        numbers.append(int(digits[-1]))
    for prev, cur, path in zip(numbers, numbers[1:], frames[1:]):
        if cur == prev:
            raise DatasetError(f'{path}: two frames numbered {cur} in clip {clip_dir.name}')
        if cur != prev + 1:
            raise DatasetError(f'clip {clip_dir.name} ({clip_dir}): missing frame {prev + 1} '
                               f'(frames jump from {prev} to {cur})')
    return frames


def encode_bmp(img):
    """(h, w, 3) uint8 BGR -> uncompressed 24-bit BMP bytes (OpenCV's writer)."""
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f'encode_bmp wants an (h, w, 3) uint8 image, got {img.dtype} {img.shape}')
    ok, buf = cv2.imencode('.bmp', img)
    if not ok:
        raise ValueError('BMP encoding failed')
    return buf.tobytes()


def _bmp_pixels(buf):
    """(h, w, 3) uint8 view of a 24-bit uncompressed BMP's pixels, top row first; None for any other
    BMP (left to OpenCV)."""
    if len(buf) < _BMP.size:
        return None
    magic, _, _, _, offset, _, w, h, _, bpp, compression = _BMP.unpack_from(buf)
    if magic != b'BM' or bpp != 24 or compression != 0 or w <= 0 or h == 0:
        return None
    stride = (w * 3 + 3) // 4 * 4
    if offset + stride * abs(h) > len(buf):
        raise ValueError(f'BMP holds {len(buf) - offset} pixel bytes, its header says {abs(h)}x{w}x3')
    rows = np.frombuffer(buf, np.uint8, count=stride * abs(h), offset=offset).reshape(abs(h), stride)
    img = rows[:, :w * 3].reshape(abs(h), w, 3)
    return img[::-1] if h > 0 else img  # positive height: rows are stored bottom-up


def encode_png(img, level):
    """(h, w, c) uint8 -> PNG bytes at zlib ``level`` (0-9)."""
    ok, buf = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, int(level)])
    if not ok:
        raise ValueError('PNG encoding failed')
    return buf.tobytes()


def stored_format(buf):
    """'bmp', 'png' or 'jpg' (anything else OpenCV decodes)."""
    head = bytes(buf[:8])
    return 'bmp' if head[:2] == b'BM' else 'png' if head == b'\x89PNG\r\n\x1a\n' else 'jpg'


def frame_shape(buf):
    """(h, w, c) of a stored frame as ``decode_frame`` returns it (always 3 channels), reading only
    the header where the format has one."""
    if bytes(buf[:2]) == b'BM' and len(buf) >= _BMP.size:
        _, _, _, _, _, _, w, h, _, _, _ = _BMP.unpack_from(buf)
        return (abs(h), w, 3)
    if bytes(buf[:8]) == b'\x89PNG\r\n\x1a\n':
        w, h = struct.unpack('>II', bytes(buf[16:24]))
        return (h, w, 3)  # grey or alpha PNGs decode to 3 channels (IMREAD_COLOR)
    return decode_frame(buf).shape


def decode_frame(buf, crop=None):
    """Stored bytes -> (h, w, 3) uint8 BGR image (a copy), optionally cropped.

    Args:
        buf (bytes): value from the LMDB or the bytes of an image file.
        crop (tuple | None): (top, left, height, width) taken before copying for ``bmp`` frames.

    Raises:
        ValueError: the bytes are not a decodable image.
    """
    img = _bmp_pixels(buf) if bytes(buf[:2]) == b'BM' else None
    if img is None:
        img = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError('not a decodable image')
    if crop is not None:
        top, left, ch, cw = crop
        img = img[top:top + ch, left:left + cw]
    return np.array(img)  # a writable copy: of the crop only, for bmp frames


def bicubic_downscale(img, factor):
    """(h, w, c) uint8 -> (h/factor, w/factor, c) uint8 with MATLAB's bicubic (BasicSR's ``imresize``),
    as REDS's and BasicSR's LR frames are made."""
    out = imresize(img.astype(np.float32) / 255., 1 / factor)
    return np.clip(np.rint(out * 255.), 0, 255).astype(np.uint8)
