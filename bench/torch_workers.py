"""Step time of MeZO in one process vs :class:`dfo.torch.workers.ZOWorkers` with 2 loky workers.

Three ways run the same MeZO steps (same seed, same batches), interleaved in rounds so that load
from other processes hits them alike:

* ``one process``: :class:`dfo.torch.ZerothOrder` in this process with one torch thread;
* ``workers serial``: ZOWorkers with the serial evaluator (the protocol's own cost, one process);
* ``2 workers``: ZOWorkers with ``make_evaluator("loky", n_jobs=2)``, one thread per worker; each
  worker evaluates ``n_directions / 2`` directions and replays the others' round trips (noise only).

Per way: the minimum and the median over rounds of (block wall time / steps in the block), after
warm-up steps (replicas built), and the CPU critical path: this process's CPU time per step plus, for the
2 workers, the CPU time of the busier worker (from ``ZOWorkers.last_worker_seconds``). On a loaded machine
the wall times say what the load allowed; the CPU path is what an idle machine with a core per process
would approach (IPC latency not included). The speedup is one process's figure over the other way's.
At the end the weights of the three ways are compared (``torch.equal``, they must be identical).

Models: ``mlp`` (4 x Linear(512, 512) + tanh and a linear head, MSE on a fixed random data set,
batch ``--batch`` rows chosen by the step index) and ``lm`` (a small random Llama: 4 layers,
hidden 256, vocab 2048, sequences of 64 tokens, needs ``transformers``).

Example:
    $ python bench/torch_workers.py --model mlp --batch 256 --k 4 --rounds 7 --out bench/results/torch_workers.md
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from dfo.parallel import make_evaluator
from dfo.torch import ZerothOrder
from dfo.torch.workers import ZOWorkers


def mlp_task(batch: int, seed: int = 0):
    """4 x Linear(512, 512) + tanh, a linear head; ``loss_fn(model, t)`` on batch ``t`` of 4096 held rows."""
    torch.manual_seed(seed)
    layers = []
    for _ in range(4):
        layers += [nn.Linear(512, 512), nn.Tanh()]
    model = nn.Sequential(*layers, nn.Linear(512, 1))
    gen = torch.Generator().manual_seed(seed + 1)
    x, y = torch.randn(4096, 512, generator=gen), torch.randn(4096, 1, generator=gen)

    def loss(m, t):
        i = (t * batch) % (4096 - batch)
        return nn.functional.mse_loss(m(x[i:i + batch]), y[i:i + batch])

    return model, loss


def lm_task(batch: int, seed: int = 0):
    """A small random Llama (4 layers, hidden 256, vocab 2048); ``loss_fn(model, t)``: LM loss on batch ``t``."""
    import transformers

    cfg = transformers.LlamaConfig(vocab_size=2048, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                                   num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                                   tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(cfg)
    ids = torch.randint(0, 2048, (512, 64), generator=torch.Generator().manual_seed(seed + 1))

    def loss(m, t):
        i = (t * batch) % (512 - batch)
        return m(input_ids=ids[i:i + batch], labels=ids[i:i + batch]).loss

    return model, loss


TASKS = {"mlp": mlp_task, "lm": lm_task}


class OneProcess:
    """ZerothOrder in this process, stepping on batch ``t`` like the workers."""

    def __init__(self, factory, **settings) -> None:
        self.model, self.loss = factory()
        self.opt = ZerothOrder(self.model.parameters(), method="mezo", model=self.model, **settings)
        self.t = 0

    def step(self) -> float:
        t, self.t = self.t, self.t + 1
        return self.opt.step(lambda: self.loss(self.model, t))


class Workers:
    """ZOWorkers stepping on batch ``t``; records the bytes sent and the busiest worker's CPU seconds."""

    def __init__(self, factory, evaluator, **settings) -> None:
        self.zo = ZOWorkers(factory, evaluator=evaluator, **settings)
        self.sent, self.worker_cpu = [], 0.0
        self.remote = evaluator != "serial"

    def step(self) -> float:
        out = self.zo.step(self.zo.step_count)
        self.sent.append(self.zo.last_traffic.get("sent", 0))
        if self.remote:  # the serial evaluator's CPU time is this process's, counted by the caller
            self.worker_cpu += max(cpu for _, cpu in self.zo.last_worker_seconds)
        return out

    @property
    def model(self) -> nn.Module:
        return self.zo.model


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(TASKS), default="mlp")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--k", type=int, default=4, help="n_directions")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=4, help="steps per way per round")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None, help="append the result (markdown) to this file")
    args = ap.parse_args()

    torch.set_num_threads(1)
    factory = functools.partial(TASKS[args.model], args.batch)
    settings = dict(lr=1e-4, eps=1e-3, n_directions=args.k, seed=0)
    n_params = sum(p.numel() for p in factory()[0].parameters())
    load_before = os.getloadavg()
    ev = make_evaluator("loky", n_jobs=2)
    ways = {"one process": OneProcess(factory, **settings),
            "workers serial": Workers(factory, "serial", **settings),
            "2 workers": Workers(factory, ev, **settings)}
    times: dict[str, list[float]] = {name: [] for name in ways}
    cpu: dict[str, list[float]] = {name: [] for name in ways}
    for name, way in ways.items():
        for _ in range(args.warmup):
            way.step()
    for r in range(args.rounds):
        for name, way in ways.items():
            remote0 = getattr(way, "worker_cpu", 0.0)
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                way.step()
            times[name].append((time.perf_counter() - t0) / args.steps)
            cpu[name].append((time.process_time() - c0 + getattr(way, "worker_cpu", 0.0) - remote0) / args.steps)
        print(f"round {r}: " + ", ".join(f"{n} {times[n][-1] * 1e3:.1f} ms" for n in ways), flush=True)
    load_after = os.getloadavg()
    ref = ways["one process"].model
    identical = all(torch.equal(p, q) for name in ("workers serial", "2 workers")
                    for p, q in zip(ref.parameters(), ways[name].model.parameters()))
    sent = statistics.median(ways["2 workers"].sent[args.warmup:])
    ev.close()

    best = {n: min(v) for n, v in times.items()}
    med = {n: statistics.median(v) for n, v in times.items()}
    path = {n: min(v) for n, v in cpu.items()}
    lines = [f"### {args.model}: {n_params / 1e6:.2f} M parameters, batch {args.batch}, n_directions {args.k}", "",
             "| way | wall per step, min (ms) | median (ms) | wall speedup (min; median) "
             "| CPU critical path per step, min (ms) | CPU-path speedup |",
             "|---|---|---|---|---|---|"]
    for n in ways:
        lines.append(f"| {n} | {best[n] * 1e3:.1f} | {med[n] * 1e3:.1f} | "
                     f"{best['one process'] / best[n]:.2f}; {med['one process'] / med[n]:.2f} | "
                     f"{path[n] * 1e3:.1f} | {path['one process'] / path[n]:.2f} |")
    lines += ["", "- CPU critical path: this process's CPU seconds per step plus, for the workers, the busiest "
              "worker's (each has one thread): the step time of an idle machine with a core per process, "
              "IPC latency left out",
              f"- weights after {args.warmup + args.rounds * args.steps} steps identical in the three ways "
              f"(torch.equal): **{identical}**",
              f"- bytes sent per step to the 2 workers (median, pickled payload): {sent:.0f}; the weights are "
              f"{4 * n_params / 1e6:.1f} MB",
              f"- {args.rounds} rounds x {args.steps} steps per way, interleaved, after {args.warmup} warm-up steps; "
              f"torch {torch.__version__}, {os.cpu_count()} cores ({_cpu_name()}); load average (1 min) "
              f"{load_before[0]:.1f} before, {load_after[0]:.1f} after", ""]
    text = "\n".join(lines)
    print(text)
    if not identical:
        raise SystemExit("the ways' weights differ")
    if args.out is not None:
        with open(args.out, "a") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
