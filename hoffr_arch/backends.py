"""Which engine runs HOFFR's streaming step: torch, ONNX Runtime or OpenVINO, and the OpenVINO step.

``choose_backend(backend, dtype, device, compile)`` -> a ``Backend``: the engine, the numeric path
(a ``hoffr_arch.precision.ComputePath``) and the one line ``infer`` prints first. ``backend`` is
``torch``, ``onnxruntime``, ``openvino`` or ``auto``:

- ``torch``: ``HOFFR.step`` on ``precision.choose(dtype, device, compile)`` (any device);
- ``onnxruntime``: the exported step (``hoffr_arch.export``) on the CPU in fp32;
- ``openvino``: the exported step compiled by OpenVINO for the CPU, fp32, or bf16
  (``INFERENCE_PRECISION_HINT``) where the CPU has native bf16 (``precision.cpu_bf16_features``);
- ``auto``: OpenVINO on a CPU where it is installed and no ``--compile`` is asked for, torch elsewhere.
  OpenVINO measured fastest on both kinds of CPU tried: 1.44x torch fp32 and 1.35x torch bf16 +
  channels-last on a Xeon with AMX (issue 20), and ahead of torch fp32 on an AVX2-only EPYC
  (``python -m hoffr_arch.benchmarks.speed --paths``; docs/benchmarks.md).

``OpenVinoStep`` is a step (``hoffr_arch.streaming``) on OpenVINO: the graph is compiled with dynamic
height and width, so every frame and tile shape reuses it (each new shape's kernels are built at its
first call, which ``streaming.warm_up`` makes before a video starts), and the compiled graph is kept
in the export's temporary cache (``export.cache_dir``), so later runs load it instead of compiling.
"""
import importlib.util
from dataclasses import dataclass

import torch

from hoffr_arch.precision import COMPILE_MODES, ComputePath, choose, cpu_bf16_features
from hoffr_arch.streaming import OnnxStep

BACKENDS = ('torch', 'onnxruntime', 'openvino', 'auto')
GRAPH_BACKENDS = ('onnxruntime', 'openvino')
STEP_NAMES = (['lq', 'prev_lq', 'prev_hr'], ['hr', 'deblurred'])
OV_PRECISION = {torch.float32: 'f32', torch.bfloat16: 'bf16'}
EXTRAS = {'onnxruntime': ('onnx', ['onnxruntime', 'onnx']), 'openvino': ('openvino', ['openvino', 'onnx'])}


class BackendError(ValueError):
    """A backend that cannot run as asked (not installed, wrong device or dtype); one line."""


@dataclass(frozen=True)
class Backend:
    """``name`` (one of ``BACKENDS`` but ``auto``) running on ``path``; ``line`` says which and why."""
    name: str
    path: ComputePath
    line: str

    @property
    def described(self):
        """``line`` without its ``compute path: `` prefix (for the report)."""
        return self.line.removeprefix('compute path: ')


def installed(name):
    """Whether the Python package ``name`` can be imported here (without importing it)."""
    return importlib.util.find_spec(name) is not None


def choose_backend(backend='torch', dtype='auto', device='cpu', compile='none'):
    """The ``Backend`` for the flags ``--backend``, ``--dtype``, ``--device`` and ``--compile``;
    ``BackendError`` naming the flag where that combination cannot run here."""
    device = torch.device(device)
    if backend not in BACKENDS:
        raise BackendError(f'--backend {backend}: choose one of {", ".join(BACKENDS)}')
    if compile not in COMPILE_MODES:
        raise BackendError(f'--compile {compile}: choose one of {", ".join(COMPILE_MODES)}')
    why_backend = ''
    if backend == 'auto':
        backend, why = _auto_backend(device, compile)
        why_backend = f'; backend auto: {backend}, {why}'
    if backend == 'torch':
        path = _torch_path(dtype, device, compile)
        return Backend('torch', path, path.describe() + why_backend)
    if compile != 'none':
        raise BackendError(f'--compile {compile} is for --backend torch, not {backend}')
    if device.type != 'cpu':
        raise BackendError(f'--backend {backend} runs on the CPU here, not on {device}')
    extra, packages = EXTRAS[backend]
    for package in packages:
        if not installed(package):
            raise BackendError(f'--backend {backend}: the {package} package is not installed '
                               f"(pip install '.[{extra}]')")
    path = _graph_path(backend, dtype, device)
    name = 'fp32' if path.dtype == torch.float32 else 'bf16'
    return Backend(backend, path, f'compute path: {backend} {name} on cpu ({path.why}{why_backend})')


def _auto_backend(device, compile):
    """(engine, why) that ``--backend auto`` takes: OpenVINO on a CPU where installed, torch elsewhere."""
    if device.type != 'cpu':
        return 'torch', f'not a CPU ({device.type})'
    if compile != 'none':
        return 'torch', f'as --compile {compile} asks'
    if not all(map(installed, EXTRAS['openvino'][1])):
        return 'torch', "the openvino extra is not installed (pip install '.[openvino]')"
    return 'openvino', 'installed, and the fastest engine measured on CPUs'


def _torch_path(dtype, device, compile):
    """``precision.choose`` with the flags' errors as ``BackendError``."""
    try:
        return choose(dtype, device, compile)
    except ValueError as err:
        raise BackendError(str(err)) from None


def _graph_path(backend, dtype, device):
    """The precision of a graph backend: fp32, or bf16 on OpenVINO where the CPU has it natively."""
    native = cpu_bf16_features()
    if dtype == 'fp32':
        return ComputePath(device, torch.float32, False, 'asked for')
    if dtype in ('bf16', 'fp16'):
        if backend == 'openvino' and dtype == 'bf16' and native:
            return ComputePath(device, torch.bfloat16, False, f'asked for; this CPU has {"/".join(native)}')
        where = 'a CPU with AMX-BF16/AVX512-BF16' if backend == 'openvino' and dtype == 'bf16' else 'fp32 only'
        raise BackendError(f'--dtype {dtype} with --backend {backend}: {where} (use fp32 or auto)')
    if dtype != 'auto':
        raise BackendError(f'--dtype {dtype}: choose one of auto, fp32, bf16, fp16')
    if backend == 'openvino' and native:
        return ComputePath(device, torch.bfloat16, False, f'auto: this CPU has {"/".join(native)}')
    why = 'auto: this CPU has no AMX-BF16/AVX512-BF16' if backend == 'openvino' else 'auto: ONNX Runtime runs fp32'
    return ComputePath(device, torch.float32, False, why)


class _OvSession:
    """An OpenVINO compiled model behind ONNX Runtime's ``session.run(names, feeds)``, as ``OnnxStep`` calls it."""

    def __init__(self, compiled):
        self.request = compiled.create_infer_request()

    def run(self, names, feeds):
        out = self.request.infer(feeds)  # copies the outputs: the recurrent state keeps them
        return [out[name] for name in names]


class OpenVinoStep(OnnxStep):
    """The exported step (an .onnx from ``hoffr_arch.export``) on OpenVINO's CPU plugin.

    ``dtype`` (torch.float32 or torch.bfloat16) becomes ``INFERENCE_PRECISION_HINT``, always set: on a
    CPU with AMX OpenVINO would pick bf16 by itself. Frames, state and padding as ``OnnxStep``.
    """

    def __init__(self, path, dtype=torch.float32):
        import onnx
        import openvino as ov

        from hoffr_arch.checkpoint import CheckpointError
        from hoffr_arch.export import cache_dir
        core = ov.Core()
        core.set_property({'CACHE_DIR': str(cache_dir() / 'openvino')})  # compiled once per graph and precision
        config = {'INFERENCE_PRECISION_HINT': OV_PRECISION[dtype], 'PERFORMANCE_HINT': 'LATENCY'}
        try:
            compiled = core.compile_model(str(path), 'CPU', config)
            meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        except Exception as err:  # noqa: BLE001 (OpenVINO raises RuntimeError for any unreadable file)
            raise CheckpointError(f'{path}: not a readable ONNX graph ({" ".join(str(err).split())[:160]})') from None
        ports = (compiled.inputs, compiled.outputs)  # a port may carry several tensor names: ours is among them
        if any(len(p) != len(want) or not set(want) <= set().union(*(q.get_names() for q in p))
               for p, want in zip(ports, STEP_NAMES)):
            raise CheckpointError(f'{path}: not a HOFFR step exported by hoffr_arch.export (inputs '
                                  f'{sorted(q.get_any_name() for q in ports[0])}, outputs '
                                  f'{sorted(q.get_any_name() for q in ports[1])})')
        self.scale = int(meta.get('scale', 4))
        self.session = _OvSession(compiled)
