"""Running HOFFR frame by frame: the step backends (torch, ONNX Runtime) and spatial tiling.

A *step* is a callable ``step(lq, state) -> (hr, state, deblurred)``: ``lq`` (1, 3, h, w) RGB in [0, 1],
``hr`` (1, 3, s*h, s*w), ``deblurred`` (1, 3, h, w), ``state`` opaque (None for a clip's first frame).
``torch_step(net, path)`` wraps ``HOFFR.step`` on a ``hoffr_arch.precision.ComputePath`` (autocast,
channels-last); ``OnnxStep`` runs the graph ``hoffr_arch.export`` writes; ``TiledStep`` runs any step on
overlapping spatial tiles, each with its own recurrent state, so that peak memory follows the tile,
not the frame. ``warm_up(step, shape)`` runs a step on two frames of zeros first, so that the kernels
of a shape (oneDNN builds them per shape, slowly in bf16) exist before a video's first frame.
"""
import argparse
import ctypes
import sys
import time

import torch
from torch.nn import functional as F


def trim_heap():
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; no-op elsewhere).

    Tile states and tile outputs are blocks of a few MiB, which glibc serves from its heap; freed in
    a different order than allocated, they fragment it, and the resident size then creeps up frame
    after frame. Trimming after each tile keeps it flat (measured streaming LR 960x540 -> 4K in
    128-pixel tiles: 1113 MiB resident after three frames instead of 1291, for ~4% more time).
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _glibc():
    if not sys.platform.startswith('linux'):
        return None
    try:
        libc = ctypes.CDLL('libc.so.6')
        return libc if hasattr(libc, 'malloc_trim') else None
    except OSError:
        return None


_LIBC = _glibc()


def quantize(t):
    """RGB in [0, 1] (any float dtype) -> uint8 0-255, rounded as BasicSR's ``tensor2img`` rounds.
    ``t`` is left as it is (it may be a recurrent state); one float temporary of its size."""
    return t.float().clamp(0, 1).mul_(255.).round_().to(torch.uint8)


def torch_step(net, path=None):
    """``HOFFR.step`` as a step callable, run on ``path`` (a ``ComputePath``; None: as ``net`` is).

    ``path.prepare(net)`` is applied here (channels-last weights where the path wants them); the
    frame is put in the path's memory format and the step runs under its autocast. ``hr`` and
    ``deblurred`` come back float32 under autocast (their last operation adds a float32 image).
    """
    if path is not None:
        path.prepare(net)

    def step(lq, state):
        if path is None:
            hr, state, aux = net.step(lq, state, return_aux=True)
        else:
            with path.autocast():
                hr, state, aux = net.step(path.input(lq), state, return_aux=True)
        return hr, state, aux['deblurred']
    return step


def warm_up(step, shape, device='cpu'):
    """Run ``step`` on two frames of zeros of ``shape`` (1, c, h, w): a first frame and one that
    continues it (the POF and the warp run from the second frame on), so that every kernel of that
    shape is built before a video starts. A ``TiledStep`` warms its inner step once per distinct
    tile shape. Returns the seconds it took."""
    start = time.perf_counter()
    shapes = step.tile_shapes(shape) if isinstance(step, TiledStep) else [tuple(shape)]
    inner = step.step if isinstance(step, TiledStep) else step
    with torch.inference_mode():
        for tile_shape in shapes:
            lq = torch.zeros(tile_shape, device=device)
            _, state, _ = inner(lq, None)
            inner(lq, state)
    return time.perf_counter() - start


class OnnxStep:
    """The exported streaming step (``python -m hoffr_arch.export``) on ONNX Runtime.

    The graph takes ``lq`` (1, 3, h, w) with h, w even, ``prev_lq`` (the previous padded frame; the
    frame itself at the first frame) and ``prev_hr`` (the previous padded output; zeros at the first
    frame, which is exactly what ``HOFFR.step`` uses there) and returns ``hr`` and ``deblurred``.
    Odd sizes are padded here as ``HOFFR.step`` pads them (replicate) and cropped back.
    """

    def __init__(self, path, providers=None):
        import onnxruntime as ort

        from hoffr_arch.checkpoint import CheckpointError
        try:
            self.session = ort.InferenceSession(str(path), providers=providers or ['CPUExecutionProvider'])
        except Exception as err:  # noqa: BLE001 (onnxruntime raises its own types for a bad file)
            raise CheckpointError(f'{path}: not a readable ONNX graph ({" ".join(str(err).split())[:160]})') from None
        names = ({i.name for i in self.session.get_inputs()}, {o.name for o in self.session.get_outputs()})
        if names != ({'lq', 'prev_lq', 'prev_hr'}, {'hr', 'deblurred'}):
            raise CheckpointError(f'{path}: not a HOFFR step exported by hoffr_arch.export (inputs '
                                  f'{sorted(names[0])}, outputs {sorted(names[1])})')
        self.scale = int(self.session.get_modelmeta().custom_metadata_map.get('scale', 4))

    def __call__(self, lq, state):
        n, c, h, w = lq.shape
        s = self.scale
        x = F.pad(lq, (0, w % 2, 0, h % 2), mode='replicate') if (h % 2 or w % 2) else lq
        x = x.float().cpu().numpy()
        if state is None:
            prev_lq, prev_hr = x, torch.zeros(n, c, s * x.shape[2], s * x.shape[3]).numpy()
        else:
            prev_lq, prev_hr = state
            if prev_lq.shape != x.shape:
                raise ValueError(f'OnnxStep: frame of shape {tuple(lq.shape)} does not continue the clip')
        hr, deblurred = self.session.run(['hr', 'deblurred'], {'lq': x, 'prev_lq': prev_lq, 'prev_hr': prev_hr})
        out = torch.from_numpy(hr)
        return out[..., :s * h, :s * w], (x, hr), torch.from_numpy(deblurred)[..., :h, :w]


def tile_grid(size, tile, overlap):
    """[(start, end, core_start, core_end)] along one axis of length ``size``: cores of ``tile``
    pixels cover it exactly; each tile reaches ``overlap`` pixels past its core where it can."""
    grid = []
    for a in range(0, size, tile):
        b = min(a + tile, size)
        grid.append((max(0, a - overlap), min(size, b + overlap), a, b))
    return grid


def tile_size(text):
    """argparse type of ``--tile``: 0 (whole frames) or an LR tile side >= 8."""
    value = int(text)
    if value != 0 and value < 8:
        raise argparse.ArgumentTypeError(f'must be 0 (whole frames) or an LR tile side >= 8, got {value}')
    return value


def overlap_size(text):
    """argparse type of ``--tile-overlap``: LR pixels >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0 LR pixels, got {value}')
    return value


class TiledStep:
    """Run ``step`` on ``tile`` x ``tile`` LR tiles overlapping by ``overlap`` pixels.

    Each tile is its own stream (its own previous frame and output), so the POF sees ``overlap``
    pixels of context past each tile's core: motion larger than that near a tile border is missed.
    Each tile's core is pasted into the frame (no blending needed: the cores do not overlap).
    With ``hr_dtype=torch.uint8`` the HR frame is assembled already quantized (``quantize``, the same
    rounding as whole frames get), so no full-size float frame exists at any time: at 4K output that
    is 100 MB less at the peak, and what ``infer --tile`` uses.
    """

    def __init__(self, step, scale, tile, overlap=16, hr_dtype=None):
        if tile < 8 or overlap < 0:
            raise ValueError(f'tile must be >= 8 and overlap >= 0 (got {tile}, {overlap})')
        self.step, self.scale, self.tile, self.overlap, self.hr_dtype = step, scale, tile, overlap, hr_dtype

    def tile_shapes(self, shape):
        """The distinct (n, c, th, tw) tile shapes of a frame of ``shape`` (n, c, h, w)."""
        n, c, h, w = shape
        heights = {y1 - y0 for y0, y1, _, _ in tile_grid(h, self.tile, self.overlap)}
        widths = {x1 - x0 for x0, x1, _, _ in tile_grid(w, self.tile, self.overlap)}
        return sorted((n, c, th, tw) for th in heights for tw in widths)

    def __call__(self, lq, state):
        n, c, h, w = lq.shape
        s = self.scale
        rows, cols = tile_grid(h, self.tile, self.overlap), tile_grid(w, self.tile, self.overlap)
        # The tile states are replaced in place, one by one, so that a tile's old state is freed as
        # its new one is made: never two frames' worth of states at once.
        states = state if state is not None else [None] * (len(rows) * len(cols))
        if len(states) != len(rows) * len(cols):
            raise ValueError('TiledStep: the frame size changed mid-clip')
        hr = lq.new_empty(n, c, s * h, s * w, dtype=self.hr_dtype or lq.dtype)
        paste = quantize if hr.dtype == torch.uint8 else (lambda t: t)  # slice assignment casts
        deblurred = lq.new_empty(n, c, h, w)
        for i, (y0, y1, cy0, cy1) in enumerate(rows):
            for j, (x0, x1, cx0, cx1) in enumerate(cols):
                k = i * len(cols) + j
                out, states[k], deb = self.step(lq[..., y0:y1, x0:x1], states[k])
                hr[..., s * cy0:s * cy1, s * cx0:s * cx1] = paste(out[..., s * (cy0 - y0):s * (cy1 - y0),
                                                                       s * (cx0 - x0):s * (cx1 - x0)])
                del out
                trim_heap()
                deblurred[..., cy0:cy1, cx0:cx1] = deb[..., cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0].to(deblurred)
        return hr, states, deblurred
