"""An offline HTML report of what a run saw: ``--report DIR`` on ``python -m hoffr_arch.evaluation``,
``hoffr_arch.benchmarks.compare``, ``hoffr_arch.demo`` and ``hoffr_arch.infer``.

``DIR/index.html`` and the images beside it; no CDN, no server, no network: it opens from ``file://``.
With ground truth (``write_report``, from ``hoffr_arch.evaluation.evaluate``'s results with
``pictures=True``): the scores table (PSNR/SSIM by BasicSR's and FMA-Net's protocols, tOF, the gains
of first and later frames over bicubic, seconds per frame), a plot of each model's gain over bicubic
frame by frame (each clip's first frame, which has no previous frame, marked), and for every clip the
frame ``evaluate`` kept (the middle one) as a few crops chosen where the models differ most: bicubic of
the blurry input, each model, ground truth, side by side with each crop's PSNR, plus the POF's LR flow
of the pair before that frame on a colour wheel next to OpenCV DIS's flow of the same pair.
Without ground truth (``write_infer_report``, from a ``Recorder`` wrapped around ``infer``'s step):
bicubic of the input against the output, the flow, the compute path and the speed.

Plain semantic HTML with alt texts, one small CSS block; a short script adds a before/after slider to
each crop (the page reads the same without it). Crops are PNG of at most ``CROP`` pixels and flow
pictures at most ``FLOW_WIDTH`` wide, so the size follows the number of clips, not the frame size.
The folder is written only when it is new, empty or one of ours (``MARKER``, which lists our files);
every file is written to a temporary name and renamed, ``index.html`` last.
"""
import html
import io
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from hoffr_arch import atomic

MARKER = '.hoffr-report'
CROPS = 3  # crops per clip
CROP = 128  # crop side, HR pixels (half the short side of smaller frames)
FLOW_WIDTH = 480  # flow pictures are downscaled to at most this width
KEEP = 8  # infer: the frame (or a shorter clip's last) whose pair the report shows

CSS = """body{font:15px/1.45 system-ui,sans-serif;max-width:80rem;margin:1rem auto;padding:0 1rem;color:#1a1a1a}
table{border-collapse:collapse;margin:.5rem 0}th,td{padding:.2rem .6rem;border-bottom:1px solid #ccc;text-align:right}
th:first-child,td:first-child{text-align:left}caption{text-align:left;font-weight:600}
.strip{display:flex;flex-wrap:wrap;gap:.5rem}.strip figure{margin:0;max-width:256px}figure{margin:.5rem 0 1rem}
.strip img,.slider img{width:256px;height:auto;image-rendering:pixelated;display:block}.strip img.key{width:128px}
figcaption{font-size:.85rem;color:#444}.slider{position:relative;display:inline-block}
.slider img+img{position:absolute;left:0;top:0}.controls{margin:.2rem 0;font-size:.85rem}.controls input{width:7rem}
dl{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem}dd{margin:0}dt{font-weight:600}"""

# the enhancement: a before/after slider first in each crop strip (bicubic left of the split, a chosen image right)
SCRIPT = """document.querySelectorAll('[data-compare]').forEach(function (fig) {
  var strip = fig.querySelector('.strip'), imgs = strip.querySelectorAll('img');
  if (imgs.length < 2) return;
  var box = document.createElement('div'), before = imgs[0].cloneNode(), after = imgs[1].cloneNode();
  var pick = document.createElement('select'), range = document.createElement('input'), p = document.createElement('p');
  var cell = document.createElement('figure');
  box.className = 'slider'; p.className = 'controls';
  range.type = 'range'; range.min = 0; range.max = 100; range.value = 50;
  range.setAttribute('aria-label', 'split: left of it ' + imgs[0].dataset.label + ', right of it the chosen image');
  pick.setAttribute('aria-label', 'image right of the split');
  imgs.forEach(function (img, i) { if (i) pick.add(new Option(img.dataset.label, i)); });
  function show() {
    after.src = imgs[pick.value].src;
    after.alt = imgs[pick.value].alt + ' (right of the split)';
    after.style.clipPath = 'inset(0 0 0 ' + range.value + '%)';
  }
  range.addEventListener('input', show); pick.addEventListener('change', show); show();
  before.alt = imgs[0].alt + ' (left of the split)';
  p.append(imgs[0].dataset.label + ' ', range, ' ', pick);
  box.append(before, after); cell.append(box, p); strip.insertBefore(cell, strip.firstChild);
});"""


class ReportError(ValueError):
    """A ``--report`` folder that is not ours to write; the message says why."""


def check_dir(path):
    """``path`` as a report folder: a new one, an empty one or one we wrote (its ``MARKER``); else ReportError.
    Nothing is written yet."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ReportError(f'--report {path}: a file, not a folder')
    if path.is_dir() and any(path.iterdir()) and not (path / MARKER).is_file():
        raise ReportError(f'--report {path}: holds files that are not a report of ours (no {MARKER}); '
                          'give a new or empty folder')
    parent = next((p for p in (path, *path.absolute().parents) if p.exists()), Path('/'))
    if not os.access(parent, os.W_OK):
        raise ReportError(f'--report {path}: {parent} is not writable')
    return path


class Folder:
    """The report folder being written: every file atomically, the ones we wrote listed in ``MARKER``."""

    def __init__(self, path):
        self.path = check_dir(path)
        self.path.mkdir(parents=True, exist_ok=True)
        marker = self.path / MARKER
        self.old = json.loads(marker.read_text()).get('files', []) if marker.is_file() else []
        self.files = []
        self.write(MARKER, json.dumps({'files': self.old}).encode(), listed=False)

    def write(self, name, data, listed=True):
        atomic.write_bytes(self.path / name, data, tmp_name=f'.{name}.tmp')
        if listed:
            self.files.append(name)
        return name

    def image(self, name, img):
        """A BGR uint8 image as ``name`` (PNG); returns the name."""
        ok, buf = cv2.imencode('.png', np.ascontiguousarray(img), [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not ok:
            raise ReportError(f'{name}: PNG encoding failed')
        return self.write(name, buf.tobytes())

    def finish(self, page):
        """Remove what an earlier report of ours left and this one did not rewrite; the marker; index.html last."""
        for name in set(self.old) - set(self.files) - {'index.html'}:
            stale = self.path / Path(name).name
            if stale.is_file():
                stale.unlink()
        self.write(MARKER, json.dumps({'files': self.files + ['index.html']}).encode(), listed=False)
        self.write('index.html', page.encode('utf-8'))
        return self.path / 'index.html'


def esc(text):
    return html.escape(str(text), quote=True)


def fmt(value, digits):
    return '&ndash;' if value is None or not np.isfinite(value) else f'{value:.{digits}f}'


def choose_crops(images, size, count=CROPS):
    """Top-left corners (y, x) of up to ``count`` non-overlapping ``size`` x ``size`` windows where
    ``images`` (HR, BGR uint8) differ most: the per-pixel spread of their grey levels, window-averaged."""
    grey = np.stack([cv2.cvtColor(i, cv2.COLOR_BGR2GRAY).astype(np.float32) for i in images])
    spread = cv2.boxFilter(grey.std(0), -1, (size, size), borderType=cv2.BORDER_CONSTANT)
    h, w = spread.shape
    half = size // 2
    score = np.full_like(spread, -np.inf)
    inside = (slice(half, h - size + half + 1), slice(half, w - size + half + 1))  # windows within the frame
    score[inside] = spread[inside]
    corners = []
    for _ in range(count):
        cy, cx = np.unravel_index(np.argmax(score), score.shape)
        if not np.isfinite(score[cy, cx]):
            break
        corners.append((int(cy) - half, int(cx) - half))
        score[max(cy - size + 1, 0):cy + size, max(cx - size + 1, 0):cx + size] = -np.inf
    return corners


def crops_html(folder, stem, columns, where):
    """Crops of one frame where ``columns`` ([(label, BGR image)], bicubic first; ground truth last when
    there is one) differ most, written as PNG; a ``figure`` per crop (the PSNR on it when ``gt`` is given)."""
    from basicsr.metrics import calculate_psnr
    images = [img for label, img in columns if label != 'ground truth']
    h, w = images[0].shape[:2]
    size = int(min(CROP, h // 2, w // 2))
    gt = dict(columns).get('ground truth')
    parts = []
    for n, (y, x) in enumerate(choose_crops(images if len(images) > 1 else [images[0], gt], size), 1):
        cells = []
        for k, (label, img) in enumerate(columns):
            crop = img[y:y + size, x:x + size]
            name = folder.image(f'{stem}-crop{n}-{k}.png', crop)
            psnr = '' if gt is None or label == 'ground truth' else \
                f'<br>{calculate_psnr(crop, gt[y:y + size, x:x + size], 0):.2f} dB'
            cells.append(f'<figure><img src="{esc(name)}" width="{size}" height="{size}" data-label="{esc(label)}" '
                         f'alt="{esc(label)}, crop {n} of {esc(where)}"><figcaption>{esc(label)}{psnr}</figcaption>'
                         '</figure>')
        parts.append(f'<figure data-compare><div class="strip">{"".join(cells)}</div><figcaption>Crop {n} of '
                     f'{esc(where)}: HR pixels x {x}-{x + size - 1}, y {y}-{y + size - 1}'
                     f'{" (PSNR on the crop)" if gt is not None else ""}.</figcaption></figure>')
    return '\n'.join(parts)


def _fit(img):
    """``img`` downscaled to at most FLOW_WIDTH wide."""
    if img.shape[1] <= FLOW_WIDTH:
        return img
    return cv2.resize(img, (FLOW_WIDTH, round(img.shape[0] * FLOW_WIDTH / img.shape[1])), interpolation=cv2.INTER_AREA)


def flow_wheel(size=96):
    """The colour key of ``torchvision.utils.flow_to_image``: direction as hue, length as saturation (BGR)."""
    from torchvision.utils import flow_to_image
    y, x = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing='ij')
    flow = torch.stack((x, y)) * ((x ** 2 + y ** 2) <= 1)
    return flow_to_image(flow).permute(1, 2, 0).numpy()[..., ::-1]


def flow_html(folder, stem, lq, flow, where, no_flow):
    """The LR frame, the POF's flow (``flow`` (2, h, w), or ``no_flow`` saying why there is none) and
    OpenCV DIS's (``benchmarks.flow.dis_flow``) for the pair ``lq`` (2, 3, h, w) RGB in [0, 1], on one colour scale."""
    from torchvision.utils import flow_to_image
    from hoffr_arch.benchmarks.flow import dis_flow
    if lq is None:
        return '<p>No frame pair (a clip of one frame): no flow.</p>'
    dis = dis_flow(lq[:1].float(), lq[1:].float())[0]
    flows = [f for f in (flow, dis) if f is not None]
    pictures = flow_to_image(torch.stack(flows).float()).permute(0, 2, 3, 1).numpy()[..., ::-1]
    frame = (lq[1].permute(1, 2, 0).numpy()[..., ::-1] * 255).round().clip(0, 255).astype(np.uint8)
    top = max(float(f.norm(dim=0).max()) for f in flows)
    cells = [('the LR input frame', frame, 'frame')]
    if flow is not None:
        cells.append((f'POF flow (mean {float(flow.norm(dim=0).mean()):.2f} LR px)', pictures[0], 'pof'))
    cells.append((f'OpenCV DIS (medium) flow (mean {float(dis.norm(dim=0).mean()):.2f} LR px)', pictures[-1], 'dis'))
    out = []
    for label, img, kind in cells:
        img = _fit(np.ascontiguousarray(img))
        name = folder.image(f'{stem}-{kind}.png', img)
        out.append(f'<figure><img src="{esc(name)}" width="{img.shape[1]}" height="{img.shape[0]}" '
                   f'alt="{esc(label)}, {esc(where)}"><figcaption>{esc(label)}</figcaption></figure>')
    note = '' if flow is not None else f'<p>No POF flow: {esc(no_flow)}.</p>'
    return (f'{note}<figure><div class="strip">{"".join(out)}<figure><img class="key" src="flow-wheel.png" '
            'width="96" height="96" '
            f'alt="colour key: hue is the direction, saturation the length"><figcaption>key (max {top:.2f} LR px)'
            f'</figcaption></figure></div><figcaption>Flow from {esc(where)} back to the frame before it (backward '
            'warping), one colour scale for both.</figcaption></figure>')


def gain_plot(folder, models):
    """PNG: each model's gain over bicubic (dB) frame by frame, clip after clip, first frames marked."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for name, result in models:
        xs, ys, first, start = [], [], [], 0
        for _, gains in result['frame_gains']:
            xs += list(range(start, start + len(gains))) + [np.nan]
            ys += list(gains) + [np.nan]
            first.append((start, gains[0]))
            start += len(gains)
        line, = ax.plot(xs, ys, label=name, lw=1.4)
        ax.plot(*zip(*first), 'o', mfc='none', ms=9, color=line.get_color())
    start = 0
    for clip, gains in models[0][1]['frame_gains']:
        ax.axvline(start - 0.5, color='#999', ls=':', lw=0.8)
        ax.annotate(str(clip), (start, 1), xycoords=('data', 'axes fraction'), va='top', fontsize=8, color='#555')
        start += len(gains)
    ax.axhline(0, color='k', lw=0.8)
    ax.plot([], [], 'o', mfc='none', color='k', label='first frame of a clip (nothing carried)')
    ax.set(xlabel='frame (clip after clip)', ylabel='dB over bicubic')
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc='lower right')
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=90)
    plt.close(fig)
    return folder.write('gains.png', buf.getvalue())


COLUMNS = ('PSNR', 'SSIM', 'PSNR (FMA)', 'SSIM (FMA)', 'tOF', 'first frames', 'later frames', 's/frame', 'frames')


def scores_html(models, extra=None):
    """The scores table: a row per model, then bicubic of the blurry input; ``extra`` {model: {column: text}}."""
    extra = extra or {}
    more = list(dict.fromkeys(k for cols in extra.values() for k in cols))
    head = ''.join(f'<th scope="col">{esc(c)}</th>' for c in COLUMNS + tuple(more))
    rows = []
    for name, r in models:
        (p, s), (pf, sf) = r['model'], r['fma']
        cells = [fmt(p, 2), fmt(s, 4), fmt(pf, 2), fmt(sf, 4), fmt(r.get('tof'), 3),
                 f'{r["gain_first"]:+.2f}', f'{r["gain_later"]:+.2f}' if np.isfinite(r['gain_later']) else '&ndash;',
                 fmt(r['seconds'] / max(r['frames'], 1), 3), str(r['frames'])]
        cells += [esc(extra.get(name, {}).get(k, '')) for k in more]
        rows.append(f'<tr><th scope="row">{esc(name)}</th>' + ''.join(f'<td>{c}</td>' for c in cells) + '</tr>')
    (bp, bs) = models[0][1]['bicubic']
    rows.append(f'<tr><th scope="row">bicubic x4 of the blurry input</th><td>{fmt(bp, 2)}</td><td>{fmt(bs, 4)}</td>'
                + '<td></td>' * (len(COLUMNS) - 2 + len(more)) + '</tr>')
    return (f'<table><caption>Scores (RGB; BasicSR: all frames, no border crop; FMA-Net: first and last frame of '
            f'each clip left out, 4-pixel border crop; first/later frames: dB over bicubic)</caption><thead><tr>'
            f'<th scope="col">model</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>')


def facts_html(facts):
    return '<dl>' + ''.join(f'<dt>{esc(k)}</dt><dd>{esc(v)}</dd>' for k, v in facts) + '</dl>'


def page(title, body):
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><link rel="icon" href="data:,"><title>{esc(title)}'
            f'</title><style>{CSS}</style></head><body><header><h1>{esc(title)}</h1></header><main>{body}</main>'
            f'<footer><p>Written by hoffr_arch.report, {time.strftime("%Y-%m-%d %H:%M")}.</p></footer>'
            f'<script>{SCRIPT}</script></body></html>\n')


def clip_columns(models, index):
    """[(label, image)] of the ``index``-th clip's kept frame: bicubic, each model (not a model named
    'bicubic'), ground truth; the picture of the first model that has one, for its LR pair and flow."""
    shown = [(name, r['pictures'][index]) for name, r in models if r.get('pictures') and name != 'bicubic']
    base = next(r['pictures'][index] for _, r in models if r.get('pictures'))
    columns = [('bicubic', base['bicubic'])] + [(name, pic['output']) for name, pic in shown]
    flowed = next((pic for _, pic in shown if pic.get('flow') is not None), base)
    return columns + [('ground truth', base['gt'])], base, flowed


def write_report(out_dir, models, title, facts=(), extra=None, no_flow='no POF in this run'):
    """The report of ``models`` [(name, ``evaluation.evaluate`` result)] on one test set; the crops and
    flow come from the results run with ``pictures=True``. Returns the path of index.html."""
    folder = Folder(out_dir)
    folder.write('flow-wheel.png', cv2.imencode('.png', flow_wheel())[1].tobytes())
    body = [f'<section aria-labelledby="run"><h2 id="run">Run</h2>{facts_html(facts)}</section>',
            f'<section aria-labelledby="scores"><h2 id="scores">Scores</h2>{scores_html(models, extra)}</section>']
    plotted = [(n, r) for n, r in models if r.get('frame_gains')]
    if plotted:
        summary = '; '.join(f'{n}: first frames {r["gain_first"]:+.2f} dB, later frames {r["gain_later"]:+.2f} dB'
                            for n, r in plotted)
        body.append(f'<section aria-labelledby="gains"><h2 id="gains">Gain over bicubic, frame by frame</h2><figure>'
                    f'<img src="{gain_plot(folder, plotted)}" alt="Plot of the gain over bicubic of every frame. '
                    f'{esc(summary)}."><figcaption>dB over bicubic per frame, clips separated by dotted lines; '
                    f'circles: each clip\'s first frame, which has no previous output to draw on ({esc(summary)}).'
                    f'</figcaption></figure></section>')
    with_pictures = next((r['pictures'] for _, r in models if r.get('pictures')), [])
    for k, pic in enumerate(with_pictures):
        columns, base, flowed = clip_columns(models, k)
        where = f'clip {pic["clip"]}, frame {pic["index"]} of {pic["frames"]}'
        stem = f'clip{k}'
        body.append(f'<section aria-labelledby="{stem}"><h2 id="{stem}">Clip {esc(pic["clip"])}</h2>'
                    f'<h3>Where the models differ most ({esc(where)})</h3>{crops_html(folder, stem, columns, where)}'
                    f'<h3>Motion: the POF against OpenCV DIS</h3>'
                    f'{flow_html(folder, stem, flowed.get("lq"), flowed.get("flow"), where, no_flow)}</section>')
    return folder.finish(page(title, '\n'.join(body)))


class Recorder:
    """A step callable (``hoffr_arch.streaming``) that passes every frame through and keeps, for each clip
    (frames from a ``state`` of None on), the pair of LR frames (KEEP - 1, KEEP) (a shorter clip's last
    pair) with the output of the second, and the seconds of every step (synchronised on CUDA).
    ``pof``: the network's POF, for the flow of that pair (None: a graph backend, no flow output)."""

    def __init__(self, step, pof=None):
        self.step, self.pof, self.clips, self.seconds = step, pof, [], []

    def __call__(self, lq, state):
        start = time.perf_counter()
        hr, new_state, deblurred = self.step(lq, state)
        if lq.device.type == 'cuda':
            torch.cuda.synchronize(lq.device)
        self.seconds.append(time.perf_counter() - start)
        if state is None:
            self.clips.append({'frames': 0, 'cur': None})
        clip = self.clips[-1]
        if clip['frames'] <= KEEP:
            from hoffr_arch.streaming import quantize
            img = hr[0] if hr.dtype == torch.uint8 else quantize(hr[0])
            clip.update(index=clip['frames'], prev=clip['cur'], cur=lq[0].float().cpu().clone(),
                        hr=np.ascontiguousarray(img.permute(1, 2, 0).cpu().numpy()[..., ::-1]))
        clip['frames'] += 1
        return hr, new_state, deblurred

    def picture(self, clip):
        """The kept frame of one clip as ``write_report``'s pictures hold it (no ground truth)."""
        from basicsr.utils import tensor2img
        from basicsr.utils.matlab_functions import imresize
        scale = clip['hr'].shape[1] // clip['cur'].shape[-1]
        lq = None if clip['prev'] is None else torch.stack((clip['prev'], clip['cur']))
        flow = None
        if lq is not None and self.pof is not None:
            with torch.inference_mode():
                device = next(self.pof.parameters()).device
                flow = self.pof(lq[:1].to(device), lq[1:].to(device))['lr'][0].float().cpu()
        return {'index': clip['index'], 'frames': clip['frames'], 'output': clip['hr'], 'lq': lq, 'flow': flow,
                'bicubic': tensor2img(imresize(clip['cur'], scale).clamp(0, 1))}


def write_infer_report(out_dir, recorder, names, facts=(), no_flow='the graph backend has no flow output'):
    """The report of an inference run (no ground truth): per input (``names``, in the order they ran)
    bicubic of the input against the output where they differ most, the flow, and the speed."""
    folder = Folder(out_dir)
    folder.write('flow-wheel.png', cv2.imencode('.png', flow_wheel())[1].tobytes())
    seconds = recorder.seconds
    speed = [('frames', str(len(seconds)))]
    if seconds:
        later = seconds[1:] or seconds
        speed += [('median s/frame', f'{np.median(seconds):.3f} ({1 / max(np.median(seconds), 1e-9):.2f} frames/s)'),
                  ('first frame (with any warm-up)', f'{seconds[0]:.3f} s'),
                  ('later frames, mean', f'{np.mean(later):.3f} s/frame')]
    body = [f'<section aria-labelledby="run"><h2 id="run">Run</h2>{facts_html(list(facts) + speed)}</section>']
    for k, (name, clip) in enumerate(zip(names, recorder.clips)):
        pic = recorder.picture(clip)
        where = f'{name}, frame {pic["index"]}'
        columns = [('bicubic of the input', pic['bicubic']), ('output', pic['output'])]
        stem = f'clip{k}'
        body.append(f'<section aria-labelledby="{stem}"><h2 id="{stem}">{esc(name)}</h2>'
                    f'<h3>Where the output differs most from bicubic ({esc(where)})</h3>'
                    f'{crops_html(folder, stem, columns, where)}<h3>Motion: the POF against OpenCV DIS</h3>'
                    f'{flow_html(folder, stem, pic["lq"], pic["flow"], where, no_flow)}</section>')
    return folder.finish(page('HOFFR inference report', '\n'.join(body)))
