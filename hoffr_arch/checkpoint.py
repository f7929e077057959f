"""Loading weights into a network: the one place every entry point (and ``HOFFR(pof_path=...)``) calls.

BasicSR's ``BaseModel.load_network`` needs a model object and only logs mismatched keys; these
entry points run without one and must fail with a line that says what is wrong.
"""
from pathlib import Path

import torch

from hoffr_arch import atomic

PACKAGE_PARENT = Path(__file__).resolve().parents[1]


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or does not fit the network; the message says which."""


def read_checkpoint(path):
    """The dict stored at ``path`` (on the CPU, tensors and plain values only), or CheckpointError."""
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f'{path}: no such checkpoint') from None
    except Exception as err:  # torch raises several types for a file that is not a checkpoint
        raise CheckpointError(f'{path}: not a readable checkpoint ({type(err).__name__})') from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f'{path}: not a checkpoint (holds a {type(ckpt).__name__})')
    return ckpt


def read_state_dict(path, param_key=None):
    """The state dict stored at ``path``: ``param_key``, else ``params_ema``, else ``params`` (BasicSR's
    layout), else the file itself when it is a plain state dict. ``module.`` prefixes are stripped.

    Returns ``(state_dict, key)``, key None for a plain state dict.
    """
    ckpt = read_checkpoint(path)
    keys = [param_key] if param_key else ['params_ema', 'params']
    key = next((k for k in keys if k in ckpt), None)
    if key is None:
        if param_key or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            raise CheckpointError(f'{path}: checkpoint has no {" or ".join(keys)} weights')
        state = ckpt
    else:
        state = ckpt[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f'{path}: {key} is not a mapping of weight names to tensors')
    bad = next((k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:
        raise CheckpointError(f'{path}: weight {bad} holds NaN or infinite values: the file is corrupt '
                              '(or from a run that diverged)')
    return {k[7:] if k.startswith('module.') else k: v for k, v in state.items()}, key


def load_weights(net, path, param_key=None, what='network'):
    """Load the weights at ``path`` into ``net`` strictly, in ``net``'s dtype; returns ``net``.

    Raises CheckpointError naming ``path`` when keys or shapes do not match ``what``.
    """
    state, _ = read_state_dict(path, param_key)
    own = net.state_dict()
    missing, unexpected = set(own) - set(state), set(state) - set(own)
    if missing or unexpected:
        raise CheckpointError(f'{path}: not a checkpoint of this {what} ({len(missing)} weights missing, e.g. '
                              f'{sorted(missing)[:1]}; {len(unexpected)} unexpected, e.g. {sorted(unexpected)[:1]}): '
                              'another architecture, or other options')
    wrong = next((k for k, v in state.items() if v.shape != own[k].shape), None)
    if wrong is not None:
        raise CheckpointError(f'{path}: weight {wrong} is {tuple(state[wrong].shape)}, this {what} has '
                              f'{tuple(own[wrong].shape)}: other options')
    net.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return net


def resolve_asset(path):
    """``path`` as given if it exists, else relative to the folder holding ``hoffr_arch`` (so that
    ``hoffr_arch/assets/...`` names a shipped file from any working directory, checkout or install)."""
    path = Path(path)
    if path.exists() or path.is_absolute():
        return path
    candidate = PACKAGE_PARENT / path
    return candidate if candidate.exists() else path


def pack_release(model_path, network_g, out, param_key=None, half=True):
    """A self-contained release file: ``{'params_ema' or 'params': weights (fp16 if ``half``),
    'network_g': options}``, so ``hoffr_arch.infer`` needs nothing beside it. Written atomically."""
    state, key = read_state_dict(model_path, param_key)
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    opts = {k: v for k, v in dict(network_g).items() if k != 'pof_path'}  # the weights hold the trained POF
    return atomic.torch_save({key or 'params': state, 'network_g': opts}, out)
