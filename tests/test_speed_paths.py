"""Compute paths (``hoffr_arch.precision``): which path ``auto`` takes, explicit choices winning, the
outputs of channels-last and bf16 against fp32 with the shipped HOFFR-S, ``infer --dtype``."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hoffr_arch import precision
from hoffr_arch.infer import load_model, main as infer
from hoffr_arch.precision import choose, cpu_bf16_features
from hoffr_arch.streaming import TiledStep, torch_step, warm_up

from conftest import smooth_frames, write_clip

REPO = Path(__file__).resolve().parents[1]
STARTER = REPO / 'hoffr_arch' / 'assets' / 'HOFFR_S_x4.pth'


def fake_cpu(monkeypatch, features):
    monkeypatch.setattr(precision, 'cpu_bf16_features', lambda: tuple(features))


def test_cpu_without_amx_gets_fp32(monkeypatch):
    fake_cpu(monkeypatch, ())
    path = choose('auto', 'cpu')
    assert (path.dtype, path.channels_last) == (torch.float32, False)
    assert 'no AMX-BF16/AVX512-BF16' in path.describe()


def test_cpu_with_amx_gets_bf16_channels_last(monkeypatch):
    fake_cpu(monkeypatch, ['amx_bf16'])
    path = choose('auto', 'cpu')
    assert (path.dtype, path.channels_last) == (torch.bfloat16, True)
    assert path.describe().startswith('compute path: bf16 autocast + channels_last on cpu')


def test_explicit_choices_win(monkeypatch):
    fake_cpu(monkeypatch, ['amx_bf16', 'avx512_bf16'])
    assert choose('fp32', 'cpu').dtype == torch.float32
    fake_cpu(monkeypatch, ())
    path = choose('bf16', 'cpu')
    assert (path.dtype, path.channels_last) == (torch.bfloat16, True) and 'emulated' in path.why
    with pytest.raises(ValueError, match='fp16 needs a CUDA device'):
        choose('fp16', 'cpu')
    assert choose('fp16', 'cuda').dtype == torch.float16  # no GPU needed to choose
    assert choose('auto', 'meta').dtype == torch.float32


def test_detection_reads_torch_or_proc_cpuinfo(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cpu, 'get_capabilities', lambda: {'avx2': True, 'amx_bf16': False}, raising=False)
    assert cpu_bf16_features() == ()
    monkeypatch.setattr(torch.cpu, 'get_capabilities', lambda: {'amx_bf16': True, 'avx512_bf16': True}, raising=False)
    assert cpu_bf16_features() == ('amx_bf16', 'avx512_bf16')
    monkeypatch.delattr(torch.cpu, 'get_capabilities', raising=False)  # an older torch: the kernel's flags
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\n')
    monkeypatch.setattr(precision, 'CPUINFO', cpuinfo)
    assert cpu_bf16_features() == ('avx512_bf16', )
    cpuinfo.write_text('flags\t\t: fpu sse avx2\n')
    assert cpu_bf16_features() == ()


def real_clip(n=3, size=192, shift=3):
    """A real HR crop (n frames, the camera panning ``shift`` pixels a frame) and its x4 LR frames:
    (n, 3, size, size) and (n, 3, size/4, size/4), RGB in [0, 1]. The bundled clip's first frame."""
    cap = cv2.VideoCapture(str(REPO / 'hoffr_arch' / 'assets' / 'sam2_01_dog.mp4'))
    ok, img = cap.read()
    assert ok
    img = cv2.resize(img, (640, 360), interpolation=cv2.INTER_AREA)[:, :, ::-1].astype(np.float32) / 255.
    hr = np.stack([img[80:80 + size, 200 + shift * i:200 + shift * i + size] for i in range(n)])
    lr = np.stack([cv2.resize(f, (size // 4, size // 4), interpolation=cv2.INTER_AREA) for f in hr])
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)  # noqa: E731
    return as_tensor(hr), as_tensor(lr)


def psnr_on_clip(path):
    """PSNR (dB) of the shipped HOFFR-S on ``real_clip`` run on ``path``, over all frames."""
    hr, lr = real_clip()
    step = torch_step(load_model(str(STARTER)), path)
    state, errors = None, []
    with torch.inference_mode():
        for i in range(lr.shape[0]):
            out, state, _ = step(lr[i:i + 1], state)
            errors.append(((out.float().clamp(0, 1) - hr[i:i + 1]) ** 2).mean())
    return float(-10 * torch.log10(torch.stack(errors).mean()))


def test_channels_last_matches_fp32_on_a_real_clip():
    cpu = torch.device('cpu')
    fp32 = psnr_on_clip(precision.ComputePath(cpu))
    assert abs(psnr_on_clip(precision.ComputePath(cpu, channels_last=True)) - fp32) < 0.005


def test_bf16_close_to_fp32_on_a_real_clip():
    native = cpu_bf16_features()
    if not native:
        pytest.skip('this CPU has no AMX-BF16/AVX512-BF16: bf16 is emulated there (10x+ slower), not tested')
    cpu = torch.device('cpu')
    fp32 = psnr_on_clip(precision.ComputePath(cpu))
    bf16 = psnr_on_clip(choose('bf16', cpu))
    assert abs(bf16 - fp32) < 0.05, (bf16, fp32)


def test_warm_up_builds_every_tile_shape():
    calls = []

    def step(lq, state):
        calls.append((tuple(lq.shape), state is None))
        return lq, 'state', lq

    assert warm_up(step, (1, 3, 20, 28)) >= 0
    assert calls == [((1, 3, 20, 28), True), ((1, 3, 20, 28), False)]
    calls.clear()
    tiled = TiledStep(step, 4, tile=8, overlap=2)
    warm_up(tiled, (1, 3, 20, 28))
    shapes = sorted({s for s, _ in calls})
    assert shapes == tiled.tile_shapes((1, 3, 20, 28)) and len(calls) == 2 * len(shapes)


def test_infer_fp32_and_auto_both_run(tmp_path, checkpoint, monkeypatch, capsys):
    """``--dtype fp32`` and ``auto`` (here made to find AMX, so the bf16 path runs even on a CPU
    without it: a tiny network, where emulation costs little) give close outputs; the first
    stderr line names the path."""
    frames = smooth_frames(3, 24, 32, 0)
    write_clip(tmp_path / 'in', frames)
    outs = {}
    for dtype, features in (('fp32', ['amx_bf16']), ('auto', ['amx_bf16']), ('auto', [])):
        fake_cpu(monkeypatch, features)
        out = tmp_path / f'out_{dtype}_{len(features)}'
        assert infer(['--model', str(checkpoint[0]), '--input', str(tmp_path / 'in'), '--output', str(out),
                      '--device', 'cpu', '--dtype', dtype]) == 0
        first = capsys.readouterr().err.splitlines()[0]
        assert first.startswith('compute path: ' + ('bf16 autocast + channels_last' if features and dtype == 'auto'
                                                   else 'fp32')), first
        outs[dtype, len(features)] = np.stack([cv2.imread(str(p)) for p in sorted(out.glob('*.png'))]).astype(float)
    assert outs['fp32', 1].shape == (3, 96, 128, 3)
    assert np.array_equal(outs['fp32', 1], outs['auto', 0])
    assert np.abs(outs['auto', 1] - outs['fp32', 1]).mean() < 1.0  # 8-bit levels


def test_speed_paths_table_parts(checkpoint):
    """``benchmarks.speed --paths``: bf16 paths only when asked, each path's PSNR on real frames, the table."""
    from hoffr_arch.benchmarks import speed
    assert not any('bf16' in name for name in speed.cpu_paths(False, onnx=False))
    assert list(speed.cpu_paths(True, onnx=False)) == ['fp32 eager', 'fp32 channels_last', 'bf16 autocast',
                                                       'bf16 autocast + channels_last']
    hr, lr = real_clip(n=2, size=32)
    paths = speed.cpu_paths(False, onnx=False)
    scores = speed.psnr_changes(checkpoint[1], paths, [(lr, hr)])
    assert abs(scores['fp32 channels_last'] - scores['fp32 eager']) < 1e-3
    table = speed.paths_table('tiny', checkpoint[1], (8, 8), 2e9, {'fp32 eager': 2.0, 'fp32 channels_last': 1.0},
                              {'fp32': 4.0})
    assert '| fp32 channels_last | 1.000 | 2.00x | 2 | 50% | - |' in table


def tiny_model(tmp_path, bf16):
    """A HOFFRModel of a tiny HOFFR built in this process, ``train.bf16`` as given, on the CPU."""
    from basicsr.models import build_model
    net = {'type': 'HOFFR', 'num_feat': 8, 'sr_num_feat': 8, 'sr_num_block': 1, 'db_num_feat': 8,
           'db_num_block': 1, 'fusion_num_rcab': 1, 'squeeze_factor': 4, 'pof_num_feat': 8, 'pof_num_block': 1}
    opt = {'name': 'bf16', 'model_type': 'HOFFRModel', 'scale': 4, 'num_gpu': 0, 'manual_seed': 0,
           'is_train': True, 'dist': False, 'rank': 0, 'world_size': 1,
           'datasets': {'train': {'dataroot_lq_sharp': 'given'}}, 'network_g': net,
           'path': {'pretrain_network_g': None, 'strict_load_g': True, 'resume_state': None,
                    'experiments_root': str(tmp_path), 'models': str(tmp_path), 'training_states': str(tmp_path)},
           'train': {'optim_g': {'type': 'Adam', 'lr': 1e-3}, 'scheduler': {'type': 'MultiStepLR', 'milestones': [9],
                                                                         'gamma': 0.5},
                     'total_iter': 9, 'warmup_iter': -1, 'bf16': bf16, 'flow_lr_mul': 0,
                     'sr_opt': {'type': 'SRLoss'}, 'db_opt': {'type': 'DBLoss'}},
           'val': {'bf16': bf16}, 'logger': {'print_freq': 1}}
    torch.manual_seed(0)
    return build_model(opt)


def test_train_bf16_runs_on_the_cpu_channels_last(tmp_path):
    """``train.bf16`` on a CPU: autocast on the CPU and a channels-last network; one step's loss and the
    validation output close to fp32's (the same seed, the same batch)."""
    hr, lr = real_clip(n=3, size=48)
    batch = {'lq': lr[None], 'gt': hr[None], 'lq_sharp': lr[None]}
    losses, outputs = {}, {}
    for bf16 in (False, True):
        model = tiny_model(tmp_path, bf16)
        conv = model.net_g.db_head.weight
        assert conv.is_contiguous(memory_format=torch.channels_last) == bf16 and model.use_bf16 == bf16
        model.feed_data(batch)
        model.optimize_parameters(1)
        losses[bf16] = model.log_dict['l_total']
        model.test()
        outputs[bf16] = model.output
    assert abs(losses[True] - losses[False]) < 0.01 * losses[False]
    assert outputs[True].dtype == torch.float32 and (outputs[True] - outputs[False]).abs().mean() < 0.01
