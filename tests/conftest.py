"""Shared fixtures. ``../shared/data`` (real frames) is used when present; tests that need it skip otherwise."""
import os
from pathlib import Path

if os.environ.get('PYTEST_XDIST_WORKER'):  # pytest -n N: N workers share the cores, one thread each, and so do
    os.environ.setdefault('OMP_NUM_THREADS', '1')  # the processes they start (training, conversion, forkserver)

import cv2
import numpy as np
import pytest
import torch
import yaml

import hoffr_arch  # noqa: F401  (compat first, then the registries)
from hoffr_arch.archs.hoffr_arch import HOFFR

SHARED_DATA = Path(__file__).resolve().parents[1].parent / 'shared' / 'data'

if os.environ.get('PYTEST_XDIST_WORKER'):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_grad_enabled(True)  # no test inherits another's grad mode


@pytest.fixture
def real_frame():
    """A real 540x960 RGB frame in [0, 1], float32 (n=1, c=3, h, w); made-up texture without shared/."""
    import cv2
    path = SHARED_DATA / 'bedroom' / '00000.jpg'
    if path.exists():
        img = cv2.imread(str(path))[:, :, ::-1].astype(np.float32) / 255.
    else:  # smooth random texture: enough structure for flow to be recoverable
        rng = np.random.default_rng(0)
        img = cv2.resize(rng.random((34, 60, 3)).astype(np.float32), (960, 540), interpolation=cv2.INTER_CUBIC)
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].clamp(0, 1)


def smooth_frames(n, h, w, seed):
    """n (h, w, 3) uint8 frames of a smooth random texture drifting right: real-looking, compressible."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.random((h // 4 + 2, (w + 2 * n) // 4 + 2, 3)).astype(np.float32), (w + 2 * n, h + 8),
                      interpolation=cv2.INTER_CUBIC)
    return [np.clip(base[4:4 + h, 2 * i:2 * i + w] * 255, 0, 255).astype(np.uint8) for i in range(n)]


def write_clip(folder, frames, name='{:08d}.png'):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(frames):
        cv2.imwrite(str(folder / name.format(i)), img)


def make_reds(root, clips, prefix='train', h=32, w=48):
    """REDS layout with all four kinds; ``clips`` maps clip name -> number of frames."""
    from hoffr_arch.data.frame_io import bicubic_downscale
    for seed, (clip, n) in enumerate(clips.items()):
        sharp = smooth_frames(n, h, w, seed)
        blur = [cv2.GaussianBlur(f, (5, 5), 1.5) for f in sharp]
        write_clip(root / f'{prefix}_sharp' / clip, sharp)
        write_clip(root / f'{prefix}_blur' / clip, blur)
        write_clip(root / f'{prefix}_sharp_bicubic' / 'X4' / clip, [bicubic_downscale(f, 4) for f in sharp])
        write_clip(root / f'{prefix}_blur_bicubic' / 'X4' / clip, [bicubic_downscale(f, 4) for f in blur])
    return root


def make_video(path, frames, fps=30, audio=True, vfr=False, faststart=False, rotation=0):
    """Write ``frames`` ((h, w, 3) BGR uint8) as H.264 with PyAV, optionally with a 16 kHz AAC track
    covering the clip, irregular frame times (``vfr``: every other interval doubled), the index first
    (``faststart``, so that a cut file still opens) and a rotation. Returns the frame times in seconds."""
    from fractions import Fraction
    import av
    tb = Fraction(1, 90000)
    with av.open(str(path), 'w', options={'movflags': 'faststart'} if faststart else {}) as out:
        video = out.add_stream('libx264', rate=fps)
        video.height, video.width = frames[0].shape[:2]
        video.pix_fmt = 'yuv420p'
        video.codec_context.time_base = tb
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream('aac', rate=16000) if audio else None
        if sound is not None:
            sound.layout = 'mono'
        t, times = 0, []
        for i, img in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(img, format='bgr24')
            frame.pts, frame.time_base = t, tb
            times.append(float(t * tb))
            t += 90000 // fps * (2 if vfr and i % 2 else 1)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if sound is not None:
            n = int(16000 * t * tb)
            for s in range(0, n, 1024):
                samples = (0.3 * np.sin(np.arange(s, s + 1024) / 7.0))[None].astype(np.float32)
                chunk = av.AudioFrame.from_ndarray(samples, format='fltp', layout='mono')
                chunk.sample_rate, chunk.pts = 16000, s
                out.mux(sound.encode(chunk))
            out.mux(sound.encode())
    return times


def video_facts(path):
    """(frame times in seconds, codec name, rotation, (w, h), audio packet bytes) of a video file."""
    import av
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        facts = ([float(f.pts * stream.time_base) for f in frames], stream.codec_context.name,
                 int(round(frames[0].rotation)), (stream.codec_context.width, stream.codec_context.height))
    with av.open(str(path)) as c:
        audio = b''.join(bytes(p) for p in c.demux(c.streams.audio[0]) if p.dts is not None) if c.streams.audio else b''
    return facts + (audio,)


# a tiny HOFFR for the inference tests
NET = {'type': 'HOFFR', 'num_feat': 8, 'sr_num_feat': 8, 'sr_num_block': 1, 'db_num_feat': 8, 'db_num_block': 1,
       'squeeze_factor': 4, 'pof_num_feat': 4, 'pof_num_block': 1}


@pytest.fixture
def checkpoint(tmp_path):
    """A checkpoint laid out as BasicSR saves it: experiments/x/{x.yml, models/net_g_5.pth}."""
    exp = tmp_path / 'experiments' / 'x'
    (exp / 'models').mkdir(parents=True)
    (exp / 'x.yml').write_text(yaml.safe_dump({'name': 'x', 'network_g': NET}))
    net = HOFFR(**{k: v for k, v in NET.items() if k != 'type'})
    for level in (*net.pof.coarse, net.pof.level_lr, net.pof.level_hr):  # real motion in the recurrence
        torch.nn.init.normal_(level.body[-1].weight, std=0.05)
    ema = {k: v + 0.01 for k, v in net.state_dict().items()}
    torch.save({'params': net.state_dict(), 'params_ema': ema}, exp / 'models' / 'net_g_5.pth')
    net.load_state_dict(ema)
    return exp / 'models' / 'net_g_5.pth', net.eval()


def gopro_frames(n, h, w, seed):
    """n + 2 consecutive (h, w, 3) uint8 frames: a crop of real footage (``../shared/data/basketballpass``,
    one crop per seed) when present, else ``smooth_frames``."""
    folder = SHARED_DATA / 'basketballpass'
    if not folder.is_dir():
        return smooth_frames(n + 2, h, w, seed)
    y, x = (16 * seed) % (240 - h), (40 * seed) % (416 - w)
    return [cv2.imread(str(folder / f'im{1 + 10 * seed + i}.png'))[y:y + h, x:x + w] for i in range(n + 2)]


def make_gopro(root, clips, h=64, w=96):
    """GoPro (GOPRO_Large) layout made here, not copied from GoPro: ``root/<split>/<clip>/{sharp,blur,
    blur_gamma}/%06d.png``, numbered from 1 + 40 * the clip's position (GoPro's clips do not start at 1).
    ``clips`` maps '<split>/<clip>' -> frames. ``blur`` averages each frame with its two neighbours,
    ``blur_gamma`` does so in linear light (gamma 2.2), as GoPro's were made from 240 fps frames."""
    for seed, (name, n) in enumerate(clips.items()):
        frames = [f.astype(np.float32) / 255. for f in gopro_frames(n, h, w, seed)]
        sharp = frames[1:-1]
        blur = [(a + b + c) / 3 for a, b, c in zip(frames, frames[1:], frames[2:])]
        gamma = [((a**2.2 + b**2.2 + c**2.2) / 3)**(1 / 2.2) for a, b, c in zip(frames, frames[1:], frames[2:])]
        for kind, imgs in (('sharp', sharp), ('blur', blur), ('blur_gamma', gamma)):
            (root / name / kind).mkdir(parents=True)
            for i, img in enumerate(imgs):
                path = root / name / kind / f'{1 + 40 * seed + i:06d}.png'
                cv2.imwrite(str(path), np.rint(img * 255).astype(np.uint8))
    return root


@pytest.fixture(scope='session')
def lmdb_data(tmp_path_factory):
    """(train split, held-out split) of tiny LMDBs (``pipeline.make_lmdb_data``), shared: tests only read it."""
    from pipeline import make_lmdb_data
    return make_lmdb_data(tmp_path_factory.mktemp('data'))


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory, lmdb_data):
    """A finished tiny training run, 'cut': 7 iterations, checkpoint and validation at 6. Returns its
    HOFFR_ROOT; tests that write to the run work on a copy (``copy_run``)."""
    from pipeline import run, train_options
    tmp = tmp_path_factory.mktemp('trained')
    opt = train_options(tmp, lmdb_data, name='cut', total_iter=7, save_freq=6)
    run('hoffr_arch.train', opt, tmp / 'root', tmp)
    return tmp / 'root'


def python_m(module, *args, cwd=None, env=None, timeout=300):
    """``python -m module *args`` as a user runs it, in a process of its own, with ``env`` added to the
    environment; a ``subprocess.CompletedProcess`` with its text output. The process is forked from a
    server that has imported hoffr_arch (``hoffr_arch.benchmarks.isolated.run_module``): the same run
    without the ~10 s of imports a new interpreter pays on 2 cores. Tests of a fresh interpreter's
    imports, of torchrun and of killed processes start real ones."""
    import subprocess
    import tempfile
    from hoffr_arch.benchmarks.isolated import run_module
    with tempfile.TemporaryDirectory() as tmp:
        out, err = Path(tmp) / 'stdout', Path(tmp) / 'stderr'
        code = run_module(module, args, out, err, cwd=cwd, env=env, timeout=timeout)
        return subprocess.CompletedProcess(['python', '-m', module, *map(str, args)], code,
                                           out.read_text(errors='replace'), err.read_text(errors='replace'))


def copy_run(root, dest):
    """A copy of a HOFFR_ROOT of finished runs (``trained_run``) at ``dest``, its lock files left out."""
    import shutil
    shutil.copytree(root, dest, ignore=shutil.ignore_patterns('*.lock'))
    return dest


def load_dir(folder):
    """The images of ``folder``, name-sorted, as (h, w, 3) BGR uint8."""
    return [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in sorted(folder.iterdir())]


def as_bgr_uint8(t):
    """(c, h, w) RGB float tensor in [0, 1] -> (h, w, c) BGR uint8."""
    return np.rint(t.numpy().transpose(1, 2, 0)[:, :, ::-1] * 255).astype(np.uint8)


def real_clip():
    """12 consecutive real (240, 416, 3) BGR uint8 frames: ``../shared/data/basketballpass`` when present,
    else the bundled clip resized."""
    from hoffr_arch.data.video_io import read_frames
    folder = SHARED_DATA / 'basketballpass'
    if folder.is_dir():
        return read_frames(folder, max_frames=12)
    clip = Path(__file__).resolve().parents[1] / 'hoffr_arch' / 'assets' / 'sam2_01_dog.mp4'
    return read_frames(clip, start=90, max_frames=12, resize=(416, 240))


def pytest_configure(config):
    config.addinivalue_line('markers', 'xdist_group(name): tests pytest-xdist runs in one worker (--dist loadgroup)')


def pytest_collection_modifyitems(items):
    """Under ``pytest -n N --dist loadgroup`` the tests of one finished run (``trained_run``) share a worker,
    so that run is made once."""
    for item in items:
        if 'trained_run' in getattr(item, 'fixturenames', ()):
            item.add_marker(pytest.mark.xdist_group('trained_run'))
