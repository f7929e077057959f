"""Run a trained HOFFR on a video file or a frame folder, streaming frame by frame.

    python -m hoffr_arch.infer --model experiments/HOFFR_REDS_x4/models/net_g_latest.pth \\
        --input blurry_lr.mp4 --output sharp_hr.mp4

IN: a video OpenCV reads (mp4, avi, mkv, mov, ...) or a folder of frames (natural-sorted).
OUT: a video file (by its extension; same fps, scale x the size) or a folder of PNG frames.
The network runs through ``HOFFR.step``: one frame in memory at a time, whatever the length.
Weights: ``params_ema`` if the checkpoint has them, else ``params`` (``--param-key``); network
options from ``--opt`` or the training YAML BasicSR saved beside ``models/``.
"""
import argparse
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml
from tqdm import tqdm

import hoffr_arch  # noqa: F401  (compat, registries)
from basicsr.archs import build_network
from basicsr.utils.options import ordered_yaml
from hoffr_arch.checkpoint import CheckpointError, load_weights
from hoffr_arch.data.frame_io import DatasetError, list_frames

VIDEO_EXTS = ('.mp4', '.avi', '.mkv', '.mov', '.m4v', '.webm')
FOURCC = {'.mp4': 'mp4v', '.m4v': 'mp4v', '.mov': 'mp4v', '.avi': 'MJPG', '.mkv': 'MJPG', '.webm': 'VP80'}
DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}


class InferError(ValueError):
    """Bad input, checkpoint or output; the message says which and why."""


def network_options(model_path, opt_path=None):
    """``network_g`` of the training YAML: ``opt_path``, or the one BasicSR copied beside models/."""
    if opt_path is None:
        candidates = sorted(Path(model_path).resolve().parent.parent.glob('*.yml'))
        if not candidates:
            raise InferError(f'{model_path}: no training YAML beside its models/ folder; pass --opt')
        opt_path = candidates[0]
    with open(opt_path) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0])
    if not isinstance(opt, dict) or 'network_g' not in opt:
        raise InferError(f'{opt_path}: no network_g section')
    if opt['network_g'].get('type') != 'HOFFR':
        raise InferError(f"{opt_path}: network_g.type is {opt['network_g'].get('type')!r}, not HOFFR")
    return dict(opt['network_g'])


def load_model(model_path, opt_path=None, param_key=None, device='cpu'):
    """Build HOFFR from the training options and load the checkpoint's weights (strictly)."""
    opts = network_options(model_path, opt_path)
    opts.pop('pof_path', None)  # the checkpoint holds the trained POF: its starting point is not needed
    try:
        net = load_weights(build_network(opts), model_path, param_key, what='HOFFR (check network_g)')
    except CheckpointError as err:
        raise InferError(str(err)) from None
    return net.to(device).eval()


def read_frames(path):
    """(frames iterator of BGR uint8, frame count, fps or None) of a video or a frame folder."""
    path = Path(path)
    if path.is_dir():
        try:
            files = list_frames(path)
        except DatasetError as err:
            raise InferError(str(err)) from None

        def frames():
            for f in files:
                img = cv2.imread(str(f), cv2.IMREAD_COLOR)
                if img is None:
                    raise InferError(f'{f}: unreadable or corrupt image')
                yield img
        return frames(), len(files), None
    if not path.is_file():
        raise InferError(f'{path}: no such video file or frame folder')
    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read()
    if not ok:
        raise InferError(f'{path}: OpenCV cannot read a frame of this file (not a video, or an unsupported codec)')
    count, fps = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cap.get(cv2.CAP_PROP_FPS) or None

    def frames():
        yield first
        while True:
            ok, img = cap.read()
            if not ok:
                break
            yield img
        cap.release()
    return frames(), count, fps


class FrameSink:
    """Writes frames to a video file (by extension) or a PNG folder, atomically: ``OUT.partial``
    first, renamed on ``close()``, so a failed run leaves no output that looks complete."""

    def __init__(self, out, fps, overwrite=False):
        self.out = Path(out)
        if self.out.exists() and not overwrite:
            raise InferError(f'{self.out} already exists; pass --overwrite to replace it')
        self.video = self.out.suffix.lower() in VIDEO_EXTS
        self.tmp = self.out.with_name(self.out.name + '.partial' + (self.out.suffix if self.video else ''))
        self.fps, self.writer, self.count = fps or 25.0, None, 0
        if self.tmp.exists():
            shutil.rmtree(self.tmp) if self.tmp.is_dir() else self.tmp.unlink()
        if not self.video:
            self.tmp.mkdir(parents=True)
        else:
            self.tmp.parent.mkdir(parents=True, exist_ok=True)

    def write(self, img):
        if self.video:
            if self.writer is None:
                fourcc = cv2.VideoWriter_fourcc(*FOURCC.get(self.out.suffix.lower(), 'mp4v'))
                self.writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (img.shape[1], img.shape[0]))
                if not self.writer.isOpened():
                    raise InferError(f'{self.out}: OpenCV cannot write this video format')
            self.writer.write(img)
        elif not cv2.imwrite(str(self.tmp / f'{self.count:08d}.png'), img):
            raise InferError(f'{self.tmp}: cannot write frame {self.count:08d}.png')
        self.count += 1

    def close(self):
        if self.writer is not None:
            self.writer.release()
        if self.out.exists():
            shutil.rmtree(self.out) if self.out.is_dir() else self.out.unlink()
        self.tmp.replace(self.out)


def to_tensor(img, device, dtype):
    """(h, w, 3) BGR uint8 -> (1, 3, h, w) RGB in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1])).to(device).permute(2, 0, 1)[None].to(dtype) / 255.


def to_image(t):
    """(1, 3, h, w) RGB in [0, 1] -> (h, w, 3) BGR uint8, rounded as BasicSR's tensor2img."""
    return (t[0].float().clamp(0, 1).permute(1, 2, 0).flip(-1) * 255.).round().byte().cpu().numpy()


def run(net, frames, sink, deblurred_sink=None, device='cpu', dtype=torch.float32, total=None):
    """Stream ``frames`` through ``net.step``; returns the number of frames written."""
    state = None
    with torch.inference_mode():
        for img in tqdm(frames, total=total or None, unit='frame', desc='HOFFR'):
            hr, state, aux = net.step(to_tensor(img, device, dtype), state, return_aux=True)
            sink.write(to_image(hr))
            if deblurred_sink is not None:
                deblurred_sink.write(to_image(aux['deblurred']))
    return sink.count


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', required=True, help='checkpoint (net_g_*.pth)')
    parser.add_argument('--input', required=True, help='video file or frame folder (blurry LR)')
    parser.add_argument('--output', required=True, help='video file (.mp4, ...) or folder for PNG frames')
    parser.add_argument('--opt', default=None, help='training YAML (default: the one beside models/)')
    parser.add_argument('--param-key', default=None, help='params_ema or params (default: EMA if present)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--dtype', choices=list(DTYPES), default='fp32', help='fp16/bf16: CUDA only')
    parser.add_argument('--fps', type=float, default=None, help='output fps for a frame-folder input (default 25)')
    parser.add_argument('--deblurred', default=None, help='also write the deblurred LR frames here')
    parser.add_argument('--overwrite', action='store_true')
    args = parser.parse_args(argv)
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        device = torch.device(args.device)
        if args.dtype != 'fp32' and device.type != 'cuda':
            raise InferError(f'--dtype {args.dtype} needs a CUDA device (got {device})')
        net = load_model(args.model, args.opt, args.param_key, device).to(DTYPES[args.dtype])
        frames, count, fps = read_frames(args.input)
        sink = FrameSink(args.output, args.fps or fps, args.overwrite)
        extra = FrameSink(args.deblurred, args.fps or fps, args.overwrite) if args.deblurred else None
        n = run(net, frames, sink, extra, device, DTYPES[args.dtype], count)
        sink.close()
        if extra is not None:
            extra.close()
    except InferError as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    print(f'{n} frames -> {args.output}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
