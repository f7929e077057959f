"""Export HOFFR's streaming step to ONNX.

    python -m hoffr_arch.export --output hoffr_step.onnx                  # the shipped HOFFR-S weights
    python -m hoffr_arch.export --model experiments/X/models/net_g_latest.pth --output step.onnx

The graph is one recurrent step (``HOFFR.step``): inputs ``lq`` (1, 3, h, w) RGB in [0, 1] with h, w
even, ``prev_lq`` (the previous frame; at a clip's first frame the frame itself) and ``prev_hr``
(the previous output, (1, 3, 4h, 4w); zeros at the first frame); outputs ``hr`` and ``deblurred``.
Height and width are dynamic. ``python -m hoffr_arch.infer --backend onnxruntime --model step.onnx``
runs it (``hoffr_arch.streaming.OnnxStep``); the export checks ONNX Runtime's output against torch's.
"""
import argparse
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hoffr_arch.archs.hoffr_arch import HOFFRState

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


def export(net, path, size=(64, 96)):
    """Write the ONNX graph of ``net``'s step to ``path``; returns the largest difference between
    ONNX Runtime and torch on a check at another size than the traced one."""
    step = StreamingStep(net.eval().float().cpu())
    h, w = size
    gen = torch.Generator().manual_seed(0)
    inputs = (torch.rand(1, 3, h, w, generator=gen), torch.rand(1, 3, h, w, generator=gen),
              torch.rand(1, 3, 4 * h, 4 * w, generator=gen))
    axes = {'lq': {2: 'h', 3: 'w'}, 'prev_lq': {2: 'h', 3: 'w'}, 'prev_hr': {2: 'hr_h', 3: 'hr_w'},
            'hr': {2: 'hr_h', 3: 'hr_w'}, 'deblurred': {2: 'h', 3: 'w'}}
    path = Path(path)
    tmp = path.with_name(path.name + '.partial')
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer notes on shape checks; the check below tests another size
        torch.onnx.export(step, inputs, str(tmp), input_names=['lq', 'prev_lq', 'prev_hr'],
                          output_names=['hr', 'deblurred'], dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    import onnx
    model = onnx.load(str(tmp))
    onnx.helper.set_model_props(model, {'scale': str(net.scale), 'producer': 'hoffr_arch.export'})
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return check(step, path, (h + 10, w + 6))


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


def main(argv=None):
    from hoffr_arch.data.video_io import MediaError, check_writable
    from hoffr_arch.infer import InferError, add_model_arguments, load_model_from_args
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
        net = load_model_from_args(args, 'cpu')
        diff = export(net, args.output)
    except (InferError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'{args.output}: ONNX opset {OPSET}; ONNX Runtime vs torch, largest difference {diff:.2e}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
