"""Cost of one zeroth-order step relative to inference, per method, side by side.

For each method a fresh subprocess builds the model, then alternates plain
forward passes and ZO steps on the same fixed batch (interleaved, so that load
from other processes hits both alike) and reports

* time ratio = min over steps of (step time / its forward passes) / min over forwards
  (the minima are the least disturbed runs; for the two-pass methods this is min step /
  (2 x min forward)), and the median of the per-pair ratios. The step rules of
  :mod:`dfo.torch.methods` take n passes a step (``fzoo`` n, ``mezo-orth`` 2k, the line
  search a variable number): the ratio is the cost per forward pass of the step;
* CPU-time ratio = the same with process CPU time (all threads summed): the work a
  step does relative to two forwards. It is robust to load from other processes
  but does not credit parallelism (with one thread it equals the wall-time ratio
  of an idle machine);
* memory ratio = peak RSS during the steps / peak RSS during the forward passes.
  Peaks come from the kernel's high-water mark ``VmHWM`` (``/proc/self/status``),
  reset before each phase by writing 5 to ``/proc/self/clear_refs``; both peaks
  include the weights. (On CUDA the script uses ``torch.cuda.max_memory_allocated``.)

Models: ``smollm2`` (SmolLM2-135M, SST-2 prompts, verbalizer loss; forward about
1.3 s at batch 16 on 2 cores) and ``mlp`` (6 x Linear(768, 768) + ReLU, MSE on a
fixed random batch of 64: a cheap forward, about 4 ms, where the per-step work
outside the forward passes shows). Threads default to all cores (``os.cpu_count()``).

Methods: ``mezo-naive`` (the reference MeZO loop: ``torch.manual_seed`` then
``torch.normal`` four times per step, perturbation written into the weights,
``param.data = param.data - lr * g * z``), and ``dfo.torch.ZerothOrder`` with
``mezo``, ``subzero``, ``lozo``, ``lozo-m`` (side paths on ``nn.Linear``; default noise cache:
directions of up to 16 MiB kept for the step); ``mezo+hash`` is MeZO with ``noise="hash"``
(compiled counter-based generator; compiled during the warm-up step), ``mezo+nocache`` MeZO with
``noise_cache_bytes=0`` (every direction drawn three times per step).

Example:
    $ python bench/torch_step_cost.py --model mlp --batch 64 --pairs 12 \\
          --out bench/results/torch_step_cost.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ["mezo-naive", "mezo+nocache", "mezo", "mezo+hash", "subzero", "lozo", "lozo-m", "mezo-orth", "mezo-ls",
           "fzoo", "fzoo-ls"]


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


class NaiveMeZO:
    """The reference MeZO step (Malladi et al. 2023, Algorithm 1 as in their trainer): z drawn 4 times."""

    def __init__(self, params, lr: float, eps: float, seed: int = 0) -> None:
        import numpy as np

        self.params = [p for p in params if p.requires_grad]
        self.lr, self.eps = lr, eps
        self.rng = np.random.default_rng(seed)

    def _perturb(self, seed: int, scale: float) -> None:
        import torch

        torch.manual_seed(seed)
        for p in self.params:
            z = torch.normal(mean=0, std=1, size=p.data.size(), device=p.data.device, dtype=p.data.dtype)
            p.data = p.data + scale * z * self.eps

    def step(self, closure) -> float:
        import torch

        seed = int(self.rng.integers(10**9))
        with torch.no_grad():
            self._perturb(seed, 1)
            l1 = float(closure())
            self._perturb(seed, -2)
            l2 = float(closure())
            self._perturb(seed, 1)
            g = (l1 - l2) / (2 * self.eps)
            torch.manual_seed(seed)
            for p in self.params:
                z = torch.normal(mean=0, std=1, size=p.data.size(), device=p.data.device, dtype=p.data.dtype)
                p.data = p.data - self.lr * g * z
        return (l1 + l2) / 2


def _build(args: argparse.Namespace, device):
    """(model, closure) of the benchmark model."""
    import torch

    dtype = getattr(torch, args.dtype)
    if args.model == "mlp":
        gen = torch.Generator().manual_seed(0)
        layers = []
        for _ in range(6):
            layers += [torch.nn.Linear(768, 768), torch.nn.ReLU()]
        model = torch.nn.Sequential(*layers).to(device=device, dtype=dtype).eval()
        x = torch.randn(args.batch, 768, generator=gen).to(device=device, dtype=dtype)
        y = torch.randn(args.batch, 768, generator=gen).to(device=device, dtype=dtype)
        return model, lambda: ((model(x) - y).float() ** 2).mean()
    from dfo.torch.llm.models import load_lm
    from dfo.torch.llm.prompt import PromptClassifier
    from dfo.torch.llm.tasks import load_split

    model, tok = load_lm(args.model, dtype=dtype)
    model.to(device)
    clf = PromptClassifier(model, tok, task="sst2")
    train = load_split("sst2", "train", k=16, data_seed=13, data_dir=args.data_dir)
    batch = (train * (1 + args.batch // len(train)))[: args.batch]
    return model, lambda: clf.loss(batch)


def worker(args: argparse.Namespace) -> dict:
    import torch

    from dfo.torch import ZerothOrder

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model, closure = _build(args, device)
    if args.method == "mezo-naive":
        opt = NaiveMeZO(model.parameters(), lr=args.lr, eps=1e-3)
    else:  # "<method>+hash": the counter-based noise generator; "<method>+nocache": no noise cache
        method, _, variant = args.method.partition("+")
        extra = {"noise": "hash"} if variant == "hash" else {"noise_cache_bytes": 0} if variant == "nocache" else {}
        opt = ZerothOrder(model.parameters(), method=method, lr=args.lr, eps=1e-3, rank=args.rank,
                          refresh=args.refresh, model=model, seed=0, **extra)
    cuda = device.type == "cuda"

    def sync():
        if cuda:
            torch.cuda.synchronize()

    with torch.no_grad():
        closure()
    opt.step(closure)  # warm-up: allocates factors, first refresh
    fwd_t, step_t, fwd_c, step_c, passes = [], [], [], [], []
    peaks = {"inference": 0, "step": 0}
    for _ in range(args.pairs):
        for phase in ("inference", "step"):
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            else:
                _reset_peak()
            sync()
            t, c = time.perf_counter(), time.process_time()
            if phase == "inference":
                with torch.no_grad():
                    closure()
            else:
                opt.step(closure)
                passes.append(opt.last_step.forward_passes if hasattr(opt, "last_step") else 2)
            sync()
            (fwd_t if phase == "inference" else step_t).append(time.perf_counter() - t)
            (fwd_c if phase == "inference" else step_c).append(time.process_time() - c)
            peak = torch.cuda.max_memory_allocated() if cuda else _peak_bytes()
            peaks[phase] = max(peaks[phase], peak)
    # per forward pass of the step: a step of n passes is compared with n forwards (n = 2 for MeZO & co.)
    per_pass = [s / n for s, n in zip(step_t, passes)]
    per_pass_cpu = [c / n for c, n in zip(step_c, passes)]
    ratios = [s / f for s, f in zip(per_pass, fwd_t)]
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "method": args.method,
        "passes": statistics.mean(passes),
        "forward_s": min(fwd_t),
        "step_s": min(step_t),
        "time_ratio": min(per_pass) / min(fwd_t),
        "median_ratio": statistics.median(ratios),
        "cpu_ratio": min(per_pass_cpu) / min(fwd_c),
        "inference_peak_mb": peaks["inference"] / 2**20,
        "step_peak_mb": peaks["step"] / 2**20,
        "memory_ratio": peaks["step"] / peaks["inference"],
        "n_params": n_params,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--refresh", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-7)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--data-dir", default=os.environ.get("DFO_DATA", str(ROOT.parent / "shared" / "data")),
                        help="folder holding sst2/ (default: $DFO_DATA or ../shared/data)")
    parser.add_argument("--out", default=None, help="append the markdown table to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.method = args.worker
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return
    rows = []
    load_before = _loadavg()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    for method in args.methods:
        cmd = [sys.executable, __file__, "--worker", method, *_passthrough(args)]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(f"{method} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(line[7:]))
        print(f"{method}: {rows[-1]}", file=sys.stderr, flush=True)
    head = (
        f"model={args.model} batch={args.batch} rank={args.rank} dtype={args.dtype} device={args.device} "
        f"threads={args.threads} pairs={args.pairs} params={rows[0]['n_params']:,} "
        f"load average (1 min) before/after: {load_before}/{_loadavg()} on {os.cpu_count()} cores"
    )
    lines = [head, "", "| method | passes / step | min forward s | min step s | min step / (passes x min forward) | "
             "median pair ratio | CPU-time ratio | inference peak MB | step peak MB | peak / inference peak |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['passes']:.2f} | {r['forward_s']:.4f} | {r['step_s']:.4f} | {r['time_ratio']:.3f} | "
            f"{r['median_ratio']:.3f} | {r['cpu_ratio']:.3f} | {r['inference_peak_mb']:.0f} | {r['step_peak_mb']:.0f} | "
            f"{r['memory_ratio']:.3f} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(f"\n`python {' '.join(sys.argv)}`\n\n{table}\n")


def _passthrough(args: argparse.Namespace) -> list[str]:
    return ["--model", args.model, "--batch", str(args.batch), "--pairs", str(args.pairs), "--rank", str(args.rank),
            "--refresh", str(args.refresh), "--lr", str(args.lr), "--device", args.device, "--dtype", args.dtype,
            "--threads", str(args.threads), "--data-dir", args.data_dir]


def _loadavg() -> str:
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().split()[0]
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
