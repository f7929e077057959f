"""PF: parallel feature extraction, one branch (the deblurring branch or the SR branch)."""
from torch import nn
from torch.nn import functional as F

from basicsr.archs.arch_util import ResidualBlockNoBN


class PFBranch(nn.Module):
    """A chain of ResBlocks whose outputs are all concatenated, as the paper describes.

    (n, in_ch, h, w) -> (n, out_feat, h, w).

    head conv (stride ``stride``) -> ``num_block`` ResBlocks -> concatenation of every block's output
    -> 1x1 conv -> conv + pixel shuffle by ``stride`` back to (h, w).
    With ``stride=2`` the blocks run at half the LR size: four times cheaper per parameter, with a
    larger receptive field, which suits the deblurring branch (blur spans several LR pixels).

    Args:
        in_ch (int): input channels.
        num_feat (int): width inside the branch.
        num_block (int): number of ResBlocks.
        out_feat (int): output channels.
        stride (int): 1 or 2 (h and w must then be even).
    """

    def __init__(self, in_ch, num_feat=64, num_block=10, out_feat=64, stride=1):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f'PFBranch stride must be 1 or 2, got {stride}')
        if num_block < 1:
            raise ValueError(f'PFBranch num_block must be >= 1, got {num_block}')
        self.stride = stride
        self.head = nn.Conv2d(in_ch, num_feat, 3, stride, 1)
        self.blocks = nn.ModuleList(ResidualBlockNoBN(num_feat) for _ in range(num_block))
        self.merge = nn.Conv2d(num_feat * num_block, num_feat, 1)
        self.out = nn.Conv2d(num_feat, out_feat * stride * stride, 3, 1, 1)

    def forward(self, x):
        feat = F.leaky_relu(self.head(x), 0.1)
        # merge(cat(outputs)) computed as the sum over blocks of merge's weight slice applied to each
        # block's output: the same 1x1 convolution (same weights and state_dict, equal within float
        # rounding, same speed), but one block output is alive at a time instead of all of them and
        # their concatenation (at inference on a 160x160 LR tile: ~130 MB less at the peak).
        acc = None
        for block, weight in zip(self.blocks, self.merge.weight.split(feat.shape[1], 1)):
            feat = block(feat)
            part = F.conv2d(feat, weight)
            acc = part if acc is None else acc.add_(part)
        feat = F.leaky_relu(acc + self.merge.bias.view(1, -1, 1, 1), 0.1)
        return F.pixel_shuffle(self.out(feat), self.stride)
