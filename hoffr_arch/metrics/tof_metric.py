"""tOF: temporal consistency of a restored clip against its ground truth."""
import cv2
import numpy as np

from basicsr.utils.registry import METRIC_REGISTRY


@METRIC_REGISTRY.register()
def calculate_tof(imgs, imgs2, **kwargs):
    """Mean absolute difference between the optical flow of consecutive output frames and that of
    consecutive ground-truth frames (TecoGAN's tOF, without its x10 scaling); lower is better.

    Args:
        imgs, imgs2 (list[ndarray]): output and ground-truth clips, (h, w, 3) uint8 BGR frames.

    Flow: OpenCV Farneback on grey frames with TecoGAN's parameters (pyramid 0.5, 3 levels,
    window 15, 3 iterations, poly_n 5, poly_sigma 1.2). Clips of one frame give 0.
    """
    if len(imgs) != len(imgs2):
        raise ValueError(f'calculate_tof: {len(imgs)} output frames but {len(imgs2)} ground-truth frames')
    if len(imgs) < 2:
        return 0.
    grey = [[cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in clip] for clip in (imgs, imgs2)]
    diffs = []
    for i in range(1, len(imgs)):
        flow_out = cv2.calcOpticalFlowFarneback(grey[0][i - 1], grey[0][i], None, 0.5, 3, 15, 3, 5, 1.2, 0)
        flow_gt = cv2.calcOpticalFlowFarneback(grey[1][i - 1], grey[1][i], None, 0.5, 3, 15, 3, 5, 1.2, 0)
        diffs.append(np.abs(flow_out - flow_gt).mean())
    return float(np.mean(diffs))
