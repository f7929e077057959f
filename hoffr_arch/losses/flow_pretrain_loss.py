"""Self-supervised optical-flow loss for pretraining the POF on sharp frame pairs (no flow labels).

For a pair (I_0, I_1) the POF runs both ways: F_fw warps I_0 onto I_1, F_bw warps I_1 onto I_0.
At every level k (coarse levels on the average-pooled LR frames, 'lr' on the LR frames, 'hr' on the
HR frames when given), for each direction:

- **photometric**: Charbonnier of (warp(I_0, F_fw) - I_1) plus ``census_weight`` x the soft census
  (ternary) distance of 7x7 patches, which ignores brightness changes (UnFlow, Meister et al. 2018);
  both averaged over the pixels that are **not occluded**: a pixel is occluded when the forward flow
  and the backward flow at its target do not cancel (|F_fw + F_bw(p + F_fw)|^2 > 0.01 (|F_fw|^2 +
  |F_bw(p + F_fw)|^2) + 0.5, UnFlow's test; the 0.5 in pixels of the level);
- **edge-aware smoothness**: first-order differences of the flow, weighted by exp(-alpha |grad I_1|),
  so motion may change at image edges (Godard et al. 2017).

L = loss_weight * sum_k w_k * (photometric_k + smooth_weight * smoothness_k), averaged over both
directions.
"""
import torch
from torch import nn
from torch.nn import functional as F

from basicsr.utils.registry import LOSS_REGISTRY

from hoffr_arch.archs.pof import level_frames
from hoffr_arch.archs.warp import flow_warp

DEFAULT_LEVEL_WEIGHTS = {'eighth': 0.25, 'quarter': 0.25, 'half': 0.5, 'lr': 1.0, 'hr': 1.0}


def occlusion_mask(flow_fw, flow_bw):
    """(n, 1, h, w) float: 1 where the forward flow's target sees the pixel (not occluded), else 0.

    ``flow_fw`` warps frame 0 onto frame 1 (it lives on frame 1's grid); ``flow_bw`` the reverse.
    """
    bw_at_target = flow_warp(flow_bw, flow_fw)
    diff = (flow_fw + bw_at_target).pow(2).sum(1, keepdim=True)
    bound = 0.01 * (flow_fw.pow(2).sum(1, keepdim=True) + bw_at_target.pow(2).sum(1, keepdim=True)) + 0.5
    return (diff <= bound).float()


def census_distance(a, b, radius=3):
    """Soft census distance of (n, c, h, w) images in [0, 1] -> (n, 1, h, w) in [0, 1).

    One neighbour offset at a time: an unfolded (n, 49, h, w) patch tensor costs ten times more
    time and memory on HR frames, forward and backward.
    """
    h, w = a.shape[-2:]
    size = 2 * radius + 1
    grey_a, grey_b = a.mean(1, keepdim=True) * 255, b.mean(1, keepdim=True) * 255
    pad_a, pad_b = (F.pad(g, [radius] * 4, mode='replicate') for g in (grey_a, grey_b))
    total = 0
    for dy in range(size):
        for dx in range(size):
            if dy == radius and dx == radius:
                continue
            da = pad_a[..., dy:dy + h, dx:dx + w] - grey_a
            db = pad_b[..., dy:dy + h, dx:dx + w] - grey_b
            d = (da * torch.rsqrt(0.81 + da * da) - db * torch.rsqrt(0.81 + db * db)) ** 2
            total = total + d / (0.1 + d)
    return total / (size * size - 1)


def edge_aware_smoothness(flow, img, alpha):
    """Mean |first-order flow difference| weighted by exp(-alpha * mean_c |image difference|)."""
    def grads(x):
        return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]

    total = flow.new_zeros(())
    for df, di in zip(grads(flow), grads(img)):
        if df.numel():  # a level one pixel wide has no neighbours that way
            total = total + (df.abs().mean(1, keepdim=True) * torch.exp(-alpha * di.abs().mean(1, keepdim=True))).mean()
    return total / 2


@LOSS_REGISTRY.register()
class SelfSupervisedFlowLoss(nn.Module):
    """Photometric (Charbonnier + census, occlusion-masked) and edge-aware smoothness flow loss.

    Args:
        loss_weight (float): overall weight. Default 1.
        level_weights (dict): weight per POF level; levels absent from the flows are skipped.
            Default {'eighth': 0.25, 'quarter': 0.25, 'half': 0.5, 'lr': 1, 'hr': 1}.
        census_weight (float): weight of the census term next to Charbonnier. Default 1.
        census_levels (list): levels that get the census term. Default all but 'hr': on HR frames
            it costs more than the rest of a training step, and the LR level already sees the
            same brightness changes.
        smooth_weight (float): weight of the edge-aware smoothness. Default 0.1.
        edge_alpha (float): edge sensitivity of the smoothness weights (images in [0, 1]). Default 10.
        occlusion (bool): mask occluded pixels out of the photometric terms. Default True.
        occlusion_start (int): training iteration from which the mask applies (the model passes
            the iteration as the ``iteration`` input). Masking from the start lets wrong early flows mark
            themselves occluded and never be corrected (measured: a POF trained so learned no
            motion in 500 iterations; without the mask it follows a 4-pixel shift in 30). Default 0.
        eps (float): Charbonnier epsilon (on the squared difference). Default 1e-6.

    ``forward(flows_fw, flows_bw, frames_lr, frames_hr=None, iteration=None)``: the POF's outputs for
    (I_0, I_1) and (I_1, I_0) (dicts of (n, 2, h_k, w_k)), ``frames_lr`` the pair (I_0, I_1) of
    (n, c, h, w) LR frames, ``frames_hr`` the HR pair, needed for the 'hr' level (skipped without
    it), ``iteration`` the training iteration (None: the occlusion mask applies, as in evaluation).
    Returns the scalar loss and a dict of its terms (for logging).
    """
    inputs = ('flows_fw', 'flows_bw', 'frames_lr', 'frames_hr', 'iteration')  # FlowPretrainModel's names

    def __init__(self, loss_weight=1.0, level_weights=None, census_weight=1.0, census_levels=None, smooth_weight=0.1,
                 edge_alpha=10.0, occlusion=True, occlusion_start=0, eps=1e-6):
        super().__init__()
        self.loss_weight = loss_weight
        self.level_weights = dict(DEFAULT_LEVEL_WEIGHTS if level_weights is None else level_weights)
        self.census_weight = census_weight
        self.census_levels = set(census_levels if census_levels is not None else ('eighth', 'quarter', 'half', 'lr'))
        self.smooth_weight = smooth_weight
        self.edge_alpha = edge_alpha
        self.occlusion = occlusion
        self.occlusion_start = occlusion_start
        self.eps = eps

    def _direction(self, flow, flow_other, src, dst, census, masked):
        """Photometric and smoothness terms of ``flow`` warping ``src`` onto ``dst``."""
        warped = flow_warp(src, flow)
        mask = occlusion_mask(flow, flow_other).detach() if masked else torch.ones_like(flow[:, :1])
        denom = mask.sum().clamp(min=1)
        charb = (torch.sqrt((warped - dst) ** 2 + self.eps).mean(1, keepdim=True) * mask).sum() / denom
        photo = charb
        if census:
            photo = photo + self.census_weight * (census_distance(warped, dst) * mask).sum() / denom
        smooth = edge_aware_smoothness(flow, dst, self.edge_alpha)
        return photo, smooth

    def forward(self, flows_fw, flows_bw, frames_lr, frames_hr=None, iteration=None):
        lr0, lr1 = frames_lr
        masked = self.occlusion and (iteration is None or iteration >= self.occlusion_start)
        photo_total, smooth_total = lr0.new_zeros(()), lr0.new_zeros(())
        for level, weight in self.level_weights.items():
            if not weight or level not in flows_fw or (level == 'hr' and frames_hr is None):
                continue
            fw, bw = flows_fw[level].float(), flows_bw[level].float()
            if level == 'hr':
                i0, i1 = frames_hr
            else:
                try:
                    i0, i1 = level_frames(lr0, fw.shape[-2:]), level_frames(lr1, fw.shape[-2:])
                except ValueError as err:
                    raise ValueError(f'SelfSupervisedFlowLoss: {level} flow: {err}') from None
            census = bool(self.census_weight) and level in self.census_levels
            p_fw, s_fw = self._direction(fw, bw, i0, i1, census, masked)
            p_bw, s_bw = self._direction(bw, fw, i1, i0, census, masked)
            photo_total = photo_total + weight * (p_fw + p_bw) / 2
            smooth_total = smooth_total + weight * (s_fw + s_bw) / 2
        total = self.loss_weight * (photo_total + self.smooth_weight * smooth_total)
        return total, {'l_photo': self.loss_weight * photo_total,
                       'l_smooth': self.loss_weight * self.smooth_weight * smooth_total}
