"""Running HOFFR frame by frame: the step backends (torch, ONNX Runtime) and spatial tiling.

A *step* is a callable ``step(lq, state) -> (hr, state, deblurred)``: ``lq`` (1, 3, h, w) RGB in [0, 1],
``hr`` (1, 3, s*h, s*w), ``deblurred`` (1, 3, h, w), ``state`` opaque (None for a clip's first frame).
``torch_step(net)`` wraps ``HOFFR.step``; ``OnnxStep`` runs the graph ``hoffr_arch.export`` writes;
``TiledStep`` runs any step on overlapping spatial tiles, each with its own recurrent state, so that
peak memory follows the tile, not the frame.
"""
import torch
from torch.nn import functional as F


def torch_step(net):
    """``HOFFR.step`` as a step callable."""
    def step(lq, state):
        hr, state, aux = net.step(lq, state, return_aux=True)
        return hr, state, aux['deblurred']
    return step


class OnnxStep:
    """The exported streaming step (``python -m hoffr_arch.export``) on ONNX Runtime.

    The graph takes ``lq`` (1, 3, h, w) with h, w even, ``prev_lq`` (the previous padded frame; the
    frame itself at the first frame) and ``prev_hr`` (the previous padded output; zeros at the first
    frame, which is exactly what ``HOFFR.step`` uses there) and returns ``hr`` and ``deblurred``.
    Odd sizes are padded here as ``HOFFR.step`` pads them (replicate) and cropped back.
    """

    def __init__(self, path, providers=None):
        import onnxruntime as ort
        self.session = ort.InferenceSession(str(path), providers=providers or ['CPUExecutionProvider'])
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


class TiledStep:
    """Run ``step`` on ``tile`` x ``tile`` LR tiles overlapping by ``overlap`` pixels.

    Each tile is its own stream (its own previous frame and output), so the POF sees ``overlap``
    pixels of context past each tile's core: motion larger than that near a tile border is missed.
    Each tile's core is pasted into the frame (no blending needed: the cores do not overlap).
    """

    def __init__(self, step, scale, tile, overlap=16):
        if tile < 8 or overlap < 0:
            raise ValueError(f'tile must be >= 8 and overlap >= 0 (got {tile}, {overlap})')
        self.step, self.scale, self.tile, self.overlap = step, scale, tile, overlap

    def __call__(self, lq, state):
        n, c, h, w = lq.shape
        s = self.scale
        rows, cols = tile_grid(h, self.tile, self.overlap), tile_grid(w, self.tile, self.overlap)
        states = state if state is not None else [None] * (len(rows) * len(cols))
        if len(states) != len(rows) * len(cols):
            raise ValueError('TiledStep: the frame size changed mid-clip')
        hr = lq.new_empty(n, c, s * h, s * w)
        deblurred = lq.new_empty(n, c, h, w)
        new_states = []
        for i, (y0, y1, cy0, cy1) in enumerate(rows):
            for j, (x0, x1, cx0, cx1) in enumerate(cols):
                out, st, deb = self.step(lq[..., y0:y1, x0:x1], states[i * len(cols) + j])
                new_states.append(st)
                hr[..., s * cy0:s * cy1, s * cx0:s * cx1] = out[..., s * (cy0 - y0):s * (cy1 - y0),
                                                                 s * (cx0 - x0):s * (cx1 - x0)].to(hr)
                deblurred[..., cy0:cy1, cx0:cx1] = deb[..., cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0].to(deblurred)
        return hr, new_states, deblurred
