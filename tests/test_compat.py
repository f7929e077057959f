"""Each compat fix: the upstream failure without it, and that it works (also in spawned workers)."""
import json
import subprocess
import sys
import textwrap

import pytest


def _run(code, cwd=None):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope='module')
def imported():
    """What a new interpreter has after ``import hoffr_arch, basicsr.train``, then after our entry points'
    ``compat.apply_run_fixes()``: one process for the tests that read it (each new interpreter costs
    ~10 s of imports on 2 cores)."""
    code = ('import json, hoffr_arch, basicsr.train as t; from hoffr_arch import compat; '
            'facts = {"fixes": compat.applied_fixes(), "sampler": t.EnlargedSampler.__name__}; '
            'compat.apply_run_fixes(); facts.update(run_sampler=t.EnlargedSampler.__name__, '
            'run_resume=t.load_resume_state.__module__); print(json.dumps(facts))')
    out = _run(code)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.xdist_group('imported')
def test_import_basicsr_fails_without_fix_and_works_with_it(imported):
    bare = _run('import basicsr')
    if bare.returncode == 0:
        pytest.skip('this torchvision still has transforms.functional_tensor: the fix is a no-op here')
    assert 'functional_tensor' in bare.stderr
    assert 'torchvision_functional_tensor' in imported['fixes']


def test_fix_is_effective_in_spawned_dataloader_workers(tmp_path):
    # the worker unpickles a basicsr function, which imports basicsr there: that only works when the
    # spawned process has imported hoffr_arch first (it re-runs the main module, which does)
    script = tmp_path / 'spawn_worker.py'
    script.write_text(textwrap.dedent('''
        import numpy as np
        import torch
        import hoffr_arch  # noqa: F401
        from basicsr.utils.img_util import img2tensor

        if __name__ == '__main__':
            loader = torch.utils.data.DataLoader([np.zeros((4, 5, 3), np.float32)] * 2, batch_size=2,
                                                 num_workers=1, multiprocessing_context='spawn',
                                                 collate_fn=img2tensor)
            batch = next(iter(loader))
            print([tuple(t.shape) for t in batch])
    '''))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert '[(3, 4, 5), (3, 4, 5)]' in result.stdout


@pytest.fixture
def run_fixes():
    """The training pipeline's fixes, as our entry points apply them (``_entry.prepare``)."""
    from hoffr_arch import compat
    compat.apply_run_fixes()
    return compat


@pytest.mark.xdist_group('imported')
def test_importing_the_package_leaves_basicsr_training_as_it_is(imported):
    assert imported['sampler'] == 'EnlargedSampler' and 'training_resume_sampler_dist' not in imported['fixes']
    assert (imported['run_sampler'], imported['run_resume']) == ('ResumableSampler', 'hoffr_arch.compat')


def test_resume_state_loads_on_cpu_where_basicsr_needs_cuda(tmp_path, run_fixes):
    import torch
    from basicsr.utils.options import ordered_yaml  # noqa: F401  (basicsr importable)
    from hoffr_arch import compat
    exp = tmp_path / 'experiments' / 'x'
    (exp / 'training_states').mkdir(parents=True)
    (exp / 'models').mkdir()
    torch.save({'epoch': 1, 'iter': 4, 'optimizers': [], 'schedulers': []}, exp / 'training_states' / '4.state')
    torch.save({'params': {}}, exp / 'models' / 'net_g_4.pth')
    opt = {'name': 'x', 'auto_resume': False, 'network_g': {}, 'datasets': {'train': {'batch_size_per_gpu': 2}},
           'path': {'resume_state': str(exp / 'training_states' / '4.state'), 'experiments_root': str(exp),
                    'models': str(exp / 'models')}}
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, AssertionError)):
            compat.ORIGINALS['load_resume_state'](dict(opt, path=dict(opt['path'])))
    state = compat._load_resume_state(opt)
    assert state['iter'] == 4 and compat.RESUME_POINT == {'epoch': 1, 'iter': 4, 'batch_size': 2}
    # auto_resume finds it from the experiment root, whatever the working directory
    opt.update(auto_resume=True)
    opt['path']['resume_state'] = None
    assert compat._load_resume_state(opt)['iter'] == 4
    assert opt['path']['pretrain_network_g'] == str(exp / 'models' / 'net_g_4.pth')
    compat.RESUME_POINT.clear()


def test_resumed_sampler_continues_instead_of_replaying(run_fixes):
    from hoffr_arch import compat
    dataset = list(range(10))
    stock = compat.ORIGINALS['EnlargedSampler'](dataset, 1, 0)
    stock.set_epoch(3)
    order = list(stock)
    compat.RESUME_POINT.update(epoch=3, iter=3 * 5 + 2, batch_size=2)  # 5 batches per epoch, 2 done in epoch 3
    try:
        sampler = __import__('basicsr.train', fromlist=['EnlargedSampler']).EnlargedSampler(dataset, 1, 0)
    finally:
        compat.RESUME_POINT.clear()
    sampler.set_epoch(3)
    assert list(sampler) == order[4:]  # the stock sampler would replay order[:4]
    sampler.set_epoch(4)
    stock.set_epoch(4)
    assert list(sampler) == list(stock)  # later epochs are whole


def test_init_dist_works_on_cpu(monkeypatch, run_fixes):
    import torch
    import torch.distributed as dist
    from hoffr_arch import compat
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', '29631')
    if not torch.cuda.is_available():
        with pytest.raises((ZeroDivisionError, RuntimeError)):
            compat.ORIGINALS['init_dist']('pytorch')
    compat._init_dist('pytorch')
    try:
        assert dist.get_backend() == ('nccl' if torch.cuda.is_available() else 'gloo')
        assert dist.get_world_size() == 1
    finally:
        dist.destroy_process_group()


def test_video_validation_on_cpu(tmp_path):
    """BasicSR's video validation allocates its metric tensors on 'cuda'; HOFFRModel's runs anywhere."""
    import numpy as np
    import torch
    from basicsr.models.video_recurrent_model import VideoRecurrentModel
    from hoffr_arch.models.hoffr_model import HOFFRModel

    class Clips(torch.utils.data.Dataset):
        opt = {'name': 'clips'}
        data_info = {'folder': ['c0'] * 3}

        def __len__(self):
            return 1

        def __getitem__(self, i):
            gen = torch.Generator().manual_seed(i)
            return {'lq': torch.rand(3, 3, 8, 8, generator=gen), 'gt': torch.rand(3, 3, 32, 32, generator=gen),
                    'folder': 'c0'}

    opt = {'name': 'v', 'model_type': 'HOFFRModel', 'num_gpu': 0, 'is_train': False, 'dist': False, 'scale': 4,
           'network_g': {'type': 'HOFFR', 'num_feat': 8, 'sr_num_feat': 8, 'sr_num_block': 1, 'db_num_feat': 8,
                         'db_num_block': 1, 'squeeze_factor': 4, 'pof_num_feat': 4, 'pof_num_block': 1},
           'path': {'results_root': str(tmp_path), 'visualization': str(tmp_path / 'vis')},
           'val': {'metrics': {'psnr': {'type': 'calculate_psnr', 'crop_border': 0}}}}
    model = HOFFRModel(opt)
    loader = torch.utils.data.DataLoader(Clips())
    if not torch.cuda.is_available():
        with pytest.raises((RuntimeError, AssertionError)):
            VideoRecurrentModel.dist_validation(model, loader, 0, None, False)
        vars(model).pop('metric_results', None)  # whatever the upstream attempt left
    model.validation(loader, 'v', None, save_img=False)
    assert np.isfinite(model.metric_results['psnr'])


def test_basicvsrpp_keeps_its_alignment_without_cuda():
    import torch
    from basicsr.archs.basicvsrpp_arch import BasicVSRPlusPlus
    from hoffr_arch import compat
    if not torch.cuda.is_available():
        bare = BasicVSRPlusPlus.__new__(BasicVSRPlusPlus)
        compat.ORIGINALS['BasicVSRPlusPlus.__init__'](bare, mid_channels=8, num_blocks=1)
        assert len(bare.deform_align) == 0  # upstream: silently no alignment
    net = BasicVSRPlusPlus(mid_channels=8, num_blocks=1)
    assert sorted(net.deform_align) == ['backward_1', 'backward_2', 'forward_1', 'forward_2']
    out = net(torch.rand(1, 3, 3, 64, 64))
    assert out.shape == (1, 3, 3, 256, 256)
    out.mean().backward()
    assert net.deform_align['forward_1'].weight.grad is not None


def test_basicsr_imports_without_distutils(tmp_path):
    """Python 3.12+ has no distutils (and its venvs no setuptools to shim it); BasicSR imports
    distutils.version. Hide distutils here and import our package and BasicSR's arch_util."""
    script = tmp_path / 'no_distutils.py'
    script.write_text(textwrap.dedent("""
        import sys
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name == 'distutils' or name.startswith('distutils.'):
                    raise ModuleNotFoundError(name)
        sys.meta_path.insert(0, Hide())
        sys.modules.pop('distutils', None)
        import hoffr_arch
        from hoffr_arch.compat import applied_fixes
        from basicsr.archs import arch_util
        from distutils.version import LooseVersion as V
        print('distutils_on_python_3_12' in applied_fixes(), V('0.29.1') >= V('0.9.0'), V('1.10') > V('1.9'),
              V('2.0.0') == V('2.0.0'), V('0.8.2') < '0.9.0')
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['True'] * 5
