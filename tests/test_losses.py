"""Each loss against values computed by hand on small tensors."""
import math

import pytest
import torch

from hoffr_arch.losses.hoffr_loss import DBLoss, FlowWarpLoss, SRLoss

PRED = torch.tensor([0., 1., 2., 3.]).view(1, 1, 1, 2, 2)
ZERO = torch.zeros(1, 1, 1, 2, 2)


def test_sr_loss_l2():
    assert SRLoss()(PRED, ZERO).item() == pytest.approx((0 + 1 + 4 + 9) / 4)
    assert SRLoss(loss_weight=2.0)(PRED, ZERO).item() == pytest.approx(7.0)


def test_sr_loss_charbonnier_and_l1():
    expected = sum(math.sqrt(v * v + 1e-6) for v in (0, 1, 2, 3)) / 4
    assert SRLoss(criterion='charbonnier')(PRED, ZERO).item() == pytest.approx(expected, rel=1e-6)
    assert SRLoss(criterion='l1', reduction='sum')(PRED, ZERO).item() == pytest.approx(6.0)


def test_db_loss_weighted():
    assert DBLoss(loss_weight=0.5)(PRED, PRED + 2).item() == pytest.approx(0.5 * 4)


def test_frame_loss_errors():
    with pytest.raises(ValueError, match='criterion'):
        SRLoss(criterion='l3')
    with pytest.raises(ValueError, match='shape'):
        SRLoss()(PRED, torch.zeros(1, 1, 1, 2, 3))


def test_flow_loss_zero_flow_hand_value():
    # frame 0 is 0 everywhere, frame 1 is 1: warping frame 0 by zero flow misses by 1 at every pixel
    sharp_lr = torch.cat((torch.zeros(1, 1, 3, 4, 4), torch.ones(1, 1, 3, 4, 4)), 1)
    flows = {'half': torch.zeros(1, 1, 2, 2, 2), 'lr': torch.zeros(1, 1, 2, 4, 4), 'hr': torch.zeros(1, 1, 2, 8, 8)}
    assert FlowWarpLoss()(flows, sharp_lr).item() == pytest.approx(0.01 * (0.1 * 1 + 0.2 * 1))
    # the HR level needs the sharp HR clip
    hr = torch.cat((torch.zeros(1, 1, 3, 8, 8), torch.full((1, 1, 3, 8, 8), 0.5)), 1)
    loss = FlowWarpLoss(loss_weight=1.0, level_weights={'half': 0, 'lr': 0, 'hr': 2.0})
    assert loss(flows, sharp_lr, hr).item() == pytest.approx(2.0 * 0.25)
    with pytest.raises(ValueError, match='sharp HR'):
        loss(flows, sharp_lr)


def test_flow_loss_smoothness_and_exact_flow():
    # a 1-pixel shift explained exactly by the flow: warping error 0 inside; smoothness by hand
    prev = torch.arange(6.).repeat(6, 1).view(1, 1, 6, 6).expand(1, 3, 6, 6)
    cur = prev + 1  # cur[x] = prev[x + 1] on a ramp
    flow = torch.zeros(1, 1, 2, 6, 6)
    flow[:, :, 0] = 1.0
    flow[..., 0, 3:, :] = 2.0  # a flow edge: |dx| = 1 on 6 of the 6x5 horizontal neighbour pairs
    clip = torch.stack((prev, cur), 1)
    loss = FlowWarpLoss(loss_weight=1.0, level_weights={'half': 0, 'lr': 1.0}, smooth_weight=0.0)
    smooth = FlowWarpLoss.smoothness(flow[:, 0])
    # flow (n, 2, 6, 6): horizontal pairs 2*6*5 = 60, none differ; vertical pairs 60, 6 differ by 1
    assert smooth.item() == pytest.approx(0 + 6 / 60)
    flat = {'lr': torch.ones(1, 1, 2, 6, 6) * torch.tensor([1., 0.]).view(1, 1, 2, 1, 1)}
    err = loss(flat, clip).item()
    # the last column samples beyond the border (clamped): 5 instead of 6, error 1 on 1/6 of pixels
    assert err == pytest.approx(1 / 6)


def test_flow_loss_one_frame_and_bad_level():
    assert FlowWarpLoss()({}, torch.rand(1, 1, 3, 4, 4)).item() == 0
    with pytest.raises(ValueError, match="unknown level 'quarter'"):
        FlowWarpLoss(level_weights={'quarter': 1.0})


def test_flow_losses_and_metric_use_the_pofs_own_pyramid_on_odd_sizes():
    """On a 9x13 clip the half level is 5x7: the POF pools 2x2 with the odd last row/column alone.
    Adaptive pooling (what FlowWarpLoss used) would give other images there."""
    from torch.nn import functional as F

    from hoffr_arch.archs.pof import POF, level_frames
    from hoffr_arch.losses.flow_pretrain_loss import SelfSupervisedFlowLoss
    sharp = torch.rand(1, 2, 3, 9, 13)
    zero = {'half': torch.zeros(1, 1, 2, 5, 7)}
    half = level_frames(sharp[0], (5, 7))
    assert torch.equal(half[:, :, -1, -1], sharp[0, :, :, -1, -1])  # the corner pixel averaged alone
    want = F.mse_loss(half[0], half[1]).item()
    half_only = FlowWarpLoss(loss_weight=1.0, level_weights={'half': 1.0, 'lr': 0, 'hr': 0}, smooth_weight=0.0)
    got = half_only(zero, sharp).item()
    assert got == pytest.approx(want, rel=1e-6)
    adaptive = F.adaptive_avg_pool2d(sharp[0], (5, 7))
    assert F.mse_loss(adaptive[0], adaptive[1]).item() != pytest.approx(want, rel=1e-3)
    # the POF's coarse levels of 9x13 frames have the sizes level_frames reaches
    flows = POF(num_feat=4, num_block=1)(sharp[:, 0], sharp[:, 1])
    assert flows['half'].shape[-2:] == (5, 7) and flows['quarter'].shape[-2:] == level_frames(half, (3, 4)).shape[-2:]
    with pytest.raises(ValueError, match='no pyramid level'):
        level_frames(sharp[0], (4, 7))
    # the self-supervised loss of zero flows (no smoothness, no occlusion, census off): the Charbonnier
    # distance of the same half-level frames
    loss = SelfSupervisedFlowLoss(level_weights={'half': 1.0, 'lr': 0, 'hr': 0}, census_weight=0)
    total, _ = loss({'half': zero['half'][:, 0]}, {'half': zero['half'][:, 0]}, (sharp[:, 0], sharp[:, 1]))
    assert total.item() == pytest.approx(torch.sqrt((half[0] - half[1]) ** 2 + 1e-6).mean().item(), rel=1e-5)
