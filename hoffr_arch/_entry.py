"""Shared set-up of the train/test entry points: root path, argv, option check, run lock."""
import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from . import compat
from .checkpoint import CheckpointError
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
    """Check the options (``--force_yml`` applied), the network and its weights, and the data, then
    hand BasicSR the checked options as a file we wrote, and change to the project root (BasicSR
    resolves relative paths from there).

    BasicSR's ``parse_options`` reads its YAML with a loader that builds Python objects, and applies
    ``--force_yml`` through ``eval``/``exec``: so it only ever reads the file ``resolved_options``
    writes (plain data, safe-dumped) and never sees ``--force_yml``. That file also holds what
    ``check_options`` derived (a cosine schedule's ``periods``); BasicSR copies it into the
    experiment folder, so the copy there is what ran. Torchrun's ``--local-rank`` is accepted.

    Returns the root path; exits with a one-line message (exit 2) before any folder is made if the
    options, weights or data are bad, or if a running process holds the experiment's name.
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
        check_network(opt)
        check_resume(root, opt, is_train, '--auto_resume' in argv)
        check_data(opt)
        lock_run(root, opt, is_train, '--debug' in argv)
        source, argv = argv[i], without_force_yml(argv)
        argv[argv.index('-opt') + 1] = resolved_options(opt, source)
    except (OptionsError, DatasetError, CheckpointError, KeyError, OSError) as err:
        print(f'error: {str(err).strip(chr(39)) if isinstance(err, KeyError) else err}', file=sys.stderr)
        sys.exit(2)
    compat.apply_run_fixes()
    sys.argv[1:] = argv
    return str(root)


def without_force_yml(argv):
    """``argv`` less ``--force_yml`` and its values (``force_yml_entries`` read them)."""
    out, skipping = [], False
    for arg in argv:
        if arg == '--force_yml':
            skipping = True
        elif skipping and arg.startswith('-'):
            skipping = False
        if not skipping:
            out.append(arg)
    return out


def resolved_options(opt, source):
    """Write the checked options ``opt`` (read from ``source``) as plain YAML to a file of the same
    name in a private temporary folder, removed at exit; returns its path."""
    folder = tempfile.mkdtemp(prefix='hoffr_opt_')
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    path = Path(folder) / Path(source).name
    header = f'# {source}, as checked and run by hoffr_arch (--force_yml applied, schedule derived)\n'
    path.write_text(header + yaml.safe_dump(opt, sort_keys=False, allow_unicode=True), encoding='utf-8')
    return str(path)


def check_network(opt):
    """Build ``network_g`` (with its ``pof_path``) and read ``path.pretrain_network_g``, so that bad
    sizes, a missing or mismatched POF or pretrained file, or non-finite weights are one line
    before anything is made. Raises OptionsError or CheckpointError. The class is built from the
    registry, not by BasicSR's ``build_network``, whose log line would initialise BasicSR's logger
    before the run gives it its log file."""
    from basicsr.utils.registry import ARCH_REGISTRY

    from .checkpoint import load_weights, read_checkpoint, read_state_dict
    try:
        kwargs = dict(opt['network_g'])
        net = ARCH_REGISTRY.get(kwargs.pop('type'))(**kwargs)
    except CheckpointError:
        raise
    except Exception as err:  # noqa: BLE001 (a constructor raises what it raises; the line names it)
        raise OptionsError(f"network_g: cannot build {opt['network_g'].get('type')} with these options "
                           f'({type(err).__name__}: {err})') from None
    path = opt['path'].get('pretrain_network_g')
    if path:
        key = opt['path'].get('param_key_g')
        key = key if key in read_checkpoint(path) else None  # BasicSR falls back the same way
        if opt['path'].get('strict_load_g', True):
            load_weights(net, path, key, what=f"{opt['network_g'].get('type')} (check network_g)")
        else:
            read_state_dict(path, key)


def check_resume(root, opt, is_train, auto_resume):
    """Read the training state a resumed run will load (``--auto_resume``'s newest, or
    ``path.resume_state``) once here, so that an unsafe or broken one is one line before anything."""
    from .compat import find_resume_state, read_training_state
    if not is_train:
        return
    path = (find_resume_state(Path(root) / 'experiments' / opt['name']) if auto_resume
            else opt['path'].get('resume_state'))
    if path:
        read_training_state(path)


def lock_run(root, opt, is_train, debug=False):
    """Take ``experiments/<name>.lock`` (``results/`` for a test) for this process: a second run
    with the name of a running one would write into its folder, or BasicSR would rename that
    folder from under it. A lock left by a process that no longer runs is taken over. Only rank 0
    of a distributed run locks; the lock goes at exit."""
    if os.environ.get('RANK', '0') != '0':
        return
    name = opt['name'] if not debug or opt['name'].startswith('debug') else 'debug_' + opt['name']
    lock = Path(root) / ('experiments' if is_train else 'results') / f'{name}.lock'
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                holder = None
            if holder == os.getpid():
                return  # this process holds it already (one process running several trainings)
            if holder is not None and _running(holder):
                raise OptionsError(f"{lock}: experiment '{name}' is in use by a running process (PID {holder}); "
                                   'wait for it or choose another name') from None
            lock.unlink(missing_ok=True)  # left by a process that no longer runs
            continue
        with os.fdopen(fd, 'w') as f:
            f.write(f'{os.getpid()}\n')
        atexit.register(_unlock, lock, os.getpid())
        return
    raise OptionsError(f'{lock}: cannot take the experiment lock (another run started at the same time?)')


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _unlock(lock, pid):
    try:
        if int(lock.read_text().split()[0]) == pid:
            lock.unlink()
    except (OSError, ValueError, IndexError):
        pass


def check_data(opt):
    """Build this package's datasets of ``opt`` once (and read one training sample), so that a data
    problem (missing root, clips that differ, crop larger than the frames, clips shorter than
    ``num_frame``) is one line before BasicSR creates the experiment folder. Cheap: the datasets
    read only their meta_info and headers. BasicSR's own datasets are left to BasicSR."""
    from basicsr.utils.registry import DATASET_REGISTRY
    for phase, ds_opt in opt['datasets'].items():
        cls = DATASET_REGISTRY.get(ds_opt['type'])
        if not cls.__module__.startswith('hoffr_arch.'):
            continue
        dataset = cls(dict(ds_opt, phase=phase.split('_')[0], scale=opt['scale']))
        if phase.split('_')[0] == 'train' and len(dataset):
            dataset[0]


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
