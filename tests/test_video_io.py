"""Real video in, real video out: codecs, timestamps, audio, truncation, safe outputs, grey/alpha,
tiles, ONNX, folders of videos (``hoffr_arch.data.video_io``, ``hoffr_arch.infer``, ``hoffr_arch.streaming``)."""
import cv2
import numpy as np
import pytest
import torch

from hoffr_arch.data.video_io import read_frames
from hoffr_arch.infer import main as infer
from hoffr_arch.data.video_io import MediaError, MediaWriter
from hoffr_arch.streaming import TiledStep, quantize, tile_grid, torch_step

from conftest import make_video, smooth_frames, video_facts, write_clip


def errors(capsys):
    """The error lines written to stderr (the progress bar aside): exactly one is expected."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith('error:')]
    assert len(lines) == 1, lines
    return lines[0]


def run_infer(checkpoint, inp, out, *extra):
    return infer(['--model', str(checkpoint[0]), '--input', str(inp), '--output', str(out), *extra])


def test_mp4_with_audio_keeps_frames_times_audio_rotation(tmp_path, checkpoint):
    src = tmp_path / 'in.mp4'
    times = make_video(src, smooth_frames(12, 24, 40, 0), vfr=True, rotation=90)
    out = tmp_path / 'out.mp4'
    assert run_infer(checkpoint, src, out, '--crf', '20', '--preset', 'fast') == 0
    got_times, codec, rotation, size, audio = video_facts(out)
    in_audio = video_facts(src)[-1]
    assert codec == 'h264' and size == (160, 96) and rotation == 90
    assert len(got_times) == 12
    # the same timestamps, irregular ones included (the input alternates 1/30 and 2/30 s)
    assert np.abs(np.array(got_times) - np.array(times)).max() < 1 / 30
    assert len(in_audio) > 1000 and audio == in_audio
    assert not list(tmp_path.glob('*.partial*'))


def test_truncated_video_is_an_error_and_keeps_the_partial_output(tmp_path, checkpoint, capsys):
    src = tmp_path / 'in.mp4'
    make_video(src, smooth_frames(40, 24, 40, 1), faststart=True, audio=False)
    cut = tmp_path / 'cut.mp4'
    data = src.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    out = tmp_path / 'out.mp4'
    assert run_infer(checkpoint, cut, out) == 1
    err = errors(capsys)
    assert str(cut) in err and 'of the 40 frames' in err
    assert not out.exists()
    partial = tmp_path / 'out.partial.mp4'
    reached = int(err.split('only ')[1].split(' ')[0])
    assert 0 < reached < 40 and len(video_facts(partial)[0]) == reached
    assert run_infer(checkpoint, cut, out, '--allow-partial') == 0
    assert 'warning' in capsys.readouterr().err
    assert len(video_facts(out)[0]) == reached and not partial.exists()
    # synth refuses it too, with one line
    with pytest.raises(Exception, match='of the 40 frames'):
        read_frames(cut)


def test_header_cut_and_not_a_video(tmp_path, checkpoint, capsys):
    src = tmp_path / 'in.mp4'
    make_video(src, smooth_frames(10, 24, 40, 2), audio=False)  # index at the end: a cut loses it
    cut = tmp_path / 'cut.mp4'
    cut.write_bytes(src.read_bytes()[:len(src.read_bytes()) // 2])
    assert run_infer(checkpoint, cut, tmp_path / 'o.mp4') == 2
    assert errors(capsys).startswith(f'error: {cut}: FFmpeg cannot open it')


def test_overwrite_replaces_only_our_outputs(tmp_path, checkpoint, capsys):
    frames = tmp_path / 'frames'
    write_clip(frames, smooth_frames(3, 16, 24, 3))
    # output == input, output inside the input folder: refused, nothing touched
    assert run_infer(checkpoint, frames, frames, '--overwrite') == 2
    assert 'the output is the input' in errors(capsys)
    assert run_infer(checkpoint, frames, frames / 'sub', '--overwrite') == 2
    assert 'inside the input folder' in errors(capsys)
    assert sorted(p.name for p in frames.iterdir()) == ['00000000.png', '00000001.png', '00000002.png']
    # a folder of the user's files: refused even with --overwrite
    mine = tmp_path / 'mine'
    mine.mkdir()
    (mine / 'notes.txt').write_text('keep me')
    assert run_infer(checkpoint, frames, mine, '--overwrite') == 2
    assert 'left alone' in errors(capsys) and (mine / 'notes.txt').read_text() == 'keep me'
    # a non-video file: refused
    doc = tmp_path / 'doc.txt'
    doc.write_text('x')
    assert run_infer(checkpoint, frames, doc, '--overwrite') == 2 and doc.read_text() == 'x'
    capsys.readouterr()
    # our own PNG output: replaced
    out = tmp_path / 'out'
    assert run_infer(checkpoint, frames, out) == 0
    (out / '00000009.png').write_bytes((out / '00000000.png').read_bytes())  # a stale frame of an older run
    assert run_infer(checkpoint, frames, out, '--overwrite') == 0
    assert sorted(p.name for p in out.iterdir()) == ['00000000.png', '00000001.png', '00000002.png']


def test_mixed_sizes_name_the_first_frame_that_differs(tmp_path, checkpoint, capsys):
    frames = tmp_path / 'frames'
    write_clip(frames, smooth_frames(2, 16, 24, 4) + smooth_frames(1, 16, 28, 5) + smooth_frames(1, 16, 24, 6))
    assert run_infer(checkpoint, frames, tmp_path / 'out') == 2
    assert '00000002.png: 28x16' in errors(capsys)
    assert not (tmp_path / 'out').exists()


def test_grey_stays_grey_and_alpha_is_kept_in_png(tmp_path, checkpoint, capsys):
    grey = tmp_path / 'grey'
    write_clip(grey, [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in smooth_frames(3, 16, 24, 7)])
    assert run_infer(checkpoint, grey, tmp_path / 'grey_out') == 0
    img = cv2.imread(str(tmp_path / 'grey_out' / '00000001.png'), cv2.IMREAD_UNCHANGED)
    assert img.shape == (64, 96)

    rgba = tmp_path / 'rgba'
    alpha = np.tile(np.linspace(0, 255, 24, dtype=np.uint8), (16, 1))
    write_clip(rgba, [np.dstack((f, alpha)) for f in smooth_frames(3, 16, 24, 8)])
    assert run_infer(checkpoint, rgba, tmp_path / 'rgba_out') == 0
    img = cv2.imread(str(tmp_path / 'rgba_out' / '00000002.png'), cv2.IMREAD_UNCHANGED)
    assert img.shape == (64, 96, 4)
    want = cv2.resize(alpha, (96, 64), interpolation=cv2.INTER_CUBIC)
    assert np.array_equal(img[:, :, 3], want)
    assert run_infer(checkpoint, rgba, tmp_path / 'rgba.mp4') == 2
    assert 'alpha channel' in errors(capsys) and not (tmp_path / 'rgba.mp4').exists()


def test_tile_grid_covers_the_frame_once():
    for size, tile, overlap in [(45, 16, 4), (64, 64, 8), (10, 32, 16)]:
        grid = tile_grid(size, tile, overlap)
        cores = [i for _, _, a, b in grid for i in range(a, b)]
        assert cores == list(range(size))
        assert all(0 <= s <= a < b <= e <= size and a - s <= overlap and e - b <= overlap for s, e, a, b in grid)


def test_tiled_step_pastes_each_core_in_place(checkpoint):
    """With an overlap that makes every tile the whole frame, tiles must give the untiled output
    exactly: any misplaced core or crop would show."""
    net = checkpoint[1]
    frames = torch.rand(3, 1, 3, 20, 28)
    plain, tiled = torch_step(net), TiledStep(torch_step(net), 4, tile=8, overlap=40)
    # infer's way: the HR frame assembled in uint8, each core quantized as it is pasted
    as_uint8 = TiledStep(torch_step(net), 4, tile=8, overlap=40, hr_dtype=torch.uint8)
    s1 = s2 = s3 = None
    with torch.no_grad():
        for lq in frames:
            a, s1, da = plain(lq, s1)
            b, s2, db = tiled(lq, s2)
            c, s3, _ = as_uint8(lq, s3)
            assert torch.equal(a, b) and torch.equal(da, db)
            assert c.dtype == torch.uint8 and torch.equal(c, quantize(a))
            # quantizing leaves the recurrent state (the previous output) as it was
            assert torch.equal(s3[0].hr, s1.hr)
    assert len(s2) == 3 * 4
    assert quantize(torch.tensor([-0.1, 0.5 / 255, 1.6 / 255, 1.2])).tolist() == [0, 0, 2, 255]


def test_encoder_lookahead_reaches_x264(tmp_path):
    """--lookahead bounds libx264's buffers (most of its memory at 4K); x264 records its settings in
    the stream, so the written file shows what the encoder used."""
    frames = smooth_frames(3, 32, 32, 0)
    for lookahead, expected in [(None, b'rc_lookahead=40'), (3, b'rc_lookahead=3')]:
        out = tmp_path / f'{lookahead}.mp4'
        writer = MediaWriter(out, lookahead=lookahead)
        for f in frames:
            writer.write(f, None)
        writer.close()
        assert expected in out.read_bytes()
    for bad in [dict(lookahead=-1), dict(lookahead=5, codec='libsvtav1')]:
        with pytest.raises(MediaError, match='look-ahead'):
            MediaWriter(tmp_path / 'bad.mp4', **bad)


def test_onnx_step_matches_torch(tmp_path, checkpoint, capsys):
    pytest.importorskip('onnxruntime')
    from hoffr_arch.export import main as export
    from hoffr_arch.streaming import OnnxStep
    path = tmp_path / 'step.onnx'
    assert export(['--model', str(checkpoint[0]), '--output', str(path)]) == 0
    assert 'largest difference' in capsys.readouterr().out
    net = checkpoint[1]
    plain, onnx_step = torch_step(net), OnnxStep(path)
    s1 = s2 = None
    with torch.no_grad():
        for lq in torch.rand(3, 1, 3, 22, 30):  # another size than the exported trace
            a, s1, da = plain(lq, s1)
            b, s2, db = onnx_step(lq, s2)
            assert (a - b).abs().max() <= 1e-4 and (da - db).abs().max() <= 1e-4
    frames = tmp_path / 'frames'
    write_clip(frames, smooth_frames(3, 16, 24, 9))
    assert infer(['--backend', 'onnxruntime', '--model', str(path), '--input', str(frames),
                  '--output', str(tmp_path / 'onnx_out')]) == 0
    assert run_infer(checkpoint, frames, tmp_path / 'torch_out') == 0
    for i in range(3):
        a = cv2.imread(str(tmp_path / 'onnx_out' / f'{i:08d}.png')).astype(int)
        b = cv2.imread(str(tmp_path / 'torch_out' / f'{i:08d}.png')).astype(int)
        assert np.abs(a - b).max() <= 1


def test_folder_of_videos_each_to_its_output_and_rerun_skips(tmp_path, checkpoint, capsys):
    videos = tmp_path / 'videos'
    videos.mkdir()
    make_video(videos / 'a.mp4', smooth_frames(4, 16, 24, 10), audio=False)
    make_video(videos / 'b.mkv', smooth_frames(3, 16, 24, 11), audio=False)
    out = tmp_path / 'results'
    assert run_infer(checkpoint, videos, out) == 0
    assert '7 frames' in capsys.readouterr().out
    assert [len(video_facts(out / n)[0]) for n in ('a.mp4', 'b.mp4')] == [4, 3]
    stamp = (out / 'a.mp4').stat().st_mtime_ns
    assert run_infer(checkpoint, videos, out) == 0
    assert 'done already' in capsys.readouterr().err and (out / 'a.mp4').stat().st_mtime_ns == stamp
    assert run_infer(checkpoint, videos, videos / 'x') == 2  # inside the input folder
