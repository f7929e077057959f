"""SpyNet behind HOFFR's flow contract: the seam that swaps the POF for another flow network.

``SpyNetFlow`` is BasicSR's ``SpyNet`` (same weights, so BasicVSR's ``spynet_path`` loads what
``FlowPretrainModel`` trains with it, and official SpyNet weights load here) with
``forward(prev, cur)`` returning ``{'lr': flow, 'hr': flow bilinearly upscaled}`` like the POF.
Use it in HOFFR with ``network_g.flow: {type: SpyNetFlow}`` (the "HOFFR with SpyNet" ablation),
or pretrain it alone with ``FlowPretrainModel`` (``network_g: {type: SpyNetFlow}``).
"""
from basicsr.archs.spynet_arch import SpyNet
from basicsr.utils.registry import ARCH_REGISTRY

from .warp import upscale_flow


@ARCH_REGISTRY.register()
class SpyNetFlow(SpyNet):
    """SpyNet with the POF's interface.

    Args:
        scale (int): HR / LR ratio of the 'hr' flow. Default 4.
        load_path (str | None): SpyNet weights (``{'params': ...}``). Default None (random).

    ``forward(prev, cur)``: (n, 3, h, w) LR frames in [0, 1] -> {'lr': (n, 2, h, w),
    'hr': (n, 2, scale*h, scale*w)}, each warping ``prev`` onto ``cur`` (``flow_warp``).
    """

    def __init__(self, scale=4, load_path=None):
        super().__init__(load_path)
        self.scale = scale
        # ImageNet normalisation constants: not weights. Official SpyNet files hold no such keys and
        # SpyNet(load_path) loads strictly before registering them, so they must not be saved
        for name in ('mean', 'std'):
            self.register_buffer(name, getattr(self, name), persistent=False)

    def forward(self, prev, cur):
        flow = super().forward(cur, prev)  # SpyNet(ref, supp): the flow that warps supp onto ref
        return {'lr': flow, 'hr': upscale_flow(flow, self.scale)}
