"""Time per map call and parallel efficiency of the evaluators (dfo.parallel).

For 1, 2 and 4 workers on the loky and local-dask backends, times
``evaluator.map(busy, items, shared)`` where ``busy`` is a pure-Python loop of
known cost (no numpy, so no BLAS threads compete for the cores), and an empty
map (``fn`` returns its item) for the fixed cost of one call. Efficiency is
``T_serial / (workers * T_map)``; "per core" divides by ``min(workers, cores)``
instead, which is the figure that can reach 1 when workers outnumber cores.
Serial and parallel calls alternate and the speed-up is the median of the
per-round ratios, which keeps a machine shared with other jobs from skewing
one side only. loky with 1 worker runs in the calling process (joblib's
sequential fallback); local-dask with 1 worker does run on the cluster.
A second table gives ``last_traffic`` (pickled payload estimate) per map call
for a shared vector of growing size.

Usage:
    PYTHONPATH=. python bench/parallel_overhead.py [--items 64] [--item-ms 5] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

from dfo.parallel import SerialEvaluator, make_evaluator


def busy(loops: int, item: int) -> int:
    """CPU-bound work of a known cost: ``loops`` iterations of integer arithmetic."""
    acc = item
    for k in range(loops):
        acc = (acc * 1103515245 + k) & 0xFFFFFFFF
    return acc


def identity(shared, item):
    return item


def _time_map(ev, fn, items, shared, repeats: int) -> float:
    ev.map(fn, items, shared)  # warm-up: start workers, import modules
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ev.map(fn, items, shared)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _paired_speedup(ev, serial, fn, items, shared, repeats: int) -> tuple[float, float]:
    """Median map time of ``ev`` and median of per-round ``T_serial / T_ev``.

    Serial and parallel calls alternate, so a change in the machine's load
    hits both sides of each ratio alike.
    """
    ev.map(fn, items, shared)
    times, ratios = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        serial.map(fn, items, shared)
        t1 = time.perf_counter()
        ev.map(fn, items, shared)
        t2 = time.perf_counter()
        times.append(t2 - t1)
        ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(times), statistics.median(ratios)


def _calibrate(item_s: float) -> int:
    loops = 10_000
    while True:
        t0 = time.perf_counter()
        busy(loops, 0)
        dt = time.perf_counter() - t0
        if dt > 0.05:
            return max(1, int(loops * item_s / dt))
        loops *= 4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64, help="items per map call")
    parser.add_argument("--item-ms", type=float, default=5.0, help="cost of one item in ms")
    parser.add_argument("--repeats", type=int, default=5, help="timed map calls (median reported)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--backends", nargs="+", default=["loky", "local-dask"])
    args = parser.parse_args(argv)

    warnings.filterwarnings("ignore", message="Mismatched versions")  # dask: pandas only in workers
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    loops = _calibrate(args.item_ms / 1e3)
    items = list(range(args.items))
    serial = SerialEvaluator()
    expected = serial.map(busy, items, loops)
    t_serial = _time_map(serial, busy, items, loops, args.repeats)

    print("# Evaluator overhead and parallel efficiency\n")
    print(f"Command: `PYTHONPATH=. python bench/parallel_overhead.py {' '.join(argv or sys.argv[1:])}`".rstrip() + "\n")
    print(f"Machine: {cores} cores, {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
          f"{args.items} items of {args.item_ms:g} ms each per map call (serial map: {t_serial * 1e3:.1f} ms); "
          f"median of {args.repeats} calls after one warm-up; speed-up is the median of per-round "
          f"serial/parallel ratios, serial and parallel calls alternating. Chunks per call: 2 x workers. "
          f"1-min load average at start: {load_before:.1f} (other work on the machine skews the figures).\n")
    print("| backend | workers | map time (ms) | empty map (ms) | speed-up | efficiency | efficiency per core |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| serial | 1 | {t_serial * 1e3:.1f} | {_time_map(serial, identity, items, None, args.repeats) * 1e3:.2f} "
          "| 1.00 | 1.00 | 1.00 |")
    for backend in args.backends:
        for w in args.workers:
            with make_evaluator(backend, n_jobs=w) as ev:
                if ev.map(busy, items, loops) != expected:
                    raise AssertionError(f"{backend} with {w} workers gave different results")
                t, speedup = _paired_speedup(ev, serial, busy, items, loops, args.repeats)
                t_empty = _time_map(ev, identity, items, None, args.repeats)
            print(f"| {backend} | {w} | {t * 1e3:.1f} | {t_empty * 1e3:.2f} | {speedup:.2f} | "
                  f"{speedup / w:.2f} | {speedup / min(w, cores):.2f} |")

    print("\n## Payload per map call (`last_traffic`, pickled bytes; an estimate of payload, not wire traffic)\n")
    print(f"loky, 2 workers (4 chunks), {args.items} items `(seed, index)` returning one float each.\n")
    print("| shared float64 values | sent (bytes) | received (bytes) | sent / (chunks x shared) |")
    print("|---:|---:|---:|---:|")
    seeds = [(12345, i) for i in items]
    with make_evaluator("loky", n_jobs=2) as ev:
        for size in (10, 1_000, 100_000):
            shared = np.zeros(size)
            ev.map(_value, seeds, shared)
            tr = ev.last_traffic
            per = tr["sent"] / (tr["chunks"] * shared.nbytes)
            print(f"| {size} | {tr['sent']} | {tr['received']} | {per:.2f} |")
    print(f"\n1-min load average at end: {os.getloadavg()[0]:.1f}")
    return 0


def _value(shared, item) -> float:
    seed, index = item
    return float(np.random.default_rng([seed, index]).standard_normal())


if __name__ == "__main__":
    raise SystemExit(main())
