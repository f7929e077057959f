"""What every model of this package adds to BasicSR's for safe runs on any device.

- ``model_to_device``: DDP on CPU (gloo) as well as CUDA; BasicSR's always asks CUDA for a device;
- a NaN/inf loss stops every rank before the weights change (``check_finite_loss``);
- checkpoints and training states written atomically (``hoffr_arch.atomic``), so a kill
  during a save never leaves a partial file for ``--auto_resume`` to meet;
- a resumed run follows the schedule of its options: a longer ``total_iter`` (whose cosine period
  ``check_options`` derives) continues past the old end instead of failing in BasicSR's scheduler.
"""
import time
from pathlib import Path

import torch
from torch import distributed as dist
from torch.nn.parallel import DataParallel, DistributedDataParallel

from basicsr.utils.dist_util import master_only

from hoffr_arch import atomic


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stops, checkpoints are kept."""


class RunSafetyMixin:
    """Put before the BasicSR model class: ``class M(RunSafetyMixin, SRModel)``."""

    def model_to_device(self, net):
        net = net.to(self.device)
        if self.opt['dist']:
            device_ids = [torch.cuda.current_device()] if self.device.type == 'cuda' else None
            return DistributedDataParallel(net, device_ids=device_ids,
                                           find_unused_parameters=self.opt.get('find_unused_parameters', False))
        if self.opt['num_gpu'] > 1:
            return DataParallel(net)
        return net

    # what defines a BasicSR scheduler's shape (from the options); the rest of its state (the
    # iteration, the base rates) comes from the training state
    SCHEDULE_KEYS = ('periods', 'cumulative_period', 'restart_weights', 'eta_min', 'milestones', 'gamma', 'restarts')

    def setup_schedulers(self):
        from hoffr_arch.options import with_periods
        self.opt['train']['scheduler'] = with_periods(self.opt['train'])  # omitted periods follow total_iter
        super().setup_schedulers()

    def resume_training(self, resume_state):
        shapes = [{k: getattr(s, k) for k in self.SCHEDULE_KEYS if hasattr(s, k)} for s in self.schedulers]
        super().resume_training(resume_state)
        for scheduler, shape in zip(self.schedulers, shapes):
            vars(scheduler).update(shape)

    def check_finite_loss(self, total, losses, current_iter):
        """Raise ``NonFiniteLossError`` (before the weights change) if ``total`` is NaN/inf on any rank:
        the flag is all-reduced, so every rank stops together and none waits in a collective."""
        finite = torch.isfinite(total.detach()).float()
        if self.opt['dist']:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() == 1:
            return
        terms = ', '.join(f'{k}={v.item():.4g}' for k, v in losses.items())
        states = Path(self.opt['path']['training_states'])
        saved = sorted((int(p.stem) for p in states.glob('*.state') if p.stem.isdigit()), reverse=True)
        last = f'iteration {saved[0]} in {states}' if saved else 'none saved yet'
        raise NonFiniteLossError(f'non-finite loss at iteration {current_iter} ({terms}); stopped before updating '
                                 f'the weights. Last good checkpoint: {last} (continue with --auto_resume after '
                                 'lowering the learning rate)')

    @master_only
    def save_network(self, net, net_label, current_iter, param_key='params'):
        current_iter = 'latest' if current_iter == -1 else current_iter
        path = Path(self.opt['path']['models']) / f'{net_label}_{current_iter}.pth'
        nets = net if isinstance(net, list) else [net]
        keys = param_key if isinstance(param_key, list) else [param_key]
        state = {}
        for net_, key in zip(nets, keys):
            state[key] = {k[7:] if k.startswith('module.') else k: v.cpu()
                          for k, v in self.get_bare_model(net_).state_dict().items()}
        atomic.torch_save(state, path)

    @master_only
    def save_training_state(self, epoch, current_iter):
        if current_iter == -1:
            return
        state = {'epoch': epoch, 'iter': current_iter, 'time': time.time(),
                 'optimizers': [o.state_dict() for o in self.optimizers],
                 'schedulers': [s.state_dict() for s in self.schedulers]}
        atomic.torch_save(state, Path(self.opt['path']['training_states']) / f'{current_iter}.state')
