"""hoffr_arch.atomic: a file is replaced whole or not at all, and no temporary is left behind."""
import pytest
import torch

from hoffr_arch import atomic


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / 'meta_info.txt'
    path.write_text('old\n')
    assert atomic.write_text(path, 'new\n') == path
    assert path.read_text() == 'new\n'
    atomic.torch_save({'params': {'w': torch.arange(3.)}}, tmp_path / 'net.pth')
    state = torch.load(tmp_path / 'net.pth', weights_only=True)
    assert state['params']['w'].tolist() == [0.0, 1.0, 2.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['meta_info.txt', 'net.pth']


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / 'report.html'
    path.write_text('old')
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(path, tmp_name='.report.html.tmp') as tmp:
            tmp.write_text('half of the new')
            raise RuntimeError('killed mid-write')
    assert path.read_text() == 'old'
    assert [p.name for p in tmp_path.iterdir()] == ['report.html']
