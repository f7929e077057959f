"""HOFFRModel built in process as BasicSR's train_pipeline builds it: parameter groups, EMA
validation, a new loss term from one YAML entry."""
import copy

import pytest
import yaml

from hoffr_arch.options import OptionsError, check_options

from pipeline import build_in_process, train_options


def test_flow_lr_mul_makes_a_slower_pof_group_or_freezes_it(tmp_path, lmdb_data):
    opt = yaml.safe_load(train_options(tmp_path, lmdb_data, name='groups').read_text())
    model = build_in_process(dict(opt, train=dict(opt['train'], flow_lr_mul=0.125)), tmp_path)
    rest, pof = model.optimizer_g.param_groups
    pof_params = set(map(id, model.net_g.pof.parameters()))
    assert pof['lr'] == pytest.approx(0.125 * rest['lr']) and rest['lr'] == pytest.approx(1e-3)
    assert set(map(id, pof['params'])) == pof_params and not pof_params & set(map(id, rest['params']))
    frozen = build_in_process(dict(opt, train=dict(opt['train'], flow_lr_mul=0)), tmp_path)
    assert len(frozen.optimizer_g.param_groups) == 1
    assert not any(p.requires_grad for p in frozen.net_g.pof.parameters())
    assert not set(map(id, frozen.net_g.pof.parameters())) & set(map(id, frozen.optimizer_g.param_groups[0]['params']))


def test_validation_runs_the_ema_weights(tmp_path, lmdb_data):
    import torch
    opt = yaml.safe_load(train_options(tmp_path, lmdb_data, name='ema').read_text())
    model = build_in_process(opt, tmp_path)
    with torch.no_grad():
        model.net_g_ema.db_head.bias += 0.25  # EMA and live weights now differ visibly (output + 0.25)
    lq = torch.rand(1, 3, 3, 16, 24)
    model.feed_data({'lq': lq})
    model.test()
    with torch.no_grad():
        assert torch.allclose(model.output, model.net_g_ema(lq))
        # the EMA's deblurred frames are 0.25 brighter, and so is what it restores from them
        assert (model.output - model.net_g(lq)).mean() == pytest.approx(0.25, abs=0.01)


def test_a_new_loss_term_is_a_registered_class_and_one_yaml_entry(tmp_path, lmdb_data):
    """train.losses: any registered loss with named inputs, BasicSR's own included; any optimiser
    later BasicSR releases support. Built and stepped as BasicSR's train_pipeline would."""
    import torch
    from torch import nn
    from basicsr.utils.registry import LOSS_REGISTRY
    from hoffr_arch.data.vsrdb_dataset import VSRDBRecurrentDataset

    class GradientLoss(nn.Module):  # the "one new file": a loss on the deblurred frames' gradients
        inputs = ('deblurred', 'lq_sharp')

        def __init__(self, loss_weight=1.0):
            super().__init__()
            self.loss_weight = loss_weight

        def forward(self, deblurred, sharp):
            return self.loss_weight * (deblurred.diff(dim=-1) - sharp.diff(dim=-1)).abs().mean()

    if 'GradientLoss' not in LOSS_REGISTRY:
        LOSS_REGISTRY.register(GradientLoss)
    path = train_options(tmp_path, lmdb_data, name='losses')
    opt = yaml.safe_load(path.read_text())
    train = opt['train']
    for key in ('sr_opt', 'db_opt', 'flow_opt'):
        del train[key]
    train['losses'] = [{'type': 'SRLoss', 'criterion': 'charbonnier'},
                       {'type': 'L1Loss', 'loss_weight': 0.5, 'inputs': ['deblurred', 'lq_sharp'], 'name': 'l_db_l1'},
                       {'type': 'GradientLoss', 'loss_weight': 0.1}]
    train['optim_g'] = {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': 0.01}
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    check_options(path, is_train=True)
    bad = dict(opt, train=dict(train, losses=train['losses'] + [{'type': 'SRLoss', 'inputs': ['output', 'gtt']}]))
    path.write_text(yaml.safe_dump(bad, sort_keys=False))
    with pytest.raises(OptionsError, match=r"losses\[3\]\.inputs': unknown \['gtt'\]"):
        check_options(path, is_train=True)

    model = build_in_process(opt, tmp_path)
    assert type(model.optimizer_g) is torch.optim.AdamW
    dataset = VSRDBRecurrentDataset(dict(opt['datasets']['train'], phase='train', scale=4))
    sample = dataset[0]
    model.feed_data(dict({k: v.unsqueeze(0) for k, v in sample.items() if torch.is_tensor(v)}, key=[sample['key']]))
    before = copy.deepcopy(model.net_g)
    model.optimize_parameters(1)
    logged = model.get_current_log()
    assert list(logged) == ['l_sr', 'l_db_l1', 'l_gradient', 'l_total']
    with torch.no_grad():  # the new term by value, on what the network gave before its step
        deblurred = before(model.lq, return_aux=True)[1]['deblurred']
    assert logged['l_gradient'] == pytest.approx(GradientLoss(0.1)(deblurred, model.lq_sharp).item(), rel=1e-4)
    assert logged['l_total'] == pytest.approx(logged['l_sr'] + logged['l_db_l1'] + logged['l_gradient'], rel=1e-5)
