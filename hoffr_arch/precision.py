"""The one home of the numeric path HOFFR runs on: fp32, or bf16/fp16 autocast, channels-last or not.

``choose(dtype, device)`` -> a ``ComputePath``: ``dtype`` is ``auto``, ``fp32``, ``bf16`` or ``fp16``
(explicit choices win). ``auto`` picks, per device:

- CPU: bf16 autocast with the network and its inputs channels-last where the CPU has native bf16
  (AMX-BF16 or AVX512-BF16, ``cpu_bf16_features``); fp32 elsewhere (without them oneDNN emulates
  bf16, measured 10-70x slower than fp32 on an AVX2-only EPYC);
- CUDA: bf16 autocast where the GPU supports bf16, else fp32;
- any other device: fp32.

Autocast leaves ``flow_warp``'s ``grid_sample`` in float32 (it disables autocast around it), and the
network's weights stay float32: only the convolutions and matmuls run in the lower precision.
``infer``, ``evaluation``, ``benchmarks.compare``/``speed`` and ``HOFFRModel`` (``train.bf16``) use it.

``choose(..., compile=mode)`` adds ``torch.compile`` (``COMPILE_MODES``; ``none`` by default):
``ComputePath.compiled(fn)`` is ``fn`` compiled in that mode, one static graph per input shape (tiles
reuse one shape; each new frame shape compiles anew, which ``infer``'s warm-up absorbs). On CUDA
``reduce-overhead`` and ``max-autotune`` replay CUDA graphs, whose outputs live in memory the next
replay overwrites: ``compiled`` starts a new graph step per call and clones what the call returns, so
a recurrent state handed to the next step, or a frame still being written, stays valid. HOFFR is
bound by kernel launches on a GPU (five POF levels and one recurrent step a frame), which CUDA graphs
remove; on a CPU the graph capture pays little in fp32. ``HOFFRModel`` (``train.compile``) compiles
its per-frame recurrent step and the POF with ``ComputePath.graph`` (``compile_recurrent_step``).
"""
import dataclasses
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
CHOICES = ('auto', ) + tuple(DTYPES)
COMPILE_MODES = ('none', 'default', 'reduce-overhead', 'max-autotune')
CUDA_GRAPH_MODES = ('reduce-overhead', 'max-autotune')  # the modes that replay CUDA graphs on a GPU
RECOMPILE_LIMIT = 64  # graphs a compiled function may hold (shapes x first/later frame x networks)
NATIVE_BF16 = ('amx_bf16', 'avx512_bf16')  # x86 features that make bf16 faster than fp32 on a CPU
CPUINFO = Path('/proc/cpuinfo')


def cpu_bf16_features():
    """The native-bf16 features of this CPU among ``NATIVE_BF16`` (a tuple; empty: none).

    From torch's ``torch.cpu.get_capabilities()`` (cpuinfo) where this torch has it, else from the
    ``flags`` line of ``/proc/cpuinfo`` (Linux); () where neither says.
    """
    flags = None
    get_capabilities = getattr(torch.cpu, 'get_capabilities', None)
    if get_capabilities is not None:
        try:
            flags = {name for name, value in get_capabilities().items() if value is True}
        except Exception:  # an older or unusual build: fall back to the kernel's view
            flags = None
    if flags is None:
        try:
            text = CPUINFO.read_text()
        except OSError:
            return ()
        line = next((ln for ln in text.splitlines() if ln.startswith('flags')), '')
        flags = set(line.partition(':')[2].split())
    return tuple(name for name in NATIVE_BF16 if name in flags)


@dataclass(frozen=True)
class ComputePath:
    """How to run a network on ``device``: autocast to ``dtype`` (float32: none) and channels-last."""
    device: torch.device
    dtype: torch.dtype = torch.float32
    channels_last: bool = False
    why: str = ''
    compile: str = 'none'  # one of COMPILE_MODES

    @property
    def name(self):
        name = {torch.float32: 'fp32', torch.bfloat16: 'bf16 autocast', torch.float16: 'fp16 autocast'}[self.dtype]
        name += ' + channels_last' if self.channels_last else ''
        return name + (f' + torch.compile {self.compile}' if self.compile != 'none' else '')

    def describe(self):
        """One line: the path and why it was taken."""
        return f'compute path: {self.name} on {self.device} ({self.why})'

    def autocast(self):
        """The autocast context of this path (a null context for fp32)."""
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @property
    def memory_format(self):
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def prepare(self, net):
        """``net`` (float32 weights kept) in this path's memory format; returns it."""
        return net.to(memory_format=self.memory_format)

    def input(self, x):
        """A (n, c, h, w) input in this path's memory format (5-D inputs are left as they are)."""
        return x.contiguous(memory_format=self.memory_format) if x.dim() == 4 else x

    @property
    def cuda_graphs(self):
        """Whether ``compiled`` functions replay CUDA graphs (a CUDA device and a graph mode)."""
        return self.device.type == 'cuda' and self.compile in CUDA_GRAPH_MODES

    def graph(self, fn, backend=None):
        """``fn`` (a function or module) compiled in this path's mode, as ``torch.compile`` gives it (no
        replay safeguards: for training, where CUDA graph trees keep one iteration's graphs and their
        saved activations together); ``fn`` itself for ``none``. One static graph per input shape
        (``dynamic=False``), up to ``RECOMPILE_LIMIT`` graphs (dynamo's default, 8, counts every HOFFR in
        the process and both of a shape's graphs: a tiled frame's edge tiles would pass it and run
        eager). ``backend`` (e.g. ``'aot_eager'``: dynamo's graph capture and autograd without
        inductor's code generation, which is cheap enough for tests) replaces inductor and its mode."""
        if self.compile == 'none':
            return fn
        if backend is None:
            graph = torch.compile(fn, mode=self.compile, dynamic=False)
        else:
            graph = torch.compile(fn, backend=backend, dynamic=False)

        def limited(*args, **kwargs):
            with torch._dynamo.config.patch(recompile_limit=RECOMPILE_LIMIT):
                return graph(*args, **kwargs)
        return limited

    def compiled(self, fn, backend=None):
        """``graph(fn, backend)`` for inference: where CUDA graphs are replayed (``cuda_graphs``) each
        call starts a new graph step and returns clones of the tensors it returns, so that what a call
        returns (a recurrent state handed to the next step, a frame still being written) is not
        overwritten by the next replay. ``fn`` itself for ``none``."""
        graph = self.graph(fn, backend)
        if not self.cuda_graphs:
            return graph

        def replayed(*args, **kwargs):
            torch.compiler.cudagraph_mark_step_begin()
            return _clone_tensors(graph(*args, **kwargs))
        return replayed


def _clone_tensors(out):
    """``out`` (tensors, possibly nested in tuples, lists, dicts and NamedTuples) with every tensor cloned."""
    return torch.utils._pytree.tree_map_only(torch.Tensor, torch.clone, out)


def choose(dtype='auto', device='cpu', compile='none'):
    """The ``ComputePath`` for ``dtype`` (one of ``CHOICES``) on ``device`` with ``torch.compile`` mode
    ``compile`` (one of ``COMPILE_MODES``); ValueError naming the flag where a choice is unknown or
    cannot run there (fp16 on a CPU)."""
    if compile not in COMPILE_MODES:
        raise ValueError(f'--compile {compile}: choose one of {", ".join(COMPILE_MODES)}')
    return dataclasses.replace(_choose_dtype(dtype, device), compile=compile)


def _choose_dtype(dtype, device):
    """``choose`` without compiling: the dtype and memory format for ``dtype`` on ``device``."""
    device = torch.device(device)
    if dtype not in CHOICES:
        raise ValueError(f'--dtype {dtype}: choose one of {", ".join(CHOICES)}')
    if device.type == 'cpu':
        native = cpu_bf16_features()
        if dtype == 'fp16':
            raise ValueError('--dtype fp16 needs a CUDA device (on a CPU use bf16, or auto)')
        if dtype == 'bf16':
            why = (f'asked for; this CPU has {"/".join(native)}' if native else
                   'asked for; this CPU has no AMX-BF16/AVX512-BF16: emulated, much slower than fp32')
            return ComputePath(device, torch.bfloat16, True, why)
        if dtype == 'auto' and native:
            return ComputePath(device, torch.bfloat16, True, f'auto: this CPU has {"/".join(native)}')
        why = 'asked for' if dtype == 'fp32' else 'auto: this CPU has no AMX-BF16/AVX512-BF16'
        return ComputePath(device, torch.float32, False, why)
    if dtype == 'auto':
        if device.type == 'cuda' and torch.cuda.is_bf16_supported():
            return ComputePath(device, torch.bfloat16, False, 'auto: this GPU supports bf16')
        return ComputePath(device, torch.float32, False, f'auto: fp32 on {device.type}')
    return ComputePath(device, DTYPES[dtype], False, 'asked for')


def compile_option(value, where='train.compile'):
    """The mode (one of ``COMPILE_MODES``) an option's ``value`` asks for: false or absent -> ``none``,
    true -> ``reduce-overhead`` (CUDA graphs on a GPU; inductor alone on a CPU), or a mode's name;
    ValueError naming ``where`` otherwise."""
    if value is None or value is False:
        return 'none'
    if value is True:
        return 'reduce-overhead'
    if value not in COMPILE_MODES:
        raise ValueError(f"'{where}' must be false, true or one of {', '.join(COMPILE_MODES)}, got {value!r}")
    return value


def compile_recurrent_step(net, path, backend=None):
    """Compile a bare ``HOFFR``'s per-frame recurrent step (``_step``) and its flow network with
    ``path.graph`` (``train.compile``); returns ``net``, changed in place (its state dict is not).

    The compiled versions run where gradients are recorded on a network in training mode (the
    training forward); evaluation and validation, at other shapes and without gradients, stay eager.
    One graph per frame serves every frame of the clip (two: the first frame has no state), so a clip
    of t frames compiles once rather than a t-times unrolled forward.
    """
    if path.compile == 'none':
        return net
    net._step = _when_training(net, path.graph(net._step, backend), net._step)
    net.pof.forward = _when_training(net, path.graph(net.pof.forward, backend), net.pof.forward)
    return net


def _when_training(net, compiled, eager):
    """``compiled`` while ``net`` trains with gradients recorded, ``eager`` otherwise."""
    def call(*args, **kwargs):
        fn = compiled if net.training and torch.is_grad_enabled() else eager
        return fn(*args, **kwargs)
    return call
