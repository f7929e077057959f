"""Checking a BasicSR option YAML before a run starts: a missing or misspelled key fails at once,
with a message naming the key (BasicSR itself would fail later, or silently ignore it).

Where a section configures a registered class (network, loss, dataset, scheduler), its keys are
checked against that class's constructor or, for our datasets, their documented options.
"""
import argparse
import difflib
import inspect

import yaml

from basicsr.utils.options import _postprocess_yml_value, ordered_yaml  # parse_options's own value parsing
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY


class OptionsError(ValueError):
    """An option file with a missing, unknown or invalid key."""


TOP = {'name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'path', 'train', 'val',
       'logger', 'dist_params', 'find_unused_parameters'}
DATASET_COMMON = {'name', 'type', 'phase', 'scale', 'io_backend', 'num_worker_per_gpu', 'batch_size_per_gpu',
                  'dataset_enlarge_ratio', 'prefetch_mode', 'pin_memory', 'persistent_workers', 'use_shuffle'}
TRAIN = {'ema_decay', 'optim_g', 'scheduler', 'total_iter', 'warmup_iter', 'losses', 'sr_opt', 'db_opt', 'flow_opt',
         'flow_lr_mul', 'bf16', 'log_batch_keys'}
VAL = {'val_freq', 'save_img', 'metrics', 'skip_border_frames', 'bf16', 'suffix'}
LOGGER = {'print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb'}
PATH = {'pretrain_network_g', 'strict_load_g', 'param_key_g', 'resume_state', 'ignore_resume_networks'}


def _keys_of(cls):
    params = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None  # takes anything
    return {k for k in params if k != 'self'}


class _Checker:
    def __init__(self, path):
        self.path = path

    def fail(self, msg):
        raise OptionsError(f'{self.path}: {msg}')

    def keys(self, section, where, allowed, required=()):
        if not isinstance(section, dict):
            self.fail(f"'{where}' must be a mapping, got {type(section).__name__}")
        # unknown keys first: a misspelled key is reported as such, not as the key it misses
        for key in section if allowed is not None else ():
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(sorted(allowed))})"
                self.fail(f"unknown key '{where + '.' if where else ''}{key}'{hint}")
        for key in required:
            if section.get(key) is None:
                self.fail(f"missing key '{where + '.' if where else ''}{key}'")

    def registered(self, section, where, registry, what):
        if not isinstance(section, dict) or 'type' not in section:
            self.fail(f"missing key '{where}.type'")
        name = section['type']
        try:
            cls = registry.get(name)
        except KeyError:
            close = difflib.get_close_matches(str(name), list(registry._obj_map), n=1)
            self.fail(f"'{where}.type': no {what} named {name!r}" + (f" (did you mean '{close[0]}'?)" if close else ''))
        return cls

    def component(self, section, where, registry, what, extra=()):
        cls = self.registered(section, where, registry, what)
        allowed = _keys_of(cls)
        self.keys(section, where, None if allowed is None else allowed | {'type'} | set(extra))
        return cls


def apply_force_yml(opt, entries, path='--force_yml'):
    """``opt`` with BasicSR's ``--force_yml a:b=value`` overrides applied, as ``parse_options`` will
    apply them (its own value parsing), so that what is checked is what will run."""
    for entry in entries:
        keys, sep, value = entry.partition('=')
        if not sep or not keys.strip():
            raise OptionsError(f"{path}: '--force_yml {entry}' is not KEY:SUBKEY=VALUE")
        *parents, last = keys.strip().split(':')
        section = opt
        for key in parents:
            if not isinstance(section.get(key), dict):
                raise OptionsError(f"{path}: '--force_yml {entry}': no section '{key}' to set '{last}' in")
            section = section[key]
        section[last] = _postprocess_yml_value(value.strip())
    return opt


def force_yml_entries(argv):
    """The values of ``--force_yml`` in a command line, read as BasicSR's parser reads them (one or
    more after the flag; a repeated flag keeps the last)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--force_yml', nargs='+', default=[])
    return parser.parse_known_args(argv)[0].force_yml


def check_options(path, is_train=True, force=()):
    """Validate the option file at ``path`` with the ``--force_yml`` overrides ``force`` applied;
    returns the parsed dict. Raises OptionsError."""
    with open(path) as f:
        try:
            opt = yaml.load(f, Loader=ordered_yaml()[0])
        except yaml.YAMLError as err:
            raise OptionsError(f'{path}: not valid YAML: {err}') from None
    c = _Checker(path)
    if not isinstance(opt, dict):
        c.fail('not a mapping of options')
    apply_force_yml(opt, force, path)
    required = ['name', 'model_type', 'scale', 'num_gpu', 'network_g', 'datasets', 'path']
    required += ['train', 'logger'] if is_train else ['val']
    c.keys(opt, '', TOP, required)
    c.registered({'type': opt['model_type']}, 'model_type', MODEL_REGISTRY, 'model')
    c.component(opt['network_g'], 'network_g', ARCH_REGISTRY, 'network')
    c.keys(opt['path'], 'path', PATH, [] if is_train else ['pretrain_network_g'])

    c.keys(opt['datasets'], 'datasets', None)
    phases = []
    for phase, ds in opt['datasets'].items():
        where = f'datasets.{phase}'
        kind = phase.split('_')[0]
        if kind not in (('train', 'val') if is_train else ('test', 'val')):
            c.fail(f"unknown dataset phase '{phase}' (use train, val{'' if is_train else ', test_1'}...)")
        phases.append(kind)
        cls = c.registered(ds, where, DATASET_REGISTRY, 'dataset')
        known = set(cls.OPTIONS) if hasattr(cls, 'OPTIONS') else None  # our datasets declare theirs
        needed = ['dataroot_gt', 'dataroot_lq'] + (['num_frame', 'gt_size', 'batch_size_per_gpu',
                                                     'num_worker_per_gpu'] if kind == 'train' else [])
        c.keys(ds, where, None if known is None else known | DATASET_COMMON, needed if known else ['name'])
    if is_train and 'train' not in phases:
        c.fail("missing key 'datasets.train'")

    if is_train:
        train = opt['train']
        ours = opt['model_type'] == 'HOFFRModel'  # other BasicSR models have their own train keys
        c.keys(train, 'train', TRAIN if ours else None, ['optim_g', 'scheduler', 'total_iter'])
        if ours and not (train.get('losses') or train.get('sr_opt')):
            c.fail("missing key 'train.losses' (a list of losses, e.g. [{type: SRLoss}]; or train.sr_opt)")
        optim = train['optim_g']
        import torch
        from hoffr_arch.models.hoffr_model import OPTIMIZERS
        known = OPTIMIZERS if ours else ('Adam',)  # BasicSR 1.4.2's own models know only Adam
        if optim.get('type') not in known:
            c.fail(f"'train.optim_g.type' must be one of {', '.join(known)}, got {optim.get('type')!r}")
        c.keys(optim, 'train.optim_g', (_keys_of(getattr(torch.optim, optim['type'])) - {'params'}) | {'type'}, ['lr'])
        from basicsr.models import lr_scheduler
        schedulers = {'MultiStepLR': lr_scheduler.MultiStepRestartLR, 'MultiStepRestartLR': lr_scheduler.MultiStepRestartLR,
                      'CosineAnnealingRestartLR': lr_scheduler.CosineAnnealingRestartLR}
        sched = train['scheduler']
        if sched.get('type') not in schedulers:
            c.fail(f"'train.scheduler.type' must be one of {', '.join(schedulers)}, got {sched.get('type')!r}")
        c.keys(sched, 'train.scheduler', (_keys_of(schedulers[sched['type']]) - {'optimizer'}) | {'type'})
        for key in ('sr_opt', 'db_opt', 'flow_opt', 'pixel_opt'):
            if train.get(key) is not None:
                c.component(train[key], f'train.{key}', LOSS_REGISTRY, 'loss')
        if ours and train.get('losses') is not None:
            from hoffr_arch.models.hoffr_model import LOSS_INPUTS
            if not isinstance(train['losses'], list):
                c.fail("'train.losses' must be a list of losses")
            for i, spec in enumerate(train['losses']):
                c.component(spec, f'train.losses[{i}]', LOSS_REGISTRY, 'loss', extra=('name', 'inputs'))
                bad = [k for k in spec.get('inputs') or () if k not in LOSS_INPUTS]
                if bad:
                    c.fail(f"'train.losses[{i}].inputs': unknown {bad} (known: {', '.join(LOSS_INPUTS)})")
        c.keys(opt['logger'], 'logger', LOGGER, ['print_freq', 'save_checkpoint_freq'])
    if opt.get('val') is not None:
        c.keys(opt['val'], 'val', VAL, ['val_freq'] if is_train and 'val' in phases else [])
        for name, metric in (opt['val'].get('metrics') or {}).items():
            fn = c.registered(metric, f'val.metrics.{name}', METRIC_REGISTRY, 'metric')
            # a metric's options: its declared ``options``, else its named parameters after the two
            # images (its **kwargs only swallow what BasicSR passes along: a misspelled option would
            # be ignored silently)
            named = getattr(fn, 'options', None) or [
                k for k, p in inspect.signature(fn).parameters.items()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][2:]
            c.keys(metric, f'val.metrics.{name}', set(named) | {'type', 'better'})
    return opt
