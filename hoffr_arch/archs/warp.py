"""Backward warping by optical flow, and the flow-related resizing the network and losses share."""
import torch
from torch.nn import functional as F


def flow_warp(x, flow, padding_mode='border'):
    """Backward-warp ``x`` by ``flow``: ``out[p] = x[p + flow[p]]``, bilinear.

    Args:
        x (Tensor): (n, c, h, w) image or features (frame t-1).
        flow (Tensor): (n, 2, h, w) displacement in pixels of this scale; channel 0 is along the width
            (x), channel 1 along the height (y). For each pixel of frame t it points to frame t-1.
        padding_mode (str): grid_sample padding for samples that fall outside: 'border' (default),
            'zeros' or 'reflection'.

    Returns:
        Tensor: (n, c, h, w), frame t-1 brought onto frame t, in ``x``'s dtype.

    The sampling grid and the interpolation are computed in float32 whatever the dtype of ``x`` and
    ``flow``: in bf16 (8 bits of mantissa) a normalised coordinate at 1280 pixels is off by up to 2.5
    pixels, and on CPU a half-precision grid makes even a zero-flow warp return NaN. Half-precision
    inputs are cast up and the result cast back.

    We do not use ``basicsr.archs.arch_util.flow_warp``: it wants the flow channels-last and calls
    ``torch.meshgrid`` without ``indexing`` (a warning on every new torch).
    """
    n, _, h, w = x.shape
    if flow.shape[0] != n or flow.shape[1] != 2 or flow.shape[-2:] != x.shape[-2:]:
        raise ValueError(f'flow_warp: flow must be (n, 2, h, w) = ({n}, 2, {h}, {w}), got {tuple(flow.shape)}')
    flow = flow.float()
    xs = torch.arange(w, device=flow.device, dtype=torch.float32).view(1, 1, w)
    ys = torch.arange(h, device=flow.device, dtype=torch.float32).view(1, h, 1)
    # align_corners=True: -1 and 1 are the centres of the first and last pixels
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    with torch.autocast(x.device.type, enabled=False):
        out = F.grid_sample(x.float(), grid, mode='bilinear', padding_mode=padding_mode, align_corners=True)
    return out.to(x.dtype)


def upscale_flow(flow, factor):
    """(n, 2, h, w) flow in pixels -> (n, 2, factor*h, factor*w), bilinear, values times ``factor``."""
    return F.interpolate(flow, scale_factor=factor, mode='bilinear', align_corners=False) * factor

