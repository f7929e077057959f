"""Media in and out: video files through PyAV (FFmpeg's libraries) and frame folders through OpenCV.

The one place that reads and writes videos and frame folders: ``hoffr_arch.infer``, ``datasets_lmdb
synth`` and the benchmarks all use it.

``MediaReader(path)`` iterates over ``Frame`` s (``image``: (h, w) grey, (h, w, 3) BGR or (h, w, 4) BGRA
uint8, as the source holds them, or always BGR with ``mode='bgr'``; ``pts`` in ``time_base``). A video is
decoded with its timestamps; its audio and subtitle packets are queued, untouched, for a
``MediaWriter`` to copy. Fewer frames than the container declares, or a decoder error, raises
``TruncatedError`` naming the file and the frame reached, after the frames before it were yielded.

``MediaWriter(out, source=reader)`` writes a video (H.264/libx264 by default, yuv420p, ``crf``,
``preset``; HEVC ``libx265`` and AV1 ``libsvtav1`` where the wheel has them) or a folder of PNG frames
(``%08d.png``), first to ``<name>.partial<ext>``: ``close()`` renames it over the output, ``abort()``
finalises and keeps the partial file. Video outputs keep the source's frame timestamps (a variable
frame rate stays variable) and rotation metadata, and copy its audio and subtitle streams unchanged.

``check_output(out, inputs, overwrite)`` is the safety rule for every output: never the input, never
inside an input folder, and ``overwrite`` replaces only what this tool writes (a video file, or a
folder holding nothing but ``%08d.png`` frames).
"""
import os
import re
import shutil
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from .frame_io import list_frames

VIDEO_EXTS = ('.mp4', '.mov', '.m4v', '.mkv', '.webm', '.avi', '.ts', '.mts', '.flv', '.wmv', '.mpg', '.mpeg')
# encoder by output extension when none is asked for (webm holds VP8/VP9/AV1 only)
DEFAULT_CODEC = {'.webm': 'libsvtav1'}
CODECS = ('libx264', 'libx265', 'libsvtav1')
FRAME_NAME = re.compile(r'^\d{8}\.png$')


class MediaError(ValueError):
    """A video or frame folder that cannot be read or written; the message names the file."""


class TruncatedError(MediaError):
    """Fewer frames decoded than the container declares, or a decoder error mid-stream."""

    def __init__(self, message, reached):
        super().__init__(message)
        self.reached = reached


@dataclass
class Frame:
    """One decoded frame: ``image`` uint8 (h, w), (h, w, 3) BGR or (h, w, 4) BGRA; ``pts`` in the
    reader's ``time_base`` (the frame index for a folder)."""
    image: np.ndarray
    pts: int


def is_video_file(path):
    return Path(path).suffix.lower() in VIDEO_EXTS


def _to_uint8(img):
    return img if img.dtype == np.uint8 else np.round(img.astype(np.float64) / 257).astype(np.uint8)


def _channels(img):
    return 1 if img.ndim == 2 else img.shape[2]


def as_bgr(img):
    """(h, w) / (h, w, 3) / (h, w, 4) uint8 -> (h, w, 3) BGR (alpha dropped, grey replicated)."""
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return img[:, :, :3] if img.shape[2] == 4 else img


class MediaReader:
    """Frames of a video file or a frame folder (natural-sorted).

    Args:
        path: video file or frame folder.
        start, step, max_frames: from frame ``start``, every ``step``-th, at most ``max_frames``.
        mode: 'native' keeps grey and alpha as they are; 'bgr' always gives (h, w, 3) BGR.

    Attributes (known before iterating): ``count`` (frames to expect, None if the container does not
    say), ``fps`` (Fraction or None for a folder), ``time_base``, ``size`` (w, h), ``channels`` (1, 3
    or 4), ``rotation`` (degrees counter-clockwise the player applies), ``copy_streams`` (audio and
    subtitle streams) and ``side_packets`` (their packets demuxed so far, for ``MediaWriter``).
    """

    def __init__(self, path, start=0, step=1, max_frames=None, mode='native'):
        self.path = Path(path)
        self.start, self.step, self.max_frames, self.mode = start, max(1, step), max_frames, mode
        self.side_packets, self.copy_streams = deque(), []
        self.rotation = 0
        self._container = None
        if self.path.is_dir():
            self._init_folder()
        elif self.path.is_file():
            self._init_video()
        else:
            raise MediaError(f'{self.path}: no such video file or frame folder')

    def _read_image(self, f):
        img = cv2.imread(str(f), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise MediaError(f'{f}: unreadable or corrupt image')
        return _to_uint8(img)

    def _init_folder(self):
        self.files = list_frames(self.path)[self.start::self.step]
        if self.max_frames:
            self.files = self.files[:self.max_frames]
        if not self.files:
            raise MediaError(f'{self.path}: no frames from frame {self.start}')
        first = self._read_image(self.files[0])
        self._first = first
        self.size, self.channels = (first.shape[1], first.shape[0]), _channels(first)
        self.count, self.fps, self.time_base = len(self.files), None, Fraction(1, 1)

    def _init_video(self):
        import av  # FFmpeg's libraries; imported here so that folder-only users never load them
        try:
            self._container = av.open(str(self.path))
        except av.error.FFmpegError as err:
            raise MediaError(f'{self.path}: FFmpeg cannot open it ({err.strerror or err}); '
                             'not a video, or truncated before its header') from None
        if not self._container.streams.video:
            self._container.close()
            raise MediaError(f'{self.path}: holds no video stream')
        stream = self._stream = self._container.streams.video[0]
        stream.thread_type = 'AUTO'
        cc = stream.codec_context
        self.size = (cc.width, cc.height)
        self.channels = 3
        if cc.format is not None and not cc.format.has_palette:
            comps = cc.format.components
            alpha = any(c.is_alpha for c in comps)
            colour = sum(not c.is_alpha for c in comps) > 1
            self.channels = 4 if alpha else 3 if colour else 1  # grey + alpha is read as BGRA
        self.fps = stream.average_rate or stream.guessed_rate
        self.time_base = stream.time_base
        self.declared = stream.frames or None
        if not self.declared and stream.duration and self.fps:
            self.declared = round(float(stream.duration * stream.time_base * self.fps))
        self.copy_streams = [s for s in self._container.streams if s.type in ('audio', 'subtitle')]
        count = self.declared
        if count is not None:
            count = max(0, -(-(count - self.start) // self.step))
            if self.max_frames:
                count = min(count, self.max_frames)
        self.count = count

    def _convert(self, img):
        return as_bgr(img) if self.mode == 'bgr' else img

    def __iter__(self):
        if self._container is None:
            yield from self._iter_folder()
        else:
            yield from self._iter_video()

    def _iter_folder(self):
        for i, f in enumerate(self.files):
            img = self._first if i == 0 else self._read_image(f)
            if (img.shape[1], img.shape[0]) != self.size or _channels(img) != self.channels:
                raise MediaError(f'{f}: {img.shape[1]}x{img.shape[0]} with {_channels(img)} channel(s), but '
                                 f'{self.files[0].name} is {self.size[0]}x{self.size[1]} with {self.channels}: '
                                 'all frames of a clip must match')
            yield Frame(self._convert(img), i)

    def _iter_video(self):
        import av
        fmt = {1: 'gray', 3: 'bgr24', 4: 'bgra'}[self.channels]
        index = taken = 0
        streams = [self._stream] + self.copy_streams
        try:
            for packet in self._container.demux(*streams):
                if packet.stream is not self._stream:
                    if packet.dts is not None:
                        self.side_packets.append(packet)
                    continue
                for frame in packet.decode():
                    if index == 0:
                        self.rotation = int(round(getattr(frame, 'rotation', 0) or 0))
                    if index >= self.start and (index - self.start) % self.step == 0:
                        yield Frame(self._convert(frame.to_ndarray(format=fmt)), frame.pts)
                        taken += 1
                        if self.max_frames and taken >= self.max_frames:
                            return
                    index += 1
        except av.error.FFmpegError as err:
            raise TruncatedError(f'{self.path}: decoding failed after frame {index} ({err.strerror or err}): '
                                 'the file is corrupt or truncated', index) from None
        if index == 0:
            raise MediaError(f'{self.path}: no frame could be decoded')
        if self.declared and index < self.declared:
            raise TruncatedError(f'{self.path}: only {index} of the {self.declared} frames its container declares '
                                 'could be decoded: the file is truncated or corrupt', index)

    def close(self):
        if self._container is not None:
            self._container.close()
            self._container = None


def read_frames(path, start=0, max_frames=None, resize=None, step=1):
    """All the frames (BGR uint8) of a video or frame folder, as a list: from frame ``start``, every
    ``step``-th (a higher step means more motion per frame), at most ``max_frames``, resized to
    ``resize`` = (w, h) if given (INTER_AREA). A truncated video raises ``TruncatedError``."""
    reader = MediaReader(path, start=start, step=step, max_frames=max_frames, mode='bgr')
    try:
        frames = [f.image for f in reader]
    finally:
        reader.close()
    if resize:
        frames = [cv2.resize(f, tuple(resize), interpolation=cv2.INTER_AREA) for f in frames]
    return frames


def partial_path(out):
    """Where ``out`` is written until complete: ``clip.mp4`` -> ``clip.partial.mp4``, ``dir`` -> ``dir.partial``."""
    out = Path(out)
    if is_video_file(out):
        return out.with_name(out.stem + '.partial' + out.suffix)
    return out.with_name(out.name + '.partial')


MARK = 'written by hoffr_arch'


def _is_ours(path, partial=False):
    """What ``--overwrite`` may replace: a video file (one that opens as a video, unless it is our
    ``partial`` output, which an interrupted run leaves unreadable), or a folder of nothing but
    %08d.png frames."""
    if path.is_dir():
        return all(FRAME_NAME.match(p.name) and p.is_file() for p in path.iterdir())
    return path.is_file() and is_video_file(path) and (partial or is_finished_video(path))


def _is_our_partial(path):
    """A partial output this tool demonstrably wrote, which a rerun may replace without --overwrite:
    a folder of nothing but %08d.png frames, or a video that opens and carries our ``MARK``."""
    if path.is_symlink():
        return False
    if path.is_dir():
        return _is_ours(path)
    import av
    try:
        with av.open(str(path)) as container:
            return any(v == MARK for k, v in container.metadata.items() if k.lower() == 'comment')
    except (av.error.FFmpegError, OSError, ValueError):
        return False


def is_finished_video(path):
    """Whether ``path`` opens as a video with a video stream (a text file named ``a.mp4`` does not)."""
    import av
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video)
    except (av.error.FFmpegError, OSError, ValueError):
        return False


def check_apart(out, inputs, folder=True):
    """Refuse (``MediaError``) an output that is an input, lies inside an input folder or, when the
    output is a ``folder``, holds an input."""
    out = Path(out)
    resolved = out.resolve()
    for inp in inputs:
        inp = Path(inp).resolve()
        if resolved == inp:
            raise MediaError(f'{out}: the output is the input; choose another output')
        if inp.is_dir() and inp in resolved.parents:
            raise MediaError(f'{out}: the output is inside the input folder {inp}; choose another output')
        if folder and resolved in inp.parents:
            raise MediaError(f'{out}: the input {inp} is inside this output folder; choose another output')


def check_writable(out):
    """Refuse (``MediaError``) an output whose nearest existing parent is not a writable folder."""
    parent = Path(out).absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise MediaError(f'{out}: cannot be written: {parent} is not a folder')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MediaError(f'{out}: cannot be written: no write permission in {parent}')


def check_output(out, inputs=(), overwrite=False):
    """Refuse an output that would harm the user's files (one-line ``MediaError``).

    ``out`` must not be an input, nor inside an input folder; if it (or its ``.partial`` file, left by
    an interrupted run) exists, ``overwrite`` must be given and it must be something this tool
    writes (a video file, or a folder holding only %08d.png frames).
    """
    out = Path(out)
    check_apart(out, inputs, folder=not is_video_file(out))
    check_writable(out)
    partial = partial_path(out)
    if (partial.exists() or partial.is_symlink()) and not _is_our_partial(partial):
        if not overwrite:
            raise MediaError(f'{partial} exists and is not recognisably an output of this tool; pass --overwrite '
                             'to replace it')
        if partial.is_symlink() or not _is_ours(partial, partial=True):
            raise MediaError(f'{partial}: not an output of this tool; --overwrite leaves it alone: move it away')
    if out.exists() or out.is_symlink():
        if not overwrite:
            raise MediaError(f'{out} already exists; pass --overwrite to replace it')
        if out.is_symlink() or not _is_ours(out):
            what = ('a folder holding files other than %08d.png frames' if out.is_dir()
                    else 'not a video file this tool writes')
            raise MediaError(f'{out}: {what}; --overwrite replaces only outputs of this tool, so it is left '
                             'alone: choose another output')
    if is_video_file(out) and out.suffix.lower() not in ('.mp4', '.mov', '.m4v', '.mkv', '.webm', '.avi'):
        raise MediaError(f'{out}: cannot write {out.suffix} videos; use .mp4, .mkv, .mov, .webm or .avi')


class MediaWriter:
    """Frames to a video file (by extension) or a PNG folder, through ``<name>.partial<ext>``.

    Args:
        out: output path (a video extension means a video; anything else a folder of %08d.png).
        source (MediaReader | None): gives fps, time base, rotation and the streams to copy.
        fps: frame rate for a frame-folder source (default 25).
        codec, crf, preset: the video encoder and its quality/speed (libx264/libx265 crf and preset).
        lookahead (int | None): libx264/libx265 rate-control look-ahead in frames (None: the preset's,
            40 for medium). Its frame buffers are most of the encoder's memory at 4K: measured here
            writing 4K H.264, +1.2 GB resident after 50 frames at the default, +0.46 GB at 10, +0.29 GB at 0.
    """

    def __init__(self, out, source=None, fps=None, codec=None, crf=18, preset='medium', lookahead=None):
        self.out = Path(out)
        self.video = is_video_file(self.out)
        self.tmp = partial_path(self.out)
        self.source, self.crf, self.preset, self.lookahead = source, crf, preset, lookahead
        self.codec = codec or DEFAULT_CODEC.get(self.out.suffix.lower(), 'libx264')
        if lookahead is not None and lookahead < 0:
            raise MediaError(f'{self.out}: the look-ahead must be >= 0 frames (got {lookahead})')
        if lookahead is not None and self.codec not in ('libx264', 'libx265'):
            raise MediaError(f'{self.out}: a look-ahead applies to libx264/libx265, not {self.codec}')
        src_fps = source.fps if source is not None and source.fps else None
        self.fps = Fraction(fps).limit_denominator(1001) if fps else (src_fps or Fraction(25))
        self.count = 0
        self._container = self._stream = None
        self._copy = {}
        if self.tmp.exists():  # a partial output of an earlier run of ours: never a user's finished file
            shutil.rmtree(self.tmp) if self.tmp.is_dir() else self.tmp.unlink()
        if self.video:
            import av
            if self.codec not in av.codecs_available:
                raise MediaError(f'{self.out}: this FFmpeg build has no {self.codec} encoder')
            self.tmp.parent.mkdir(parents=True, exist_ok=True)
        else:
            self.tmp.mkdir(parents=True)

    def _open(self, image):
        import av
        h, w = image.shape[:2]
        self._container = av.open(str(self.tmp), mode='w')
        self._container.metadata['comment'] = MARK  # what makes a partial output recognisably ours
        stream = self._stream = self._container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height = w, h
        stream.pix_fmt = 'yuv420p'
        # timestamps: the source's time base and pts when it is a video; else 1/fps and the frame index
        self._keep_pts = self.source is not None and self.source.fps is not None and self.fps == self.source.fps
        self.time_base = self.source.time_base if self._keep_pts else 1 / self.fps
        stream.codec_context.time_base = self.time_base
        stream.time_base = self.time_base
        if self.codec in ('libx264', 'libx265'):
            options = {'crf': str(self.crf), 'preset': self.preset}
            if self.lookahead is not None and self.codec == 'libx264':
                options['rc-lookahead'] = str(self.lookahead)
            elif self.lookahead is not None:
                options['x265-params'] = f'rc-lookahead={self.lookahead}'
            stream.options = options
        if self.source is not None and self.source.rotation:
            stream.set_display_rotation(self.source.rotation)
        if self.source is not None:
            for s in self.source.copy_streams:
                try:
                    self._copy[s.index] = self._container.add_stream_from_template(s)
                except (av.error.FFmpegError, ValueError) as err:
                    raise MediaError(f'{self.out}: cannot copy the {s.type} stream #{s.index} '
                                     f'({s.codec_context.name}) into {self.out.suffix} ({err}); use .mkv') from None

    def _mux_side_packets(self):
        if self.source is None:
            return
        queue = self.source.side_packets
        while queue:
            packet = queue.popleft()
            out_stream = self._copy.get(packet.stream.index)
            if out_stream is not None:
                packet.stream = out_stream
                self._container.mux(packet)

    def write(self, image, pts=None):
        """Add one frame: (h, w) grey, (h, w, 3) BGR or (h, w, 4) BGRA uint8; ``pts`` in the source's time base."""
        if not self.video:
            if not cv2.imwrite(str(self.tmp / f'{self.count:08d}.png'), image):
                raise MediaError(f'{self.tmp}: cannot write frame {self.count:08d}.png')
            self.count += 1
            return
        import av
        if image.ndim == 3 and image.shape[2] == 4:
            raise MediaError(f'{self.out}: a video output cannot hold the alpha channel; write PNG frames '
                             '(an output path without a video extension) to keep it')
        if self._container is None:
            self._open(image)
        fmt = 'gray' if image.ndim == 2 else 'bgr24'
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=fmt)
        frame.pts = pts if (self._keep_pts and pts is not None) else self.count
        frame.time_base = self.time_base
        try:
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            self._mux_side_packets()
        except av.error.FFmpegError as err:
            raise MediaError(f'{self.out}: FFmpeg failed writing frame {self.count} ({err})') from None
        self.count += 1

    def _finish(self):
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._mux_side_packets()
        self._container.close()
        self._container = None

    def close(self):
        """Finish the output and move it over ``out`` (replacing an earlier output of ours)."""
        self._finish()
        if self.count == 0:
            self.abort()
            raise MediaError(f'{self.out}: no frames to write')
        if self.out.exists():
            shutil.rmtree(self.out) if self.out.is_dir() else self.out.unlink()
        self.tmp.replace(self.out)
        return self.out

    def abort(self):
        """Finish what was written as the partial output and keep it; returns its path (None if empty)."""
        try:
            self._finish()
        except Exception:  # noqa: BLE001 (a broken encoder must not hide the error that brought us here)
            pass
        if self.count == 0 and self.tmp.exists():
            shutil.rmtree(self.tmp) if self.tmp.is_dir() else self.tmp.unlink()
            return None
        return self.tmp
