"""hoffr_arch.metrics.protocol by value: which frames a clip is scored on, per-clip means, the mean over clips."""
import math

import numpy as np
import pytest

from hoffr_arch.metrics.protocol import BASICSR, FMA, TOF, ClipScore, clip_scores, mean_over_clips, scored_frames


def flat(value, size=32):
    """A (size, size, 3) uint8 image of one grey level: against black its PSNR is 20 log10(255 / value)."""
    return np.full((size, size, 3), value, np.uint8)


def psnr(value):
    return 20 * math.log10(255 / value)


def test_scored_frames_skip_the_borders_unless_nothing_is_left():
    assert list(scored_frames(5)) == [0, 1, 2, 3, 4]
    assert list(scored_frames(5, 1)) == [1, 2, 3]
    assert list(scored_frames(3, 1)) == [1]
    assert list(scored_frames(2, 1)) == [0, 1]  # too short to skip: every frame
    assert list(scored_frames(6, 2)) == [2, 3]


def test_two_clips_by_hand():
    """Clip a: 4 frames off by 1, 2, 4, 8 grey levels; clip b: 2 frames off by 16. FMA-Net's protocol
    keeps a's frames 1 and 2 and all of b (too short to skip); the 4-pixel crop changes nothing on
    flat images. Each clip counts once, or each scored frame does with the frames as weights."""
    black = flat(0)
    a = [flat(v) for v in (1, 2, 4, 8)]
    b = [flat(16)] * 2
    every = clip_scores(a, [black] * 4, BASICSR.metrics)
    assert every['psnr'] == pytest.approx(np.mean([psnr(v) for v in (1, 2, 4, 8)]), abs=1e-9)
    assert every['ssim'] < 1
    fma_a = clip_scores(a, [black] * 4, *FMA)
    fma_b = clip_scores(b, [black] * 2, *FMA)
    assert fma_a['psnr'] == pytest.approx((psnr(2) + psnr(4)) / 2, abs=1e-9)
    assert fma_b['psnr'] == pytest.approx(psnr(16), abs=1e-9) and math.isfinite(fma_b['ssim'])
    by_clip = mean_over_clips([fma_a, fma_b])
    assert by_clip['psnr'] == pytest.approx((psnr(2) + psnr(4) + 2 * psnr(16)) / 4, abs=1e-9)  # (a + b) / 2
    by_frame = mean_over_clips([fma_a, fma_b], weights=[2, 2])
    assert by_frame['psnr'] == pytest.approx(by_clip['psnr'], abs=1e-9)  # equal frames: the same
    every_b = clip_scores(b, [black] * 2, BASICSR.metrics)
    pooled = mean_over_clips([every, every_b], weights=[4, 2])
    assert pooled['psnr'] == pytest.approx(np.mean([psnr(v) for v in (1, 2, 4, 8, 16, 16)]), abs=1e-9)
    assert abs(pooled['psnr'] - mean_over_clips([every, every_b])['psnr']) > 1  # the weighting can tell
    assert mean_over_clips([]) == {}


def test_frame_by_frame_as_they_come_and_clip_metrics_on_the_scored_frames():
    """ClipScore.add returns each frame's values ({} for a skipped frame); a clip metric (tOF) sees only
    the scored frames; BasicSR's ``better`` key is not passed to the metric."""
    rng = np.random.default_rng(0)
    outs = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    gts = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    metrics = {'psnr': dict(FMA.metrics['psnr'], better='higher'), **TOF}
    score = ClipScore(metrics, 5, 1)
    found = [score.add(o, g) for o, g in zip(outs, gts)]
    assert found[0] == found[4] == {} and set(found[1]) == {'psnr'} and score.frames == 3
    result = score.result()
    assert list(result) == ['psnr', 'tof']
    assert result['psnr'] == pytest.approx(np.mean([f['psnr'] for f in found[1:4]]), abs=1e-12)
    from hoffr_arch.metrics.tof_metric import calculate_tof
    assert result['tof'] == pytest.approx(calculate_tof(outs[1:4], gts[1:4]), abs=1e-12)
    assert abs(result['tof'] - calculate_tof(outs, gts)) > 1e-6  # the skipped frames would count


def test_split_options_name_the_packed_roots(tmp_path):
    """evaluation.split_options: a packed split folder as BasicSR dataset options; the sharp LR frames
    when the split has them (or when asked), the clip list when asked."""
    from hoffr_arch.evaluation import split_options
    opt = split_options(tmp_path, 'held')
    assert opt == {'name': 'held', 'dataroot_gt': str(tmp_path / 'sharp.lmdb'),
                   'dataroot_lq': str(tmp_path / 'blur_bicubic.lmdb'), 'io_backend': {'type': 'lmdb'}}
    (tmp_path / 'sharp_bicubic.lmdb').mkdir()
    assert split_options(tmp_path)['dataroot_lq_sharp'] == str(tmp_path / 'sharp_bicubic.lmdb')
    assert 'dataroot_lq_sharp' not in split_options(tmp_path, lq_sharp=False)
    assert split_options(tmp_path, meta_info=True)['meta_info_file'] == str(tmp_path / 'meta_info.txt')
