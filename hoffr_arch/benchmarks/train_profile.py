"""Where a training iteration's time goes, per op, and what ``train.compile`` changes (CPU or GPU).

    python -m hoffr_arch.benchmarks.train_profile                      # HOFFR-S recipe step, top 15 ops
    python -m hoffr_arch.benchmarks.train_profile --compile default    # + compiled against eager

One iteration of the HOFFR-S recipe (batch 4 x 8 frames, 32x32 LR, POF frozen, Adam, SR + DB losses;
random clips: the speed does not depend on the data) is profiled with ``torch.profiler`` after a
warm-up, ops sorted by their own time. With ``--compile MODE`` the same network compiled
(``precision.compile_recurrent_step``, what ``train.compile`` does) is compiled by its warm-up, then
eager and compiled iterations alternate ``--repeats`` times: the ratio of their medians is the
figure (seconds alone mean little on a shared machine).
"""
import argparse
import copy
import statistics
import sys
import time

import torch


def recipe_step(net, device, batch, frames, lr_size, scale=4):
    """A function running one training iteration of ``net`` (POF frozen) on fixed random clips."""
    from hoffr_arch.models.hoffr_model import recipe_losses, training_step
    net.pof.requires_grad_(False)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=2e-4)
    losses = recipe_losses({'sr_opt': {'type': 'SRLoss'}, 'db_opt': {'type': 'DBLoss'}}, device)
    gen = torch.Generator().manual_seed(0)
    lq = torch.rand(batch, frames, 3, lr_size, lr_size, generator=gen).to(device)
    gt = torch.rand(batch, frames, 3, lr_size * scale, lr_size * scale, generator=gen).to(device)
    sharp = torch.rand(batch, frames, 3, lr_size, lr_size, generator=gen).to(device)

    def step():
        training_step(net, opt, losses, lq, gt, sharp)
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
    return step


def timed(step):
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def main(argv=None):
    import hoffr_arch  # noqa: F401  (compat, registries)
    from basicsr.archs import build_network
    from hoffr_arch.benchmarks.batch_sweep import network_options
    from hoffr_arch.precision import COMPILE_MODES, ComputePath, compile_recurrent_step
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--device', default='cpu')
    p.add_argument('--batch', type=int, default=4)
    p.add_argument('--num-frame', type=int, default=8)
    p.add_argument('--lr-size', type=int, default=32)
    p.add_argument('--top', type=int, default=15, help='ops listed')
    p.add_argument('--compile', choices=COMPILE_MODES, default='none')
    p.add_argument('--repeats', type=int, default=5, help='alternating eager and compiled iterations timed')
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    net = build_network(network_options('s')).to(device).train()
    shape = (args.batch, args.num_frame, args.lr_size)
    eager = recipe_step(net, device, *shape)
    eager()  # warm-up: kernels are built at a shape's first call
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU] +
                                ([torch.profiler.ProfilerActivity.CUDA] if device.type == 'cuda' else [])) as prof:
        eager()
    sort = 'self_cuda_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    print(f'HOFFR-S training iteration, batch {args.batch} x {args.num_frame} frames, {args.lr_size}x{args.lr_size} '
          f'LR, POF frozen, on {device} ({torch.get_num_threads()} threads); ops by their own time:')
    print(prof.key_averages().table(sort_by=sort, row_limit=args.top))
    if args.compile == 'none':
        return 0
    twin = compile_recurrent_step(copy.deepcopy(net), ComputePath(device, compile=args.compile))
    compiled = recipe_step(twin, device, *shape)
    start = time.perf_counter()
    compiled()
    compiled()  # a second call: CUDA graph trees record there
    print(f'compiling ({args.compile}): {time.perf_counter() - start:.0f} s')
    times = {'eager': [], 'compiled': []}
    for _ in range(args.repeats):
        times['eager'].append(timed(eager))
        times['compiled'].append(timed(compiled))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f'median of {args.repeats}, alternating: eager {med["eager"]:.3f} s, compiled {med["compiled"]:.3f} s '
          f'-> compiled is {med["eager"] / med["compiled"]:.2f}x eager')
    return 0


if __name__ == '__main__':
    sys.exit(main())
