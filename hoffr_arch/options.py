"""Checking a BasicSR option YAML before a run starts: a missing or misspelled key fails at once,
with a message naming the key (BasicSR itself would fail later, or silently ignore it).

Where a section configures a registered class (network, loss, dataset, scheduler), its keys are
checked against that class's constructor or, for our datasets, their documented options.
"""
import argparse
import difflib
import inspect
import numbers
import re

import yaml

from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY


class OptionsError(ValueError):
    """An option file with a missing, unknown or invalid key."""


_FLOAT = re.compile(r'^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$')


def load_yaml(path):
    """The YAML file at ``path`` as plain data (dicts keep the file's order), read with PyYAML's safe
    loader: an option file, a training YAML found beside a checkpoint or a model card is data, never
    code. BasicSR's own ordered loader builds any Python object a tag names
    (``!!python/object/apply:os.system``); here such a tag is an ``OptionsError`` naming the file.
    """
    try:
        with open(path, encoding='utf-8') as f:
            return yaml.safe_load(f)
    except yaml.constructor.ConstructorError as err:
        mark = f' (line {err.problem_mark.line + 1})' if err.problem_mark else ''
        raise OptionsError(f'{path}{mark}: the tag {err.problem.split()[-1] if err.problem else "?"} is not allowed: '
                           'option files are read as data, and Python tags would run code') from None
    except yaml.YAMLError as err:
        raise OptionsError(f'{path}: not valid YAML: {" ".join(str(err).split())}') from None
    except UnicodeDecodeError:
        raise OptionsError(f'{path}: not a text file') from None
    except OSError as err:
        raise OptionsError(f'{path}: cannot read it ({err.strerror})') from None


def parse_value(text, where='--force_yml'):
    """A ``--force_yml`` value as YAML data (safe loader; never ``eval``): ``3``, ``-1``, ``2.5``,
    ``[100, 200]``, ``true``, ``~``; also ``none`` and ``!!float 1e-4`` as BasicSR reads them, and a
    bare ``1e-4`` as a float (YAML 1.1 reads it as a string)."""
    text = text.strip()
    if text.lower() == 'none':
        return None
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as err:
        reason = ' '.join(str(err).split()[:8])
        raise OptionsError(f'{where}: value {text!r} is not plain YAML data ({reason})') from None
    if isinstance(value, str) and _FLOAT.match(value):
        return float(value)
    return value


TOP = {'name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'network_g', 'path', 'train', 'val',
       'logger', 'dist_params', 'find_unused_parameters'}
DATASET_COMMON = {'name', 'type', 'phase', 'scale', 'io_backend', 'num_worker_per_gpu', 'batch_size_per_gpu',
                  'dataset_enlarge_ratio', 'prefetch_mode', 'pin_memory', 'persistent_workers', 'use_shuffle'}
VAL = {'val_freq', 'save_img', 'metrics', 'suffix'}  # what BasicSR's own models read; ours declare VAL_OPTIONS
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

    def component(self, section, where, registry, what, extra=(), ints=False):
        cls = self.registered(section, where, registry, what)
        allowed = _keys_of(cls)
        self.keys(section, where, None if allowed is None else allowed | {'type'} | set(extra))
        self.types(section, where, cls, ints)
        return cls

    def types(self, section, where, cls, ints=False):
        """Each value of ``section`` of the type of its parameter's default in ``cls`` (a bool, a
        number; an integer where ``ints`` and the default is one: a network's sizes; elsewhere an
        int default such as ``weight_decay=0`` takes any number), so that ``num_feat: abc`` or
        ``lr: fast`` fails here, not mid-run."""
        params = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls).parameters
        for key, value in section.items():
            default = params[key].default if key in params else None
            if isinstance(default, bool):
                ok, kind = isinstance(value, bool), 'true or false'
            elif isinstance(default, int) and ints:
                ok, kind = isinstance(value, int) and not isinstance(value, bool), 'an integer'
            elif isinstance(default, (int, float)):
                ok, kind = isinstance(value, numbers.Real) and not isinstance(value, bool), 'a number'
            else:
                continue
            if not ok:
                self.fail(f"'{where}.{key}' must be {kind}, got {value!r}")

    def number(self, section, where, key, low, integer=True, required=False):
        """``section[key]`` an integer (or a number) >= ``low`` when given."""
        value = section.get(key)
        if value is None and not required:
            return
        kind = int if integer else numbers.Real
        if not isinstance(value, kind) or isinstance(value, bool) or value < low:
            self.fail(f"'{where}.{key}' must be {'an integer' if integer else 'a number'} >= {low}, got {value!r}")


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
        section[last] = parse_value(value, f"{path}: '--force_yml {entry}'")
    return opt


def force_yml_entries(argv):
    """The values of ``--force_yml`` in a command line, read as BasicSR's parser reads them (one or
    more after the flag; a repeated flag keeps the last)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('--force_yml', nargs='+', default=[])
    return parser.parse_known_args(argv)[0].force_yml


def check_options(path, is_train=True, force=()):
    """Validate the option file at ``path`` with the ``--force_yml`` overrides ``force`` applied;
    returns the parsed dict, with a cosine schedule's omitted ``periods`` derived from
    ``train.total_iter`` (``derive_schedule``). Raises OptionsError."""
    opt = load_yaml(path)
    c = _Checker(path)
    if not isinstance(opt, dict):
        c.fail('not a mapping of options')
    apply_force_yml(opt, force, path)
    required = ['name', 'model_type', 'scale', 'num_gpu', 'network_g', 'datasets', 'path']
    required += ['train', 'logger'] if is_train else ['val']
    c.keys(opt, '', TOP, required)
    _check_name(c, opt['name'])
    model = c.registered({'type': opt['model_type']}, 'model_type', MODEL_REGISTRY, 'model')
    c.component(opt['network_g'], 'network_g', ARCH_REGISTRY, 'network', ints=True)
    c.keys(opt['path'], 'path', PATH, [] if is_train else ['pretrain_network_g'])
    phases = _check_datasets(c, opt['datasets'], is_train)
    if is_train:
        _check_train(c, opt['train'], model)
        c.keys(opt['logger'], 'logger', LOGGER, ['print_freq', 'save_checkpoint_freq'])
        for key in ('print_freq', 'save_checkpoint_freq'):
            c.number(opt['logger'], 'logger', key, 1, integer=False)  # BasicSR's YAMLs write !!float 5e3
    if opt.get('val') is not None:
        _check_val(c, opt['val'], is_train and 'val' in phases, getattr(model, 'VAL_OPTIONS', VAL))
    return opt


def _check_name(c, name):
    """An experiment name is one folder name under ``experiments/`` (or ``results/``): a name with a
    path separator or ``..`` would write, and BasicSR would rename existing folders, elsewhere."""
    if not isinstance(name, str) or not name.strip():
        c.fail(f"'name' must be a non-empty string, got {name!r}")
    if '/' in name or '\\' in name or name.startswith('.') or '\0' in name:
        c.fail(f"'name' {name!r} must be a plain folder name (no '/', '\\', leading '.' or '..')")


def _check_datasets(c, datasets, is_train):
    """Each dataset phase registered, its keys known, its sizes positive integers; returns the phases."""
    c.keys(datasets, 'datasets', None)
    phases = []
    for phase, ds in datasets.items():
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
        for key in ('num_frame', 'gt_size', 'batch_size_per_gpu', 'dataset_enlarge_ratio', 'max_frames'):
            c.number(ds, where, key, 1)
        c.number(ds, where, 'num_worker_per_gpu', 0)
    if is_train and 'train' not in phases:
        c.fail("missing key 'datasets.train'")
    return phases


def _check_train(c, train, model):
    """``train``: optimizer, schedule (``derive_schedule``), losses, iterations. Our models declare
    the train keys they read (``TRAIN_OPTIONS``), their optimisers and their loss inputs; BasicSR's
    own models are checked for what they all need, and Adam (the one optimiser 1.4.2 builds)."""
    allowed = getattr(model, 'TRAIN_OPTIONS', None)
    c.keys(train, 'train', allowed, ['optim_g', 'scheduler', 'total_iter'])
    c.number(train, 'train', 'total_iter', 1, integer=False, required=True)  # BasicSR takes int() of it
    c.number(train, 'train', 'warmup_iter', -1)
    for key in ('time_budget', 'save_every_minutes'):
        c.number(train, 'train', key, 0, integer=False)
    if train.get('time_budget') and not hasattr(model, 'check_time_budget'):
        c.fail(f"'train.time_budget': {model.__name__} has no time budget; use our subclass "
               f"(TimedVideoRecurrentModel, TimedEDVRModel) or one of this package's models")
    if 'compile' in train:
        from hoffr_arch.precision import compile_option
        try:
            compile_option(train['compile'])
        except ValueError as err:
            c.fail(str(err))
    import torch
    optim = train['optim_g']
    known = getattr(model, 'OPTIMIZERS', ('Adam', ))
    if not isinstance(optim, dict) or optim.get('type') not in known:
        c.fail(f"'train.optim_g.type' must be one of {', '.join(known)}, got {(optim or {}).get('type')!r}")
    optimizer = getattr(torch.optim, optim['type'])
    c.keys(optim, 'train.optim_g', (_keys_of(optimizer) - {'params'}) | {'type'}, ['lr'])
    c.types(optim, 'train.optim_g', optimizer)
    c.number(optim, 'train.optim_g', 'lr', 0, integer=False)
    derive_schedule(c, train)
    for key in ('sr_opt', 'db_opt', 'flow_opt', 'pixel_opt', 'perceptual_opt'):
        if train.get(key) is not None:
            c.component(train[key], f'train.{key}', LOSS_REGISTRY, 'loss')
    if hasattr(model, 'LOSS_INPUTS'):
        _check_losses(c, train, model)


def _check_losses(c, train, model):
    """``train.losses`` of one of our models: a list of registered losses taking its ``LOSS_INPUTS``
    (the model itself says when none is given: HOFFRModel also takes its shorthands)."""
    losses = train.get('losses')
    if losses is None:
        if not any(train.get(key) for key in ('sr_opt', 'db_opt', 'flow_opt')) or 'sr_opt' not in model.TRAIN_OPTIONS:
            c.fail(f"missing key 'train.losses' (a list of losses, e.g. {model.LOSS_EXAMPLE})")
        return
    if not isinstance(losses, list) or not losses:
        c.fail(f"'train.losses' must be a non-empty list of losses (e.g. {model.LOSS_EXAMPLE})")
    for i, spec in enumerate(losses):
        cls = c.component(spec, f'train.losses[{i}]', LOSS_REGISTRY, 'loss', extra=('name', 'inputs'))
        inputs = spec.get('inputs') or getattr(cls, 'inputs', ('output', 'gt'))
        bad = [k for k in inputs if k not in model.LOSS_INPUTS]
        if bad and spec.get('inputs'):
            c.fail(f"'train.losses[{i}].inputs': unknown {bad} (known: {', '.join(model.LOSS_INPUTS)})")
        if bad:
            c.fail(f"'train.losses[{i}]': {cls.__name__} takes {bad}, which {model.__name__} does not give "
                   f"(it gives: {', '.join(model.LOSS_INPUTS)}; set its inputs)")


def derive_schedule(c, train):
    """Check ``train.scheduler``; a ``CosineAnnealingRestartLR`` without ``periods`` gets one period
    of ``total_iter`` (and ``restart_weights: [1]``), so that a longer run is one override of
    ``total_iter``. Given periods must cover ``total_iter``: BasicSR's scheduler fails with a
    TypeError at the first iteration past them."""
    from basicsr.models import lr_scheduler
    schedulers = {'MultiStepLR': lr_scheduler.MultiStepRestartLR, 'MultiStepRestartLR': lr_scheduler.MultiStepRestartLR,
                  'CosineAnnealingRestartLR': lr_scheduler.CosineAnnealingRestartLR}
    sched = train['scheduler']
    if not isinstance(sched, dict) or sched.get('type') not in schedulers:
        c.fail(f"'train.scheduler.type' must be one of {', '.join(schedulers)}, got {(sched or {}).get('type')!r}")
    c.keys(sched, 'train.scheduler', (_keys_of(schedulers[sched['type']]) - {'optimizer'}) | {'type'},
           ['milestones'] if sched['type'] != 'CosineAnnealingRestartLR' else [])
    c.types(sched, 'train.scheduler', schedulers[sched['type']])
    if sched['type'] != 'CosineAnnealingRestartLR':
        return
    sched = train['scheduler'] = with_periods(train)
    periods = sched['periods']
    if not isinstance(periods, list) or not all(isinstance(p, int) and not isinstance(p, bool) and p > 0
                                                for p in periods):
        c.fail(f"'train.scheduler.periods' must be a list of positive integers, got {periods!r}")
    weights = sched.get('restart_weights', [1])
    if not isinstance(weights, list) or len(weights) != len(periods):
        c.fail(f"'train.scheduler.restart_weights' must be a list as long as periods ({len(periods)}), got {weights!r}")
    if sum(periods) < train['total_iter']:
        c.fail(f"'train.scheduler.periods' end at iteration {sum(periods)}, before 'train.total_iter' "
               f"{train['total_iter']} (BasicSR's scheduler would fail there); omit periods to follow total_iter")


def with_periods(train):
    """``train.scheduler``, a ``CosineAnnealingRestartLR`` without ``periods`` given one period of
    ``train.total_iter`` (and ``restart_weights: [1]``); other schedulers as they are."""
    sched = dict(train['scheduler'])
    if sched.get('type') == 'CosineAnnealingRestartLR' and sched.get('periods') is None:
        sched['periods'] = [int(train['total_iter'])]
        sched.setdefault('restart_weights', [1])
    return sched


def _check_val(c, val, needs_freq, allowed):
    c.keys(val, 'val', allowed, ['val_freq'] if needs_freq else [])
    c.number(val, 'val', 'val_freq', 1, integer=False)
    for name, metric in (val.get('metrics') or {}).items():
        fn = c.registered(metric, f'val.metrics.{name}', METRIC_REGISTRY, 'metric')
        # a metric's options: its declared ``options``, else its named parameters after the two
        # images (its **kwargs only swallow what BasicSR passes along: a misspelled option would
        # be ignored silently)
        named = getattr(fn, 'options', None) or [
            k for k, p in inspect.signature(fn).parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][2:]
        c.keys(metric, f'val.metrics.{name}', set(named) | {'type', 'better'})
