"""POF: high-resolution optical-flow prediction from two LR frames, coarse to fine.

Three levels in the manner of SOF-VSR's OFRnet: half-LR -> LR -> HR, each a small residual CNN that
refines the flow of the level below; the HR level predicts its residual by sub-pixel convolution.
The last convolution of every level starts at zero, so an untrained POF predicts zero motion and
training starts from plain frame recurrence.
"""
import torch
from torch import nn
from torch.nn import functional as F

from basicsr.archs.arch_util import ResidualBlockNoBN

from .warp import flow_warp, upscale_flow


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


class POF(nn.Module):
    """HR optical-flow prediction.

    Args:
        scale (int): HR / LR size ratio.
        num_feat (int): width of each level.
        num_block (int): ResBlocks per level.
        num_ch (int): image channels.

    ``forward(prev, cur)`` takes two LR frames (n, c, h, w), h and w even, and returns the flow
    that warps ``prev`` onto ``cur`` (see ``flow_warp``) at three scales, each in pixels of its own
    scale: ``{'half': (n, 2, h/2, w/2), 'lr': (n, 2, h, w), 'hr': (n, 2, scale*h, scale*w)}``.
    """

    def __init__(self, scale=4, num_feat=32, num_block=2, num_ch=3):
        super().__init__()
        self.scale = scale
        self.level_half = FlowLevel(2 * num_ch, num_feat, num_block, 2)
        # later levels see: current frame, previous frame warped by the coarser flow, that flow
        self.level_lr = FlowLevel(2 * num_ch + 2, num_feat, num_block, 2)
        self.level_hr = FlowLevel(2 * num_ch + 2, num_feat, num_block, 2 * scale * scale)

    def forward(self, prev, cur):
        if prev.shape[-2] % 2 or prev.shape[-1] % 2:
            raise ValueError(f'POF needs even frame sizes, got {tuple(prev.shape[-2:])} (HOFFR pads for you)')
        half = self.level_half(torch.cat((F.avg_pool2d(prev, 2), F.avg_pool2d(cur, 2)), 1))

        coarse = upscale_flow(half, 2)
        lr = coarse + self.level_lr(torch.cat((cur, flow_warp(prev, coarse), coarse), 1))

        residual = F.pixel_shuffle(self.level_hr(torch.cat((cur, flow_warp(prev, lr), lr), 1)), self.scale)
        hr = upscale_flow(lr, self.scale) + residual
        return {'half': half, 'lr': lr, 'hr': hr}
