"""Compatibility of BasicSR 1.4.2 (the last PyPI release, 2022) with today's torch/torchvision/numpy.

``hoffr_arch/__init__.py`` imports this module before anything else, so every process that imports
``hoffr_arch`` (the training entry points, and the DataLoader workers: BasicSR forces the ``spawn``
start method, and a spawned worker imports our package again when it unpickles one of our datasets
or re-runs our ``__main__`` module) gets the same fixes. Nothing here edits site-packages: each fix is
applied only when the upstream failure is actually present; at import only what keeps BasicSR
importable and its networks as published (``FIXES``); the training pipeline's resume, sampler and
distributed start (``RUN_FIXES``) only when our entry points run it (``apply_run_fixes``).

Each fix names the upstream failure it works around; ``tests/test_compat.py`` shows each failure
without the fix. Failures that live in BasicSR's model and dataset classes are fixed in our own
subclasses instead (see ``HOFFRModel`` and ``VSRDBRecurrentDataset`` / ``VSRDBTestDataset``):
metric tensors created on 'cuda' and the in-place ``squeeze_`` of the validation input, DDP's ``device_ids`` on
CPU, REDS' 100 frames per clip and the test dataset that refuses LMDB. BasicSR's LMDB writer is replaced by
``datasets_lmdb``.
"""
import importlib
import os
import sys
import types
from pathlib import Path

__all__ = ['FIXES', 'applied_fixes']

_applied = []


def _distutils_shim():
    """``import basicsr`` needs ``distutils``, which Python 3.12 removed (and 3.12+ venvs have no
    setuptools to provide it): ``basicsr/archs/arch_util.py`` imports ``LooseVersion`` from
    ``distutils.version`` to compare torchvision versions. Where ``distutils`` is missing we register a
    ``distutils.version`` holding a ``LooseVersion`` that compares dotted versions as BasicSR needs.
    """
    try:
        importlib.import_module('distutils.version')
        return False
    except ModuleNotFoundError:
        pass
    import re

    class LooseVersion:
        def __init__(self, text):
            self.vstring = str(text)
            self.version = [int(p) if p.isdigit() else p for p in re.findall(r'\d+|[a-zA-Z]+', self.vstring)]

        def _cmp(self, other):
            other = other if isinstance(other, LooseVersion) else LooseVersion(other)
            a, b = [str(p).zfill(8) for p in self.version], [str(p).zfill(8) for p in other.version]
            return (a > b) - (a < b)

        def __eq__(self, other):
            return self._cmp(other) == 0

        def __lt__(self, other):
            return self._cmp(other) < 0

        def __le__(self, other):
            return self._cmp(other) <= 0

        def __gt__(self, other):
            return self._cmp(other) > 0

        def __ge__(self, other):
            return self._cmp(other) >= 0

        def __repr__(self):
            return f'LooseVersion({self.vstring!r})'

    package = sys.modules.get('distutils') or types.ModuleType('distutils')
    package.__path__ = getattr(package, '__path__', [])
    version = types.ModuleType('distutils.version')
    version.LooseVersion = LooseVersion
    package.version = version
    sys.modules['distutils'] = package
    sys.modules['distutils.version'] = version
    return True


def _alias_functional_tensor():
    """``import basicsr`` raises ``ModuleNotFoundError: torchvision.transforms.functional_tensor``.

    ``basicsr/data/degradations.py`` imports ``rgb_to_grayscale`` from
    ``torchvision.transforms.functional_tensor``, which torchvision 0.17 renamed to the private
    ``_functional_tensor``. We register the old name as an alias of the new module.
    """
    name = 'torchvision.transforms.functional_tensor'
    if name in sys.modules:
        return False
    try:
        importlib.import_module(name)
        return False  # an old torchvision: nothing to fix
    except ModuleNotFoundError:
        pass
    new = importlib.import_module('torchvision.transforms._functional_tensor')
    alias = types.ModuleType(name, doc=f'Alias of {new.__name__} installed by hoffr_arch.compat for basicsr 1.4.2.')
    alias.__dict__.update({k: v for k, v in vars(new).items() if not k.startswith('__')})
    sys.modules[name] = alias
    return True


def find_resume_state(experiments_root):
    """Newest ``<iter>.state`` under ``experiments_root/training_states`` whose network file exists.

    Temporary files of an interrupted save (``*.tmp``) are never candidates.
    """
    root = Path(experiments_root)
    states = sorted((int(p.stem), p) for p in (root / 'training_states').glob('*.state') if p.stem.isdigit())
    for it, path in reversed(states):
        if (root / 'models' / f'net_g_{it}.pth').exists():
            return str(path)
    return None


# (epoch, iter, batch size per GPU) of the state being resumed; read by ResumableSampler
RESUME_POINT = {}
# what the patches replaced, for the tests that show the upstream failures
ORIGINALS = {}


def _load_resume_state(opt):
    """resume crashes without CUDA, and --auto_resume depends on the working directory.

    ``basicsr.train.load_resume_state`` maps storages with ``torch.cuda.current_device()`` and looks for
    states in ``experiments/<name>`` relative to the cwd (silently starting at iteration 0 elsewhere).
    This one looks under ``opt['path']['experiments_root']`` (absolute, from the root path), loads to
    CPU (the optimizer moves its state to the parameters' device), and records the resume point so
    that the sampler continues the data order instead of replaying the epoch.
    A training state is data from a file like any other: it is read with ``weights_only=True``
    (``read_training_state``), so a pickled object in it cannot run code.
    """
    from basicsr.utils import check_resume
    path = find_resume_state(opt['path']['experiments_root']) if opt['auto_resume'] else opt['path'].get('resume_state')
    RESUME_POINT.clear()
    if path is None:
        return None
    opt['path']['resume_state'] = path
    state = read_training_state(path)
    check_resume(opt, state['iter'])
    RESUME_POINT.update(epoch=state['epoch'], iter=state['iter'],
                        batch_size=opt['datasets']['train']['batch_size_per_gpu'])
    return state


def read_training_state(path):
    """The training state at ``path`` (epoch, iteration, optimizer and scheduler states), unpickled
    with ``weights_only=True``: tensors, plain values and ``collections.Counter`` (BasicSR's
    ``MultiStepRestartLR`` keeps its milestones in one) only. Anything else is refused in one line
    naming the file (``CheckpointError``)."""
    import collections

    import torch

    from .checkpoint import CheckpointError
    try:
        with torch.serialization.safe_globals([collections.Counter]):
            state = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f'{path}: no such training state') from None
    except Exception as err:  # noqa: BLE001 (torch raises several types for unsafe or broken files)
        if 'weights_only' in str(err) or 'Unsupported global' in str(err):
            raise CheckpointError(f'{path}: holds objects other than tensors and plain values; refused, '
                                  'unpickling it could run code') from None
        raise CheckpointError(f'{path}: not a readable training state ({type(err).__name__})') from None
    if not isinstance(state, dict) or not {'iter', 'epoch', 'optimizers', 'schedulers'} <= set(state):
        raise CheckpointError(f'{path}: not a training state (no iter, epoch, optimizers, schedulers)')
    return state


def _resumable_sampler():
    """a resumed run replays the data of the interrupted epoch from its start.

    BasicSR's loop restarts the epoch's sampler at its first index. ``ResumableSampler`` (installed as
    ``basicsr.train.EnlargedSampler``) skips, in the resumed epoch only, the batches that were
    already trained on: the epoch's order is fixed by its seed, so the run continues where it stopped.
    """
    from basicsr.data.data_sampler import EnlargedSampler

    class ResumableSampler(EnlargedSampler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.resume = dict(RESUME_POINT)

        def __iter__(self):
            indices = list(super().__iter__())
            if self.resume and self.epoch == self.resume['epoch']:
                per_epoch = len(self) // self.resume['batch_size']  # the DataLoader drops the last batch
                done = self.resume['iter'] - self.resume['epoch'] * per_epoch
                indices = indices[max(done, 0) * self.resume['batch_size']:]
                self.resume = {}
            return iter(indices)

    return ResumableSampler


def _init_dist(launcher, backend=None, **kwargs):
    """``init_dist`` hard-codes nccl and ``set_device(rank % device_count)`` (ZeroDivision on CPU).

    gloo without CUDA, nccl with it; the device is ``LOCAL_RANK`` (set by torchrun and by the slurm
    branch), not the global rank. The start method stays BasicSR's ('spawn').
    """
    import subprocess

    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')
    cuda = torch.cuda.is_available()
    backend = backend or ('nccl' if cuda else 'gloo')
    if launcher == 'slurm':
        proc_id, ntasks = int(os.environ['SLURM_PROCID']), int(os.environ['SLURM_NTASKS'])
        tasks_per_node = int(os.environ.get('SLURM_NTASKS_PER_NODE', '1').split('(')[0])
        per_node = torch.cuda.device_count() if cuda else tasks_per_node
        port = kwargs.pop('port', None)
        os.environ['MASTER_PORT'] = str(port or os.environ.get('MASTER_PORT', '29500'))
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
        os.environ.update(WORLD_SIZE=str(ntasks), RANK=str(proc_id), LOCAL_RANK=str(proc_id % max(per_node, 1)))
    elif launcher != 'pytorch':
        raise ValueError(f'Invalid launcher type: {launcher}')
    if cuda:
        torch.cuda.set_device(int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count())
    dist.init_process_group(backend=backend, **kwargs)


def _patch_training():
    """Install the resume, sampler and distributed fixes into BasicSR's train pipeline."""
    import basicsr.train
    import basicsr.utils.options
    if getattr(basicsr.train, '_hoffr_patched', False):
        return False
    ORIGINALS.update(load_resume_state=basicsr.train.load_resume_state, EnlargedSampler=basicsr.train.EnlargedSampler,
                     init_dist=basicsr.utils.options.init_dist)
    basicsr.train.load_resume_state = _load_resume_state
    basicsr.train.EnlargedSampler = _resumable_sampler()
    basicsr.utils.options.init_dist = _init_dist
    basicsr.train._hoffr_patched = True
    return True


def _basicvsrpp_alignment_on_cpu():
    """without CUDA, BasicSR builds BasicVSR++ WITHOUT its deformable alignment.

    ``BasicVSRPlusPlus.__init__`` adds ``SecondOrderDeformableAlignment`` only when
    ``torch.cuda.is_available()`` (it warns and skips it otherwise), so a CPU-built network is not
    the published one and cannot load official weights; on clips longer than ``cpu_cache_length``
    it also moves features to CUDA unconditionally. The alignment uses torchvision's ``deform_conv2d``,
    which runs on CPU: we add the skipped modules after ``__init__`` and, without CUDA, turn the
    CUDA-only cache off.
    """
    import torch
    from basicsr.archs import basicvsrpp_arch
    cls = basicvsrpp_arch.BasicVSRPlusPlus
    if getattr(cls, '_hoffr_patched', False):
        return False
    original = cls.__init__
    ORIGINALS['BasicVSRPlusPlus.__init__'] = original

    def __init__(self, mid_channels=64, num_blocks=7, max_residue_magnitude=10, is_low_res_input=True,
                 spynet_path=None, cpu_cache_length=100):
        import warnings
        with warnings.catch_warnings():
            warnings.filterwarnings('ignore', message='Deformable alignment module is not added')
            original(self, mid_channels, num_blocks, max_residue_magnitude, is_low_res_input, spynet_path,
                     cpu_cache_length)
        if not torch.cuda.is_available():
            self.cpu_cache_length = float('inf')
        if not self.is_with_alignment:
            for module in ('backward_1', 'forward_1', 'backward_2', 'forward_2'):
                self.deform_align[module] = basicvsrpp_arch.SecondOrderDeformableAlignment(
                    2 * mid_channels, mid_channels, 3, padding=1, deformable_groups=16,
                    max_residue_magnitude=max_residue_magnitude)
            self.is_with_alignment = True

    cls.__init__ = __init__
    cls._hoffr_patched = True
    return True


# at import: what keeps BasicSR importable, and its networks as published, on today's stack
FIXES = {
    'distutils_on_python_3_12': _distutils_shim,
    'torchvision_functional_tensor': _alias_functional_tensor,
    'basicvsrpp_alignment_on_cpu': _basicvsrpp_alignment_on_cpu,
}
# by our entry points (``hoffr_arch.train``/``test`` through ``_entry.prepare``) before BasicSR's
# pipelines run: how a training run resumes and starts its processes
RUN_FIXES = {
    'training_resume_sampler_dist': _patch_training,
}


def apply(fixes=None):
    """Apply every fix of ``fixes`` (default ``FIXES``) whose upstream failure is present; idempotent."""
    for key, fix in (FIXES if fixes is None else fixes).items():
        if key not in _applied and fix():
            _applied.append(key)


def apply_run_fixes():
    """The fixes of BasicSR's training pipeline (``RUN_FIXES``); our entry points call this."""
    apply(RUN_FIXES)


def applied_fixes():
    """Names of the fixes that were needed (and applied) in this process."""
    return list(_applied)


apply()
