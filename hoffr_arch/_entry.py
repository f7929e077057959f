"""Shared set-up of the train/test entry points: root path, argv, option check."""
import os
import sys
from pathlib import Path

from .data.frame_io import DatasetError
from .options import OptionsError, check_options, force_yml_entries


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
    root = project_root()
    try:
        opt = check_options(argv[i], is_train, force_yml_entries(argv))
        root.mkdir(parents=True, exist_ok=True)
        os.chdir(root)
        check_data(opt)
    except (OptionsError, DatasetError, KeyError, OSError) as err:
        print(f'error: {str(err).strip(chr(39)) if isinstance(err, KeyError) else err}', file=sys.stderr)
        sys.exit(2)
    sys.argv[1:] = argv
    return str(root)


def check_data(opt):
    """Build this package's datasets of ``opt`` once (and read one training sample), so that a data
    problem (missing root, clips that differ, crop larger than the frames, clips shorter than
    ``num_frame``) is one line before BasicSR creates the experiment folder. Cheap: the datasets
    read only their meta_info and headers. BasicSR's own datasets are left to BasicSR."""
    import logging

    from basicsr.utils import logger as basicsr_logger
    from basicsr.utils.registry import DATASET_REGISTRY
    # BasicSR's root logger adds its log file only when first initialised: keep this check from
    # initialising it (and from logging), so the run's own set-up still does
    fresh = 'basicsr' not in basicsr_logger.initialized_logger
    basicsr_logger.initialized_logger['basicsr'] = True
    log = logging.getLogger('basicsr')
    was_disabled, log.disabled = log.disabled, True
    try:
        for phase, ds_opt in opt['datasets'].items():
            cls = DATASET_REGISTRY.get(ds_opt['type'])
            if not cls.__module__.startswith('hoffr_arch.'):
                continue
            dataset = cls(dict(ds_opt, phase=phase.split('_')[0], scale=opt['scale']))
            if phase.split('_')[0] == 'train' and len(dataset):
                dataset[0]
    finally:
        log.disabled = was_disabled
        if fresh:
            del basicsr_logger.initialized_logger['basicsr']


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
