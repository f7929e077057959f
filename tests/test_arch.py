"""HOFFR network: shapes, gradients, warping, POF learning, streaming, size."""
import pytest
import torch
from torch.nn import functional as F

from hoffr_arch.archs.hoffr_arch import HOFFR, UPSAMPLE_BASES
from hoffr_arch.archs.pof import POF
from hoffr_arch.archs.warp import flow_warp
from hoffr_arch.losses.hoffr_loss import DBLoss, FlowWarpLoss, SRLoss

SMALL = dict(num_feat=16, sr_num_feat=16, sr_num_block=2, db_num_feat=16, db_num_block=2, pof_num_feat=8,
             pof_num_block=1, squeeze_factor=4)


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('h, w', [(16, 16), (17, 23), (9, 30), (1, 5)])
def test_output_shapes_any_size(scale, h, w):
    net = HOFFR(scale=scale, **SMALL)
    lqs = torch.rand(2, 3, 3, h, w)
    out, aux = net(lqs, return_aux=True)
    assert out.shape == (2, 3, 3, scale * h, scale * w)
    assert aux['deblurred'].shape == (2, 3, 3, h, w)
    flows = aux['flows']
    assert flows['half'].shape == (2, 2, 2, (h + 1) // 2, (w + 1) // 2)
    assert flows['lr'].shape == (2, 2, 2, h, w)
    assert flows['hr'].shape == (2, 2, 2, scale * h, scale * w)
    assert torch.isfinite(out).all()
    assert torch.equal(net(lqs), out)  # return_aux only adds outputs


def test_single_frame_clip_has_no_flows():
    out, aux = HOFFR(**SMALL)(torch.rand(1, 1, 3, 8, 8), return_aux=True)
    assert out.shape == (1, 1, 3, 32, 32) and aux['flows'] == {}


def test_bad_scale_and_options_are_rejected():
    with pytest.raises(ValueError, match='scale'):
        HOFFR(scale=5, **SMALL)
    with pytest.raises(ValueError, match='upsample_base'):
        HOFFR(upsample_base='bicubic', **SMALL)
    with pytest.raises(ValueError, match=r'\(n, t, c, h, w\)'):
        HOFFR(**SMALL)(torch.rand(1, 3, 8, 8))


def _all_losses(net, lqs, gt, sharp_lr):
    out, aux = net(lqs, return_aux=True)
    return SRLoss()(out, gt) + DBLoss()(aux['deblurred'], sharp_lr) + FlowWarpLoss()(aux['flows'], sharp_lr)


def test_gradients_reach_every_parameter():
    net = HOFFR(**SMALL)
    lqs, sharp_lr = torch.rand(1, 3, 3, 12, 12), torch.rand(1, 3, 3, 12, 12)
    gt = torch.rand(1, 3, 3, 48, 48)
    # the flow heads start at zero (no motion), so the layers before them get gradient from the
    # second step on: take one real step first
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    _all_losses(net, lqs, gt, sharp_lr).backward()
    opt.step()
    opt.zero_grad()
    _all_losses(net, lqs, gt, sharp_lr).backward()
    parts = ('pof', 'db_branch', 'sr_branch', 'db_head', 'fusion', 'reconstruction')
    seen = set()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f'no gradient reaches {name}'
        seen.add(name.split('.')[0])
    assert seen == set(parts)


def test_warp_zero_flow_is_identity(real_frame):
    img = real_frame[..., :40, :50]
    assert torch.allclose(flow_warp(img, torch.zeros(1, 2, 40, 50)), img, atol=1e-6)


@pytest.mark.parametrize('dx, dy', [(3, 0), (0, -2), (2.5, 1)])
def test_warp_known_translation(real_frame, dx, dy):
    big = real_frame[..., 100:160, 200:280]
    # frame t sees the scene moved by (-dx, -dy): cur[p] = prev[p + (dx, dy)], which flow (dx, dy) undoes
    theta = torch.tensor([[[1, 0, 2 * dx / 79], [0, 1, 2 * dy / 59]]], dtype=torch.float32)
    cur = F.grid_sample(big, F.affine_grid(theta, big.shape, align_corners=True), align_corners=True)
    flow = torch.tensor([dx, dy], dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, 60, 80)
    warped = flow_warp(big, flow)
    inner = (..., slice(4, -4), slice(4, -4))
    assert torch.allclose(warped[inner], cur[inner], atol=1e-5)
    if dx == int(dx) and dy == int(dy):  # integer shifts: exactly the shifted pixels
        dx, dy = int(dx), int(dy)
        assert torch.allclose(warped[..., 4:-4, 4:-4], big[..., 4 + dy:56 + dy, 4 + dx:76 + dx], atol=1e-5)


def test_pof_learns_known_motion_on_real_frame(real_frame):
    # LR frames: a real frame shifted by (2, 1) LR pixels, then x4 downsampled (antialiased)
    lr = F.interpolate(real_frame, scale_factor=0.25, mode='bicubic', antialias=True, align_corners=False)
    prev = lr[..., 40:72, 60:108]
    cur = lr[..., 41:73, 62:110]  # cur[p] = prev[p + (2, 1)]
    clip = torch.stack((prev, cur), 1)
    pof = POF(scale=4, num_feat=16, num_block=1)
    loss_fn = FlowWarpLoss(loss_weight=1.0, level_weights={'half': 0.0, 'lr': 1.0}, smooth_weight=0.0)
    opt = torch.optim.Adam(pof.parameters(), lr=2e-3)

    def loss():
        flows = pof(prev, cur)
        return loss_fn({k: v[:, None] for k, v in flows.items()}, clip), flows

    first, _ = loss()
    for _ in range(40):
        opt.zero_grad()
        loss()[0].backward()
        opt.step()
    last, flows = loss()
    assert last < 0.1 * first  # measured: 0.03 (bedroom frame), 0.04 (made-up texture) of the first
    # the learned LR flow is the shift (measured (2.01, 1.22) on the bedroom frame, (1.96, 1.02) on the texture)
    mean = flows['lr'][..., 4:-4, 4:-4].mean((-1, -2))[0]
    assert torch.allclose(mean, torch.tensor([2.0, 1.0]), atol=0.3), mean


@pytest.mark.parametrize('base,pairs,pixels,calls', [(base, 8, 32768, 1) for base in UPSAMPLE_BASES] +
                         [('deblurred', 3, 32768, 2), ('deblurred', 8, 2 * 12 * 14, 2)])
def test_streaming_equals_forward(base, pairs, pixels, calls):
    net = HOFFR(**SMALL, upsample_base=base).eval()
    # forward batches the POF over frame pairs: all 4 in one call; 3 a call; 2 a call (the pixel cap)
    net.pof_pairs_per_call, net.pof_pixels_per_call = pairs, pixels
    # make the flow heads non-zero so the recurrence really warps
    for level in (*net.pof.coarse, net.pof.level_lr, net.pof.level_hr):
        torch.nn.init.normal_(level.body[-1].weight, std=0.05)
    lqs = torch.rand(1, 5, 3, 11, 14)
    pof_calls = []
    net.pof.register_forward_hook(lambda module, args, out: pof_calls.append(args[0].shape[0]))
    with torch.no_grad():
        whole = net(lqs)
        assert len(pof_calls) == calls and sum(pof_calls) == 4
        state, frames = None, []
        for i in range(lqs.shape[1]):
            hr, state = net.step(lqs[:, i], state)
            frames.append(hr)
    # batched convolutions round differently from one frame at a time (measured: 2.5e-6 at most)
    assert torch.allclose(torch.stack(frames, 1), whole, atol=1e-5)
    # the state is one frame, whatever the clip length
    assert state.lq.shape == (1, 3, 12, 14) and state.hr.shape == (1, 3, 48, 56)


def test_step_rejects_frame_of_another_clip():
    net = HOFFR(**SMALL)
    _, state = net.step(torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match='state=None'):
        net.step(torch.rand(1, 3, 10, 8), state)


def test_default_parameter_count_is_pinned():
    """3.60 M (the paper: 3.5 M), 0.24 M of them the POF: a change of the default size must be deliberate."""
    net = HOFFR()
    assert sum(p.numel() for p in net.parameters()) == 3_597_023
    assert sum(p.numel() for p in net.pof.parameters()) == 243_624


def test_recurrent_base_carries_the_previous_output_along_the_flow():
    """With the network's own residual at zero, 'recurrent' keeps the warped previous output's detail
    and takes only its low frequencies from the current frame: a static scene stays as it was."""
    net = HOFFR(**SMALL, upsample_base='recurrent').eval()
    for p in net.reconstruction.parameters():
        torch.nn.init.zeros_(p)
    for p in net.db_head.parameters():
        torch.nn.init.zeros_(p)
    detail = torch.rand(1, 3, 32, 32)  # a previous output with detail the LR frame cannot show
    lq = F.avg_pool2d(detail, 4)
    with torch.no_grad():
        _, state = net.step(lq)
        state = state._replace(hr=detail)
        out, _ = net.step(lq, state)  # POF at zero motion: nothing moved
    assert torch.allclose(out, detail, atol=1e-5)
    with torch.no_grad():
        plain = HOFFR(**SMALL, upsample_base='deblurred').eval()
        plain.load_state_dict(net.state_dict())
        assert not torch.allclose(plain.step(lq, state)[0], detail, atol=1e-2)


@pytest.mark.parametrize('stride', [1, 2])
def test_pf_branch_is_the_concatenation_the_paper_describes(stride):
    """PFBranch sums merge's weight slices over the block outputs (to keep one alive at a time):
    it must equal merge(cat(every block's output)), written out here."""
    from hoffr_arch.archs.pf_branch import PFBranch
    branch = PFBranch(7, num_feat=8, num_block=3, out_feat=5, stride=stride).eval()
    x = torch.rand(2, 7, 12, 16)
    feat, outs = F.leaky_relu(branch.head(x), 0.1), []
    for block in branch.blocks:
        feat = block(feat)
        outs.append(feat)
    merged = F.leaky_relu(branch.merge(torch.cat(outs, 1)), 0.1)
    expected = F.pixel_shuffle(branch.out(merged), stride)
    with torch.no_grad():
        got = branch(x)
    assert got.shape == (2, 5, 12, 16)
    assert torch.allclose(got, expected.detach(), atol=1e-6)
