"""``--report DIR`` (``hoffr_arch.report``): the offline HTML report of an evaluation and of an inference
run, opened in a real browser (Debian's headless ``chromium``, driven over the DevTools protocol on
a pipe: no driver, no extra package): every image decodes, no console error, the before/after slider
is built, the screenshot is not blank. Without a browser that test is skipped, saying why."""
import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
import warnings
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import make_reds, smooth_frames, write_clip
from datasets_lmdb.__main__ import main as datasets_cli
from hoffr_arch.report import MARKER, choose_crops

BROWSERS = ('chromium', 'chromium-browser', 'google-chrome')


class DevTools:
    """A headless Chromium spoken to over ``--remote-debugging-pipe`` (fd 3 in, fd 4 out, NUL-separated JSON)."""

    def __init__(self, exe, profile):
        to_chrome, self._out = os.pipe()
        self._in, from_chrome = os.pipe()

        def child():  # the pipe ends as fds 3 and 4, whatever numbers they had here
            a, b = fcntl.fcntl(to_chrome, fcntl.F_DUPFD, 10), fcntl.fcntl(from_chrome, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)
        self.proc = subprocess.Popen([exe, '--headless', '--no-sandbox', '--disable-gpu', '--remote-debugging-pipe',
                                      '--no-first-run', '--window-size=1280,900', f'--user-data-dir={profile}'],
                                     pass_fds=(3, 4), preexec_fn=child, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buf, self._id, self.events, self.session = b'', 0, [], None

    def send(self, method, timeout=20, **params):
        self._id += 1
        msg = {'id': self._id, 'method': method, 'params': params}
        if self.session:
            msg['sessionId'] = self.session
        os.write(self._out, json.dumps(msg).encode() + b'\0')
        reply = self._wait(lambda m: m.get('id') == self._id, timeout)
        assert 'error' not in reply, (method, reply['error'])
        return reply['result']

    def _wait(self, match, timeout):
        deadline = time.monotonic() + timeout
        while True:
            while b'\0' in self._buf:
                raw, self._buf = self._buf.split(b'\0', 1)
                msg = json.loads(raw)
                if match(msg):
                    return msg
                self.events.append(msg)
            left = deadline - time.monotonic()
            assert left > 0 and select.select([self._in], [], [], left)[0], 'no answer from chromium'
            chunk = os.read(self._in, 1 << 20)
            assert chunk, 'chromium closed the pipe'
            self._buf += chunk

    def open(self, url):
        """Navigate a new tab to ``url`` and wait for its load event."""
        self.session = None
        target = self.send('Target.createTarget', url='about:blank')['targetId']
        self.session = self.send('Target.attachToTarget', targetId=target, flatten=True)['sessionId']
        for domain in ('Page', 'Runtime', 'Log'):
            self.send(f'{domain}.enable')
        self.send('Page.navigate', url=url)
        if not any(e.get('method') == 'Page.loadEventFired' for e in self.events):
            self._wait(lambda m: m.get('method') == 'Page.loadEventFired', 20)

    def errors(self):
        """Console errors, uncaught exceptions and failed loads seen so far."""
        out = []
        for e in self.events:
            m, p = e.get('method'), e.get('params', {})
            if m == 'Runtime.consoleAPICalled' and p['type'] in ('error', 'assert'):
                out.append(p['args'])
            elif m == 'Runtime.exceptionThrown' or (m == 'Log.entryAdded' and p['entry']['level'] == 'error'):
                out.append(p)
        return out

    def eval(self, expression):
        return self.send('Runtime.evaluate', expression=expression, returnByValue=True)['result']['value']

    def close(self):
        try:
            self.session = None
            self.send('Browser.close', timeout=5)
        except AssertionError:
            pass
        self.proc.kill()
        self.proc.wait()
        os.close(self._in)
        os.close(self._out)


@pytest.fixture(scope='module')
def browser(tmp_path_factory):
    exe = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if exe is None:
        reason = 'no chromium on PATH (apt-get install -y chromium): the report is not checked in a browser'
        warnings.warn(reason)  # in the run's warnings summary as well, so the skip is never silent
        pytest.skip(reason)
    tools = DevTools(exe, tmp_path_factory.mktemp('chromium-profile'))
    yield tools
    tools.close()


def check_in_browser(browser, index):
    """Load ``index`` from file://: every image decoded, the slider built, no console error, not blank."""
    browser.events.clear()
    browser.open(index.resolve().as_uri())
    images = browser.eval('[...document.images].map(i => [i.getAttribute("src"), i.complete, i.naturalWidth])')
    assert images and all(ok and width > 0 for _, ok, width in images), images
    assert browser.eval('document.querySelectorAll(".slider input, .controls input[type=range]").length') > 0
    assert browser.errors() == []
    shot = base64.b64decode(browser.send('Page.captureScreenshot', format='png')['data'])
    img = cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR)
    colours = np.unique(img.reshape(-1, 3).astype(np.int64) @ np.array([1, 256, 65536]))
    assert img.std() > 10 and len(colours) > 100  # text and pictures, not a blank page
    return images


class Page(HTMLParser):
    """The page as it reads without JavaScript: its images (src, alt) and headings."""

    def __init__(self, text):
        super().__init__()
        self.images, self.headings, self._h = [], [], False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == 'img':
            self.images.append(dict(attrs))
        self._h = tag in ('h1', 'h2', 'h3')

    def handle_data(self, data):
        if self._h:
            self.headings.append(data)
            self._h = False


def test_crops_go_where_the_images_differ():
    a = np.full((64, 96, 3), 128, np.uint8)
    b = a.copy()
    b[40:56, 70:90] = 255  # the only place they differ
    corners = choose_crops([a, b], 16, 3)
    y, x = corners[0]
    assert 40 - 16 < y <= 40 and 70 - 16 < x <= 74 and len(corners) == 3
    assert all(abs(y - y2) >= 16 or abs(x - x2) >= 16 for y2, x2 in corners[1:])  # no overlap


def test_evaluation_and_infer_reports_open_in_a_browser(tmp_path, checkpoint, browser, capsys):
    from hoffr_arch.evaluation import main as evaluation
    from hoffr_arch.infer import main as infer
    weights, _ = checkpoint
    src = make_reds(tmp_path / 'REDS', {'000': 3, '001': 3}, h=64, w=96)
    assert datasets_cli(['reds', '--input', str(src), '--output', str(tmp_path / 'lmdb')]) == 0
    out = tmp_path / 'report'
    result = evaluation(['--data', str(tmp_path / 'lmdb' / 'train'), '--model', str(weights), '--device', 'cpu',
                         '--report', str(out)])
    assert np.isfinite(result['tof']) and len(result['pictures']) == 2 and result['pictures'][0]['flow'] is not None
    page = Page((out / 'index.html').read_text())
    assert all(img.get('alt') for img in page.images)
    assert {'Scores', 'Gain over bicubic, frame by frame', 'Clip 000', 'Clip 001'} <= set(page.headings)
    assert sum('POF flow' in img['alt'] for img in page.images) == 2
    images = check_in_browser(browser, out / 'index.html')
    assert {Path(src).name for src, _, _ in images} <= set(json.loads((out / MARKER).read_text())['files'])

    frames = tmp_path / 'frames'
    write_clip(frames, smooth_frames(2, 24, 40, 5))
    inferred = tmp_path / 'infer-report'
    assert infer(['--model', str(weights), '--input', str(frames), '--output', str(tmp_path / 'hr'), '--device', 'cpu',
                  '--no-warm-up', '--report', str(inferred)]) == 0
    text = (inferred / 'index.html').read_text()
    assert 'fp32 on cpu' in text and 'median s/frame' in text and 'POF flow' in text
    check_in_browser(browser, inferred / 'index.html')


def test_report_folder_is_ours_or_refused(tmp_path, checkpoint, capsys):
    """A folder holding someone's files is refused (one line, exit 2, before any work; the files stay);
    a report of ours is rewritten in place, what only the earlier one had removed."""
    from hoffr_arch.infer import main as infer
    weights, _ = checkpoint
    frames = tmp_path / 'frames'
    write_clip(frames, smooth_frames(2, 16, 24, 1))
    theirs = tmp_path / 'notes'
    theirs.mkdir()
    (theirs / 'todo.txt').write_text('mine')
    args = ['--model', str(weights), '--input', str(frames), '--device', 'cpu', '--no-warm-up']
    assert infer(args + ['--output', str(tmp_path / 'a'), '--report', str(theirs)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'not a report of ours' in err[0] and not (tmp_path / 'a').exists()
    assert [p.name for p in theirs.iterdir()] == ['todo.txt'] and (theirs / 'todo.txt').read_text() == 'mine'
    assert infer(args + ['--output', str(tmp_path / 'b'), '--report', str(theirs / 'todo.txt')]) == 2
    ours = tmp_path / 'ours'
    assert infer(args + ['--output', str(tmp_path / 'c'), '--report', str(ours)]) == 0
    (ours / 'clip7-crop1-0.png').write_bytes(b'x')  # as if an earlier report had more clips
    listed = json.loads((ours / MARKER).read_text())
    (ours / MARKER).write_text(json.dumps({'files': listed['files'] + ['clip7-crop1-0.png']}))
    assert infer(args + ['--output', str(tmp_path / 'd'), '--report', str(ours)]) == 0
    assert not (ours / 'clip7-crop1-0.png').exists() and (ours / 'index.html').is_file()
    assert not [p for p in ours.iterdir() if p.name.endswith('.tmp')]
    assert 'No POF flow' not in (ours / 'index.html').read_text()


def test_recorder_without_a_flow_output_says_so(tmp_path):
    """``infer --backend onnxruntime``: the step has no flow output; the report says so and still shows
    DIS's flow, the kept pair (frames 7 and 8 of a longer clip) and the speed."""
    import torch
    from basicsr.utils.matlab_functions import imresize
    from hoffr_arch.report import Recorder, write_infer_report
    recorder = Recorder(lambda lq, state: (imresize(lq[0], 4)[None].clamp(0, 1), (state or 0) + 1, lq))
    frames = [torch.from_numpy(f[..., ::-1].copy()).permute(2, 0, 1)[None].float() / 255
              for f in smooth_frames(12, 24, 32, 3)]
    state = None
    for lq in frames:
        _, state, _ = recorder(lq, state)
    clip = recorder.clips[0]
    assert (clip['frames'], clip['index']) == (12, 8) and torch.equal(clip['prev'], frames[7][0])
    index = write_infer_report(tmp_path / 'r', recorder, ['clip.mp4'], [('compute path', 'onnxruntime fp32 on cpu')])
    text = index.read_text()
    assert 'No POF flow: the graph backend has no flow output.' in text and 'OpenCV DIS' in text
    assert 'median s/frame' in text and 'POF flow (mean' not in text
