"""datasets_lmdb: a conversion interrupted (Ctrl-C, SIGKILL) leaves nothing complete-looking and
resumes from its last commit."""
import importlib
import signal
from pathlib import Path

import numpy as np

from datasets_lmdb.__main__ import main as cli
from hoffr_arch.data.vsrdb_dataset import VSRDBTestDataset

from conftest import as_bgr_uint8, load_dir, make_reds, python_m, smooth_frames, write_clip

REPO = Path(__file__).resolve().parents[1]
pack_module = importlib.import_module('datasets_lmdb.pack')  # the package exports a function of that name


def test_interrupted_conversion_resumes(tmp_path, monkeypatch, capsys):
    src = make_reds(tmp_path / 'REDS', {'000': 6, '001': 6})
    out = tmp_path / 'out'
    monkeypatch.setattr(pack_module, 'COMMIT_BYTES', 1)  # commit after every frame
    real_load, calls = pack_module.load_frame, []

    def dying_load(frame, *args):
        calls.append(frame.key)
        if len(calls) == 20:  # in the middle of the second LMDB
            raise KeyboardInterrupt
        return real_load(frame, *args)

    monkeypatch.setattr(pack_module, 'load_frame', dying_load)
    assert cli(['reds', '--input', str(src), '--output', str(out), '--workers', '1']) == 130
    partial = next((out / 'train').glob('*.lmdb.partial'))
    assert not (out / 'train' / partial.name[:-len('.partial')]).exists()
    assert cli(['verify', str(out)]) == 1  # nothing looks complete
    monkeypatch.setattr(pack_module, 'load_frame', real_load)
    assert cli(['reds', '--input', str(src), '--output', str(out)]) == 2
    assert '--resume' in capsys.readouterr().err
    calls.clear()
    monkeypatch.setattr(pack_module, 'load_frame', lambda f, *a: calls.append(f.key) or real_load(f, *a))
    assert cli(['reds', '--input', str(src), '--output', str(out), '--resume']) == 0
    assert len(calls) < 4 * 12 - 8, 'resume redid committed frames'
    assert cli(['verify', str(out)]) == 0
    ds = VSRDBTestDataset({'dataroot_gt': str(out / 'train' / 'blur.lmdb'),
                           'dataroot_lq': str(out / 'train' / 'blur_bicubic.lmdb'), 'io_backend': {'type': 'lmdb'}})
    for got, want in zip(ds[1]['gt'], load_dir(src / 'train_blur' / '001')):
        assert np.array_equal(as_bgr_uint8(got), want)


# the CLI (a module run as ``python -m``) in a process that SIGKILLs itself as it loads its 10th frame (in
# the first LMDB, after several commits): a hard kill at a known point, whatever the machine's speed
DIES_AT_FRAME_10 = """
import importlib, os, signal, sys
from datasets_lmdb.__main__ import main
pack = importlib.import_module('datasets_lmdb.pack')
pack.COMMIT_BYTES, load, loaded = 1, pack.load_frame, []
def dying_load(frame, *args):
    loaded.append(frame)
    if len(loaded) == 10:
        os.kill(os.getpid(), signal.SIGKILL)
    return load(frame, *args)
pack.load_frame = dying_load
sys.exit(main(sys.argv[1:]))
"""


def test_conversion_killed_with_sigkill_then_resumed(tmp_path, monkeypatch):
    (tmp_path / 'dies_at_frame_10.py').write_text(DIES_AT_FRAME_10)
    monkeypatch.syspath_prepend(str(tmp_path))  # the new process gets this process's sys.path
    src = tmp_path / 'REDS'
    for clip in range(3):
        write_clip(src / 'train_sharp' / f'{clip:03d}', smooth_frames(6, 64, 96, clip))
    out = tmp_path / 'out'
    args = ['reds', '--input', str(src), '--output', str(out), '--generate-bicubic', '--workers', '1']
    killed = python_m('dies_at_frame_10', *args, cwd=REPO, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [p.name for p in (out / 'train').glob('*.lmdb*')] == ['sharp.lmdb.partial']
    rerun = python_m('datasets_lmdb', *args, '--resume', cwd=REPO, timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    assert cli(['verify', str(out)]) == 0
    ds = VSRDBTestDataset({'dataroot_gt': str(out / 'train' / 'sharp.lmdb'),
                           'dataroot_lq': str(out / 'train' / 'sharp_bicubic.lmdb'), 'io_backend': {'type': 'lmdb'}})
    for clip in range(3):
        for got, want in zip(ds[clip]['gt'], load_dir(src / 'train_sharp' / f'{clip:03d}')):
            assert np.array_equal(as_bgr_uint8(got), want)
