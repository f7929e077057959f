"""How restored clips are scored: one protocol for validation (``HOFFRModel``) and ``hoffr_arch.evaluation``.

A clip is scored on the frames ``scored_frames`` keeps: all of them, or all but the first and last
``skip_border_frames`` (FMA-Net's protocol skips one at each end; a clip too short to skip any
keeps all). Each per-frame metric (a BasicSR ``val.metrics`` entry: ``calculate_psnr`` /
``calculate_ssim`` with its ``crop_border`` and ``test_y_channel``) is averaged over those frames; a
clip metric (``CLIP_METRICS``: tOF) is computed on them together. A data set's score is the mean of
its clips' scores (``mean_over_clips``): each clip counting once whatever its length, as BasicSR's
video validation has it (``HOFFRModel``), or weighted by the frames it scored, which is the mean over
every scored frame (``hoffr_arch.evaluation``'s PSNR/SSIM: every frame weighted alike). The two differ
when clips differ in length.

``BASICSR`` and ``FMA`` are the two protocols the evaluation reports: RGB, no border crop, every frame;
RGB, 4-pixel border crop, first and last frame of each clip skipped (FMA-Net, CVPR 2024).
Images are (h, w, c) uint8 BGR arrays, as ``basicsr.utils.tensor2img`` makes them.
"""
from collections import namedtuple

import numpy as np

from basicsr.metrics import calculate_metric
from basicsr.utils.registry import METRIC_REGISTRY

CLIP_METRICS = ('calculate_tof', )  # metrics computed on whole clips, not per frame

Protocol = namedtuple('Protocol', 'metrics skip_border_frames')


def psnr_ssim(crop_border):
    """``val.metrics`` entries for RGB PSNR and SSIM with a ``crop_border``-pixel border left out."""
    return {name: {'type': f'calculate_{name}', 'crop_border': crop_border, 'test_y_channel': False}
            for name in ('psnr', 'ssim')}


BASICSR = Protocol(psnr_ssim(0), 0)
FMA = Protocol(psnr_ssim(4), 1)
TOF = {'tof': {'type': 'calculate_tof'}}


def scored_frames(frames, skip_border_frames=0):
    """The indices of a clip of ``frames`` frames that are scored: all but ``skip_border_frames`` at each
    end, or all when the clip has no frame left after that."""
    skip = int(skip_border_frames)
    return range(skip, frames - skip) if frames > 2 * skip else range(frames)


class ClipScore:
    """The scores of one clip of ``frames`` frames, given frame by frame as they are restored (only a
    clip metric keeps the scored frames): ``metrics`` as BasicSR's ``val.metrics`` ({name: options
    with ``type``}; a ``better`` key is BasicSR's and ignored here)."""

    def __init__(self, metrics, frames, skip_border_frames=0):
        self.metrics = {name: {k: v for k, v in opt.items() if k != 'better'} for name, opt in metrics.items()}
        self.scored = scored_frames(frames, skip_border_frames)
        self.frames = len(self.scored)  # how many frames the clip is scored on
        self.frame = 0
        self.values = {name: [] for name, opt in self.metrics.items() if opt['type'] not in CLIP_METRICS}
        self.kept = ([], []) if len(self.values) < len(self.metrics) else None

    def add(self, img, img2):
        """Scores the next frame (output ``img`` against ground truth ``img2``): returns its per-frame
        metrics {name: value}, {} when the protocol leaves this frame out."""
        index, self.frame = self.frame, self.frame + 1
        if index not in self.scored:
            return {}
        if self.kept is not None:
            self.kept[0].append(img)
            self.kept[1].append(img2)
        found = {name: calculate_metric({'img': img, 'img2': img2}, self.metrics[name]) for name in self.values}
        for name, value in found.items():
            self.values[name].append(value)
        return found

    def result(self):
        """{name: value}: per-frame metrics averaged over the scored frames (NaN for none), clip metrics."""
        out = {name: float(np.mean(v)) if v else float('nan') for name, v in self.values.items()}
        for name, opt in self.metrics.items():
            if name not in out:
                opt = dict(opt)
                out[name] = METRIC_REGISTRY.get(opt.pop('type'))(*self.kept, **opt)
        return {name: out[name] for name in self.metrics}


def clip_scores(imgs, imgs2, metrics, skip_border_frames=0):
    """``ClipScore``'s result for a whole clip: outputs ``imgs`` against ground truths ``imgs2``."""
    score = ClipScore(metrics, len(imgs), skip_border_frames)
    for img, img2 in zip(imgs, imgs2):
        score.add(img, img2)
    return score.result()


def mean_over_clips(per_clip, weights=None):
    """{name: mean over clips} of clip scores (an iterable of ``clip_scores`` dicts; {} for no clip).
    ``weights``, one a clip, default 1 each: each clip counts once; the frames each clip scored
    (``ClipScore.frames``) make it the mean over every scored frame."""
    per_clip = list(per_clip)
    if not per_clip:
        return {}
    return {name: float(np.average([scores[name] for scores in per_clip], weights=weights)) for name in per_clip[0]}
