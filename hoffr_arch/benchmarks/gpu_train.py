"""Weights that grow with every lent GPU: one device call that continues the shipped weights.

    bash scripts/gpu_train.sh --prepare                        # here, online: wheels + corpus sources
    bash scripts/gpu_train.sh --out $OUT                       # the device call (9 minutes in all)
    bash scripts/gpu_train.sh --device cpu --minutes 1 --out o # dry run

1. builds the starter corpus (README, "Starter weights": same sources, clip names and exposure draws)
   with every core: sources cut into jobs of whole clips, synthesised in parallel processes, packed;
2. measures training samples/s at a few batch sizes (``gpu_check.train_speed``, random clips, POF
   frozen as in the recipe) and takes the smallest batch within 10% of the best. On a GPU that is
   the batch sweep (``batch_sweep``, ``--sweep-seconds``, at most 3 minutes with its start-up): HOFFR-S
   at this run's shape and the default HOFFR at the REDS shape, eager and compiled (CUDA graphs,
   ``train.compile: reduce-overhead``), fp32 and bf16, samples/s and peak memory. It runs in its own
   process on two cores of its own while the corpus is built on the others; the training takes its
   fastest fp32 setting, compiled only where that measured more samples in the minutes left, its
   compiling included (bf16 is reported, not taken: the recipe trains in fp32);
3. sizes the run before the option file is written: ``total_iter`` from that speed and the minutes
   left (the cosine period is ``total_iter``), learning rate scaled with the square root of the
   batch, a short linear warm-up;
4. trains through BasicSR's runner (``hoffr_arch.train --time-budget``, a checkpoint every minute)
   from the given weights (``path.pretrain_network_g``, strict; EMA from their EMA), copying each
   checkpoint's EMA weights, fp32, to ``--out`` as they come (a call cut short still returns them);
5. scores the new EMA weights on the held-out sources (``hoffr_arch.evaluation``, on the CPU as the
   model card was: the shipped weights are scored while training runs) against the shipped weights
   and bicubic, and packs a fp16 release candidate only when they beat the shipped ones.

``--out`` receives at most 7 files (the device returns 8): ``gpu_train.log``, ``train_basicsr.log``,
``train.yml``, ``gpu_train.md`` (tables: the sweep's, the model card's ledger row), ``ledger.json`` (the
ledger entry, with the sweep's rows), ``<weights>_fp32.pth`` (the continuing copy) and, when it wins,
``<weights>.pth`` (fp16 release).
``--model-size default`` trains the 3.6 M HOFFR instead: its own ledger, started from the shipped POF
(or from ``assets/HOFFR_x4_fp32.pth`` once one is shipped), compared with HOFFR-S as well.
"""
import argparse
import concurrent.futures as cf
import hashlib
import json
import math
import multiprocessing
import os
import shlex
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

from hoffr_arch._entry import project_root
from hoffr_arch.benchmarks import batch_sweep
from hoffr_arch.benchmarks.gpu_check import final_checkpoint, point_to_corpus, score_weights, train_speed
from hoffr_arch.checkpoint import CheckpointError, pack_release, read_checkpoint, resolve_asset

ASSETS = Path(__file__).resolve().parents[1] / 'assets'
BUNDLED = ASSETS / 'sam2_01_dog.mp4'
SIZES = {  # the release file, its fp32 copy, the YAML its recipe comes from (network, learning rate)
    's': dict(label='HOFFR-S', release='HOFFR_S_x4.pth', fp32='HOFFR_S_x4_fp32.pth', yaml='train_HOFFR_S_x4.yml'),
    'default': dict(label='HOFFR', release='HOFFR_x4.pth', fp32='HOFFR_x4_fp32.pth', yaml='train_HOFFR_REDS.yml'),
}
RECIPE = 'train_HOFFR_S_x4.yml'  # data, losses, EMA, frozen POF: the starter recipe for both sizes
CLIP_LENGTH, EXPOSURE = 25, (0.5, 2.0)  # the corpus command's --clip-length and --exposure
VIDEO_FRAMES = {'sam2_01_dog': 289, 'bikes': 250}  # a video that cannot be decoded still holds its clip numbers
SWEEP_CORES = 2  # cores the batch sweep gets to itself (launch-bound timing needs a core not shared)
CONTINUE_LR = 0.25  # a continued run restarts its cosine at a quarter of the recipe's peak rate (a choice, unmeasured)


class Log:
    """Lines with the seconds since the call started (``$GPU_TRAIN_START``, set by the shell
    script before installing), on stdout and in ``out/gpu_train.log``."""

    def __init__(self, out):
        self.start = float(os.environ.get('GPU_TRAIN_START') or time.time())
        self.path = Path(out) / 'gpu_train.log'
        self.marks = {}

    def elapsed(self):
        return time.time() - self.start

    def __call__(self, msg, mark=None):
        if mark:
            self.marks[mark] = round(self.elapsed(), 1)
        line = f'[{self.elapsed():6.1f} s] {msg}'
        print(line, flush=True)
        with open(self.path, 'a') as f:
            f.write(line + '\n')


def corpus_sources(src):
    """The starter corpus's sources as ``(path, options, name)``, in the README command's order (clip
    names and each clip's exposure draw follow from it); ``src`` holds ``bedroom/``, ``videos/bikes.mp4``,
    ``basketballpass/`` and ``vimeo_septuplets/<seq>/<id>/`` as ``../shared/data`` does."""
    src = Path(src)
    vimeo = sorted(p for p in (src / 'vimeo_septuplets').glob('*/*') if p.is_dir())
    sources = [(BUNDLED, {'resize': '640x360'}, 'sam2_01_dog'), (src / 'bedroom', {'resize': '640x360'}, 'bedroom'),
               (src / 'videos' / 'bikes.mp4', {}, 'bikes'),
               (src / 'basketballpass', {'split': 'val'}, 'basketballpass')]
    sources += [(d, {'split': 'val', 'clip_length': 7}, 'vimeo') for d in vimeo]
    missing = [str(p) for p, _, _ in sources[:4] if not p.exists()]
    missing += [] if vimeo else [str(src / 'vimeo_septuplets')]
    if missing:
        raise FileNotFoundError(f'{missing[0]}: corpus source missing (bash scripts/gpu_train.sh --prepare copies '
                                'them to datasets/gpu_sources)')
    return sources


def try_decode(path, resize, folder, max_frames=None):
    """``decode_video``'s folder, or the reason it failed (a missing decoder must not cost the call)."""
    try:
        return decode_video(path, resize, folder, max_frames)
    except Exception as err:  # noqa: BLE001  (OpenCV and PyAV raise many kinds)
        return f'{path}: {type(err).__name__}: {err}'


def decode_video(path, resize, folder, max_frames=None):
    """A video's frames as ``folder/%08d.bmp``, resized as ``datasets_lmdb synth`` would (``read_frames``);
    through OpenCV's FFmpeg where PyAV is missing (the GPU machine): the same H.264 decoder (the bundled
    clip's frames came out identical to PyAV's here)."""
    import cv2
    from hoffr_arch.data.video_io import read_frames
    size = tuple(int(v) for v in resize.split('x')) if resize else None
    try:
        import av  # noqa: F401
        frames = read_frames(path, max_frames=max_frames, resize=size)
    except ImportError:
        cap, frames = cv2.VideoCapture(str(path)), []
        while max_frames is None or len(frames) < max_frames:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(cv2.resize(img, size, interpolation=cv2.INTER_AREA) if size else img)
        cap.release()
    if not frames:
        raise FileNotFoundError(f'{path}: no frames decoded')
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(frames):
        cv2.imwrite(str(folder / f'{i:08d}.bmp'), img)
    return folder


def spec(path, opts):
    """``PATH@key=value,...`` for ``datasets_lmdb.synth``."""
    extra = ','.join(f'{k}={v}' for k, v in opts.items())
    return f'{path}@{extra}' if extra else str(path)


def plan_jobs(sources, max_frames=None, clips_per_job=1):
    """Cut the sources into synthesis jobs of whole clips: ``[(specs, first_clip, source name of each
    clip)]``, ``first_clip`` as one ``synth`` call over all sources numbers them (exposure draws follow).
    A source whose path is None (a video that could not be decoded) makes no job but keeps its numbers."""
    from hoffr_arch.data.frame_io import list_frames
    jobs, index, small = [], 0, []
    for path, opts, name in sources:
        n = VIDEO_FRAMES[name] if path is None else len(list_frames(Path(path)))
        n = min(n, max_frames) if max_frames else n
        length = opts.get('clip_length', CLIP_LENGTH)
        clips = math.ceil(n / length)
        if path is None:
            index += clips
            continue
        if clips == 1:  # one-clip sources (the Vimeo septuplets) share jobs, four a job
            small.append((spec(path, dict(opts, max_frames=n)), index, name))
        for first in range(0, clips, clips_per_job) if clips > 1 else ():
            start, count = first * length, min(clips_per_job * length, n - first * length)
            jobs.append(([spec(path, dict(opts, start=start, max_frames=count))], index + first,
                         [name] * min(clips_per_job, clips - first)))
        index += clips
    groups = []
    for item in small:  # up to four a job, consecutive clip numbers (one synth call numbers them in a row)
        if groups and len(groups[-1]) < 4 and groups[-1][-1][1] + 1 == item[1]:
            groups[-1].append(item)
        else:
            groups.append([item])
    jobs += [([g[0] for g in group], group[0][1], [g[2] for g in group]) for group in groups]
    return jobs


def job_frames(spec_text):
    """The frames a job's source spec asks for (its ``max_frames``): the longest jobs go first."""
    return int(spec_text.rpartition('max_frames=')[2].split(',')[0])


def synth_job(specs, root, first_clip, threads):
    """One job of ``plan_jobs`` (run in a worker process)."""
    from datasets_lmdb import synth
    return synth(specs, root, exposure=EXPOSURE, clip_length=CLIP_LENGTH, overwrite=True, workers=threads,
                 first_clip=first_clip)


def worker_pool(n):
    """``n`` worker processes forked from this one (no second import of torch and BasicSR in each: that
    is 8 CPU-seconds a worker); a forking pool starts all its workers at its first task."""
    return cf.ProcessPoolExecutor(n, mp_context=multiprocessing.get_context('fork'))


def merge_reds(roots, target):
    """Move the clip folders of several REDS-layout roots into one."""
    for root in roots:
        for clip in sorted(Path(root).glob('*_*/**/[0-9][0-9][0-9]')):
            dest = target / clip.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(clip, dest)


def build_corpus(src, work, log, max_frames=None, cores=None):
    """The starter corpus packed under ``work/corpus`` (``train/``, ``val/``, ``sources.json``: clip ->
    source), reused when a complete one built with the same ``max_frames`` is there."""
    from datasets_lmdb import pack, reds_plan
    corpus, cores = Path(work) / 'corpus', cores or os.cpu_count() or 1
    stamp = corpus / 'complete.json'
    if stamp.exists() and json.loads(stamp.read_text()).get('max_frames') == max_frames:
        log(f'corpus: reusing {corpus}', mark='data')
        return corpus
    shutil.rmtree(work / 'synth', ignore_errors=True)
    sources = corpus_sources(src)
    videos = [(i, p, o) for i, (p, o, _) in enumerate(sources) if Path(p).is_file()]
    with worker_pool(cores) as pool:
        done = pool.map(try_decode, [p for _, p, _ in videos], [o.get('resize') for _, _, o in videos],
                        [work / 'synth' / 'decoded' / Path(p).stem for _, p, _ in videos], [max_frames] * len(videos))
        for (i, _, opts), folder in zip(videos, list(done)):
            if isinstance(folder, str):
                log(f'corpus: WITHOUT {sources[i][2]} (its clip numbers kept free): {folder}')
            sources[i] = (None if isinstance(folder, str) else folder,
                          {k: v for k, v in opts.items() if k != 'resize'}, sources[i][2])
        log(f'corpus: {len(videos)} videos decoded')
        jobs = sorted(plan_jobs(sources, max_frames), key=lambda j: -sum(job_frames(s) for s in j[0]))
        roots = [work / 'synth' / f'job{j:02d}' for j in range(len(jobs))]
        threads = max(1, cores // max(1, len(jobs)))
        list(pool.map(synth_job, [j[0] for j in jobs], roots, [j[1] for j in jobs], [threads] * len(jobs)))
    log(f'corpus: {len(jobs)} synthesis jobs done')
    merge_reds(roots, work / 'synth' / 'reds')
    shutil.rmtree(corpus, ignore_errors=True)
    pack(reds_plan(work / 'synth' / 'reds'), corpus, workers=cores)
    names = {f'{first + k:03d}': name for _, first, names in jobs for k, name in enumerate(names)}
    (corpus / 'sources.json').write_text(json.dumps(names, indent=1))
    stamp.write_text(json.dumps({'max_frames': max_frames}))
    shutil.rmtree(work / 'synth', ignore_errors=True)
    log(f'corpus: packed {corpus}', mark='data')
    return corpus


def start_point(size, weights=None):
    """(weights file or None, network options, recipe YAML) of a run of ``size``: ``weights``, else the
    shipped fp32 copy; the default HOFFR without one of its own starts from the shipped POF alone."""
    info = SIZES[size]
    with open(project_root() / 'options' / 'train' / info['yaml']) as f:
        recipe = yaml.safe_load(f)
    path = Path(weights) if weights else resolve_asset(f'hoffr_arch/assets/{info["fp32"]}')
    if weights is None and not path.exists():
        if size == 's':
            raise CheckpointError(f'{path}: the fp32 copy of the shipped weights is missing')
        network_g = dict(recipe['network_g'], pof_path=str(resolve_asset(recipe['network_g']['pof_path'])))
        return None, network_g, recipe
    ckpt = read_checkpoint(path)
    if 'network_g' not in ckpt or 'params_ema' not in ckpt:
        raise CheckpointError(f'{path}: not a release file (params_ema and network_g)')
    return path.resolve(), ckpt['network_g'], recipe


def probe(network_g, device, batches, num_frame, lr_size, scale, log, iters):
    """Training samples/s of the network at each batch size (random clips, the POF frozen as in the
    recipe; one warm-up step on a CPU, three on a GPU); a batch that runs out of memory ends the list."""
    from basicsr.archs import build_network
    rows = []
    for batch in batches:
        torch.manual_seed(0)
        try:
            its, peak = train_speed(build_network(dict(network_g, pof_path=None)), device, iters, batch, num_frame,
                                    lr_size, scale=scale, warmup=3 if device.type == 'cuda' else 1, frozen_pof=True)
        except torch.cuda.OutOfMemoryError:
            log(f'probe: batch {batch} runs out of memory')
            break
        finally:
            if device.type == 'cuda':
                torch.cuda.empty_cache()
        rows.append((batch, its * batch, peak))
        log(f'probe: batch {batch}: {its * batch:.2f} samples/s ({its:.2f} it/s' +
            (f', peak {peak:.0f} MiB)' if peak == peak else ')'))
    return rows


def start_sweep(args, work, log):
    """The batch sweep (``batch_sweep``) started in its own process, on ``SWEEP_CORES`` cores of its own
    where there are more than twice as many (this process keeps the others until ``end_sweep``); its
    rows go to ``work/batch_sweep.jsonl``, its output to ``work/batch_sweep.log``. None when
    ``--sweep-seconds`` is 0."""
    if args.sweep_seconds <= 0:
        return None
    rows = Path(work) / 'batch_sweep.jsonl'
    rows.unlink(missing_ok=True)
    cmd = [sys.executable, '-m', 'hoffr_arch.benchmarks.batch_sweep', '--out', str(rows), '--device', args.device,
           '--seconds', str(args.sweep_seconds), '--num-frame', str(args.num_frame),
           '--lr-size', str(args.gt_size // 4)] + shlex.split(args.sweep_args)
    with open(Path(work) / 'batch_sweep.log', 'w') as output:
        proc = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT, cwd=project_root())
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) > 2 * SWEEP_CORES:
        os.sched_setaffinity(proc.pid, cores[:SWEEP_CORES])
        os.sched_setaffinity(0, cores[SWEEP_CORES:])
    log(f'sweep: started ({args.sweep_seconds:g} s for its rows, cut at {args.sweep_seconds + 30:g} s)')
    return dict(proc=proc, rows=rows, cap=time.time() + args.sweep_seconds + 30, cores=cores)


def end_sweep(sweep, log, stop=False):
    """After the corpus: every core to both processes again; wait for the sweep until its cap (then end
    it: the rows it finished are kept; ``stop``: end it now). Returns its rows."""
    if sweep is None:
        return []
    proc = sweep['proc']
    if stop:
        proc.kill()
    os.sched_setaffinity(0, sweep['cores'])
    try:  # the corpus is built: the sweep's main thread (and the compile workers it starts) may use every core
        os.sched_setaffinity(proc.pid, sweep['cores'])
    except OSError:  # it has ended
        pass
    try:
        proc.wait(timeout=max(0., sweep['cap'] - time.time()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        log('sweep: cut at its cap')
    rows = batch_sweep.read_rows(sweep['rows'])
    log(f'sweep: {len(rows)} rows (exit {proc.returncode})\n' + batch_sweep.table(rows), mark='sweep')
    return rows


def sweep_decision(rows, size, shape, minutes, margin=1.1):
    """(probe rows, compile mode, why) from the sweep's fp32 rows of the training's network at its
    ``shape`` (num_frame, LR size): the eager rows as ``probe`` gives them, and ``reduce-overhead``
    where the compiled rows' pick (``choose_batch``) trains ``margin`` times the samples of the eager
    pick in ``minutes``, less the longest compiled row's seconds (compiling again in the training's
    process, which the on-disk caches shorten). ([], 'none', why) when the sweep has no eager row."""
    eager, compiled = (sweep_rows(rows, size, shape, v) for v in ('fp32 eager', 'fp32 compiled'))
    if not eager:
        return [], 'none', 'no eager row of this network and shape in the sweep'
    batch, sps = choose_batch(eager)
    if not compiled:
        return eager, 'none', 'no compiled row in the sweep'
    c_batch, c_sps = choose_batch(compiled)
    cost = max(r['seconds'] for r in rows if r.get('size') == size and r['variant'] == 'fp32 compiled'
               and not r.get('failed')) / 60
    gain = c_sps * max(0., minutes - cost) / (sps * minutes)
    why = (f'compiled batch {c_batch}: {c_sps:.1f} samples/s against eager batch {batch}: {sps:.1f}, '
           f'{gain:.2f}x the samples in {minutes:.1f} min with {cost * 60:.0f} s of compiling')
    if gain >= margin:
        return compiled, 'reduce-overhead', why
    return eager, 'none', why


def sweep_rows(rows, size, shape, variant):
    """The sweep's rows of ``size`` at ``shape`` (num_frame, LR size) in ``variant`` that ran, as
    ``probe`` gives its rows: [(batch, samples/s, peak MiB)]."""
    nan = float('nan')
    return [(r['batch'], r['samples_per_s'], nan if r['peak_mib'] is None else r['peak_mib']) for r in rows
            if r.get('size') == size and r['variant'] == variant and not r.get('failed')
            and (r['num_frame'], r['lr_size']) == shape]


def choose_batch(rows, within=0.9):
    """The smallest batch whose samples/s is within ``within`` of the best: nearly the same samples,
    more updates. Returns (batch, samples/s)."""
    if len(rows) == 1:
        return rows[0][:2]
    best = max(sps for _, sps, _ in rows)
    return next((b, sps) for b, sps, _ in rows if sps >= within * best)


def plan(args, sps, batch, recipe, started, minutes):
    """(total_iter, warmup_iter, learning rate) for ``minutes`` of training at ``sps`` samples/s:
    the schedule ends when the minutes do (3% kept for checkpoints and logging)."""
    total = args.iters or max(2, int(sps / batch * minutes * 60 * 0.97))
    base = recipe['train']['optim_g']['lr'] * (CONTINUE_LR if started else 1)
    ref = recipe['datasets']['train']['batch_size_per_gpu']
    lr = args.lr if args.lr is not None else base * math.sqrt(batch / ref)
    return total, max(1, min(200, round(0.05 * total))), lr


def make_options(args, corpus, network_g, weights, batch, sizing, device):
    """The run's BasicSR options: the starter recipe (data, losses, EMA, frozen POF) on ``corpus`` with
    the size's network, started from ``weights`` (strict, EMA from their EMA), sized by ``sizing``
    = (total_iter, warmup_iter, lr); no validation during training (scored after)."""
    with open(project_root() / 'options' / 'train' / RECIPE) as f:
        opt, _ = point_to_corpus(yaml.safe_load(f), corpus)
    total, warmup, lr = sizing
    opt['datasets'].pop('val', None)
    opt.pop('val', None)
    opt.update(name=f'gpu_train_{args.model_size}', network_g=dict(network_g),
               num_gpu=0 if device.type == 'cpu' else 'auto')
    ds = opt['datasets']['train']
    workers = args.workers if args.workers is not None else min(10, max(0, (os.cpu_count() or 1) - 6))
    ds.update(batch_size_per_gpu=batch, gt_size=args.gt_size, num_frame=args.num_frame, num_worker_per_gpu=workers,
              dataset_enlarge_ratio=1000, pin_memory=device.type == 'cuda', persistent_workers=workers > 0)
    opt['path'] = dict(opt['path'], pretrain_network_g=str(weights) if weights else None, strict_load_g=True,
                       param_key_g='params_ema', resume_state=None)
    train = opt['train']
    train.update(total_iter=total, warmup_iter=warmup,
                 scheduler=dict(train['scheduler'], periods=[total], restart_weights=[1],
                                eta_min=min(train['scheduler'].get('eta_min', 0), lr / 100)),
                 optim_g=dict(train['optim_g'], lr=lr))
    opt['logger'] = dict(opt['logger'], print_freq=max(1, total // 20), save_checkpoint_freq=10 ** 9,
                         use_tb_logger=False)
    return opt


def copy_weights(ckpt, network_g, dst):
    """A checkpoint's EMA weights, fp32, as a release-format file (``params_ema``, ``network_g``)."""
    return pack_release(ckpt, network_g, dst, param_key='params_ema', half=False)


def run_training(opt, work, fp32, minutes, log):
    """BasicSR's runner on ``opt`` for at most ``minutes`` of training (a checkpoint every minute); each
    new checkpoint's EMA weights are copied to ``fp32`` as they come (its folder also gets ``train.yml``
    and ``train_basicsr.log``). Returns (ok, iterations, checkpoint, training minutes)."""
    exp = Path(work) / 'experiments' / opt['name']
    shutil.rmtree(exp, ignore_errors=True)
    out = Path(fp32).parent
    yml = out / 'train.yml'
    yml.write_text(yaml.safe_dump(opt, sort_keys=False))
    env = dict(os.environ, HOFFR_ROOT=str(work), PYTHONUNBUFFERED='1')
    cmd = [sys.executable, '-m', 'hoffr_arch.train', '-opt', str(yml), '--time-budget', f'{minutes:.3f}',
           '--save-every-minutes', str(min(1.0, minutes))]
    seen, start = 0, time.time()
    with open(Path(out) / 'train_basicsr.log', 'w') as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, env=env, cwd=project_root())
        while proc.poll() is None or seen < len(budget_lines(exp)):
            lines = budget_lines(exp)
            for line in lines[seen:]:
                minute, it, ckpt = line.split(',')
                copy_weights(ckpt, opt['network_g'], fp32)
                log(f'training: checkpoint at iteration {it} ({float(minute):.2f} min) -> {fp32.name}')
            seen = len(lines)
            time.sleep(1)
    if proc.returncode != 0:
        log(f'training FAILED (exit {proc.returncode}); see train_basicsr.log')
        return False, 0, None, 0.
    its, ckpt = final_checkpoint(exp, opt['train']['total_iter'])
    lines = budget_lines(exp)
    trained = float(lines[-1].split(',')[0]) if lines and its != opt['train']['total_iter'] else None
    copy_weights(ckpt, opt['network_g'], fp32)
    wall = (time.time() - start) / 60
    log(f'training: {its} iterations, checkpoint {Path(ckpt).name} -> {fp32.name}', mark='trained')
    return True, its, ckpt, trained if trained is not None else consumed_minutes(Path(out) / 'train_basicsr.log', wall)


def budget_lines(exp):
    path = Path(exp) / 'time_budget.csv'
    return path.read_text().splitlines()[1:] if path.exists() else []


def consumed_minutes(log_file, default):
    """BasicSR's 'Time consumed' of a run that ended at its last iteration (else ``default``)."""
    import re
    found = re.findall(r'Time consumed: (\d+):(\d+):(\d+)', Path(log_file).read_text(errors='replace'))
    if not found:
        return default
    h, m, s = (int(v) for v in found[-1])
    return h * 60 + m + s / 60


class _Part:
    """Every ``parts``-th clip of a test dataset, from clip ``part``: scoring split across processes."""

    def __init__(self, dataset, part, parts):
        self.dataset, self.indices = dataset, list(range(part, len(dataset), parts))

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]


def score_part(path, held, device, part, parts):
    """``gpu_check.score_weights``' figures for the release-format weights at ``path`` on every ``parts``-th
    held-out clip from ``part`` (one CPU thread: run in a worker process)."""
    from hoffr_arch import evaluation
    torch.set_num_threads(1)
    network_g = read_checkpoint(path)['network_g']
    data = _Part(evaluation.test_dataset(held), part, parts)
    res = score_weights(path, network_g, held, network_g.get('scale', 4), torch.device(device), dataset=data)
    return dict(model=res['model'], bicubic=res['bicubic'], frames=res['frames'],
                per_clip=[(c, float(a), float(b)) for c, a, b in res['per_clip']])


def score(pool, path, held, device, parts):
    """Held-out scores of the weights at ``path`` as plain numbers, the clips split over ``parts`` worker
    processes and merged exactly (frame means weighted by frames; first/later gains are clip means).
    Returns a future-like callable: call it for the dict."""
    import numpy as np
    start = time.time()
    futures = [pool.submit(score_part, path, held, device, k, parts) for k in range(parts)]

    def result():
        res = [f.result() for f in futures if f.result()['frames']]
        frames = sum(r['frames'] for r in res)
        mean = {k: [sum(r[k][i] * r['frames'] for r in res) / frames for i in (0, 1)] for k in ('model', 'bicubic')}
        clips = sorted(c for r in res for c in r['per_clip'])
        return dict(psnr=mean['model'][0], ssim=mean['model'][1], bicubic_psnr=mean['bicubic'][0],
                    bicubic_ssim=mean['bicubic'][1], first=float(np.mean([c[1] for c in clips])),
                    later=float(np.nanmean([c[2] for c in clips])), frames=frames, per_clip=clips,
                    seconds=round(time.time() - start, 1))
    return result


def per_source(result, names):
    """{source: (first, later)} gains over bicubic, averaged over the source's clips."""
    import numpy as np
    groups = {}
    for clip, first, later in result['per_clip']:
        groups.setdefault(names.get(clip, 'all'), []).append((first, later))
    return {k: tuple(float(x) for x in np.nanmean(v, axis=0)) for k, v in groups.items()}


LEDGER_HEADER = ('| date | device | training minutes | iterations | samples seen | held-out PSNR / SSIM | '
                 'over bicubic | first / later frames over bicubic | shipped |\n|---|---|---|---|---|---|---|---|---|')


def ledger_entry(args, run, new, device_name, shipped):
    """The model card's ledger entry of this run (``ledger.json``) with its table row (``row``)."""
    batch, its = run['batch'], run['iterations']
    samples = f'{its * batch:,} (batch {batch} x {args.num_frame} frames, {args.gt_size // 4}x{args.gt_size // 4} LR)'
    entry = dict(date=datetime.now(timezone.utc).strftime('%Y-%m-%d'), device=device_name, model=run['label'],
                 torch=torch.__version__, start_weights=run['start'], start_sha256=run['sha256'],
                 minutes=round(run['minutes'], 2), iterations=its, batch=batch, num_frame=args.num_frame,
                 gt_size=args.gt_size, samples_seen=its * batch, lr=run['lr'], total_iter=run['total_iter'],
                 warmup_iter=run['warmup_iter'], heldout=new, shipped=shipped, timeline=run['timeline'],
                 probe=run['probe'])
    entry['row'] = (f'| {entry["date"]} | {device_name} | {run["minutes"]:.1f} | {its} | {samples} | '
                    f'{new["psnr"]:.2f} / {new["ssim"]:.4f} | {new["psnr"] - new["bicubic_psnr"]:+.2f} | '
                    f'{new["first"]:+.2f} / {new["later"]:+.2f} | {"yes" if shipped else "no"} |')
    return entry


def results_table(rows, names):
    """Markdown: PSNR / SSIM / over bicubic / first and later frames / per source, one row per weights."""
    sources = sorted({n for _, r in rows for n in per_source(r, names)})
    head = '| weights | PSNR | SSIM | over bicubic | first frames | later frames |' + ''.join(
        f' {s}: first / later |' for s in sources)
    lines = [head, '|' + '---|' * (6 + len(sources))]
    for label, r in rows:
        src = per_source(r, names)
        lines.append(f'| {label} | {r["psnr"]:.2f} | {r["ssim"]:.4f} | {r["psnr"] - r["bicubic_psnr"]:+.2f} | '
                     f'{r["first"]:+.2f} | {r["later"]:+.2f} |' +
                     ''.join(f' {src[s][0]:+.2f} / {src[s][1]:+.2f} |' if s in src else ' |' for s in sources))
    r = rows[0][1]
    lines.append(f'| bicubic x4 of the blurry input | {r["bicubic_psnr"]:.2f} | {r["bicubic_ssim"]:.4f} | | | |' +
                 ' |' * len(sources))
    return '\n'.join(lines)


def verdict(new, baselines, own, margin=0.01):
    """(ship?, sentence): the new weights ship when they beat every shipped weights of their own size
    on the held-out PSNR by at least ``margin`` dB (bicubic when the size has none yet)."""
    bars = [(label, r['psnr']) for label, r in baselines if label in own] or [('bicubic', new['bicubic_psnr'])]
    ship = all(new['psnr'] >= p + margin for _, p in bars)
    text = ', '.join(f'{new["psnr"] - p:+.2f} dB against {label}' for label, p in bars)
    others = [f'{new["psnr"] - r["psnr"]:+.2f} dB against {label}' for label, r in baselines if label not in own]
    return ship, (('SHIP: ' if ship else 'NOT SHIPPED: ') + text + ('; ' + ', '.join(others) if others else ''))


def parse_args(argv):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', default='gpu_train_out', help='what comes back: at most 7 files')
    p.add_argument('--work', default=None, help='corpus and experiments (default: OUT/../gpu_train_work)')
    p.add_argument('--device', default='cuda' if cuda else 'cpu')
    p.add_argument('--model-size', choices=sorted(SIZES), default='s', help='s: HOFFR-S; default: the 3.6 M HOFFR')
    p.add_argument('--weights', default=None, help='start from these (release format: params_ema, network_g; '
                   'default: the shipped fp32 copy of the size)')
    p.add_argument('--minutes', type=float, default=None, help='training minutes (default: what --call-minutes '
                   'leaves after data, probe and --reserve)')
    p.add_argument('--call-minutes', type=float, default=8.5, help='the whole call, from $GPU_TRAIN_START')
    p.add_argument('--reserve', type=float, default=100, help='seconds kept after training: start-up, scoring')
    p.add_argument('--sources', default=None, help='corpus sources (default: datasets/gpu_sources, ../shared/data)')
    p.add_argument('--data', default=None, help='a packed corpus (train/, val/) instead of building one')
    p.add_argument('--max-frames', type=int, default=None, help='frames a source (dry runs)')
    p.add_argument('--batches', type=int, nargs='+', default=[8, 16, 32, 64] if cuda else [2, 4])
    p.add_argument('--probe-iters', type=int, default=10 if cuda else 1)
    p.add_argument('--sweep-seconds', type=float, default=150 if cuda else 0,
                   help='the batch sweep (batch_sweep) starts no row after this, and is ended 30 s later; 0: none '
                   '(default on a CPU)')
    p.add_argument('--sweep-args', default='', help='more batch_sweep arguments (dry runs: tiny batches, --backend '
                   'eager, --variants ...)')
    p.add_argument('--no-adopt', action='store_true', help='report the sweep only: train with the probe\'s batch, '
                   'eager')
    p.add_argument('--gt-size', type=int, default=256, help='HR patch (default 256: 64x64 LR, the paper\'s)')
    p.add_argument('--num-frame', type=int, default=8)
    p.add_argument('--lr', type=float, default=None, help='default: the recipe\'s x sqrt(batch / its batch), '
                   f'x {CONTINUE_LR} when continuing')
    p.add_argument('--iters', type=int, default=None, help='fixed total_iter (tests) instead of the measured one')
    p.add_argument('--workers', type=int, default=None,
                   help='data workers (default: min(10, cores - 6); scoring takes a quarter of the cores)')
    p.add_argument('--eval-device', default='cpu', help='where scoring runs (cpu: the model card\'s numbers)')
    p.add_argument('--ship-margin', type=float, default=0.01, help='dB over the shipped weights to ship')
    return p.parse_args(argv)


def sources_dir(args):
    if args.sources:
        return Path(args.sources)
    local = project_root() / 'datasets' / 'gpu_sources'
    return local if local.exists() else project_root().parent / 'shared' / 'data'


def baselines(size):
    """[(label, release file)] the new weights are scored against: the size's shipped file, and for
    the default HOFFR also HOFFR-S (the model to beat for ``infer``'s default)."""
    sizes = [size] + (['s'] if size != 's' else [])
    found = [(k, resolve_asset(f'hoffr_arch/assets/{SIZES[k]["release"]}')) for k in sizes]
    return [(f'shipped {SIZES[k]["label"]} ({p.name})', p) for k, p in found if p.exists()]


def prepare_run(args, log):
    """Start weights, corpus and held-out split; the shipped weights' scoring started in a worker
    process. Returns a dict of what the rest needs."""
    weights, network_g, recipe = start_point(args.model_size, args.weights)
    log(f'{SIZES[args.model_size]["label"]}: starting from {weights or "the shipped POF alone"}')
    work = Path(args.work) if args.work else Path(args.out).resolve().parent / 'gpu_train_work'
    work.mkdir(parents=True, exist_ok=True)
    sweep = start_sweep(args, work, log)  # on the GPU while the corpus is built on the CPU
    try:
        corpus = Path(args.data) if args.data else build_corpus(sources_dir(args), work, log, args.max_frames)
    except BaseException:
        end_sweep(sweep, log, stop=True)
        raise
    sweep_rows = end_sweep(sweep, log)
    _, held = point_to_corpus({'datasets': {'train': {}}}, corpus)
    if held is None or not (corpus / 'train' / 'meta_info.txt').exists():
        raise FileNotFoundError(f'{corpus}: needs train/ and val/ (or test/) as datasets_lmdb packs them')
    names = json.loads((corpus / 'sources.json').read_text()) if (corpus / 'sources.json').exists() else {}
    cores = os.cpu_count() or 1
    pool = worker_pool(cores)  # forked now, at its first task: before the probe touches CUDA
    bases = [(label, score(pool, path, held, args.eval_device, max(1, cores // 4)))  # while training runs
             for label, path in baselines(args.model_size)]
    sha = hashlib.sha256(Path(weights).read_bytes()).hexdigest() if weights else None
    return dict(weights=weights, network_g=network_g, recipe=recipe, work=work, corpus=corpus, held=held,
                names=names, pool=pool, bases=bases, sha256=sha, sweep=sweep_rows)


def pick_setting(args, ctx, device, log):
    """(probe rows [(batch, samples/s, peak MiB)], train.compile mode) for the training: the given batch
    (``--iters`` with one ``--batches``), else the sweep's decision (``sweep_decision``), else ``probe``."""
    if args.iters and len(args.batches) == 1:  # nothing to measure: the size and the batch are given
        return [(args.batches[0], float('nan'), float('nan'))], 'none'
    rows, mode = [], 'none'
    if ctx['sweep'] and not args.no_adopt:
        rows, mode, why = sweep_decision(ctx['sweep'], args.model_size, (args.num_frame, args.gt_size // 4),
                                         training_minutes(args, log))
        log(f'sweep: training {"compiled (reduce-overhead)" if mode != "none" else "eager"}: {why}')
    if not rows:
        rows = probe(ctx['network_g'], device, args.batches, args.num_frame, args.gt_size // 4, 4, log,
                     args.probe_iters)
    if not rows:
        raise RuntimeError('probe: not even the smallest batch fits')
    return rows, mode


def training_minutes(args, log):
    """``--minutes``, else what the call leaves after ``--reserve``."""
    return args.minutes or (args.call_minutes * 60 - log.elapsed() - args.reserve) / 60


def train_phase(args, ctx, device, out, log):
    """Pick the setting, size, write the options, train (eager again for the minutes left if a compiled
    run fails). Returns the run's figures (dict) or None on failure."""
    info = SIZES[args.model_size]
    rows, mode = pick_setting(args, ctx, device, log)
    while True:
        batch, sps = choose_batch(rows)
        minutes = training_minutes(args, log)
        if minutes < 0.1:
            raise RuntimeError(f'{minutes * 60:.0f} s left for training: raise --call-minutes or lower --reserve')
        total, warmup, lr = plan(args, sps, batch, ctx['recipe'], ctx['weights'] is not None, minutes)
        log(f'plan: batch {batch} ({sps:.1f} samples/s), {minutes:.2f} min -> total_iter {total}, warm-up {warmup}, '
            f'lr {lr:.2e}, train.compile {mode}', mark='probe')
        opt = make_options(args, ctx['corpus'], ctx['network_g'], ctx['weights'], batch, (total, warmup, lr), device)
        if mode != 'none':
            opt['train']['compile'] = mode
        ok, its, ckpt, trained = run_training(opt, ctx['work'], out / info['fp32'], minutes, log)
        if ok or mode == 'none':
            break
        log('training with train.compile failed: eager for the minutes left')
        mode = 'none'
        rows = sweep_rows(ctx['sweep'], args.model_size, (args.num_frame, args.gt_size // 4), 'fp32 eager')
    if not ok:
        return None
    run = dict(label=info['label'], batch=batch, iterations=its, checkpoint=ckpt, minutes=trained, lr=lr,
               total_iter=total, warmup_iter=warmup, network_g=opt['network_g'], compile=mode,
               start=str(ctx['weights'] or 'pof_x4.pth (POF only)'), sha256=ctx['sha256'],
               probe=[dict(batch=b, samples_per_s=_rounded(s, 2), peak_mib=_rounded(m, 1)) for b, s, m in rows])
    # what a call cut short during scoring still returns; the scored entry replaces it
    (out / 'ledger.json').write_text(json.dumps(dict(run, checkpoint=str(ckpt), scored=False), indent=1) + '\n')
    return run


def _rounded(x, digits):
    """``x`` rounded, None for NaN (JSON has no NaN)."""
    return None if x != x else round(x, digits)


def finish(args, ctx, run, out, device_name, log):
    """Score the new weights, decide, pack the release candidate when it wins, write the table and the
    ledger entry. Returns the entry."""
    info = SIZES[args.model_size]
    new = score(ctx['pool'], out / info['fp32'], ctx['held'], args.eval_device, os.cpu_count() or 1)()
    bases = [(label, result()) for label, result in ctx['bases']]
    log(f'scored: new {new["psnr"]:.3f} dB ({new["seconds"]} s); ' +
        ', '.join(f'{label} {r["psnr"]:.3f} dB ({r["seconds"]} s)' for label, r in bases), mark='scored')
    own = [label for label, _ in bases if label.startswith(f'shipped {info["label"]} ')]
    ship, text = verdict(new, bases, own, args.ship_margin)
    if ship:
        pack_release(run['checkpoint'], run['network_g'], out / info['release'], param_key='params_ema')
        text += f'; release candidate {info["release"]} (fp16) and {info["fp32"]} (fp32) in {out.name}/'
    run['timeline'] = dict(log.marks, done=round(log.elapsed(), 1))
    entry = ledger_entry(args, run, new, device_name, ship)
    entry.update(verdict=text, baselines=dict(bases), scored=True, train_compile=run['compile'], sweep=ctx['sweep'])
    (out / 'ledger.json').write_text(json.dumps(entry, indent=1) + '\n')
    new_label = f'this run: {info["label"]} EMA, {run["iterations"]} iterations'
    sweep_md = [f'Batch sweep ({len(ctx["sweep"])} rows; samples/s of training, random clips, after warm-up; bf16: '
                'autocast):', '', batch_sweep.table(ctx['sweep']), ''] if ctx['sweep'] else []
    probe_rows = '\n'.join(f'| {p["batch"]} | {p["samples_per_s"]} | {p["peak_mib"]} |' for p in run['probe'])
    md = '\n'.join([
        f'# {info["label"]} continued on {device_name}, {entry["date"]}', '',
        f'Held-out sources ({ctx["held"]}, {new["frames"]} frames; RGB, no crop, every frame alike):', '',
        results_table([(new_label, new)] + bases, ctx['names']), '', f'**{text}**', '',
        'Ledger row (model card, hoffr_arch/assets/README.md):', '', LEDGER_HEADER, entry['row'], '',
        f'Start: {run["start"]}; batch {run["batch"]}, lr {run["lr"]:.2e} (warm-up {run["warmup_iter"]}), '
        f'total_iter {run["total_iter"]}, {run["iterations"]} done in {run["minutes"]:.2f} training minutes.', '',
        '| probe batch | samples/s | peak MiB |', '|---|---|---|', probe_rows, '',
        f'train.compile: {run["compile"]}', '', *sweep_md,
        'Timeline (s since the call started): ' + ', '.join(f'{k} {v}' for k, v in run['timeline'].items())])
    (out / 'gpu_train.md').write_text(md + '\n')
    log('\n' + md)
    return entry


def main(argv=None):
    from hoffr_arch.data.frame_io import DatasetError
    from hoffr_arch.data.video_io import MediaError
    args = parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out)
    device = torch.device(args.device)
    device_name = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'CPU ({os.cpu_count()} cores)'
    log(f'gpu_train on {device_name}, torch {torch.__version__}, out {out}')
    try:
        ctx = prepare_run(args, log)
    except (CheckpointError, DatasetError, MediaError, FileNotFoundError, KeyError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    try:
        run = train_phase(args, ctx, device, out, log)
        if run is None:
            return 1
        finish(args, ctx, run, out, device_name, log)
    finally:
        ctx['pool'].shutdown(cancel_futures=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
