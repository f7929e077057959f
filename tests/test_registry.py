from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY

from hoffr_arch.archs.hoffr_arch import HOFFR
from hoffr_arch.losses.hoffr_loss import DBLoss, FlowWarpLoss, SRLoss


def test_every_class_is_registered():
    assert ARCH_REGISTRY.get('HOFFR') is HOFFR
    for cls in (SRLoss, DBLoss, FlowWarpLoss):
        assert LOSS_REGISTRY.get(cls.__name__) is cls


def test_built_from_yaml_style_options():
    net = build_network({'type': 'HOFFR', 'scale': 2, 'sr_num_block': 2, 'db_num_block': 3, 'num_feat': 32})
    assert isinstance(net, HOFFR) and net.scale == 2 and len(net.db_branch.blocks) == 3
    loss = build_loss({'type': 'FlowWarpLoss', 'loss_weight': 0.5, 'level_weights': {'hr': 1.0}})
    assert loss.loss_weight == 0.5 and loss.level_weights == {'half': 0.1, 'lr': 0.2, 'hr': 1.0}
