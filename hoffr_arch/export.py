"""Export HOFFR's streaming step to ONNX.

    python -m hoffr_arch.export --output hoffr_step.onnx                  # the shipped HOFFR-S weights
    python -m hoffr_arch.export --model experiments/X/models/net_g_latest.pth --output step.onnx

The graph is one recurrent step (``HOFFR.step``): inputs ``lq`` (1, 3, h, w) RGB in [0, 1] with h, w
even, ``prev_lq`` (the previous frame; at a clip's first frame the frame itself) and ``prev_hr``
(the previous output, (1, 3, 4h, 4w); zeros at the first frame); outputs ``hr`` and ``deblurred``.
Height and width are dynamic. ``python -m hoffr_arch.infer --backend onnxruntime --model step.onnx``
runs it (``hoffr_arch.streaming.OnnxStep``; ``--backend openvino``: ``hoffr_arch.backends.OpenVinoStep``);
the export checks ONNX Runtime's output against torch's.

``cached_export(net)`` is what ``infer --backend onnxruntime|openvino`` uses with a checkpoint: the graph
of that network, exported once into a per-user folder of the system's temporary directory (named by a
digest of the network's structure and weights and of the exporter) and reused by later runs; one graph
serves every frame and tile size.
"""
import argparse
import getpass
import hashlib
import os
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hoffr_arch.archs.hoffr_arch import HOFFRState
from hoffr_arch.atomic import atomic_path

OPSET = 17


class StreamingStep(nn.Module):
    """``HOFFR.step`` with its state as explicit tensors: (lq, prev_lq, prev_hr) -> (hr, deblurred).

    With ``prev_hr`` zero the output equals the first-frame step's (the warped previous output is
    zero either way), so one graph serves every frame.
    """

    def __init__(self, net):
        super().__init__()
        if net.upsample_base == 'recurrent':
            raise ValueError("upsample_base 'recurrent' treats the first frame differently; "
                             'the exported step supports the other bases')
        self.net = net

    def forward(self, lq, prev_lq, prev_hr):
        hr, _, aux = self.net.step(lq, HOFFRState(prev_lq, prev_hr), return_aux=True)
        return hr, aux['deblurred']


def export(net, path, size=(64, 96), check_ort=True):
    """Write the ONNX graph of ``net``'s step to ``path`` (traced at LR ``size``, height and width
    dynamic); returns the largest difference between ONNX Runtime and torch on a check at another
    size than the traced one (None with ``check_ort`` False)."""
    step = StreamingStep(net.eval().float().cpu())
    h, w = size
    gen = torch.Generator().manual_seed(0)
    inputs = (torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 3, h, w, generator=gen),
              torch.rand(1, 3, 4 * h, 4 * w, generator=gen))
    axes = {'lq': {2: 'h', 3: 'w'}, 'prev_lq': {2: 'h', 3: 'w'}, 'prev_hr': {2: 'hr_h', 3: 'hr_w'},
            'hr': {2: 'hr_h', 3: 'hr_w'}, 'deblurred': {2: 'h', 3: 'w'}}
    import onnx
    with atomic_path(path, tmp_name=f'{Path(path).name}.{os.getpid()}.tmp') as tmp:  # a process of its own
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter('ignore')  # tracer notes on shape checks; the check below tests another size
            torch.onnx.export(step, inputs, str(tmp), input_names=['lq', 'prev_lq', 'prev_hr'],
                              output_names=['hr', 'deblurred'], dynamic_axes=axes, opset_version=OPSET,
                              dynamo=False)
        model = onnx.load(str(tmp))
        onnx.helper.set_model_props(model, {'scale': str(net.scale), 'producer': 'hoffr_arch.export'})
        onnx.save(model, str(tmp))
    return check(step, path, (h + 10, w + 6)) if check_ort else None


def check(step, path, size):
    """Largest |ONNX Runtime - torch| over both outputs on random inputs of ``size`` (h, w)."""
    import onnxruntime as ort
    h, w = size
    gen = torch.Generator().manual_seed(1)
    inputs = (torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 3, h, w, generator=gen),
              torch.rand(1, 3, 4 * h, 4 * w, generator=gen))
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    got = session.run(['hr', 'deblurred'], dict(zip(['lq', 'prev_lq', 'prev_hr'], (t.numpy() for t in inputs))))
    with torch.no_grad():
        want = step(*inputs)
    return max(float(np.abs(g - t.numpy()).max()) for g, t in zip(got, want))


def network_key(net):
    """A hex digest of ``net``'s structure, options and weights and of this exporter (opset, torch)."""
    digest = hashlib.sha256(f'{net!r}|{net.scale}|{net.upsample_base}|{net.use_flow}|{OPSET}|{torch.__version__}'
                            .encode())
    for name, tensor in net.state_dict().items():
        digest.update(f'{name}{tuple(tensor.shape)}'.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


def cache_dir():
    """This user's folder for exported graphs in the system's temporary directory (created 0700); a
    fresh private folder instead where that name is another user's or a link."""
    root = Path(tempfile.gettempdir()) / f'hoffr-onnx-{getpass.getuser()}'
    root.mkdir(mode=0o700, exist_ok=True)
    if root.is_symlink() or (hasattr(os, 'getuid') and root.stat().st_uid != os.getuid()):
        return Path(tempfile.mkdtemp(prefix='hoffr-onnx-'))
    return root


def cached_export(net):
    """The path of ``net``'s exported step in ``cache_dir()``, exported now if no run has yet."""
    path = cache_dir() / f'step-{network_key(net)}.onnx'
    if not path.is_file():
        export(net, path, check_ort=False)
    return path


def main(argv=None):
    from hoffr_arch.data.video_io import MediaError, check_writable
    from hoffr_arch.infer import InferError, add_model_arguments, load_network
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument('--output', required=True, help='the .onnx file to write')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing .onnx file')
    args = parser.parse_args(argv)
    try:
        out = Path(args.output)
        if out.suffix != '.onnx':
            raise InferError(f'{out}: the output must be an .onnx file')
        if out.exists() and not args.overwrite:
            raise InferError(f'{out} already exists; pass --overwrite to replace it')
        try:
            check_writable(out)
        except MediaError as err:
            raise InferError(str(err)) from None
        out.parent.mkdir(parents=True, exist_ok=True)
        net = load_network(args.model, args.opt, args.param_key, 'cpu')
        diff = export(net, args.output)
    except (InferError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'{args.output}: ONNX opset {OPSET}; ONNX Runtime vs torch, largest difference {diff:.2e}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
