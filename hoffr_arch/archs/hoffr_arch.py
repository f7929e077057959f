"""HOFFR: High-resolution optical flow and frame-recurrent network (Fang & Zhan, Neurocomputing 2022).

One recurrent step (``HOFFR.step``), for the blurry LR frame B_t:
1. POF predicts the flow from B_{t-1} to B_t at coarse (down to 1/8 LR), LR and HR scales;
2. the previous HR output is warped by the HR flow and space-to-depth'ed to LR (frame recurrence,
   as in FRVSR), then concatenated with B_t; at t = 1 it is a black frame;
3. PF: a deblurring branch and an SR branch extract F_DB and F_SR; conv(F_DB) + B_t is the
   deblurred LR frame;
4. AttentionFusion (RCAB) fuses F_DB and F_SR;
5. Reconstruction by pixel shuffle, plus a bilinear upsampling of a base image (``upsample_base``).
"""
import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY

from hoffr_arch.checkpoint import load_weights, resolve_asset

from .attention_fusion import AttentionFusion
from .pf_branch import PFBranch
from .pof import POF
from .warp import flow_warp

UPSAMPLE_BASES = ('deblurred', 'input', 'recurrent', 'none')


class Reconstruction(nn.Module):
    """Pixel-shuffle reconstruction: (n, num_feat, h, w) -> (n, num_ch, scale*h, scale*w).

    ``scale`` a power of two (one conv + shuffle by 2 per factor, the last conv goes straight to
    image channels) or 3.
    """

    def __init__(self, num_feat=64, scale=4, num_ch=3):
        super().__init__()
        if scale >= 2 and scale & (scale - 1) == 0:
            factors = [2] * int(math.log2(scale))
        elif scale == 3:
            factors = [3]
        else:
            raise ValueError(f'HOFFR scale must be a power of two or 3, got {scale}')
        layers = []
        for i, f in enumerate(factors):
            last = i == len(factors) - 1
            layers += [nn.Conv2d(num_feat, (num_ch if last else num_feat) * f * f, 3, 1, 1), nn.PixelShuffle(f)]
            if not last:
                layers.append(nn.LeakyReLU(0.1, inplace=True))
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x)


class HOFFRState(NamedTuple):
    """What one step hands to the next: the (padded) LR input and HR output of frame t."""
    lq: torch.Tensor  # (n, c, h', w'), h' and w' rounded up to even
    hr: torch.Tensor  # (n, c, scale*h', scale*w')


@ARCH_REGISTRY.register()
class HOFFR(nn.Module):
    """HOFFR for joint video super-resolution and deblurring.

    Args:
        num_ch (int): image channels (input = output). Default 3.
        scale (int): upsampling factor (2, 3, 4, 8...). Default 4.
        num_feat (int): width of F_DB, F_SR, the fusion and the reconstruction. Default 64.
        sr_num_feat, sr_num_block, sr_stride: SR branch width, ResBlocks and stride. Default 64, 10, 1.
        db_num_feat, db_num_block, db_stride: deblurring branch. Default 96, 11, 2 (runs at half LR).
        fusion_num_rcab (int): RCABs in the attention fusion. Default 2.
        squeeze_factor (int): RCAB channel squeeze. Default 16.
        pof_num_feat, pof_num_block, pof_num_coarse: width and ResBlocks of each POF level, and
            the POF levels below LR. Default 32, 2, 3 (``POF``'s defaults).
        pof_path (str | None): POF weights to start from, e.g. the self-supervised
            ``hoffr_arch/assets/pof_x4.pth`` (``{'params': POF state dict}``, as BasicVSR's
            ``spynet_path``); None (default) starts the POF at zero motion. A relative path that
            does not exist from the working directory is looked up from the installed package's
            parent, so ``hoffr_arch/assets/pof_x4.pth`` works from a checkout and a pip install alike.
        flow (dict | None): another flow network from ``ARCH_REGISTRY`` in the POF's place, e.g.
            ``{type: SpyNetFlow}``; it must follow ``POF.forward``'s contract (``forward(prev, cur)``
            -> dict with at least 'lr' and 'hr' flows). ``pof_path`` then loads its weights. None
            (default): the POF built from the ``pof_*`` options.
        use_flow (bool): False skips the POF and recurs on the UNALIGNED previous output (zero flow):
            the ablation of HOFFR's alignment. Default True.
        upsample_base (str): image bilinearly upsampled and added to the reconstruction:
            'recurrent' adds, from the second frame on, the warped previous output with its low
            frequencies (x``scale`` average) replaced by those of the deblurred frame (back-projection:
            detail carried along the flow; the first frame uses 'deblurred');
            'deblurred' (the deblurred LR frame, default), 'input' (the blurry LR frame) or 'none'.

    The defaults give about 3.5 M parameters, the paper's count.

    ``forward(lqs)``: blurry LR clip (n, t, c, h, w), any h and w -> sharp HR clip (n, t, c, s*h, s*w).
    ``forward(lqs, return_aux=True)`` returns ``(out, aux)`` for the training losses:
        aux['deblurred']: (n, t, c, h, w) deblurred LR frames;
        aux['flows']: every POF level, e.g. {'half': (n, t-1, 2, ceil(h/2), ceil(w/2)), 'lr': (n, t-1, 2, h, w),
                       'hr': (n, t-1, 2, s*h, s*w), 'quarter': ..., 'eighth': ...},
                       entry i warping frame i onto frame i+1
                       (``flow_warp``), in pixels of its own scale; empty dict when t == 1.
    ``step(lq, state)`` runs one frame (see there): streaming with constant memory, same output.
    """

    def __init__(self,
                 num_ch=3,
                 scale=4,
                 num_feat=64,
                 sr_num_feat=64,
                 sr_num_block=10,
                 sr_stride=1,
                 db_num_feat=96,
                 db_num_block=11,
                 db_stride=2,
                 fusion_num_rcab=2,
                 squeeze_factor=16,
                 pof_num_feat=32,
                 pof_num_block=2,
                 pof_num_coarse=3,
                 pof_path=None,
                 use_flow=True,
                 flow=None,
                 upsample_base='deblurred'):
        super().__init__()
        if upsample_base not in UPSAMPLE_BASES:
            raise ValueError(f'HOFFR upsample_base must be one of {UPSAMPLE_BASES}, got {upsample_base!r}')
        self.num_ch = num_ch
        self.scale = scale
        self.upsample_base = upsample_base
        if flow is None:
            self.pof = POF(scale, pof_num_feat, pof_num_block, num_ch, pof_num_coarse)
        else:
            self.pof = build_network(dict(flow, scale=flow.get('scale', scale)))
        if pof_path:
            load_weights(self.pof, resolve_asset(pof_path), what='POF (check the pof_* options)')
        self.use_flow = use_flow
        # ``forward`` runs the POF over up to this many frame pairs a call, and up to this many LR
        # pixels (on 2 CPU cores, batching sped up small training patches and did nothing for
        # 180x320 frames: ``python -m hoffr_arch.benchmarks.speed --pof-per-frame``)
        self.pof_pairs_per_call = 8
        self.pof_pixels_per_call = 32768
        in_ch = num_ch + num_ch * scale * scale  # B_t and the space-to-depth'ed warped previous output
        self.db_branch = PFBranch(in_ch, db_num_feat, db_num_block, num_feat, db_stride)
        self.sr_branch = PFBranch(in_ch, sr_num_feat, sr_num_block, num_feat, sr_stride)
        self.db_head = nn.Conv2d(num_feat, num_ch, 3, 1, 1)
        self.fusion = AttentionFusion(num_feat, fusion_num_rcab, squeeze_factor)
        self.reconstruction = Reconstruction(num_feat, scale, num_ch)

    def step(self, lq, state=None, return_aux=False):
        """The recurrent step: one blurry LR frame in, one sharp HR frame out.

        Args:
            lq (Tensor): (n, c, h, w) blurry LR frame t.
            state (HOFFRState | None): returned by the previous step; None for the first frame.
            return_aux (bool): also return a dict with 'deblurred' (n, c, h, w) and 'flows' (the POF
                output cropped to the frame, or None at the first frame).

        Returns:
            (hr, state) or (hr, state, aux); hr is (n, c, s*h, s*w).
        """
        x = self._pad(lq)
        flows = None
        if state is not None:
            if state.lq.shape != x.shape:
                raise ValueError(f'HOFFR.step: frame of shape {tuple(lq.shape)} does not continue a clip of '
                                 f'padded shape {tuple(state.lq.shape)}; start a new clip with state=None')
            if self.use_flow:
                flows = self.pof(state.lq, x)
        return self._step(x, lq.shape[-2:], state, flows, return_aux)

    @staticmethod
    def _pad(lq):
        """(..., h, w) -> (..., h', w'): replicate-padded to even sizes (the deblurring branch halves them)."""
        h, w = lq.shape[-2:]
        if not (h % 2 or w % 2):
            return lq
        return F.pad(lq.flatten(0, -4), (0, w % 2, 0, h % 2), mode='replicate').unflatten(0, lq.shape[:-3])

    def _step(self, x, size, state, flows, return_aux):
        """``step`` on the padded frame x (n, c, h', w') of true size ``size`` = (h, w), with the POF's
        output for (state.lq, x) already computed (None at the first frame or without flow)."""
        n, c = x.shape[:2]
        h, w = size
        s = self.scale
        if state is None:
            warped = x.new_zeros(n, c, s * x.shape[-2], s * x.shape[-1])
        elif flows is not None:
            warped = flow_warp(state.hr, flows['hr'])
        else:
            warped = state.hr

        feat = torch.cat((x, F.pixel_unshuffle(warped, s)), 1)
        f_db = self.db_branch(feat)
        f_sr = self.sr_branch(feat)
        deblurred = x + self.db_head(f_db)
        out = self.reconstruction(self.fusion(f_db, f_sr))
        if self.upsample_base == 'recurrent' and state is not None:
            # the warped previous output, its low frequencies replaced by the current deblurred frame's
            low = F.interpolate(deblurred - F.avg_pool2d(warped, s), scale_factor=s, mode='bilinear',
                                align_corners=False)
            out = out + warped + low
        elif self.upsample_base != 'none':
            base = x if self.upsample_base == 'input' else deblurred
            out = out + F.interpolate(base, scale_factor=s, mode='bilinear', align_corners=False)

        new_state = HOFFRState(x, out)
        hr = out[..., :s * h, :s * w]
        if not return_aux:
            return hr, new_state
        if flows is not None:
            # the coarse levels keep the padded frame's pooled size; LR and HR are cropped to the frame
            flows = dict(flows, lr=flows['lr'][..., :h, :w], hr=flows['hr'][..., :s * h, :s * w])
        return hr, new_state, {'deblurred': deblurred[..., :h, :w], 'flows': flows}

    def forward(self, lqs, return_aux=False):
        """(n, t, c, h, w) -> (n, t, c, s*h, s*w), or ``(out, aux)`` with ``return_aux`` (class doc)."""
        if lqs.dim() != 5:
            raise ValueError(f'HOFFR expects (n, t, c, h, w), got shape {tuple(lqs.shape)}')
        n, t = lqs.shape[:2]
        x = self._pad(lqs)
        per_call = max(1, min(self.pof_pairs_per_call, self.pof_pixels_per_call // (n * x.shape[-2] * x.shape[-1])))
        outs, deblurred, flows = [], [], {}
        state = None
        for i in range(t):
            step_flows = None
            if i and self.use_flow:
                pair = i - 1  # the pair (frame i-1, frame i)
                if pair % per_call == 0:
                    # the POF depends on the input frames only: one batched call for the next pairs
                    # (fewer, larger convolutions than a call per frame; same flows)
                    last = min(pair + per_call, t - 1)
                    chunk = self.pof(x[:, pair:last].flatten(0, 1), x[:, pair + 1:last + 1].flatten(0, 1))
                    chunk = {key: value.unflatten(0, (n, last - pair)) for key, value in chunk.items()}
                step_flows = {key: value[:, pair % per_call] for key, value in chunk.items()}
            hr, state, aux = self._step(x[:, i], lqs.shape[-2:], state, step_flows, True)
            outs.append(hr)
            deblurred.append(aux['deblurred'])
            if aux['flows'] is not None:
                for key, value in aux['flows'].items():
                    flows.setdefault(key, []).append(value)
        out = torch.stack(outs, 1)
        if not return_aux:
            return out
        flows = {key: torch.stack(value, 1) for key, value in flows.items()}
        return out, {'deblurred': torch.stack(deblurred, 1), 'flows': flows}
