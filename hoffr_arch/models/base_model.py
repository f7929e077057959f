"""HOFFRBaseModel: what ``HOFFRModel`` and ``FlowPretrainModel`` share on top of BasicSR's ``SRModel``.

- run safety (``RunSafetyMixin``: DDP on CPU, the all-reduced non-finite-loss stop, atomic
  checkpoints, schedules that follow ``total_iter``) and ``train.time_budget`` (``TimeBudgetMixin``);
- the EMA copy of the network (``train.ema_decay``), set up as ``SRModel`` does it. ``SRModel``'s
  ``init_training_settings`` also insists on its pixel/perceptual loss slots, hence our own;
- the loss: the sum of ``train.losses``, a list of registered losses (``{type: ..., name: ...,
  inputs: [...]}``), each called with the named inputs it declares (its class's ``inputs``, or an
  ``inputs:`` key) from what the subclass's ``loss_inputs`` computes (``LOSS_INPUTS`` names them);
  a loss may return a tensor or ``(total, {term: tensor})``, whose terms are logged too;
- every optimiser of ``torch.optim`` in ``OPTIMIZERS`` (BasicSR 1.4.2's ``BaseModel`` knows Adam only),
  over the parameter groups ``param_groups`` returns;
- one ``optimize_parameters``: zero the gradients, losses (under ``autocast``), stop on a non-finite
  total, backward, step, log, EMA.

The options a model reads are ``TRAIN_OPTIONS`` and ``VAL_OPTIONS`` (``hoffr_arch.options`` checks a
YAML against its model class's); subclasses add theirs.
"""
from collections import OrderedDict
from contextlib import nullcontext
from copy import deepcopy

import torch

from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger

from .run_safety import RunSafetyMixin
from .time_budget_model import BUDGET_OPTIONS, TimeBudgetMixin

OPTIMIZERS = ('Adam', 'AdamW', 'Adamax', 'SGD', 'ASGD', 'RMSprop', 'Rprop')


def build_losses(specs, known_inputs, device='cpu'):
    """[(log name, input names, loss module on ``device``)] from loss specifications (dicts with
    ``type``, optional ``name`` and ``inputs``; consumed), each input one of ``known_inputs``."""
    losses = []
    for spec in specs:
        spec = dict(spec)
        name = spec.pop('name', None) or 'l_' + spec['type'].lower().replace('loss', '')
        inputs = spec.pop('inputs', None)
        loss = build_loss(spec).to(device)
        inputs = tuple(inputs or getattr(loss, 'inputs', ('output', 'gt')))
        unknown = [k for k in inputs if k not in known_inputs]
        if unknown:
            raise KeyError(f'train loss {name}: unknown inputs {unknown} (known: {", ".join(known_inputs)})')
        if any(n == name for n, _, _ in losses):
            raise KeyError(f'train losses: two terms named {name}; give one a name: key')
        losses.append((name, inputs, loss))
    return losses


def loss_terms(losses, given):
    """Each loss of ``losses`` ([(name, input names, module)], ``build_losses``) on its inputs from
    ``given`` ({name: value}) -> (OrderedDict of the terms that sum to the total, OrderedDict of
    the parts to log: a loss may return ``(total, {part: tensor})``)."""
    terms, logged = OrderedDict(), OrderedDict()
    for name, inputs, loss in losses:
        value = loss(*(given[k] for k in inputs))
        if isinstance(value, tuple):
            value, parts = value
            logged.update(parts)
        terms[name] = value
    return terms, logged


class HOFFRBaseModel(TimeBudgetMixin, RunSafetyMixin, SRModel):
    """The shared training logic (see the module docstring); not registered, subclass it."""

    LOSS_INPUTS = ()  # the names ``loss_inputs`` provides
    LOSS_EXAMPLE = '[{type: SRLoss}]'  # for the message when train.losses is missing
    OPTIMIZERS = OPTIMIZERS
    TRAIN_OPTIONS = frozenset({'ema_decay', 'optim_g', 'scheduler', 'total_iter', 'warmup_iter', 'losses',
                               *BUDGET_OPTIONS})
    VAL_OPTIONS = frozenset({'val_freq', 'save_img', 'metrics', 'suffix'})

    def init_training_settings(self):
        self.net_g.train()
        train_opt = self.opt['train']
        self.setup_ema(train_opt.get('ema_decay', 0))
        self.losses = self.build_losses(self.loss_specs(train_opt))
        self.use_bf16 = False
        self.setup_optimizers()
        self.setup_schedulers()

    def setup_ema(self, decay):
        """``net_g_ema``, an EMA copy of ``net_g`` (from ``pretrain_network_g``'s ``params_ema`` if given)."""
        self.ema_decay = decay
        if decay <= 0:
            return
        get_root_logger().info(f'Use Exponential Moving Average with decay: {decay}')
        self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
        load_path = self.opt['path'].get('pretrain_network_g')
        if load_path is not None:
            self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
        else:
            self.model_ema(0)
        self.net_g_ema.eval()

    def loss_specs(self, train_opt):
        """The loss specifications of the options (copies): ``train.losses``."""
        specs = [dict(spec) for spec in train_opt.get('losses') or []]
        if not specs:
            raise KeyError(f'train.losses is required (a list of losses, e.g. {self.LOSS_EXAMPLE})')
        return specs

    def build_losses(self, specs):
        """[(log name, input names, loss module)] from loss specifications (``build_losses``)."""
        return build_losses(specs, self.LOSS_INPUTS, self.device)

    def param_groups(self, params, lr):
        """The optimiser's parameter groups from the trainable ``params`` (all in one by default)."""
        return params

    def setup_optimizers(self):
        optim_opt = deepcopy(self.opt['train']['optim_g'])
        optim_type = optim_opt.pop('type')
        params = [p for p in self.net_g.parameters() if p.requires_grad]
        self.optimizer_g = self.get_optimizer(optim_type, self.param_groups(params, optim_opt['lr']), **optim_opt)
        self.optimizers.append(self.optimizer_g)

    def get_optimizer(self, optim_type, params, lr, **kwargs):
        if optim_type not in self.OPTIMIZERS:
            raise NotImplementedError(f'train.optim_g.type {optim_type!r}: use one of {", ".join(self.OPTIMIZERS)}')
        return getattr(torch.optim, optim_type)(params, lr, **kwargs)

    def autocast(self, enabled):
        """bf16 autocast on this model's device when ``enabled`` (CUDA or CPU), else a null context."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16) if enabled else nullcontext()

    def loss_inputs(self, current_iter):
        """{name in ``LOSS_INPUTS``: value} for this iteration (runs the network)."""
        raise NotImplementedError

    def compute_losses(self, given):
        """(the loss terms summed into the total, the terms to log) from the named inputs ``given``."""
        return loss_terms(self.losses, given)

    def optimize_parameters(self, current_iter):
        """One training step; stops every rank on a non-finite loss before the weights change."""
        self.start_clock()
        self.optimizer_g.zero_grad(set_to_none=True)
        with self.autocast(self.use_bf16):
            terms, logged = self.compute_losses(self.loss_inputs(current_iter))
        total = sum(terms.values())
        self.check_finite_loss(total, OrderedDict(terms, **logged), current_iter)
        total.backward()
        self.optimizer_g.step()
        self.log_dict = self.reduce_loss_dict(OrderedDict(terms, **logged, l_total=total))
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
        self.check_time_budget(current_iter)
