"""Train with BasicSR's runner: ``python -m hoffr_arch.train -opt options/train/....yml``.

``--auto_resume`` continues the newest complete checkpoint of the experiment, from any working
directory; ``torchrun --nproc_per_node=N -m hoffr_arch.train -opt ... --launcher pytorch`` trains on
N processes (gloo on CPU, nccl on CUDA); ``--launcher slurm`` under srun.

``--time-budget MINUTES`` and ``--save-every-minutes S`` set ``train.time_budget`` and
``train.save_every_minutes`` (``hoffr_arch.models.time_budget_model``): training stops after that much
time with a checkpoint, saving one every S minutes on the way, each listed in
``experiments/<name>/time_budget.csv``. The equal-minutes comparison (``hoffr_arch.benchmarks.compare
--train-minutes``) trains every model this way.
"""
import argparse
import sys

import hoffr_arch  # noqa: F401  (compat fixes, registries)
from basicsr.train import train_pipeline
from hoffr_arch._entry import finish_distributed, prepare, without_force_yml
from hoffr_arch.checkpoint import CheckpointError
from hoffr_arch.models.run_safety import NonFiniteLossError
from hoffr_arch.models.time_budget_model import BudgetReached
from hoffr_arch.options import force_yml_entries


def budget_overrides(argv):
    """``argv`` with ``--time-budget M`` / ``--save-every-minutes S`` made the options they stand for
    (``--force_yml train:time_budget=M train:save_every_minutes=S``, added to any given there)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--time-budget', type=float, default=None)
    parser.add_argument('--save-every-minutes', type=float, default=None)
    known, argv = parser.parse_known_args(argv)
    extra = [f'train:time_budget={known.time_budget}'] if known.time_budget else []
    extra += [f'train:save_every_minutes={known.save_every_minutes}'] if known.save_every_minutes else []
    if not extra:
        return argv
    force = force_yml_entries(argv)
    return without_force_yml(argv) + ['--force_yml', *force, *extra]


def main(argv=None):
    argv = budget_overrides(list(sys.argv[1:] if argv is None else argv))
    root = prepare(argv, is_train=True)
    ok = False
    try:
        train_pipeline(root)
        ok = True
    except BudgetReached as done:
        print(done, flush=True)
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
