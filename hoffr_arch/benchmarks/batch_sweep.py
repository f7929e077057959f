"""Training throughput over batch sizes: eager against ``torch.compile`` (CUDA graphs), fp32 against bf16.

    python -m hoffr_arch.benchmarks.batch_sweep --out rows.jsonl --seconds 150          # on a GPU
    python -m hoffr_arch.benchmarks.batch_sweep --out rows.jsonl --device cpu --batches-s 1 2 \\
        --batches-default 1 --compiled-batches-s 1 --compiled-batches-default --lr-size 8 \\
        --num-frame 3 --iters 1 --backend eager --variants 'fp32 eager' 'fp32 compiled'  # dry run

HOFFR is bound by kernel launches on a GPU (five POF levels and one recurrent step a frame): a
larger batch costs little more per iteration, and CUDA graphs (``train.compile: reduce-overhead``,
``precision.compile_recurrent_step``) remove most launches. One training iteration (Adam; SR + DB
losses, + flow loss where the POF trains; ``gpu_check.train_speed``) is timed for

- HOFFR-S at the starter corpus's shape (8 frames, 64x64 LR; POF frozen, its recipe), and
- the default HOFFR at the REDS shape (8 frames, 64x64 LR; POF trained, its recipe),

in the variants ``VARIANTS`` (bf16: autocast, on CUDA only), at each batch size; peak memory is
``torch.cuda.max_memory_allocated``. Rows are run in ``plan`` order (the fp32 baselines first; the
compiled rows, which each compile for a minute or more, mostly last) and appended to ``--out`` (JSON
lines) as each ends, so that a sweep cut short by ``--seconds`` (no row is started past it; the caller
also kills the process at its own cap) keeps what it measured. A batch that runs out of memory ends its variant's list.
``hoffr_arch.benchmarks.gpu_train`` runs this before training, in its own process.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

NETWORKS = {  # size -> (label, recipe YAML of its network, POF frozen in that recipe)
    's': ('HOFFR-S', 'train_HOFFR_S_x4.yml', True),
    'default': ('HOFFR', 'train_HOFFR_REDS.yml', False),
}
VARIANTS = {  # label -> (bf16 autocast, compile mode)
    'fp32 eager': (False, 'none'),
    'bf16 eager': (True, 'none'),
    'fp32 compiled': (False, 'reduce-overhead'),
    'bf16 compiled': (True, 'reduce-overhead'),
}


def network_options(size):
    """``network_g`` of the size's recipe, without pretrained POF weights (speed only)."""
    from hoffr_arch._entry import project_root
    from hoffr_arch.options import load_yaml
    recipe = load_yaml(project_root() / 'options' / 'train' / NETWORKS[size][1])
    return dict(recipe['network_g'], pof_path=None)


def plan(batches, compiled_batches):
    """The rows in the order they run, ``[(size, variant, batch)]`` (``batches``, ``compiled_batches``:
    {size: [batch, ...]}): the fp32 eager rows of both sizes (today's baselines), the first fp32 compiled
    row (the one ``gpu_train`` decides with), the bf16 eager rows, then the other compiled rows, each
    of which compiles anew (minutes)."""
    def rows(variant, sizes):
        return [(size, variant, b) for size, bs in sizes.items() for b in bs]
    compiled = rows('fp32 compiled', compiled_batches)
    return (rows('fp32 eager', batches) + compiled[:1] + rows('bf16 eager', batches) + compiled[1:] +
            rows('bf16 compiled', compiled_batches))


def measure(size, variant, batch, device, num_frame, lr_size, iters, backend=None):
    """One row: samples/s and peak MiB of training the size's network at ``batch`` in ``variant``, and
    the seconds the row took (building, compiling and the warm-up included)."""
    from basicsr.archs import build_network
    from hoffr_arch.benchmarks.gpu_check import train_speed
    from hoffr_arch.precision import ComputePath, compile_recurrent_step
    bf16, mode = VARIANTS[variant]
    start = time.perf_counter()
    torch._dynamo.reset()  # each row compiles its own graphs (no recompile limit across rows)
    torch.manual_seed(0)
    net = compile_recurrent_step(build_network(network_options(size)), ComputePath(device, compile=mode), backend)
    warmup = 3 if mode != 'none' else (2 if device.type == 'cuda' else 1)  # CUDA graph trees record at call 2
    its, peak = train_speed(net, device, iters, batch, num_frame, lr_size, bf16=bf16, warmup=warmup,
                            frozen_pof=NETWORKS[size][2])
    return dict(size=size, network=NETWORKS[size][0], variant=variant, batch=batch, num_frame=num_frame,
                lr_size=lr_size, samples_per_s=round(its * batch, 3), peak_mib=None if peak != peak else round(peak, 1),
                seconds=round(time.perf_counter() - start, 1))


def sweep(rows, device, out, num_frame, lr_size, iters, deadline, backend=None):
    """Run ``rows`` (``plan``) until ``deadline`` (``time.time()``), appending each to ``out``; a
    variant that runs out of memory or fails (its row says how) skips its larger batches. Returns the
    rows run."""
    done, full = [], set()
    for size, variant, batch in rows:
        if time.time() >= deadline:
            break
        if (size, variant) in full:
            continue
        try:
            row = measure(size, variant, batch, device, num_frame, lr_size, iters, backend)
        except torch.cuda.OutOfMemoryError:
            full.add((size, variant))
            row = dict(size=size, network=NETWORKS[size][0], variant=variant, batch=batch, failed='out of memory')
        except Exception as err:  # noqa: BLE001  (a compiler's failure must not end the other rows)
            full.add((size, variant))
            row = dict(size=size, network=NETWORKS[size][0], variant=variant, batch=batch,
                       failed=' '.join(f'{type(err).__name__}: {err}'.split())[:200])
        finally:
            if device.type == 'cuda':
                torch.cuda.empty_cache()
        done.append(row)
        with open(out, 'a') as f:
            f.write(json.dumps(row) + '\n')
        print(json.dumps(row), flush=True)
    return done


def read_rows(path):
    """The rows a sweep wrote to ``path`` (none when it wrote none)."""
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def table(rows):
    """Markdown: one line per row (network, variant, batch, samples/s, peak MiB, seconds incl. compiling)."""
    lines = ['| network | variant | batch | samples/s | peak MiB | row seconds (compile incl.) |',
             '|---|---|---|---|---|---|']
    for r in rows:
        if r.get('failed'):
            lines.append(f'| {r["network"]} | {r["variant"]} | {r["batch"]} | {r["failed"]} | | |')
        else:
            lines.append(f'| {r["network"]} | {r["variant"]} | {r["batch"]} | {r["samples_per_s"]:.2f} | '
                         f'{"" if r["peak_mib"] is None else r["peak_mib"]} | {r["seconds"]} |')
    return '\n'.join(lines)


def parse_args(argv):
    cuda = torch.cuda.is_available()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--out', required=True, help='JSON lines, one a row, appended as each row ends')
    p.add_argument('--device', default='cuda' if cuda else 'cpu')
    p.add_argument('--seconds', type=float, default=150, help='no row starts after this many seconds')
    p.add_argument('--batches-s', type=int, nargs='*', default=[4, 8, 16, 32, 64])
    p.add_argument('--batches-default', type=int, nargs='*', default=[4, 8, 16, 32])
    p.add_argument('--compiled-batches-s', type=int, nargs='*', default=[16, 64])
    p.add_argument('--compiled-batches-default', type=int, nargs='*', default=[8])
    p.add_argument('--variants', nargs='+', choices=list(VARIANTS), default=list(VARIANTS),
                   help='default: all (bf16 autocast runs on CUDA only: a CPU dry run leaves it out)')
    p.add_argument('--num-frame', type=int, default=8)
    p.add_argument('--lr-size', type=int, default=64, help='LR patch of both shapes (64: the starter corpus '
                   'run\'s 256 HR and REDS\'s)')
    p.add_argument('--iters', type=int, default=5, help='timed iterations a row, after the warm-up')
    p.add_argument('--backend', default=None, help='torch.compile backend instead of inductor (dry runs: eager)')
    return p.parse_args(argv)


def main(argv=None):
    import hoffr_arch  # noqa: F401  (compat, registries)
    args = parse_args(argv)
    deadline = time.time() + args.seconds
    rows = plan({'s': args.batches_s, 'default': args.batches_default},
                {'s': args.compiled_batches_s, 'default': args.compiled_batches_default})
    rows = [row for row in rows if row[1] in args.variants]
    sweep(rows, torch.device(args.device), args.out, args.num_frame, args.lr_size, args.iters, deadline,
          args.backend)
    return 0


if __name__ == '__main__':
    sys.exit(main())
