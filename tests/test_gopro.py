"""datasets_lmdb gopro: a GoPro-layout folder (made here from real frames, not copied from GoPro) packs
into LMDBs that stock BasicSR reads back exactly, that our registered datasets read with the shipped
GoPro YAMLs; bad input is one line and exit 2."""
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest

from datasets_lmdb.__main__ import main as cli
from hoffr_arch.data.frame_io import bicubic_downscale
from hoffr_arch.options import load_yaml

from conftest import make_gopro

REPO = Path(__file__).resolve().parents[1]
CLIPS = {'train/GOPR0372_07_00': 3, 'train/GOPR0374_11_01': 4, 'test/GOPR0384_11_00': 3}


@pytest.fixture
def gopro(tmp_path):
    return make_gopro(tmp_path / 'GOPRO_Large', CLIPS)


def stored(out, split, kind):
    """{key: value bytes} of OUT/<split>/<kind>.lmdb, read with BasicSR's own FileClient."""
    from basicsr.utils import FileClient
    folder = out / split / f'{kind}.lmdb'
    env = lmdb.open(str(folder), readonly=True, lock=False)
    with env.begin() as txn:
        keys = [bytes(k).decode() for k in txn.cursor().iternext(values=False)]
    env.close()
    client = FileClient('lmdb', db_paths=[str(folder)], client_keys=[kind])
    return {key: client.get(key, kind) for key in keys}


@pytest.mark.parametrize('blur', ['blur', 'blur_gamma'])
def test_gopro_packs_what_stock_basicsr_reads_back_exactly(gopro, tmp_path, blur, capsys):
    from basicsr.utils import imfrombytes
    out = tmp_path / 'lmdb'
    assert cli(['gopro', '--input', str(gopro), '--output', str(out), '--blur', blur]) == 0
    assert 'train: 2 clips' in capsys.readouterr().out
    assert (out / 'train' / 'meta_info.txt').read_text() == 'GOPR0372_07_00 3 (64,96,3)\nGOPR0374_11_01 4 (64,96,3)\n'
    assert (out / 'test' / 'meta_info.txt').read_text() == 'GOPR0384_11_00 3 (64,96,3)\n'
    for split in ('train', 'test'):
        assert (out / split / 'sharp.lmdb' / 'checksums.txt').is_file()
        assert not (out / split / 'exposures.txt').exists()  # GoPro records no exposures
    for name, n in CLIPS.items():
        split, clip = name.split('/')
        paths = {kind: sorted((gopro / name / kind).iterdir()) for kind in ('sharp', blur)}
        want = {kind: [cv2.imread(str(p)) for p in paths[sub]] for kind, sub in (('sharp', 'sharp'), ('blur', blur))}
        want['sharp_bicubic'] = [bicubic_downscale(f, 4) for f in want['sharp']]
        want['blur_bicubic'] = [bicubic_downscale(f, 4) for f in want['blur']]
        for kind, frames in want.items():
            values = stored(out, split, kind)
            for i, frame in enumerate(frames):  # position i: GoPro numbers frames from anywhere
                got = imfrombytes(values[f'{clip}/{i:08d}'], float32=False)
                assert np.array_equal(got, frame), (kind, clip, i)
            assert len([k for k in values if k.startswith(clip + '/')]) == n
    assert cli(['verify', str(out)]) == 0


def test_registered_datasets_read_it_with_the_shipped_yamls(gopro, tmp_path):
    from basicsr.utils.registry import DATASET_REGISTRY
    out = tmp_path / 'lmdb'
    assert cli(['gopro', '--input', str(gopro), '--output', str(out)]) == 0

    def local(opt):
        return {k: v.replace('datasets/GoPro_lmdb', str(out)) if isinstance(v, str) else v for k, v in opt.items()}

    train_opt = load_yaml(REPO / 'options' / 'train' / 'train_HOFFR_GoPro.yml')
    train = DATASET_REGISTRY.get(train_opt['datasets']['train']['type'])(
        dict(local(train_opt['datasets']['train']), num_frame=3, gt_size=32, scale=4, phase='train'))
    item = train[0]
    assert item['gt'].shape == (3, 3, 32, 32) and item['lq'].shape == (3, 3, 8, 8) and 'lq_sharp' in item
    test_opt = load_yaml(REPO / 'options' / 'test' / 'test_HOFFR_GoPro.yml')['datasets']['test_1']
    test = DATASET_REGISTRY.get(test_opt['type'])(dict(local(test_opt), phase='test'))
    assert test.folders == ['GOPR0384_11_00']
    clip = test[0]
    assert clip['gt'].shape == (3, 3, 64, 96) and clip['lq'].shape == (3, 3, 16, 24)
    want = cv2.imread(str(gopro / 'test' / 'GOPR0384_11_00' / 'sharp' / '000081.png'))[:, :, ::-1]
    assert np.array_equal(np.rint(clip['gt'][0].numpy().transpose(1, 2, 0) * 255).astype(np.uint8), want)


def _no_sharp(root):
    folder = root / 'test' / 'GOPR0384_11_00' / 'sharp'
    for p in folder.iterdir():
        p.unlink()
    folder.rmdir()
    return 'GoPro clip GOPR0384_11_00 has no sharp/ frames (it has blur, blur_gamma)'


def _extra_blur(root):
    clip = root / 'train' / 'GOPR0374_11_01'
    (clip / 'blur' / '000045.png').write_bytes((clip / 'blur' / '000044.png').read_bytes())
    return 'frame 000045.png is in blur/ only (GoPro clip GOPR0374_11_01: sharp/ has 4 frames, blur/ 5)'


def _missing_gamma(root):
    clip = root / 'train' / 'GOPR0372_07_00' / 'blur_gamma'
    (clip / '000002.png').unlink()
    return 'missing frame 2'


def _stray(root):
    (root / 'train' / 'GOPR0372_07_00' / 'notes.txt').write_text('x')
    return 'notes.txt: stray entry in GoPro clip GOPR0372_07_00'


def _not_gopro(root):
    for split in ('train', 'test'):
        (root / split).rename(root / f'old_{split}')
    return 'no train/ or test/ folder'


@pytest.mark.parametrize('breaks', [_no_sharp, _extra_blur, _missing_gamma, _stray, _not_gopro])
def test_bad_gopro_input_is_one_line(gopro, tmp_path, capsys, breaks):
    expected = breaks(gopro)
    args = ['gopro', '--input', str(gopro), '--output', str(tmp_path / 'lmdb')]
    assert cli(args + (['--blur', 'blur_gamma'] if breaks is _missing_gamma else [])) == 2
    err = capsys.readouterr().err
    assert err.count('\n') == 1 and expected in err, err
    assert not (tmp_path / 'lmdb').exists()


def test_output_inside_the_input_is_refused(gopro, capsys):
    assert cli(['gopro', '--input', str(gopro), '--output', str(gopro / 'train' / 'lmdb')]) == 2
    assert capsys.readouterr().err.strip().endswith(
        f'the output is inside the input folder {gopro / "train"}; choose another output')
    assert cli(['gopro', '--input', str(gopro), '--output', str(gopro)]) == 2  # OUT/train would be the input's
    assert 'is inside this output folder' in capsys.readouterr().err
    assert sorted(p.name for p in gopro.iterdir()) == ['test', 'train']
    assert sorted(p.name for p in (gopro / 'train').iterdir()) == ['GOPR0372_07_00', 'GOPR0374_11_01']
