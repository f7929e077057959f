"""HOFFR losses: L = L_SR + lambda_DB * L_DB + lambda_OF * L_OF (weights are each loss's ``loss_weight``).

All take video tensors (n, t, c, h, w). The element-wise criteria are BasicSR's own
(``mse_loss``, ``charbonnier_loss``, ``l1_loss``, with its ``reduction`` handling).

Each class says what it takes in ``inputs``: names of what ``HOFFRModel`` has at each iteration
(``hoffr_arch.models.hoffr_model.LOSS_INPUTS``), passed positionally. A new term is a registered loss
class with ``inputs`` (or an ``inputs:`` key in its YAML entry) and one entry in ``train.losses``.
"""
from torch import nn

from basicsr.losses.basic_loss import charbonnier_loss, l1_loss, mse_loss
from basicsr.utils.registry import LOSS_REGISTRY

from hoffr_arch.archs.pof import level_frames
from hoffr_arch.archs.warp import flow_warp

CRITERIA = ('l2', 'charbonnier', 'l1')
FLOW_LEVELS = ('half', 'lr', 'hr')


def _criterion(name, eps):
    if name == 'l2':
        return mse_loss
    if name == 'charbonnier':
        return lambda pred, target, **kw: charbonnier_loss(pred, target, eps=eps, **kw)
    if name == 'l1':
        return l1_loss
    raise ValueError(f'loss criterion must be one of {CRITERIA}, got {name!r}')


class _FrameLoss(nn.Module):
    """``loss_weight * criterion(pred, target)`` over whole clips.

    Args:
        loss_weight (float): the weight of this term in the total loss.
        criterion (str): 'l2' (the paper's), 'charbonnier' (sqrt(d^2 + eps)) or 'l1'.
        eps (float): Charbonnier epsilon. Default 1e-6.
        reduction (str): 'mean' | 'sum' | 'none'.
    """

    def __init__(self, loss_weight=1.0, criterion='l2', eps=1e-6, reduction='mean'):
        super().__init__()
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.criterion = _criterion(criterion, eps)

    def forward(self, pred, target):
        if pred.shape != target.shape:
            raise ValueError(f'{type(self).__name__}: prediction {tuple(pred.shape)} and target '
                             f'{tuple(target.shape)} differ in shape')
        return self.loss_weight * self.criterion(pred, target, reduction=self.reduction)


@LOSS_REGISTRY.register()
class SRLoss(_FrameLoss):
    """L_SR: the HR output (n, t, c, H, W) against the sharp HR ground truth."""
    inputs = ('output', 'gt')


@LOSS_REGISTRY.register()
class DBLoss(_FrameLoss):
    """L_DB: the deblurred LR frames (n, t, c, h, w) against the sharp LR frames."""
    inputs = ('deblurred', 'lq_sharp')


@LOSS_REGISTRY.register()
class FlowWarpLoss(nn.Module):
    """L_OF: multi-scale warping loss of the POF flows on SHARP frames, with optional smoothness.

    For each level k with weight w_k > 0, frame i warped by flow i must match frame i+1:
        L_OF = loss_weight * sum_k w_k * (crit(warp(F_k[:, :-1], flow_k), F_k[:, 1:])
                                          + smooth_weight * TV(flow_k))
    where F_half is the sharp LR clip average-pooled to the half-LR flow size, F_lr the sharp LR
    clip and F_hr the sharp HR clip; TV is the mean absolute difference of neighbouring flow vectors.

    Args:
        loss_weight (float): lambda_OF. Default 0.01 (SOF-VSR).
        level_weights (dict): weights of 'half', 'lr', 'hr'. Default {'half': 0.1, 'lr': 0.2,
            'hr': 0.0} (SOF-VSR's 0.1 / 0.2 / 1 with the HR term off: the paper supervises LR scales).
        smooth_weight (float): weight of the smoothness term inside each level. Default 0.01.
        criterion (str): 'l2' (default), 'charbonnier' or 'l1'.
        eps (float): Charbonnier epsilon.

    ``forward(flows, sharp_lr, sharp_hr=None)``: ``flows`` as HOFFR's ``aux['flows']``
    (each (n, t-1, 2, h_k, w_k)), ``sharp_lr`` (n, t, c, h, w), ``sharp_hr`` (n, t, c, H, W) needed
    only when the 'hr' weight is > 0. A clip of one frame (no flows) gives 0.
    """
    inputs = ('flows', 'lq_sharp', 'gt')

    def __init__(self, loss_weight=0.01, level_weights=None, smooth_weight=0.01, criterion='l2', eps=1e-6):
        super().__init__()
        weights = {'half': 0.1, 'lr': 0.2, 'hr': 0.0}
        for key, value in (level_weights or {}).items():
            if key not in FLOW_LEVELS:
                raise ValueError(f'FlowWarpLoss level_weights: unknown level {key!r}; levels are {FLOW_LEVELS}')
            weights[key] = float(value)
        self.loss_weight = loss_weight
        self.level_weights = weights
        self.smooth_weight = smooth_weight
        self.criterion = _criterion(criterion, eps)

    @staticmethod
    def smoothness(flow):
        """Mean absolute difference of horizontally and vertically neighbouring flow vectors."""
        return ((flow[..., :, 1:] - flow[..., :, :-1]).abs().mean() +
                (flow[..., 1:, :] - flow[..., :-1, :]).abs().mean())

    def forward(self, flows, sharp_lr, sharp_hr=None):
        total = sharp_lr.new_zeros(())
        if not flows:
            return total
        for level, weight in self.level_weights.items():
            if weight == 0:
                continue
            flow = flows[level]
            if level == 'hr':
                if sharp_hr is None:
                    raise ValueError("FlowWarpLoss: the 'hr' level weight is > 0 but no sharp HR clip was given")
                frames = sharp_hr
            else:
                frames = sharp_lr
            n, t, c = frames.shape[:3]
            if flow.shape[1] != t - 1:
                raise ValueError(f'FlowWarpLoss: {flow.shape[1]} {level} flows for a clip of {t} frames (need t-1)')
            size = flow.shape[-2:]
            frames = level_frames(frames.flatten(0, 1), size).view(n, t, c, *size)  # the POF's own pyramid
            warped = flow_warp(frames[:, :-1].flatten(0, 1), flow.flatten(0, 1))
            term = self.criterion(warped, frames[:, 1:].flatten(0, 1))
            if self.smooth_weight:
                term = term + self.smooth_weight * self.smoothness(flow)
            total = total + weight * term
        return self.loss_weight * total
