"""python -m hoffr_arch.infer: video and frame folders, equality with forward, errors."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from hoffr_arch.infer import main as infer

from conftest import NET, SHARED_DATA

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def short_video(tmp_path):
    """10 frames of a real clip at 120x52, as mp4, with the source's fps."""
    src = SHARED_DATA / 'videos' / 'bikes.mp4'
    if not src.exists():
        src = REPO / 'hoffr_arch' / 'assets' / 'sam2_01_dog.mp4'
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    path = tmp_path / 'short.mp4'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, (120, 52))
    for _ in range(10):
        ok, img = cap.read()
        writer.write(cv2.resize(img, (120, 52), interpolation=cv2.INTER_AREA))
    writer.release()
    return path, fps


def test_mp4_in_mp4_out_keeps_count_and_fps(tmp_path, checkpoint, short_video):
    video, fps = short_video
    out = tmp_path / 'out.mp4'
    assert infer(['--model', str(checkpoint[0]), '--input', str(video), '--output', str(out),
                  '--deblurred', str(tmp_path / 'deblurred')]) == 0
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(fps, rel=1e-3)
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (480, 208)
    assert len(list((tmp_path / 'deblurred').iterdir())) == 10
    assert not list(tmp_path.glob('*.partial*'))


def test_frame_folder_output_equals_forward(tmp_path, checkpoint, short_video):
    path, net = checkpoint
    cap = cv2.VideoCapture(str(short_video[0]))
    frames_dir = tmp_path / 'frames'
    frames_dir.mkdir()
    frames = []
    for i in range(6):
        ok, img = cap.read()
        frames.append(img)
        cv2.imwrite(str(frames_dir / f'im{i + 1}.png'), img)  # natural sort: im1 .. im6
    out = tmp_path / 'out_frames'
    assert infer(['--model', str(path), '--input', str(frames_dir), '--output', str(out)]) == 0
    clip = torch.from_numpy(np.stack(frames)[..., ::-1].copy()).permute(0, 3, 1, 2)[None].float() / 255.
    with torch.no_grad():
        expected = net(clip)[0]
    for i in range(6):
        got = cv2.imread(str(out / f'{i:08d}.png'))
        want = (expected[i].clamp(0, 1).permute(1, 2, 0).flip(-1) * 255).round().byte().numpy()
        assert got.shape == (208, 480, 3)
        assert np.abs(got.astype(int) - want).max() <= 1


def test_errors(tmp_path, checkpoint, short_video, capsys):
    path, _ = checkpoint
    bad = tmp_path / 'notavideo.mp4'
    bad.write_text('hello')
    assert infer(['--model', str(path), '--input', str(bad), '--output', str(tmp_path / 'o.mp4')]) == 2
    assert 'FFmpeg cannot open it' in capsys.readouterr().err

    other = tmp_path / 'experiments' / 'y'
    (other / 'models').mkdir(parents=True)
    (other / 'y.yml').write_text(yaml.safe_dump({'network_g': dict(NET, sr_num_block=2)}))
    torch.save({'params': torch.load(path)['params']}, other / 'models' / 'net_g_1.pth')
    assert infer(['--model', str(other / 'models' / 'net_g_1.pth'), '--input', str(short_video[0]),
                  '--output', str(tmp_path / 'o.mp4')]) == 2
    assert 'not a checkpoint of this HOFFR' in capsys.readouterr().err

    basicvsr = tmp_path / 'experiments' / 'z'
    (basicvsr / 'models').mkdir(parents=True)
    (basicvsr / 'z.yml').write_text(yaml.safe_dump({'network_g': {'type': 'BasicVSR', 'num_feat': 8}}))
    torch.save({'params': {}}, basicvsr / 'models' / 'net_g_1.pth')
    assert infer(['--model', str(basicvsr / 'models' / 'net_g_1.pth'), '--input', str(short_video[0]),
                  '--output', str(tmp_path / 'o.mp4')]) == 2
    assert "network_g.type is 'BasicVSR', not HOFFR" in capsys.readouterr().err

    exists = tmp_path / 'exists.mp4'
    exists.write_bytes(b'x')
    assert infer(['--model', str(path), '--input', str(short_video[0]), '--output', str(exists)]) == 2
    assert 'already exists; pass --overwrite' in capsys.readouterr().err
    assert exists.read_bytes() == b'x'
    assert infer(['--model', str(path), '--input', str(short_video[0]), '--output', str(exists), '--dtype', 'fp16',
                  '--device', 'cpu', '--overwrite']) == 2
    assert 'needs a CUDA device' in capsys.readouterr().err
