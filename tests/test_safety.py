"""Files from elsewhere are data, never code; nothing of the user's is deleted; bad input is one line.

Each serious case of the safety issue is reproduced here: a YAML tag and a pickled ``__reduce__``
must not run (the marker file stays absent), the input and an unrelated file survive
``synth --overwrite``, a truncated LMDB is one line without a signal. Training-run cases (a longer
``total_iter``, bad option values before any folder) are in ``test_training.py``.
"""
import os
from pathlib import Path

import lmdb
import pytest
import torch

from datasets_lmdb.__main__ import main as datasets_cli
from hoffr_arch.checkpoint import CheckpointError, load_weights
from hoffr_arch.compat import read_training_state
from hoffr_arch.infer import main as infer_main
from hoffr_arch.options import OptionsError, apply_force_yml, load_yaml, parse_value

from conftest import make_reds, make_video, python_m, smooth_frames, write_clip

REPO = Path(__file__).resolve().parents[1]


class _RunsCode:
    """Unpickling this runs ``touch MARKER``: what a hostile checkpoint or state would hold."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def _cli(module, *args, cwd, env=None):
    return python_m(module, *args, cwd=cwd, env=env, timeout=240)


def _one_line_error(stderr):
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert 'Traceback' not in stderr, stderr
    assert lines and lines[-1].startswith('error: '), stderr
    return lines[-1]


def test_yaml_python_tag_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / 'MARKER'
    hostile = tmp_path / 'hostile.yml'
    hostile.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\nmodel_type: HOFFRModel\n')
    with pytest.raises(OptionsError, match=r'hostile\.yml \(line 1\): the tag .*python/object/apply:os\.system'):
        load_yaml(hostile)
    for module in ('hoffr_arch.train', 'hoffr_arch.test'):
        proc = _cli(module, '-opt', hostile, cwd=tmp_path, env={'HOFFR_ROOT': str(tmp_path)})
        assert proc.returncode == 2 and 'is not allowed' in _one_line_error(proc.stderr)
    assert not marker.exists()
    assert not (tmp_path / 'experiments').exists() and not (tmp_path / 'results').exists()


def test_yaml_beside_a_checkpoint_is_read_as_data(tmp_path, checkpoint, capsys):
    """infer without --opt reads the YAML BasicSR saved beside ``models/``: a downloaded experiment
    folder must not run code."""
    weights, _ = checkpoint
    marker = tmp_path / 'MARKER'
    (weights.parent.parent / 'x.yml').write_text(
        f'network_g: !!python/object/apply:os.system ["touch {marker}"]\n')
    frames = tmp_path / 'in'
    write_clip(frames, smooth_frames(2, 16, 16, 0))
    assert infer_main(['--model', str(weights), '--input', str(frames), '--output', str(tmp_path / 'out')]) == 2
    assert 'is not allowed' in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / 'out').exists()


def test_force_yml_values_are_yaml_data_never_eval(tmp_path):
    marker = tmp_path / 'MARKER'
    code = f"[__import__('os').system('touch {marker}')]"
    assert parse_value(code) == [f"__import__('os').system('touch {marker}')"]
    assert not marker.exists()
    opt = apply_force_yml({'train': {'total_iter': 5, 'scheduler': {}}},
                          ['train:total_iter=-1', 'train:scheduler:periods=[10, 20]', 'train:lr=1e-4',
                           'train:ema=!!float 2e-3', 'train:off=none'])
    assert opt['train'] == {'total_iter': -1, 'scheduler': {'periods': [10, 20]}, 'lr': 1e-4, 'ema': 2e-3,
                            'off': None}
    # a key that would break out of BasicSR's exec: set as a (then unknown) key, never executed
    hostile_key = f'name"]=0;open("{marker}","w");opt["x=1'
    proc = _cli('hoffr_arch.train', '-opt', REPO / 'options' / 'train' / 'train_HOFFR_S_x4.yml',
                '--force_yml', hostile_key, cwd=tmp_path, env={'HOFFR_ROOT': str(tmp_path)})
    assert proc.returncode == 2 and 'unknown key' in _one_line_error(proc.stderr)
    assert not marker.exists()


def test_pickled_reduce_in_a_training_state_runs_nothing(tmp_path):
    marker = tmp_path / 'MARKER'
    exp = tmp_path / 'experiments' / 'evil'
    (exp / 'training_states').mkdir(parents=True)
    (exp / 'models').mkdir()
    state = exp / 'training_states' / '5.state'
    torch.save({'epoch': 0, 'iter': 5, 'optimizers': [_RunsCode(marker)], 'schedulers': []}, state)
    (exp / 'models' / 'net_g_5.pth').write_bytes(b'')
    with pytest.raises(CheckpointError, match='refused, unpickling it could run code'):
        read_training_state(state)
    proc = _cli('hoffr_arch.train', '-opt', REPO / 'options' / 'train' / 'train_HOFFR_S_x4.yml', '--auto_resume',
                '--force_yml', 'name=evil', cwd=tmp_path, env={'HOFFR_ROOT': str(tmp_path)})
    assert proc.returncode == 2 and '5.state: holds objects other than tensors' in _one_line_error(proc.stderr)
    assert not marker.exists()


def test_a_genuine_training_state_still_loads(tmp_path):
    """What BasicSR's schedulers and Adam save (a Counter among them) passes the safe unpickler."""
    from basicsr.models.lr_scheduler import MultiStepRestartLR
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())
    net(torch.ones(1, 2)).sum().backward()
    opt.step()
    sched = MultiStepRestartLR(opt, milestones=[3, 6])
    torch.save({'epoch': 1, 'iter': 7, 'optimizers': [opt.state_dict()], 'schedulers': [sched.state_dict()]},
               tmp_path / '7.state')
    state = read_training_state(tmp_path / '7.state')
    assert state['iter'] == 7 and state['schedulers'][0]['milestones'] == {3: 1, 6: 1}


def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, checkpoint, capsys):
    weights, net = checkpoint
    ckpt = torch.load(weights, weights_only=True)
    name = next(iter(ckpt['params_ema']))
    ckpt['params_ema'][name] = torch.full_like(ckpt['params_ema'][name], float('nan'))
    torch.save(ckpt, weights)
    with pytest.raises(CheckpointError, match=f'weight {name} holds NaN'):
        load_weights(net, weights)
    frames = tmp_path / 'in'
    write_clip(frames, smooth_frames(2, 16, 16, 0))
    assert infer_main(['--model', str(weights), '--input', str(frames), '--output', str(tmp_path / 'out.mp4')]) == 2
    assert f'weight {name} holds NaN' in capsys.readouterr().err
    assert not (tmp_path / 'out.mp4').exists()


def test_synth_overwrite_never_deletes_inputs_or_other_files(tmp_path, capsys):
    frames = tmp_path / 'frames'
    write_clip(frames, smooth_frames(3, 32, 48, 0))
    video = tmp_path / 'work' / 'input_frames'
    write_clip(video, smooth_frames(3, 32, 48, 1))
    notes = tmp_path / 'work' / 'notes.txt'
    notes.write_text('mine')

    def synth(out, *extra):
        return datasets_cli(['synth', '--input', str(frames if out != tmp_path / 'work' else video), '--output',
                             str(out), '--workers', '1', *extra])

    # the output holds the input (and an unrelated file): refused, with or without --overwrite
    assert synth(tmp_path / 'work', '--overwrite') == 2
    assert 'inside this output folder' in capsys.readouterr().err
    # the output inside the input frame folder: refused
    assert synth(frames / 'out') == 2 and 'inside the input folder' in capsys.readouterr().err
    # a folder of the user's, not made by synth: --overwrite leaves it alone
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'keep.txt').write_text('mine')
    assert synth(mine, '--overwrite') == 2 and 'not a folder synth wrote (it holds keep.txt)' in capsys.readouterr().err
    # a user's folder named like our partial output: never deleted
    (tmp_path / 'out.partial').mkdir()
    (tmp_path / 'out.partial' / 'keep.txt').write_text('mine')
    assert synth(tmp_path / 'out', '--overwrite') == 2
    (tmp_path / 'out.partial' / 'keep.txt').unlink()
    (tmp_path / 'out.partial').rmdir()
    # a synth output: replaced with --overwrite only
    assert synth(tmp_path / 'out') == 0
    assert synth(tmp_path / 'out') == 2 and 'pass --overwrite' in capsys.readouterr().err
    assert synth(tmp_path / 'out', '--overwrite') == 0
    assert len(list((tmp_path / 'out' / 'train_sharp' / '000').glob('*.png'))) == 3
    assert notes.read_text() == 'mine' and (mine / 'keep.txt').exists() and len(list(video.iterdir())) == 3
    assert len(list(frames.iterdir())) == 3


def test_infer_keeps_a_partial_file_it_did_not_write(tmp_path, checkpoint, capsys):
    weights, _ = checkpoint
    frames = tmp_path / 'in'
    write_clip(frames, smooth_frames(2, 16, 16, 0))
    partial = tmp_path / 'out.partial.mp4'
    partial.write_text('a file of the user')
    args = ['--model', str(weights), '--input', str(frames), '--output', str(tmp_path / 'out.mp4')]
    assert infer_main(args) == 2 and 'pass --overwrite' in capsys.readouterr().err
    assert partial.read_text() == 'a file of the user'
    # a folder-of-videos output holding a text file named like a finished video: not skipped as done
    (tmp_path / 'videos').mkdir()
    make_video(tmp_path / 'videos' / 'a.mp4', smooth_frames(2, 16, 16, 0), audio=False)
    (tmp_path / 'results').mkdir()
    (tmp_path / 'results' / 'a.mp4').write_text('not a video')
    args = ['--model', str(weights), '--input', str(tmp_path / 'videos'), '--output', str(tmp_path / 'results')]
    assert infer_main(args + ['--overwrite']) == 2
    assert 'not a video file this tool writes' in capsys.readouterr().err
    assert (tmp_path / 'results' / 'a.mp4').read_text() == 'not a video'


@pytest.fixture
def packed(tmp_path):
    src = make_reds(tmp_path / 'REDS', {'000': 3, '001': 3}, h=32, w=48)
    out = tmp_path / 'lmdb'
    assert datasets_cli(['reds', '--input', str(src), '--output', str(out)]) == 0
    return out


def test_truncated_lmdb_is_one_line_not_a_signal(packed, tmp_path):
    data = packed / 'train' / 'sharp.lmdb' / 'data.mdb'
    os.truncate(data, data.stat().st_size // 2)
    proc = _cli('datasets_lmdb', 'verify', packed, cwd=tmp_path)
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-500:])  # a negative code is a signal
    assert f'problem: {data}: truncated' in proc.stderr and 'Traceback' not in proc.stderr
    # the datasets refuse it before reading a value (training checks it before making its folder)
    from hoffr_arch.data.frame_io import DatasetError
    from hoffr_arch.data.vsrdb_dataset import VSRDBTestDataset
    with pytest.raises(DatasetError, match='truncated'):
        VSRDBTestDataset({'dataroot_gt': str(data.parent), 'dataroot_lq': str(packed / 'train' / 'blur_bicubic.lmdb'),
                          'io_backend': {'type': 'lmdb'}, 'scale': 4})


def test_verify_finds_corrupt_pixels_and_garbage_headers(packed, capsys):
    """A stored value whose bytes changed after packing (pixels or header) is named; BasicSR's stock
    reader still decodes every untouched value (the checksums are beside the values, not in them)."""
    lmdb_dir = packed / 'train' / 'blur.lmdb'
    env = lmdb.open(str(lmdb_dir), readonly=True, lock=False)
    with env.begin() as txn:
        pixels, header = bytes(txn.get(b'000/00000001')), bytes(txn.get(b'001/00000000'))
    env.close()
    blob = bytearray((lmdb_dir / 'data.mdb').read_bytes())
    at = blob.find(pixels)
    blob[at + len(pixels) // 2] ^= 0xFF  # one pixel byte: still a decodable BMP of the right size
    at = blob.find(header)
    blob[at:at + 20] = bytes(20)  # the BMP header zeroed
    (lmdb_dir / 'data.mdb').write_bytes(bytes(blob))
    assert datasets_cli(['verify', str(packed)]) == 1
    err = capsys.readouterr().err
    assert 'frame 000/00000001: its bytes differ from those packed (checksum mismatch)' in err
    assert 'frame 001/00000000: its bytes differ' in err and 'Traceback' not in err
    from basicsr.utils import FileClient, imfrombytes
    client = FileClient('lmdb', db_paths=[str(lmdb_dir)], client_keys=['blur'])
    assert imfrombytes(client.get('000/00000000', 'blur')).shape == (32, 48, 3)


@pytest.mark.parametrize('tile', ['-8', '1', '7'])
def test_bad_tile_is_refused_before_any_work(tmp_path, checkpoint, capsys, tile):
    weights, _ = checkpoint
    with pytest.raises(SystemExit) as exit_:
        infer_main(['--model', str(weights), '--input', str(tmp_path), '--output', str(tmp_path / 'o'),
                    '--tile', tile])
    assert exit_.value.code == 2 and 'argument --tile: must be 0' in capsys.readouterr().err
    from hoffr_arch.evaluation import main as evaluation_main
    with pytest.raises(SystemExit) as exit_:
        evaluation_main(['--data', str(tmp_path), '--tile-overlap', '-5'])
    assert exit_.value.code == 2 and 'argument --tile-overlap: must be >= 0' in capsys.readouterr().err


def test_checkpoint_of_another_network_and_bad_onnx_are_one_line(tmp_path, checkpoint, capsys):
    weights, net = checkpoint
    frames = tmp_path / 'in'
    write_clip(frames, smooth_frames(2, 16, 16, 0))
    other = tmp_path / 'basicvsr.pth'
    torch.save({'params': {'w': torch.zeros(1)}, 'network_g': {'type': 'BasicVSR', 'num_feat': 64}}, other)
    assert infer_main(['--model', str(other), '--input', str(frames), '--output', str(tmp_path / 'a.mp4')]) == 2
    assert "a checkpoint of 'BasicVSR'" in capsys.readouterr().err
    for name, data in (('garbage.onnx', b'\x08\x01garbage'), ('empty.onnx', b'')):
        (tmp_path / name).write_bytes(data)
        assert infer_main(['--model', str(tmp_path / name), '--backend', 'onnxruntime', '--dtype', 'fp32',
                           '--input', str(frames), '--output', str(tmp_path / 'b.mp4')]) == 2
        assert 'not a readable ONNX graph' in capsys.readouterr().err
