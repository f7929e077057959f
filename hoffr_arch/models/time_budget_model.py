"""A training time budget read from the options, for equal-minutes comparisons and lent GPU minutes.

``train.time_budget`` (minutes, default none) stops a run after that much training time (wall clock
from the first iteration, data loading included): a checkpoint is saved there and
``BudgetReached`` ends BasicSR's loop (``hoffr_arch.train`` prints it and exits 0).
``train.save_every_minutes`` (default: the budget) saves a checkpoint every that many minutes on
the way. Each checkpoint is listed with its time in ``experiments/<name>/time_budget.csv``
(``minutes,iter,checkpoint``). ``hoffr_arch.train --time-budget M --save-every-minutes S`` sets both.

``TimeBudgetMixin`` goes before the BasicSR model class and wraps its ``optimize_parameters``
(``HOFFRBaseModel``, whose own step calls ``start_clock`` and ``check_time_budget``, gives it to our
models), and ``TimedVideoRecurrentModel`` / ``TimedEDVRModel`` (registered here) give it to
BasicSR's BasicVSR and EDVR models for ``benchmarks.compare``.
"""
import time
from pathlib import Path

from basicsr.models.edvr_model import EDVRModel
from basicsr.models.video_recurrent_model import VideoRecurrentModel
from basicsr.utils.registry import MODEL_REGISTRY

BUDGET_OPTIONS = ('time_budget', 'save_every_minutes')


class BudgetReached(Exception):
    """The training time budget is spent (a checkpoint was saved)."""


class TimeBudgetMixin:
    """``train.time_budget`` / ``train.save_every_minutes`` (see the module docstring)."""

    def optimize_parameters(self, current_iter):
        self.start_clock()
        super().optimize_parameters(current_iter)
        self.check_time_budget(current_iter)

    def start_clock(self):
        """Start the budget's clock at the first training iteration (later calls do nothing)."""
        if not hasattr(self, '_budget_clock'):
            self._budget_clock = {'start': time.perf_counter(), 'saved': 0.0}

    def check_time_budget(self, current_iter):
        """After an iteration: a checkpoint every ``save_every_minutes``; at ``time_budget`` a checkpoint,
        then ``BudgetReached``. Nothing without ``train.time_budget``."""
        minutes = self.opt.get('train', {}).get('time_budget')
        if not minutes:
            return
        clock = self._budget_clock
        seconds = time.perf_counter() - clock['start']
        every = self.opt['train'].get('save_every_minutes') or minutes
        if seconds >= minutes * 60:
            self._budget_checkpoint(current_iter, seconds)
            raise BudgetReached(f'time budget of {minutes:g} min reached at iteration {current_iter}')
        if seconds >= clock['saved'] + every * 60:
            self._budget_checkpoint(current_iter, seconds)
            clock['saved'] += every * 60

    def _budget_checkpoint(self, current_iter, seconds):
        """Save the networks and the training state at ``current_iter``; list them in time_budget.csv."""
        self.save(-1, current_iter)
        log = Path(self.opt['path']['experiments_root']) / 'time_budget.csv'
        ckpt = Path(self.opt['path']['models']) / f'net_g_{current_iter}.pth'
        new = not log.exists()
        with open(log, 'a') as f:
            f.write(('minutes,iter,checkpoint\n' if new else '') + f'{seconds / 60:.3f},{current_iter},{ckpt}\n')


@MODEL_REGISTRY.register()
class TimedVideoRecurrentModel(TimeBudgetMixin, VideoRecurrentModel):
    """BasicSR's ``VideoRecurrentModel`` (BasicVSR, IconVSR) with ``train.time_budget``."""


@MODEL_REGISTRY.register()
class TimedEDVRModel(TimeBudgetMixin, EDVRModel):
    """BasicSR's ``EDVRModel`` with ``train.time_budget``."""
