"""Shared set-up of the train/test entry points: root path, argv, option check."""
import os
import sys
from pathlib import Path

from .options import OptionsError, check_options


def project_root():
    """Where ``experiments/``, ``results/``, ``tb_logger/`` and relative data paths live.

    ``$HOFFR_ROOT`` if set; else the source checkout holding this package (the usual editable
    install), if writable; else the working directory. It does not depend on the working directory
    in a checkout, so ``--auto_resume`` finds the same experiment from anywhere.
    """
    if os.environ.get('HOFFR_ROOT'):
        return Path(os.environ['HOFFR_ROOT']).resolve()
    repo = Path(__file__).resolve().parents[1]
    if (repo / 'setup.py').exists() and os.access(repo, os.W_OK):
        return repo
    return Path.cwd()


def prepare(argv, is_train):
    """Make ``-opt`` absolute, accept torch.distributed.launch's ``--local-rank``, check the options,
    then change to the project root (BasicSR resolves relative paths from there).

    Returns the root path; exits with a one-line message if the option file is bad.
    """
    argv = [a.replace('--local-rank', '--local_rank', 1) if a.startswith('--local-rank') else a for a in argv]
    if '-opt' not in argv or argv.index('-opt') + 1 >= len(argv):
        sys.exit('usage: python -m hoffr_arch.{train,test} -opt OPTIONS.yml [--auto_resume] [--launcher pytorch]')
    i = argv.index('-opt') + 1
    argv[i] = str(Path(argv[i]).resolve())
    try:
        check_options(argv[i], is_train)
    except (OptionsError, OSError) as err:
        sys.exit(f'error: {err}')
    sys.argv[1:] = argv
    root = project_root()
    root.mkdir(parents=True, exist_ok=True)
    os.chdir(root)
    return str(root)


def finish_distributed(ok):
    """End a torchrun/slurm run cleanly: wait for every rank (when the run succeeded), then destroy
    the process group. Without this, gloo's threads meet the interpreter's shutdown and a finished
    run can exit with SIGABRT ("terminate called without an active exception")."""
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if ok:
            dist.barrier()
    finally:
        dist.destroy_process_group()
