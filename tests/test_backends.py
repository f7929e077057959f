"""``infer --backend`` (``hoffr_arch.backends``): ONNX Runtime and OpenVINO against torch with the state
carried, the export cache, the engine chosen and named, and the flag errors (one line, exit 2)."""
import copy
import tempfile

import cv2
import numpy as np
import pytest
import torch

from hoffr_arch import backends, export, precision
from hoffr_arch.archs.hoffr_arch import HOFFR
from hoffr_arch.backends import BackendError, choose_backend
from hoffr_arch.infer import main as infer
from hoffr_arch.streaming import OnnxStep, torch_step

from conftest import NET, smooth_frames, write_clip


@pytest.fixture(scope='session')
def tiny(tmp_path_factory):
    """A tiny HOFFR with real motion in its recurrence, its checkpoint (network options inside) and its
    step exported once through the cache, kept in this session's own temporary folder:
    (net, checkpoint, graph, temporary folder)."""
    pytest.importorskip('onnx')
    root = tmp_path_factory.mktemp('backends')
    torch.manual_seed(0)
    net = HOFFR(**{k: v for k, v in NET.items() if k != 'type'})
    for level in (*net.pof.coarse, net.pof.level_lr, net.pof.level_hr):
        torch.nn.init.normal_(level.body[-1].weight, std=0.05)
    torch.save({'params': net.state_dict(), 'network_g': NET}, root / 'net_g.pth')
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, 'tempdir', str(root))
        graph = export.cached_export(net)
    return net.eval(), root / 'net_g.pth', graph, root


def fake_cpu(monkeypatch, features):
    monkeypatch.setattr(precision, 'cpu_bf16_features', lambda: tuple(features))
    monkeypatch.setattr(backends, 'cpu_bf16_features', lambda: tuple(features))


def run_steps(steps, frames):
    """Each step over ``frames`` (t, 1, 3, h, w), its state carried: {name: [(hr, deblurred)]}."""
    outs = {}
    with torch.inference_mode():
        for name, step in steps.items():
            state, outs[name] = None, []
            for lq in frames:
                hr, state, deblurred = step(lq, state)
                outs[name].append((hr, deblurred))
    return outs


@pytest.mark.parametrize('engine', ['onnxruntime', 'openvino'])
def test_graph_backend_matches_torch_over_frames(tiny, engine, monkeypatch):
    pytest.importorskip(engine, reason=f"{engine} is not installed (pip install '.[{engine}]')")
    net, _, graph, root = tiny
    monkeypatch.setattr(tempfile, 'tempdir', str(root))  # OpenVINO's compiled graph: the session's cache
    step = OnnxStep(graph) if engine == 'onnxruntime' else backends.OpenVinoStep(graph)
    frames = torch.rand(3, 1, 3, 21, 30)  # odd height (padded as HOFFR.step pads), another size than traced
    outs = run_steps({'torch': torch_step(net), engine: step}, frames)
    for (hr, deb), (want_hr, want_deb) in zip(outs[engine], outs['torch']):
        assert hr.shape == (1, 3, 84, 120) and deb.shape == (1, 3, 21, 30)
        assert (hr - want_hr).abs().max() <= 1e-4 and (deb - want_deb).abs().max() <= 1e-4
    # the recurrence matters: a step started afresh at the last frame gives another output
    fresh = run_steps({engine: step}, frames[-1:])[engine][0][0]
    assert (fresh - outs['torch'][-1][0]).abs().max() > 1e-3


def test_export_is_cached_per_network(tiny, monkeypatch):
    net, _, graph, root = tiny
    assert graph.parent.parent == root and graph.parent.name.startswith('hoffr-onnx-')
    assert graph.parent.stat().st_mode & 0o777 == 0o700
    monkeypatch.setattr(tempfile, 'tempdir', str(root))
    monkeypatch.setattr(export, 'export', lambda *a, **k: pytest.fail('exported again'))
    assert export.cached_export(net) == graph
    other = copy.deepcopy(net)
    with torch.no_grad():
        next(other.parameters()).add_(1e-3)
    assert export.network_key(other) != export.network_key(net)


def test_backend_choice_and_its_line(monkeypatch):
    fake_cpu(monkeypatch, ())
    monkeypatch.setattr(backends, 'installed', lambda name: name != 'openvino')
    chosen = choose_backend('auto', 'auto', 'cpu')
    assert chosen.name == 'torch' and chosen.line.startswith('compute path: fp32 on cpu')
    assert 'backend auto: torch, the openvino extra is not installed' in chosen.line
    with pytest.raises(BackendError, match=r"openvino package is not installed \(pip install '.\[openvino\]'\)"):
        choose_backend('openvino', 'auto', 'cpu')
    monkeypatch.setattr(backends, 'installed', lambda name: name != 'onnx')  # the exporter's package
    assert choose_backend('auto', 'auto', 'cpu').name == 'torch'
    with pytest.raises(BackendError, match=r"the onnx package is not installed \(pip install '.\[onnx\]'\)"):
        choose_backend('onnxruntime', 'auto', 'cpu')
    monkeypatch.setattr(backends, 'installed', lambda name: True)
    chosen = choose_backend('auto', 'auto', 'cpu')
    assert (chosen.name, chosen.path.dtype) == ('openvino', torch.float32)
    assert chosen.line.startswith('compute path: openvino fp32 on cpu (auto: this CPU has no AMX-BF16')
    assert choose_backend('auto', 'auto', 'cpu', compile='default').name == 'torch'
    assert choose_backend('auto', 'auto', 'cuda').name == 'torch'
    with pytest.raises(BackendError, match='--dtype bf16 with --backend openvino: a CPU with AMX-BF16'):
        choose_backend('openvino', 'bf16', 'cpu')
    fake_cpu(monkeypatch, ['amx_bf16'])
    chosen = choose_backend('openvino', 'auto', 'cpu')
    assert chosen.path.dtype == torch.bfloat16 and chosen.line.startswith('compute path: openvino bf16 on cpu')
    assert choose_backend('openvino', 'fp32', 'cpu').path.dtype == torch.float32
    assert choose_backend('onnxruntime', 'auto', 'cpu').path.dtype == torch.float32  # ONNX Runtime: fp32 only
    with pytest.raises(BackendError, match='--dtype bf16 with --backend onnxruntime: fp32 only'):
        choose_backend('onnxruntime', 'bf16', 'cpu')
    with pytest.raises(BackendError, match='--backend openvino runs on the CPU here, not on cuda'):
        choose_backend('openvino', 'auto', 'cuda')


def test_flag_errors_are_one_line_exit_2(tmp_path, tiny, capsys, monkeypatch):
    write_clip(tmp_path / 'in', smooth_frames(2, 16, 16, 0))
    base = ['--model', str(tiny[1]), '--input', str(tmp_path / 'in'), '--output', str(tmp_path / 'out')]
    for flags, message in ((['--backend', 'onnx'], "argument --backend: invalid choice: 'onnx'"),
                           (['--compile', 'fast'], "argument --compile: invalid choice: 'fast'")):
        with pytest.raises(SystemExit) as exit_:
            infer(base + flags)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and len(err.splitlines()) == 1, err
    if backends.installed('openvino') and backends.installed('onnx'):
        (tmp_path / 'garbage.onnx').write_bytes(b'\x08\x01garbage')
        assert infer(base[2:] + ['--model', str(tmp_path / 'garbage.onnx'), '--backend', 'openvino']) == 2
        err = capsys.readouterr().err
        assert 'garbage.onnx: not a readable ONNX graph' in err and len(err.splitlines()) == 2, err  # + path line
    monkeypatch.setattr(backends, 'installed', lambda name: name != 'openvino')
    for flags, message in ((['--backend', 'onnxruntime', '--compile', 'default'],
                            '--compile default is for --backend torch, not onnxruntime'),
                           (['--backend', 'openvino'], 'the openvino package is not installed')):
        assert infer(base + flags) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / 'out').exists()


def read_frames(folder):
    return np.stack([cv2.imread(str(p)) for p in sorted(folder.glob('*.png'))]).astype(int)


def test_infer_openvino_and_compiled_torch_match_fp32(tmp_path, tiny, capsys, monkeypatch):
    """``--backend openvino`` on a checkpoint (exported through the cache) and ``--compile`` (the step
    handed to ``ComputePath.compiled``; compiling itself is tested with the precision module) give
    torch fp32's frames; the first stderr line names the engine."""
    write_clip(tmp_path / 'in', smooth_frames(3, 16, 24, 4))
    monkeypatch.setattr(tempfile, 'tempdir', str(tiny[3]))  # the session's cache: exported already
    monkeypatch.setattr(export, 'export', lambda *a, **k: pytest.fail('exported again'))
    compiled = []
    monkeypatch.setattr(precision.ComputePath, 'compiled', lambda self, fn: compiled.append(self.compile) or fn)
    runs = [('torch', ['--dtype', 'fp32'], 'compute path: fp32 on cpu'),
            ('compiled', ['--compile', 'reduce-overhead', '--dtype', 'fp32'],
             'compute path: fp32 + torch.compile reduce-overhead on cpu')]
    if backends.installed('openvino'):
        runs.append(('openvino', ['--backend', 'openvino'], 'compute path: openvino fp32 on cpu'))
    for name, flags, line in runs:
        assert infer(['--model', str(tiny[1]), '--input', str(tmp_path / 'in'), '--output',
                      str(tmp_path / name), '--device', 'cpu'] + flags) == 0
        assert capsys.readouterr().err.splitlines()[0].startswith(line)
    assert compiled == ['reduce-overhead']
    want = read_frames(tmp_path / 'torch')
    assert want.shape == (3, 64, 96, 3)
    for name, _, _ in runs[1:]:
        assert np.abs(read_frames(tmp_path / name) - want).max() <= 1, name
