"""POF: high-resolution optical-flow prediction from two LR frames, coarse to fine.

SOF-VSR's OFRnet refines flow over half-LR -> LR -> HR. Two levels below LR see at most about
two LR pixels of motion (each level's small CNN reaches a few pixels of its own scale), so the POF
starts further down: ``num_coarse`` average-pooled levels (default 3: 1/8, 1/4 and 1/2 of LR), each a
small residual CNN that refines the upsampled flow of the level below from the current frame and the
previous frame warped by that flow; then the LR level; then the HR level, whose residual is predicted
at LR and brought to HR by sub-pixel convolution (pixel shuffle).

The last convolution of every level starts at zero, so an untrained POF predicts zero motion. A
self-supervised pretrained POF ships as ``hoffr_arch/assets/pof_x4.pth`` (``HOFFR(pof_path=...)``,
``FlowPretrainModel``).
"""
import torch
from torch import nn
from torch.nn import functional as F

from basicsr.archs.arch_util import ResidualBlockNoBN, resize_flow
from basicsr.utils.registry import ARCH_REGISTRY

from .warp import flow_warp, upscale_flow

COARSE_NAMES = {2: 'half', 4: 'quarter', 8: 'eighth', 16: 'sixteenth'}


def local_cost(cur, warped, radius):
    """Photometric cost volume: for every displacement d in [-radius, radius]^2, the mean absolute
    difference (over channels) between ``cur`` and ``warped`` shifted by d.

    (n, c, h, w) x 2 -> (n, (2 radius + 1)^2, h, w). It hands each level the evidence of where the
    remaining motion is, so the small CNNs need not learn matching from raw pixels (they learn it
    slowly: measured, a POF without it still had an end-point error of 1.8 px on a 2.2-pixel shift
    after 320 self-supervised iterations).
    """
    h, w = cur.shape[-2:]
    padded = F.pad(warped, [radius] * 4, mode='replicate')
    size = 2 * radius + 1
    return torch.cat([(cur - padded[..., dy:dy + h, dx:dx + w]).abs().mean(1, keepdim=True)
                      for dy in range(size) for dx in range(size)], 1)


class FlowLevel(nn.Module):
    """conv -> LeakyReLU -> ``num_block`` ResBlocks -> conv (zero-initialised).

    (n, in_ch, h, w) -> (n, out_ch, h, w).
    """

    def __init__(self, in_ch, num_feat, num_block, out_ch):
        super().__init__()
        last = nn.Conv2d(num_feat, out_ch, 3, 1, 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(
            nn.Conv2d(in_ch, num_feat, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
            *[ResidualBlockNoBN(num_feat) for _ in range(num_block)], last)

    def forward(self, x):
        return self.body(x)


def pyramid_down(frames):
    """(..., h, w) -> (..., ceil(h / 2), ceil(w / 2)): the next coarser level of the POF's pyramid
    (2 x 2 average, the last row/column averaged alone on odd sizes)."""
    return F.avg_pool2d(frames, 2, ceil_mode=True)


def level_frames(frames, size):
    """(n, c, h, w) frames at the POF pyramid level of ``size`` (h_k, w_k): ``pyramid_down`` until
    there, so a loss or metric compares exactly the images the POF saw at that level.
    Raises ValueError when no level of these frames has that size."""
    while frames.shape[-2:] != tuple(size):
        if frames.shape[-1] < size[-1] or frames.shape[-2] < size[-2]:
            raise ValueError(f'no pyramid level of {tuple(frames.shape[-2:])} frames has size {tuple(size)}')
        frames = pyramid_down(frames)
    return frames


@ARCH_REGISTRY.register()
class POF(nn.Module):
    """HR optical-flow prediction.

    Args:
        scale (int): HR / LR size ratio. Default 4.
        num_feat (int): width of each level. Default 32.
        num_block (int): ResBlocks per level. Default 2.
        num_ch (int): image channels. Default 3.
        num_coarse (int): levels below LR (1: half-LR only, as SOF-VSR; 2 adds quarter; 3 adds
            eighth). Each doubles the motion the POF can follow. Default 3.
        cost_radius (int): each level also sees a photometric cost volume (``local_cost``) of the
            current frame against the warped previous one over displacements up to this radius, in
            pixels of its scale; 0 leaves it out (SOF-VSR's levels). Default 2.

    ``forward(prev, cur)`` takes two LR frames (n, c, h, w) of any size and returns the flow that
    warps ``prev`` onto ``cur`` (``flow_warp(prev, flow) ~ cur``) at every level, each in pixels of
    its own scale, coarsest first::

        {'eighth': (n, 2, h8, w8), 'quarter': (n, 2, h4, w4), 'half': (n, 2, ceil(h/2), ceil(w/2)),
         'lr': (n, 2, h, w), 'hr': (n, 2, scale*h, scale*w)}

    where each coarse size is the ceiling of half the next finer one. Every flow network put in
    HOFFR's place must return at least 'lr' and 'hr' (the HR flow warps the previous output).
    """

    def __init__(self, scale=4, num_feat=32, num_block=2, num_ch=3, num_coarse=3, cost_radius=2):
        super().__init__()
        if not 1 <= num_coarse <= len(COARSE_NAMES):
            raise ValueError(f'POF num_coarse must be 1..{len(COARSE_NAMES)}, got {num_coarse}')
        self.scale = scale
        self.cost_radius = cost_radius
        cost = (2 * cost_radius + 1) ** 2 if cost_radius else 0
        self.coarse_names = [COARSE_NAMES[2 ** k] for k in range(num_coarse, 0, -1)]  # coarsest first
        # the coarsest level sees both frames; every later one: current frame, previous frame warped
        # by the coarser flow, that flow
        self.coarse = nn.ModuleList(
            FlowLevel(2 * num_ch + (2 if k else 0) + cost, num_feat, num_block, 2) for k in range(num_coarse))
        self.level_lr = FlowLevel(2 * num_ch + 2 + cost, num_feat, num_block, 2)
        self.level_hr = FlowLevel(2 * num_ch + 2 + cost, num_feat, num_block, 2 * scale * scale)

    def _inputs(self, cur, warped, flow=None):
        """A level's input: current frame, (warped) previous frame, [the flow so far], [cost volume]."""
        parts = [cur, warped] + ([flow] if flow is not None else [])
        if self.cost_radius:
            parts.append(local_cost(cur, warped, self.cost_radius))
        return torch.cat(parts, 1)

    def _refine(self, level, prev, cur, coarse):
        """The flow at ``cur``'s size: ``coarse`` resized there plus the level's residual."""
        flow = resize_flow(coarse, 'shape', cur.shape[-2:])
        return flow + level(self._inputs(cur, flow_warp(prev, flow), flow))

    def forward(self, prev, cur):
        pyramid = [(prev, cur)]
        for _ in self.coarse_names:
            p, c = pyramid[-1]
            pyramid.append((pyramid_down(p), pyramid_down(c)))
        flows = {}
        flow = None
        for name, level, (p, c) in zip(self.coarse_names, self.coarse, reversed(pyramid[1:])):
            flow = level(self._inputs(c, p)) if flow is None else self._refine(level, p, c, flow)
            flows[name] = flow
        lr = self._refine(self.level_lr, prev, cur, flow)
        residual = F.pixel_shuffle(self.level_hr(self._inputs(cur, flow_warp(prev, lr), lr)), self.scale)
        flows['lr'] = lr
        flows['hr'] = upscale_flow(lr, self.scale) + residual
        return flows
