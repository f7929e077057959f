"""Attention feature fusion of the deblurring and SR features, built on RCAB channel attention."""
import torch
from torch import nn

from basicsr.archs.rcan_arch import RCAB


class AttentionFusion(nn.Module):
    """Fuses F_DB and F_SR: 1x1 conv of their concatenation, then ``num_rcab`` RCABs.

    Each RCAB (RCAN, ECCV 2018) is conv-ReLU-conv, global average pool, 1x1 reduce, ReLU, 1x1
    expand, sigmoid, channel rescale, residual add: the channel attention decides how much of each
    deblurring and SR feature reaches the reconstruction.

    ``forward(f_db, f_sr)``: two (n, num_feat, h, w) -> (n, num_feat, h, w).
    """

    def __init__(self, num_feat=64, num_rcab=2, squeeze_factor=16):
        super().__init__()
        self.reduce = nn.Conv2d(2 * num_feat, num_feat, 1)
        self.rcabs = nn.Sequential(*[RCAB(num_feat, squeeze_factor) for _ in range(num_rcab)])

    def forward(self, f_db, f_sr):
        return self.rcabs(self.reduce(torch.cat((f_db, f_sr), 1)))
