"""Benchmark: MC dropout, 100 passes over 10,000 images, against one deterministic pass times 100.

Run: .venv/bin/python bench/uncertainty.py [--n 10000] [--passes 100] [--size 16]

Prints, for a small CNN (conv, batch norm, dropout) on random ``(1, size, size)`` images, one thread:
- ``deterministic x passes``: one plain eval-mode pass over the images in batches of 256 (as the audit's
  ``predict_proba`` does), the best of three timings, times ``passes``: the target;
- ``mc_dropout_predict``: the check's passes: the layers before the first dropout (here the two conv blocks)
  run once per image, since they give the same value in every pass (``SplitForward``, torch.fx); only the
  rest runs once per pass, on copies of a chunk stacked along the batch axis (bounded by the default 64 MB
  activation budget); online statistics;
- ``mc_dropout_predict, whole passes``: the same with ``reuse_prefix=False`` (what any module that cannot be
  traced gets): every pass runs the whole network, batched;
- ``naive loop``: the straightforward way, ``passes`` separate loops of batches of 256 with dropout on, all
  outputs kept, then summarised.
Target: the ratio at most 1.0 (for both mc_dropout_predict variants).

Peak memory: each variant runs in its own fresh process; the figure is the growth of that process's resident
set high-water mark (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, kB on Linux) from after the set-up (model and
images built, one warm-up forward) to after the run. tracemalloc would not see torch's allocator; maxrss does,
but only in whole pages and including memory freed again before the end (a high-water mark).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
from typing import Any

from _common import best_of  # bench/ is on sys.path when a benchmark runs as a script (and in spawned workers)


def _setup(n: int, size: int) -> tuple[Any, Any]:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    side = size // 4
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Dropout2d(0.1), nn.Flatten(), nn.Linear(16 * side * side, 64), nn.ReLU(),
                        nn.Dropout(0.3), nn.Linear(64, 10)).eval()
    x = torch.randn(n, 1, size, size)
    with torch.no_grad():
        net(x[:256])
    return net, x


def _deterministic(net: Any, x: Any, passes: int) -> None:
    import torch

    with torch.no_grad():
        for start in range(0, len(x), 256):
            torch.softmax(net(x[start:start + 256]), 1)


def _mc(net: Any, x: Any, passes: int) -> None:
    from checks._uncertainty import mc_dropout_predict

    assert mc_dropout_predict(net, x, passes=passes, seed=0).reused_prefix


def _mc_whole(net: Any, x: Any, passes: int) -> None:
    from checks._uncertainty import mc_dropout_predict

    mc_dropout_predict(net, x, passes=passes, seed=0, reuse_prefix=False)


def _naive(net: Any, x: Any, passes: int) -> None:
    import numpy as np
    import torch

    from checks._uncertainty import entropy, only_dropout_active

    outs = []
    with only_dropout_active(net), torch.no_grad():
        for _ in range(passes):
            outs.append(torch.cat([torch.softmax(net(x[s:s + 256]), 1) for s in range(0, len(x), 256)]).numpy())
    p = np.stack(outs).astype(np.float64)  # (passes, N, K)
    mean = p.mean(0)
    entropy(mean) - entropy(p).mean(0)
    p.std(0)


def _worker(name: str, n: int, size: int, passes: int, queue: Any) -> None:
    net, x = _setup(n, size)
    fn = {"deterministic": _deterministic, "mc": _mc, "mc_whole": _mc_whole, "naive": _naive}[name]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = best_of(lambda: fn(net, x, passes), 3 if name == "deterministic" else 1)  # target: best of three
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((seconds, (after - before) / 1024))


def measure(name: str, n: int, size: int, passes: int) -> tuple[float, float]:
    """Seconds and peak resident growth (MB) of one variant, in a fresh process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_worker, args=(name, n, size, passes, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=10_000, help="images")
    parser.add_argument("--passes", type=int, default=100)
    parser.add_argument("--size", type=int, default=16, help="image side in pixels (a multiple of 4)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; the fastest of each is kept")
    parser.add_argument("--skip-slow", action="store_true", help="leave out the whole-pass and naive variants")
    args = parser.parse_args()

    names = ["deterministic", "mc"] + ([] if args.skip_slow else ["mc_whole", "naive"])
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeat):  # rounds interleave the variants, so load on a shared machine hits them alike
        for name in names:
            seconds, mem = measure(name, args.n, args.size, args.passes)
            old = best.get(name, (float("inf"), 0.0))
            best[name] = (min(old[0], seconds), max(old[1], mem))
    det, det_mem = best["deterministic"]
    target = det * args.passes
    print(f"{args.n} images 1x{args.size}x{args.size}, {args.passes} passes, 1 thread, best of {args.repeat} round(s)")
    print(f"  one deterministic pass           {det:8.3f} s   peak +{det_mem:7.1f} MB")
    print(f"  deterministic x {args.passes:<4d}            {target:8.3f} s   (the target)")
    mc, mc_mem = best["mc"]
    print(f"  mc_dropout_predict (batched)     {mc:8.3f} s   peak +{mc_mem:7.1f} MB   ratio {mc / target:5.2f} "
          f"(target <= 1.00: {'met' if mc <= target else 'MISSED'})")
    if "mc_whole" in best:
        mw, mw_mem = best["mc_whole"]
        print(f"  mc_dropout_predict, whole passes {mw:8.3f} s   peak +{mw_mem:7.1f} MB   ratio {mw / target:5.2f} "
              f"(target <= 1.00: {'met' if mw <= target else 'MISSED'})")
    if "naive" in best:
        nv, nv_mem = best["naive"]
        print(f"  naive loop, all outputs kept     {nv:8.3f} s   peak +{nv_mem:7.1f} MB   ratio {nv / target:5.2f}")
    print("  peak = growth of the process's ru_maxrss high-water mark over the run (fresh process each).")


if __name__ == "__main__":
    main()
