"""Warping error of an optical flow on real frames: how well frame t-1, warped by the flow, matches frame t."""
import torch

from basicsr.utils.registry import METRIC_REGISTRY

from hoffr_arch.archs.pof import level_frames  # noqa: F401  (the pyramid the flows live on, for benchmarks.flow)
from hoffr_arch.archs.warp import flow_warp


@METRIC_REGISTRY.register()
def calculate_warp_error(prev, cur, flow, border=4, **kwargs):
    """Mean absolute error (0-255) between ``prev`` backward-warped by ``flow`` and ``cur``.

    Args:
        prev, cur (Tensor): (n, c, h, w) frames in [0, 1] (frame t-1 and frame t).
        flow (Tensor): (n, 2, h, w) flow in pixels warping ``prev`` onto ``cur`` (``flow_warp``);
            all zeros measures doing nothing.
        border (int): pixels excluded at each edge (samples near the border come from outside).

    Returns:
        float. Lower is better.
    """
    with torch.no_grad():
        diff = (flow_warp(prev.float(), flow.float()) - cur.float()).abs() * 255
    if border:
        diff = diff[..., border:-border, border:-border]
    return float(diff.mean())


# YAML options: ``border``, and ``level`` (which POF level FlowPretrainModel scores; read by the model)
calculate_warp_error.options = ('border', 'level')
