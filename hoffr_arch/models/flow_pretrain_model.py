"""FlowPretrainModel: the POF (or any flow network with its contract) trained alone, self-supervised.

``HOFFRBaseModel`` (BasicSR's ``SRModel`` with EMA, run safety, ``train.losses``) with a flow network
as ``network_g`` (``type: POF``) and ``train.losses: [{type: SelfSupervisedFlowLoss, ...}]``: no flow
labels and no blur, only sharp frame pairs. Data: any ``VSRDBRecurrentDataset`` whose ``dataroot_lq``
holds SHARP LR frames (e.g. ``sharp_bicubic.lmdb``) and ``dataroot_gt`` the sharp HR frames (for the HR level);
``num_frame`` >= 2 (every consecutive pair is used), ``interval_list`` > 1 for larger motion,
``random_reverse`` so both directions are seen (the loss also runs every pair both ways).
``train.pan_prob`` / ``train.pan_max`` (default 0 / 4 LR pixels): the share of pairs replaced by a
frame and its own translation (``pan_pairs``), for large motion.

Validation (``VSRDBTestDataset`` on sharp frames) reports the warping error of each consecutive
pair (``calculate_warp_error``, 0-255, lower is better) for the levels named in ``val.metrics``
(``level: lr`` or ``hr``; ``level: zero`` is the error of not warping at all, for reference).
The saved ``net_g_*.pth`` is ``{'params': ..., 'params_ema': ...}`` of the flow network: what
``HOFFR(pof_path=...)`` loads.
"""
import numpy as np
import torch

from basicsr.utils.dist_util import get_dist_info
from basicsr.utils.registry import MODEL_REGISTRY

from hoffr_arch.archs.warp import flow_warp
from hoffr_arch.metrics.flow_metric import calculate_warp_error
from .base_model import HOFFRBaseModel


def consecutive_pairs(clip):
    """(n, t, c, h, w) -> (frames 0..t-2, frames 1..t-1), each (n * (t - 1), c, h, w)."""
    return clip[:, :-1].flatten(0, 1), clip[:, 1:].flatten(0, 1)


def pan_pairs(prev, cur, prev_hr, cur_hr, prob, max_shift, scale):
    """Camera pans from single frames: each pair, with probability ``prob``, becomes its first frame
    and that frame translated by a random whole number of HR pixels, up to ``max_shift`` LR pixels
    along each axis (so quarter-pixel steps at LR for x4), the new LR frame downscaled from the new HR
    frame as the data's LR frames are (MATLAB bicubic). Real pairs hold mostly small motion; these
    teach the coarse levels large motion (the POF's capture range). No flow label is used: the loss
    stays photometric.

    (m, c, h, w) LR x 2, (m, c, H, W) HR x 2 (or None) -> the same, new tensors.
    """
    from basicsr.utils.matlab_functions import imresize
    pick = torch.nonzero(torch.rand(prev.shape[0]) < prob).flatten().tolist()
    if not pick:
        return prev, cur, prev_hr, cur_hr
    cur = cur.clone()
    cur_hr = None if prev_hr is None else cur_hr.clone()
    reach = int(round(max_shift * scale))
    for i in pick:
        d = torch.randint(-reach, reach + 1, (2,)).tolist()
        if prev_hr is None:  # LR only: a bilinear translation of the LR frame
            flow = torch.tensor(d, dtype=prev.dtype, device=prev.device).view(1, 2, 1, 1) / scale
            cur[i] = flow_warp(prev[i:i + 1], flow.expand(1, 2, *prev.shape[-2:]))[0]
            continue
        flow = torch.tensor(d, dtype=prev_hr.dtype, device=prev_hr.device).view(1, 2, 1, 1)
        # whole pixels: a copy, to rounding
        cur_hr[i] = flow_warp(prev_hr[i:i + 1], flow.expand(1, 2, *prev_hr.shape[-2:]))[0]
        cur[i] = imresize(cur_hr[i].float().cpu().clamp(0, 1), 1 / scale).to(cur.device, cur.dtype)
    return prev, cur, prev_hr, cur_hr


def both_ways(net, prev, cur):
    """The flow network on (prev, cur) and (cur, prev) in one batch -> (forward flows, backward flows)."""
    flows = net(torch.cat((prev, cur)), torch.cat((cur, prev)))
    n = prev.shape[0]
    return {k: v[:n] for k, v in flows.items()}, {k: v[n:] for k, v in flows.items()}


@MODEL_REGISTRY.register()
class FlowPretrainModel(HOFFRBaseModel):
    """Self-supervised pretraining of a flow network (see the module docstring)."""

    # the forward and backward flows (dicts per level), the LR and HR frame pairs, the iteration
    LOSS_INPUTS = ('flows_fw', 'flows_bw', 'frames_lr', 'frames_hr', 'iteration')
    LOSS_EXAMPLE = '[{type: SelfSupervisedFlowLoss}]'
    TRAIN_OPTIONS = HOFFRBaseModel.TRAIN_OPTIONS | {'pan_prob', 'pan_max'}

    def feed_data(self, data):
        self.lq = data['lq'].to(self.device)  # (n, t, c, h, w) sharp LR
        self.gt = data['gt'].to(self.device) if 'gt' in data else None  # (n, t, c, H, W) sharp HR

    def loss_inputs(self, current_iter):
        """Consecutive pairs of the clips (some made pans, ``train.pan_prob``), the flows both ways."""
        prev, cur = consecutive_pairs(self.lq)
        hr = consecutive_pairs(self.gt) if self.gt is not None else None
        pan = self.opt['train'].get('pan_prob', 0)
        if pan:
            prev_hr, cur_hr = hr or (None, None)
            prev, cur, prev_hr, cur_hr = pan_pairs(prev, cur, prev_hr, cur_hr, pan,
                                                   self.opt['train'].get('pan_max', 4), self.opt['scale'])
            hr = None if prev_hr is None else (prev_hr, cur_hr)
        fw, bw = both_ways(self.net_g, prev, cur)
        return {'flows_fw': fw, 'flows_bw': bw, 'frames_lr': (prev, cur), 'frames_hr': hr, 'iteration': current_iter}

    def dist_validation(self, dataloader, current_iter, tb_logger, save_img):
        if get_dist_info()[0] == 0:  # small: rank 0 measures, the others go on
            self.nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img):
        dataset = dataloader.dataset
        name = dataset.opt['name']
        metrics = self.opt['val'].get('metrics') or {}
        self._initialize_best_metric_results(name)
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        values = {m: [] for m in metrics}
        with torch.no_grad():
            for index in range(len(dataset)):
                clip = dataset[index]
                prev, cur = consecutive_pairs(clip['lq'][None].to(self.device))
                flows = net(prev, cur)
                hr = consecutive_pairs(clip['gt'][None].to(self.device))
                for metric, mopt in metrics.items():
                    level = mopt.get('level', 'lr')
                    p, c = hr if level == 'hr' else (prev, cur)
                    flow = torch.zeros_like(p[:, :2]) if level == 'zero' else flows[level]
                    values[metric].append(calculate_warp_error(p, c, flow, mopt.get('border', 4)))
        net.train(was_training)
        self.metric_results = {m: float(np.mean(v)) for m, v in values.items()}
        for metric, value in self.metric_results.items():
            self._update_best_metric_result(name, metric, value, current_iter)
        self._log_validation_metric_values(current_iter, name, tb_logger)
