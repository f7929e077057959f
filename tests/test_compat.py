"""Each compat fix: the upstream failure without it, and that it works (also in spawned workers)."""
import subprocess
import sys
import textwrap

import pytest


def _run(code, cwd=None):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=cwd)


def test_import_basicsr_fails_without_fix_and_works_with_it():
    bare = _run('import basicsr')
    if bare.returncode == 0:
        pytest.skip('this torchvision still has transforms.functional_tensor: the fix is a no-op here')
    assert 'functional_tensor' in bare.stderr
    fixed = _run('import hoffr_arch, basicsr; from hoffr_arch import compat; print(compat.applied_fixes())')
    assert fixed.returncode == 0, fixed.stderr
    assert 'torchvision_functional_tensor' in fixed.stdout


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
