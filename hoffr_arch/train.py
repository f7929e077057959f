"""Train with BasicSR's runner: ``python -m hoffr_arch.train -opt options/train/....yml``.

``--auto_resume`` continues the newest complete checkpoint of the experiment, from any working
directory; ``torchrun --nproc_per_node=N -m hoffr_arch.train -opt ... --launcher pytorch`` trains on
N processes (gloo on CPU, nccl on CUDA); ``--launcher slurm`` under srun.

``--time-budget MINUTES`` stops after that much training time (wall clock from the first
iteration, data loading included), saving a checkpoint there and every ``--save-every-minutes``
minutes on the way, each listed with its time in ``experiments/<name>/time_budget.csv``
(minutes, iteration, checkpoint): the equal-minutes comparison (``hoffr_arch.benchmarks.compare
--train-minutes``) trains every model this way.
"""
import argparse
import sys
import time
from pathlib import Path

import hoffr_arch  # noqa: F401  (compat fixes, registries)
import basicsr.train
from basicsr.train import train_pipeline
from hoffr_arch._entry import finish_distributed, prepare
from hoffr_arch.checkpoint import CheckpointError
from hoffr_arch.models.run_safety import NonFiniteLossError


class BudgetReached(Exception):
    """The training time budget is spent (a checkpoint was saved)."""


class TimeBudget:
    """Builds the run's model through BasicSR's ``build_model`` and wraps its ``optimize_parameters``:
    after each iteration, a checkpoint when ``save_every`` minutes have passed since the last one,
    and a checkpoint then ``BudgetReached`` when ``minutes`` have. BasicSR's loop stays as it is:
    ``train_pipeline`` looks ``build_model`` up in its module when it runs, which is where this sits."""

    def __init__(self, minutes, save_every):
        self.minutes, self.save_every = minutes, save_every
        self.build_model = basicsr.train.build_model

    def __enter__(self):
        basicsr.train.build_model = self._build
        return self

    def __exit__(self, *exc):
        basicsr.train.build_model = self.build_model

    def _build(self, opt):
        model = self.build_model(opt)
        optimize = model.optimize_parameters
        log = Path(opt['path']['experiments_root']) / 'time_budget.csv'
        clock = {'start': None, 'next': self.save_every * 60}
        if not log.exists():
            log.write_text('minutes,iter,checkpoint\n')

        def save(current_iter, seconds):
            model.save(-1, current_iter)
            ckpt = Path(opt['path']['models']) / f'net_g_{current_iter}.pth'
            with open(log, 'a') as f:
                f.write(f'{seconds / 60:.3f},{current_iter},{ckpt}\n')

        def optimize_parameters(current_iter):
            if clock['start'] is None:
                clock['start'] = time.perf_counter()
            optimize(current_iter)
            seconds = time.perf_counter() - clock['start']
            if seconds >= self.minutes * 60:
                save(current_iter, seconds)
                raise BudgetReached(f'time budget of {self.minutes:g} min reached at iteration {current_iter}')
            if seconds >= clock['next']:
                save(current_iter, seconds)
                clock['next'] += self.save_every * 60
        model.optimize_parameters = optimize_parameters
        return model


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    budget = argparse.ArgumentParser(add_help=False)
    budget.add_argument('--time-budget', type=float, default=None)
    budget.add_argument('--save-every-minutes', type=float, default=None)
    known, argv = budget.parse_known_args(argv)
    root = prepare(argv, is_train=True)
    ok = False
    try:
        if known.time_budget:
            with TimeBudget(known.time_budget, known.save_every_minutes or known.time_budget):
                try:
                    train_pipeline(root)
                except BudgetReached as done:
                    print(done, flush=True)
        else:
            train_pipeline(root)
        ok = True
    except NonFiniteLossError as err:
        sys.exit(f'error: {err}')
    except CheckpointError as err:  # a resume state that became unreadable after prepare() read it
        print(f'error: {err}', file=sys.stderr)
        sys.exit(2)
    finally:
        finish_distributed(ok)


if __name__ == '__main__':
    main()
