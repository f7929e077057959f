"""Run a trained HOFFR on your videos or frame folders, streaming frame by frame.

    python -m hoffr_arch.infer --input blurry_lr.mp4 --output sharp_hr.mp4         # shipped HOFFR-S
    python -m hoffr_arch.infer --model experiments/HOFFR_REDS_x4/models/net_g_latest.pth \\
        --input videos/ --output results/ --crf 16 --tile 256

IN: any video FFmpeg reads (through PyAV), a folder of frames (natural-sorted), or a folder of videos
(each to ``OUTPUT/<name><--ext>``; finished outputs are skipped on a rerun).
OUT: a video (H.264 yuv420p by default; ``--codec``, ``--crf``, ``--preset``) with the input's frame
timestamps, rotation metadata, audio and subtitle streams (copied unchanged), or a folder of PNG frames.
Written to ``<name>.partial<ext>`` first and renamed when complete. A truncated or corrupt input
stops with exit 1 naming the frame reached and keeps the partial output (``--allow-partial`` accepts
it). ``--overwrite`` replaces only an output of this tool (a video, or a folder of %08d.png frames).
Grey input gives grey output; alpha is upscaled bicubically and kept in PNG output (a video output
refuses it). ``--tile N`` processes N x N LR tiles (each its own recurrent stream) so memory follows
the tile; at 4K output the H.264/HEVC encoder's own look-ahead buffers then dominate: ``--lookahead``
bounds them.
Engine (``--backend``, ``hoffr_arch.backends``): torch (default); ``onnxruntime`` or ``openvino`` run
the exported step on the CPU (``--model`` an .onnx from ``python -m hoffr_arch.export``, or a checkpoint,
exported once into a per-user folder of the system's temporary directory and reused); ``auto``:
OpenVINO where installed (``pip install '.[openvino]'``; the fastest measured on CPUs), else torch.
Speed: ``--dtype auto`` (default) runs bf16 on a CPU with AMX-BF16 or AVX512-BF16 (torch: autocast +
channels-last; OpenVINO: its bf16 precision hint), bf16 autocast on a GPU that has it, fp32 elsewhere
(``hoffr_arch.precision``); ``--compile MODE`` runs torch's step through ``torch.compile``. The first
line on stderr names the engine and path taken. Each new frame (or tile) shape is warmed up on two
frames of zeros first (``--no-warm-up`` skips it), so that kernel building (and compiling) does not
slow a video's first frames.
Weights: without ``--model``, the shipped CPU-trained HOFFR-S starter model
(``hoffr_arch/assets/HOFFR_S_x4.pth``). A checkpoint's network options come from ``--opt``, from the
checkpoint itself (``network_g``, as the shipped one holds them) or from the training YAML BasicSR
saved beside ``models/``; ``params_ema`` if present, else ``params`` (``--param-key``).
"""
import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

import hoffr_arch  # noqa: F401  (compat, registries)
from basicsr.archs import build_network
from hoffr_arch.checkpoint import CheckpointError, load_weights, read_checkpoint, resolve_asset
from hoffr_arch.data.frame_io import IMAGE_EXTS, DatasetError
from hoffr_arch.data.video_io import (MediaError, MediaReader, MediaWriter, TruncatedError, as_bgr, check_output,
                                      is_finished_video, is_video_file)
from hoffr_arch.options import OptionsError, load_yaml
from hoffr_arch.backends import BACKENDS, BackendError, choose_backend
from hoffr_arch.precision import CHOICES, COMPILE_MODES
from hoffr_arch.report import Recorder, ReportError, check_dir, write_infer_report
from hoffr_arch.streaming import OnnxStep, TiledStep, overlap_size, quantize, tile_size, torch_step, warm_up

STARTER = 'hoffr_arch/assets/HOFFR_S_x4.pth'


class InferError(ValueError):
    """Bad input, checkpoint or output; the message says which and why."""


class PartialError(InferError):
    """The input ended early (truncated or corrupt); a partial output was kept. Exit 1."""


def network_options(model_path, opt_path=None):
    """``network_g`` of ``opt_path``, of the checkpoint itself, or of the YAML BasicSR saved beside models/."""
    if opt_path is None:
        try:
            embedded = read_checkpoint(model_path).get('network_g')
        except CheckpointError as err:
            raise InferError(str(err)) from None
        if embedded is not None:
            opts = dict(embedded) if isinstance(embedded, dict) else {'type': None}
            opts.setdefault('type', 'HOFFR')
            if opts['type'] != 'HOFFR':
                raise InferError(f"{model_path}: a checkpoint of {opts['type']!r} (its network_g), not of HOFFR")
            return opts
        candidates = sorted(Path(model_path).resolve().parent.parent.glob('*.yml'))
        if not candidates:
            raise InferError(f'{model_path}: no network options in the checkpoint and no training YAML beside '
                             'its models/ folder; pass --opt')
        opt_path = candidates[0]
    try:
        opt = load_yaml(opt_path)  # data only: a YAML found beside a downloaded checkpoint runs no code
    except OptionsError as err:
        raise InferError(str(err)) from None
    if not isinstance(opt, dict) or not isinstance(opt.get('network_g'), dict):
        raise InferError(f'{opt_path}: no network_g section')
    if opt['network_g'].get('type') != 'HOFFR':
        raise InferError(f"{opt_path}: network_g.type is {opt['network_g'].get('type')!r}, not HOFFR")
    return dict(opt['network_g'])


def load_model(model_path, opt_path=None, param_key=None, device='cpu'):
    """Build HOFFR from its network options and load the checkpoint's weights (strictly)."""
    opts = network_options(model_path, opt_path)
    opts.pop('pof_path', None)  # the checkpoint holds the trained POF: its starting point is not needed
    try:
        net = load_weights(build_network(opts), model_path, param_key, what='HOFFR (check network_g)')
    except CheckpointError as err:
        raise InferError(str(err)) from None
    return net.to(device).eval()


def add_model_arguments(parser):
    parser.add_argument('--model', default=None, help='checkpoint (net_g_*.pth; default: the shipped HOFFR-S), '
                        'or an .onnx graph (python -m hoffr_arch.export) with --backend onnxruntime or openvino')
    parser.add_argument('--opt', default=None, help='training YAML (default: in the checkpoint or beside models/)')
    parser.add_argument('--param-key', default=None, help='params_ema or params (default: EMA if present)')


def load_network(model=None, opt=None, param_key=None, device='cpu'):
    """The HOFFR of the checkpoint ``model`` (None: the shipped starter model, said on stderr)."""
    if model is None:
        model = resolve_asset(STARTER)
        if not Path(model).exists():
            raise InferError(f'{STARTER}: the shipped starter weights are missing from this install; pass --model')
        print(f'using the shipped HOFFR-S starter weights ({model}; CPU-trained, not the paper\'s REDS model)',
              file=sys.stderr)
    return load_model(model, opt, param_key, device)


def load_model_from_args(args, device):
    """``load_network`` with the arguments ``add_model_arguments`` adds (for other entry points)."""
    return load_network(args.model, args.opt, args.param_key, device)


def to_tensor(img, device, dtype):
    """(h, w, 3) BGR uint8 -> (1, 3, h, w) RGB in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1])).to(device).permute(2, 0, 1)[None].to(dtype) / 255.


def to_image(t):
    """(1, 3, h, w) RGB in [0, 1] (or already ``quantize``d to uint8, as tiles are assembled) ->
    (h, w, 3) BGR uint8, rounded as BasicSR's tensor2img."""
    img = t[0] if t.dtype == torch.uint8 else quantize(t[0])
    return np.ascontiguousarray(img.flip(0).permute(1, 2, 0).cpu().numpy())


def restore_channels(out, src):
    """Give the output the input's channels: grey stays grey, alpha is upscaled bicubically."""
    if src.ndim == 2:
        return cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
    if src.shape[2] == 4:
        alpha = cv2.resize(src[:, :, 3], (out.shape[1], out.shape[0]), interpolation=cv2.INTER_CUBIC)
        return np.dstack((out, alpha))
    return out


class WarmStep:
    """``step`` warmed up (``streaming.warm_up``) at each new frame shape, before that shape's first frame."""

    def __init__(self, step, device):
        self.step, self.device, self.warm = step, device, set()

    def __call__(self, lq, state):
        if state is None and tuple(lq.shape) not in self.warm:
            seconds = warm_up(self.step, lq.shape, self.device)
            self.warm.add(tuple(lq.shape))
            tqdm.write(f'warm-up at {"x".join(map(str, lq.shape))}: {seconds:.1f} s', file=sys.stderr)
        return self.step(lq, state)


def run(step, reader, sinks, device='cpu', dtype=torch.float32, progress=None):
    """Stream ``reader``'s frames through ``step``; ``sinks`` = (HR writer, deblurred writer or None)."""
    sink, deblurred_sink = sinks
    state = None
    with torch.inference_mode():
        for frame in reader:
            hr, state, deblurred = step(to_tensor(as_bgr(frame.image), device, dtype), state)
            sink.write(restore_channels(to_image(hr), frame.image), frame.pts)
            if deblurred_sink is not None:
                deblurred_sink.write(restore_channels(to_image(deblurred), frame.image), frame.pts)
            if progress is not None:
                progress.update(1)
    return sink.count


def video_folder(path):
    """The videos of a folder of videos (None if ``path`` is not one: a frame folder, a file)."""
    path = Path(path)
    if not path.is_dir():
        return None
    entries = [p for p in path.iterdir() if p.is_file() and not p.name.startswith('.')]
    videos = sorted(p for p in entries if is_video_file(p))
    if videos and not any(p.suffix.lower() in IMAGE_EXTS for p in entries):
        return videos
    return None


def process(step, inp, out, encoder, deblurred=None, allow_partial=False, device='cpu', progress=None):
    """One input to one output (and the deblurred LR frames to ``deblurred``); ``encoder``: MediaWriter's
    keyword arguments (fps, codec, crf, preset, lookahead). Returns (frames written, truncated message or
    None); a truncated input raises ``PartialError`` unless ``allow_partial``."""
    reader = MediaReader(inp)
    try:
        if reader.channels == 4 and is_video_file(out):
            raise MediaError(f'{inp}: has an alpha channel, which a video output cannot hold; write PNG frames '
                             '(an output path without a video extension) to keep it')
        sinks = [MediaWriter(out, reader, **encoder)]
        sinks.append(MediaWriter(deblurred, reader, **encoder) if deblurred else None)
        try:
            n = run(step, reader, sinks, device, progress=progress)
        except TruncatedError as err:
            if not allow_partial:
                kept = [str(p) for p in (s.abort() for s in sinks if s is not None) if p is not None]
                what = f'what was written is kept as {", ".join(kept)}' if kept else 'no frame was written'
                raise PartialError(f'{err}; {what} (--allow-partial accepts a truncated input)') from None
            for s in sinks:
                if s is not None:
                    s.close()
            return sinks[0].count, str(err)
        except BaseException:
            for s in sinks:
                if s is not None:
                    s.abort()
            raise
        for s in sinks:
            if s is not None:
                s.close()
        return n, None
    finally:
        reader.close()


def make_step(backend, model=None, opt=None, param_key=None, tile=0, tile_overlap=16, warm=True, report=False):
    """The step callable of ``backend`` (a ``backends.Backend``): torch on its path (compiled where the
    path says), or the exported step on ONNX Runtime or OpenVINO (``model`` an .onnx graph, or a
    checkpoint exported once into the temporary cache, ``export.cached_export``); tiled with ``tile``,
    warmed up per frame shape with ``warm``; with ``report``, inside a ``report.Recorder``."""
    path, pof = backend.path, None
    if backend.name == 'torch':
        net = load_network(model, opt, param_key, path.device)
        if path.compile != 'none':
            net.step = path.compiled(net.step)  # one graph per frame shape (and per first/later frame)
        step, scale = torch_step(net, path), net.scale
        pof = net.pof if net.use_flow else None
    else:
        step = graph_step(backend, model, opt, param_key)
        scale = step.scale
    if tile:
        step = TiledStep(step, scale, tile, tile_overlap, hr_dtype=torch.uint8)
    step = WarmStep(step, path.device) if warm else step
    return Recorder(step, pof) if report else step


def graph_step(backend, model=None, opt=None, param_key=None):
    """The exported step on ``backend.name`` (onnxruntime, openvino): ``model`` itself if it is an
    .onnx graph, else the graph of the checkpoint ``model`` (default: the shipped starter) from the cache."""
    from hoffr_arch.backends import OpenVinoStep
    from hoffr_arch.export import cached_export
    if model is not None and Path(model).suffix == '.onnx':
        if not Path(model).is_file():
            raise InferError(f'{model}: no such file')
        graph = model
    else:
        graph = cached_export(load_network(model, opt, param_key, 'cpu'))
    try:
        if backend.name == 'openvino':
            return OpenVinoStep(graph, backend.path.dtype)
        return OnnxStep(graph)
    except CheckpointError as err:
        raise InferError(str(err)) from None


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as one line (the flag and what is wrong; ``--help`` has the usage), exit 2."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message} (--help for usage)\n')


def build_parser():
    parser = OneLineParser(prog='python -m hoffr_arch.infer', description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument('--input', required=True, help='video file, frame folder or folder of videos (blurry LR)')
    parser.add_argument('--output', required=True, help='video file (.mp4, ...), folder for PNG frames, or '
                        'for a folder of videos the folder to write them to')
    parser.add_argument('--backend', choices=BACKENDS, default='torch',
                        help='torch (default); onnxruntime or openvino run the exported step on the CPU; '
                        'auto: openvino where installed (the fastest measured on CPUs), else torch')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', choices=CHOICES, default='auto',
                        help='auto (default): bf16 (torch: autocast + channels-last; openvino: its bf16 precision '
                        'hint) on CPUs with AMX-BF16/AVX512-BF16, bf16 autocast on GPUs with bf16, fp32 elsewhere; '
                        'fp16: CUDA only')
    parser.add_argument('--compile', choices=COMPILE_MODES, default='none',
                        help='torch.compile the step in this mode (torch backend; minutes of compiling per shape)')
    parser.add_argument('--no-warm-up', action='store_true', help='skip warming up each new frame shape')
    parser.add_argument('--tile', type=tile_size, default=0, help='process N x N LR tiles (0: whole frames)')
    parser.add_argument('--tile-overlap', type=overlap_size, default=16, help='LR pixels of context around each tile')
    parser.add_argument('--codec', default=None, help='video encoder: libx264 (default), libx265, libsvtav1')
    parser.add_argument('--crf', type=int, default=18, help='libx264/libx265 quality (lower is better)')
    parser.add_argument('--preset', default='medium', help='libx264/libx265 speed preset')
    parser.add_argument('--lookahead', type=int, default=None,
                        help="libx264/libx265 look-ahead in frames (default: the preset's); its buffers are "
                             'most of the encoder\'s memory at 4K: lower it with --tile to bound memory')
    parser.add_argument('--fps', type=float, default=None, help='output fps for a frame-folder input (default 25)')
    parser.add_argument('--ext', default='.mp4', help='output extension for a folder of videos')
    parser.add_argument('--deblurred', default=None, help='also write the deblurred LR frames here')
    parser.add_argument('--allow-partial', action='store_true', help='accept a truncated input: keep its output')
    parser.add_argument('--overwrite', action='store_true', help='replace an earlier output of this tool')
    parser.add_argument('--report', metavar='DIR', help='also write an offline HTML report there: bicubic of the '
                        'input against the output, the flow, the compute path and the speed (hoffr_arch.report)')
    return parser


def plan_jobs(inp, output, ext='.mp4', deblurred=None, overwrite=False):
    """[(input, output)] still to do, and whether ``inp`` is a folder of videos (then each goes to
    ``output/<name><ext>``, and finished outputs are skipped, said on stderr). Refuses (one line) an
    output that would harm the user's files."""
    videos = video_folder(inp)
    if videos is None:
        jobs = [(Path(inp), Path(output))]
    else:
        if deblurred:
            raise InferError('--deblurred is for a single input, not a folder of videos')
        if Path(output).exists() and not Path(output).is_dir():
            raise InferError(f'{output}: a file; a folder of videos needs an output folder')
        jobs = [(v, Path(output) / (v.stem + ext)) for v in videos]
    todo = []
    for src, out in jobs:
        if videos is not None and not overwrite and is_finished_video(out):
            print(f'{out}: done already, skipped', file=sys.stderr)
            continue
        check_output(out, [inp], overwrite)
        if deblurred:
            check_output(deblurred, [inp, out], overwrite)
        todo.append((src, out))
    return todo, videos is not None


def run_jobs(step, todo, encoder, deblurred=None, allow_partial=False, device='cpu', make_dirs=False):
    """``process`` each (input, output) of ``todo`` under one progress bar; returns (frames written,
    warning lines about truncated inputs kept with ``allow_partial``)."""
    total = 0
    for inp, _ in todo:
        reader = MediaReader(inp)
        total += reader.count or 0
        reader.close()
    written, warnings = 0, []
    with tqdm(total=total or None, unit='frame', desc='HOFFR') as progress:
        for inp, out in todo:
            if make_dirs:
                out.parent.mkdir(parents=True, exist_ok=True)
            n, truncated = process(step, inp, out, encoder, deblurred, allow_partial, device, progress)
            written += n
            if truncated:
                warnings.append(f'warning: {truncated}; --allow-partial kept its {n} frames in {out}')
    return written, warnings


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.report:
            check_dir(args.report)
        try:
            backend = choose_backend(args.backend, args.dtype, args.device, args.compile)
        except (BackendError, RuntimeError) as err:  # RuntimeError: torch cannot parse --device
            raise InferError(str(err)) from None
        print(backend.line, file=sys.stderr)
        todo, folder = plan_jobs(args.input, args.output, args.ext, args.deblurred, args.overwrite)
        step = make_step(backend, args.model, args.opt, args.param_key, args.tile, args.tile_overlap,
                         warm=not args.no_warm_up, report=bool(args.report)) if todo else None
        encoder = {'fps': args.fps, 'codec': args.codec, 'crf': args.crf, 'preset': args.preset,
                   'lookahead': args.lookahead}
        written, warnings = run_jobs(step, todo, encoder, args.deblurred, args.allow_partial, backend.path.device,
                                     make_dirs=folder)
        if args.report and step is not None:
            facts = [('input', args.input), ('model', args.model or STARTER), ('tiles', args.tile or 'whole frames'),
                     ('compute path', backend.described)]
            warnings.append(f'report: {write_infer_report(args.report, step, [i.name for i, _ in todo], facts)}')
    except (InferError, DatasetError, MediaError, ReportError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1 if isinstance(err, PartialError) else 2
    for line in warnings:
        print(line, file=sys.stderr)
    print(f'{written} frames -> {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
