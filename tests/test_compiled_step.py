"""``torch.compile`` of HOFFR's recurrent step (``precision.choose(compile=...)``, ``train.compile``)
against eager, on a tiny network.

Inductor's C++ code generation takes minutes per graph on 2 CPU cores, past the test suite's budget,
so the compiled runs use the cheapest backends that keep what ``torch.compile`` changes about how
the step runs: ``eager`` for the streaming step (dynamo's graph capture and its guards: the first
frame, without state, and the later frames are two graphs) and ``aot_eager`` for training (capture
plus AOT autograd's joint forward/backward graph, functionalized, as inductor receives it).
Inductor's kernels are torch's to test; the GPU script (``benchmarks.gpu_train``) times the real modes.
"""
import copy
from pathlib import Path

import pytest
import torch
import yaml

from hoffr_arch.archs.hoffr_arch import HOFFR
from hoffr_arch.precision import COMPILE_MODES, choose, compile_recurrent_step
from hoffr_arch.streaming import torch_step



def counting_backend(graphs, name):
    """Backend ``name`` that also records each graph it is handed (to see that the compiled path ran)."""
    inner = torch._dynamo.lookup_backend(name)

    def backend(gm, example_inputs):
        graphs.append(gm)
        return inner(gm, example_inputs)
    return backend


def tiny_net():
    """HOFFR with 4-channel branches, one block each and a 2-level POF (12 k parameters)."""
    torch.manual_seed(0)
    return HOFFR(num_feat=4, sr_num_feat=4, sr_num_block=1, db_num_feat=4, db_num_block=1, fusion_num_rcab=1,
                 squeeze_factor=2, pof_num_feat=4, pof_num_block=1, pof_num_coarse=1)


def perturb(net):
    """Move every weight off its initial value (the POF starts at zero motion: make it move)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return net


def test_bad_mode_is_refused_in_one_line():
    with pytest.raises(ValueError) as err:
        choose('fp32', 'cpu', compile='fastest')
    assert str(err.value) == '--compile fastest: choose one of none, default, reduce-overhead, max-autotune'
    assert COMPILE_MODES[0] == 'none' and choose('fp32', 'cpu').compile == 'none'
    path = choose('fp32', 'cpu', compile='reduce-overhead')
    assert 'torch.compile reduce-overhead' in path.describe() and not path.cuda_graphs
    assert choose('fp32', 'cuda', compile='reduce-overhead').cuda_graphs  # CUDA graphs: needs no GPU to choose
    step = object()
    assert choose('fp32', 'cpu').compiled(step) is step  # 'none' leaves the step as it is


def test_compiled_streaming_step_equals_eager_over_frames():
    net = perturb(tiny_net()).eval()
    eager = torch_step(net, choose('fp32', 'cpu'))
    graphs = []
    compiled = choose('fp32', 'cpu', compile='default').compiled(torch_step(net, choose('fp32', 'cpu')),
                                                                 counting_backend(graphs, 'eager'))
    frames = torch.rand(3, 1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    states = [None, None]
    with torch.inference_mode():
        for lq in frames:  # the state carried from frame to frame, as infer runs it
            hr_e, states[0], deb_e = eager(lq, states[0])
            hr_c, states[1], deb_c = compiled(lq, states[1])
            assert hr_c.shape == (1, 3, 64, 64)
            torch.testing.assert_close(hr_c, hr_e, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(deb_c, deb_e, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(states[1].hr, states[0].hr, rtol=1e-5, atol=1e-5)
    assert hr_e.std() > 0.01  # the frames carry content, not a constant
    assert len(graphs) == 2  # the first frame's graph and the one every later frame replays


def test_every_shape_gets_its_graph_past_dynamo_default_limit():
    """One static graph per shape: the 12 shapes of a tiled clip's edges and frames all compile (dynamo's
    default limit of 8 would run the 9th and later eager, silently but for a warning)."""
    graphs = []
    step = choose('fp32', 'cpu', compile='default').compiled(lambda x: x * 2 + 1, counting_backend(graphs, 'eager'))
    for n in range(1, 13):
        assert step(torch.ones(n)).sum() == 3 * n
    assert len(graphs) == 12


def test_replayed_graph_outputs_are_clones(monkeypatch):
    """Where CUDA graphs are replayed, each call starts a graph step and hands back its own copies."""
    calls = []
    monkeypatch.setattr(torch.compiler, 'cudagraph_mark_step_begin', lambda: calls.append('step'))
    monkeypatch.setattr(torch, 'compile', lambda fn, **kwargs: fn)  # no GPU here: the replay's wrapper only
    kept = torch.zeros(2)
    step = choose('fp32', 'cuda', compile='reduce-overhead').compiled(lambda x: (kept, {'x': x}))
    out, aux = step(torch.ones(1))
    kept.fill_(7)  # what the next replay would do to its output buffers
    assert calls == ['step'] and out.tolist() == [0, 0] and aux['x'].tolist() == [1]


def test_compiled_training_forward_backward_equals_eager():
    eager = perturb(tiny_net()).train()
    graphs = []
    compiled = compile_recurrent_step(copy.deepcopy(eager), choose('fp32', 'cpu', compile='default'),
                                      counting_backend(graphs, 'aot_eager'))
    lqs = torch.rand(2, 2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    grads = []
    for net in (eager, compiled):
        out, aux = net(lqs, return_aux=True)
        (out.abs().mean() + aux['deblurred'].abs().mean() + aux['flows']['hr'].abs().mean()).backward()
        grads.append({name: p.grad for name, p in net.named_parameters()})
        grads[-1]['out'] = out.detach()
    graphs_after = len(graphs)
    assert set(compiled.state_dict()) == set(eager.state_dict())  # checkpoints keep their keys
    assert len(graphs) >= 3  # the first frame's step, the later frames' step, the POF: compiled, and ran
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4, atol=1e-6, msg=name)
    assert grads[0]['pof.level_hr.body.3.weight'].abs().sum() > 0  # the gradient reached the POF
    with torch.no_grad():  # evaluation stays eager: no new graph for it
        compiled.eval()(lqs[:, :2, :, :8, :8])
    assert len(graphs) == graphs_after


def test_train_compile_option_reaches_the_network():
    """``train.compile`` as ``HOFFRModel`` reads it: the step and the POF compiled, the state dict's
    keys unchanged; a bad value is one line naming the key (``options.py`` fails with it)."""
    from hoffr_arch.models.hoffr_model import HOFFRModel
    from hoffr_arch.precision import compile_option
    assert [compile_option(v) for v in (None, False, True, 'max-autotune')] == [
        'none', 'none', 'reduce-overhead', 'max-autotune']
    with pytest.raises(ValueError) as err:
        compile_option('yes')
    assert str(err.value) == ("'train.compile' must be false, true or one of none, default, reduce-overhead, "
                              "max-autotune, got 'yes'")
    model = HOFFRModel.__new__(HOFFRModel)  # model_to_device alone: no data, no optimiser
    model.opt = {'is_train': True, 'train': {'compile': 'default'}, 'dist': False, 'num_gpu': 0}
    model.device = torch.device('cpu')
    eager = tiny_net()
    net = model.model_to_device(tiny_net())
    assert '_step' in vars(net) and 'forward' in vars(net.pof)  # the compiled wrappers, on this instance
    assert list(net.state_dict()) == list(eager.state_dict())
    model.opt['train']['compile'] = False
    net = model.model_to_device(tiny_net())
    assert '_step' not in vars(net) and 'forward' not in vars(net.pof)


def test_options_check_names_train_compile(tmp_path):
    from hoffr_arch.options import OptionsError, check_options, load_yaml
    opt = load_yaml(Path(__file__).resolve().parents[1] / 'options' / 'train' / 'train_HOFFR_S_x4.yml')
    for value in ('reduce-overhead', True, False):
        opt['train']['compile'] = value
        (tmp_path / 'ok.yml').write_text(yaml.safe_dump(opt))
        assert check_options(tmp_path / 'ok.yml')['train']['compile'] == value
    opt['train']['compile'] = 'fast'
    (tmp_path / 'bad.yml').write_text(yaml.safe_dump(opt))
    with pytest.raises(OptionsError) as err:
        check_options(tmp_path / 'bad.yml')
    assert str(err.value) == (f"{tmp_path / 'bad.yml'}: 'train.compile' must be false, true or one of none, default, "
                              "reduce-overhead, max-autotune, got 'fast'")
