"""Fine-tuning quality on SST-2 (k = 512): zero-shot prompts vs MeZO / SubZero / LOZO / LOZO-M vs backprop.

Every cell of the grid is its own resumable job whose result is a JSON file under
``--runs``; a cell that already has its result is skipped, a half-done fine-tuning
cell continues from its checkpoint (``<cell>/checkpoints/step_N/``, the checkpoint format
of ``dfo.run.checkpoint``). ``table`` turns whatever cells exist into the markdown table and the
learning-curve PNG, and lists the cells that are missing.

Stages:

* ``zero-shot``: every registered template of the task, on the full test set and
  on a class-balanced ``--dev-size`` sample of each data seed's dev file, raw and
  contextually calibrated, with the predicted-class balance. The template used
  for fine-tuning is the one with the best mean *dev* accuracy (never test).
* ``cells``: for each data seed and method, fine-tune for ``--steps`` steps at batch
  ``--batch`` (every ZO method costs 2 forward passes per step, so equal steps are
  equal forward passes; ``adam`` is the backprop ceiling: same batches, same steps,
  one forward + one backward per step), then evaluate on the full test set.
* ``partial``: for every cell stopped before its last step (a checkpoint, no result),
  copy it to ``<cell>-at<N>`` (N = the checkpoint's step) and evaluate it there as a
  finished N-step run (the same resume path: dev and full test set). Used when a
  deadline stops the grid; the table marks these rows "stopped at N of M".
* ``table``: ``--out`` markdown (all cells, then test accuracy per method and data
  seed with mean ± std), ``--png`` learning curves (training loss, running mean over
  50 steps, and dev accuracy when measured).

The runs folder (a 0.5 GB checkpoint per cell) is not committed: ``cells --keep DIR``
copies each finished cell's ``results.json`` to ``DIR/<cell>.json`` and ``table
--cells DIR`` reads them back (``bench/results/torch_quality_cells``, with the
zero-shot results under ``zero-shot/``), so a table survives a lost runs folder.

Example (what the committed table ran; see bench/results/torch_quality.md):
    $ nice -n 10 python bench/torch_quality.py zero-shot --runs RUNS --data-dir ../shared/data
    $ nice -n 10 python bench/torch_quality.py cells --runs RUNS --data-dir ../shared/data \\
          --seeds 13 --methods mezo subzero lozo lozo-m adam --steps 60
    $ python bench/torch_quality.py table --runs RUNS --out bench/results/torch_quality.md \\
          --png bench/results/torch_quality.png
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dfo.torch.llm.finetune import DEFAULT_LR as LR  # noqa: E402  (one home of the defaults)


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def zero_shot(args: argparse.Namespace) -> None:
    import torch

    from dfo.torch.llm.models import load_lm
    from dfo.torch.llm.prompt import PromptClassifier
    from dfo.torch.llm.tasks import balanced_subset, get_task, load_split

    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    model, tok = load_lm(args.model)
    test = load_split(task, "test", data_dir=args.data_dir)
    jobs = [(t, "test", None) for t in task.templates] + [(t, "dev", s) for s in args.seeds for t in task.templates]
    for t, split, seed in jobs:  # the test rows of every template first: the figure that matters most
        clf = PromptClassifier(model, tok, task=task, template=t)
        path = Path(args.runs) / "zero-shot" / f"{t.name}-{split}{'' if seed is None else f'-{seed}'}.json"
        if path.is_file():
            if args.keep:
                _write_json(Path(args.keep) / "zero-shot" / path.name, json.loads(path.read_text()))
            continue
        if split == "test":
            data = test
        else:
            dev = load_split(task, "dev", k=args.k, data_seed=seed, data_dir=args.data_dir)
            data = balanced_subset(dev, args.dev_size, task.n_classes, seed=seed)
        t0 = time.perf_counter()
        ev = clf.evaluate(data)
        result = {"template": t.name, "split": split, "data_seed": seed, "model": args.model,
                  "seconds": time.perf_counter() - t0, **ev.as_dict()}
        _write_json(path, result)
        if args.keep:
            _write_json(Path(args.keep) / "zero-shot" / path.name, result)
        print(f"{t.name} {split} {seed}: acc {ev.accuracy:.3f} cal {ev.accuracy_calibrated:.3f} "
              f"pred {ev.predicted}", flush=True)


def best_template(runs: Path, seeds: list[int], calibrated: bool) -> tuple[str, dict[str, float]]:
    """Template with the best mean dev accuracy over ``seeds`` (from the zero-shot stage)."""
    key = "accuracy_calibrated" if calibrated else "accuracy"
    means = {}
    for p in sorted((runs / "zero-shot").glob("*-test.json")):
        name = p.name[: -len("-test.json")]
        devs = [runs / "zero-shot" / f"{name}-dev-{s}.json" for s in seeds]
        if all(d.is_file() for d in devs):
            means[name] = statistics.mean(json.loads(d.read_text())[key] for d in devs)
    if not means:
        raise SystemExit("no complete zero-shot dev results: run the zero-shot stage first")
    return max(means, key=means.get), means


def cells(args: argparse.Namespace) -> None:
    import torch

    from dfo.torch.llm.checkpoint import newest
    from dfo.torch.llm.finetune import FinetuneConfig, finetune

    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    template = args.template or best_template(runs, args.seeds, calibrated=False)[0]
    for seed in args.seeds:
        for method in args.methods:
            out = runs / cell_name(method, seed, args)
            if (out / "results.json").is_file():
                _keep(out, args.keep)
                continue
            cfg = FinetuneConfig(
                model=args.model, task=args.task, template=template, method=method, lr=args.lr or LR[method],
                zo=zo_settings(method, args), steps=args.steps, batch_size=args.batch,
                forward_passes=args.forward_passes, lora=args.lora, probe=args.probe,
                k=args.k, data_seed=seed, seed=seed, eval_every=args.eval_every, dev_size=args.dev_size,
                checkpoint_every=args.checkpoint_every, out_dir=str(out), data_dir=args.data_dir,
                save_model=False,
            )
            resume = newest(out) is not None
            print(f"cell {out.name} ({'resume' if resume else 'start'})", flush=True)
            res = finetune(cfg, resume=resume, progress=False)
            print(f"  test acc {res.test.accuracy:.3f} cal {res.test.accuracy_calibrated:.3f} "
                  f"pred {res.test.predicted} ({res.train_seconds:.0f} s)", flush=True)
            _keep(out, args.keep)


def zo_settings(method: str, args: argparse.Namespace):
    """The zeroth-order settings of a cell (``ZOConfig``: eps, rank, refresh, directions); None for ``adam``."""
    if method == "adam":
        return None
    from dfo.torch.llm.config import zo_config

    return zo_config(method, eps=args.eps, rank=args.rank, refresh=args.refresh,
                     **({} if args.n_directions is None else {"n_directions": args.n_directions}))


def cell_name(method: str, seed: int, args: argparse.Namespace) -> str:
    """``<method>-seed<S>-steps<N>[-probe]`` (a step count), or ``<method>-seed<S>-fp<N>[-lr<LR>][-k<K>][-lora<R>][-probe]`` for a
    forward-pass budget (the cells of the forward-pass axis; lr and directions in the name when not the defaults)."""
    probe = "-probe" if args.probe else ""
    if args.forward_passes is None:
        return f"{method}-seed{seed}-steps{args.steps}{probe}"
    name = f"{method}-seed{seed}-fp{args.forward_passes}"
    if args.lr is not None:
        name += f"-lr{args.lr:g}"
    if args.n_directions is not None:
        name += f"-k{args.n_directions}"
    if args.lora is not None:
        name += f"-lora{args.lora}"
    return name + probe


def _keep(cell: Path, keep: str | None) -> None:
    """Copy a finished cell's ``results.json`` (config, loss history, dev curve, test scores; tens of kB)
    to ``keep/<cell>.json``: the runs folder holds 0.5 GB checkpoints per cell and is not committed."""
    if keep:
        _write_json(Path(keep) / f"{cell.name}.json", json.loads((cell / "results.json").read_text()))


def load_results(runs: Path, kept: list[str]) -> list[dict]:
    """Results of the finished cells: ``runs/*/results.json`` and the kept ``*.json`` of each ``kept`` folder,
    one result per file or ``{"cells": [...]}`` (results recovered without their history); a cell found in
    both places counts once (the runs folder wins)."""
    found: dict[str, dict] = {}
    for p in sorted(runs.glob("*/results.json")):
        found[p.parent.name] = json.loads(p.read_text())
    for folder in kept:
        for p in sorted(Path(folder).glob("*.json")):
            doc = json.loads(p.read_text())
            if "cells" in doc:
                for r in doc["cells"]:
                    c = r["config"]
                    found.setdefault(f"{c['method']}-seed{c['data_seed']}-steps{c['steps']}", r)
            else:
                found.setdefault(p.stem, doc)
    return [found[k] for k in sorted(found)]


def partial(args: argparse.Namespace) -> None:
    import shutil

    import torch

    from dfo.run.checkpoint import load
    from dfo.torch.llm.checkpoint import KIND, newest
    from dfo.torch.llm.finetune import FinetuneConfig, finetune

    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    for cell in sorted([*runs.glob("*-steps*"), *runs.glob("*-fp*")]):  # step-count and forward-pass cells
        if "-at" in cell.name or (cell / "results.json").is_file() or newest(cell) is None:
            continue
        state = load(newest(cell), kind=KIND)  # verified; the weights stay on disk
        step = int(state["step"])
        saved = dict(state["meta"]["config"])
        if step < 1 or step >= saved["steps"]:
            continue
        out = runs / f"{cell.name}-at{step}"
        if (out / "results.json").is_file():
            continue
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(cell, out)
        saved.update(steps=step, out_dir=str(out), data_dir=args.data_dir, save_model=False,
                     test_size=args.test_size or None)
        cfg = FinetuneConfig.from_dict(saved)
        print(f"partial {cell.name}: evaluating the step-{step} checkpoint in {out.name}", flush=True)
        res = finetune(cfg, resume=True, progress=False)
        print(f"  test acc {res.test.accuracy:.3f} cal {res.test.accuracy_calibrated:.3f} "
              f"after {res.evaluations} training forward passes", flush=True)
        _keep(out, args.keep)


def _mean_std(xs: list[float]) -> str:
    if len(xs) == 1:
        return f"{xs[0]:.3f} (1 seed)"
    return f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f} ({len(xs)} seeds)"


def _planned_steps(result: dict) -> int:
    """The step count a cell was started with (a ``partial`` copy is named ``<cell>-at<N>``)."""
    out = Path(result["config"]["out_dir"] or "").name
    if "-at" in out and "-steps" in out:
        return int(out.split("-steps")[1].split("-at")[0])
    return int(result["config"]["steps"])


def per_seed(results: list[dict]) -> list[str]:
    """Markdown lines: test accuracy (raw / cal) per method and data seed for the finished cells of the
    longest planned run length, with mean ± std over seeds."""
    done = [r for r in results if _planned_steps(r) == r["config"]["steps"]]
    if not done:
        return []
    steps = max(r["config"]["steps"] for r in done)
    done = [r for r in done if r["config"]["steps"] == steps]
    seeds = sorted({r["config"]["data_seed"] for r in done})
    lines = [f"### Per data seed, {steps} steps (test acc raw / cal)", "",
             "| method | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± std raw | mean ± std cal |",
             "|---" * (len(seeds) + 3) + "|"]
    for method in sorted({r["config"]["method"] for r in done}):
        rs = {r["config"]["data_seed"]: r for r in done if r["config"]["method"] == method}
        row = [f"{rs[s]['test']['accuracy']:.3f} / {rs[s]['test']['accuracy_calibrated']:.3f}" if s in rs else "-"
               for s in seeds]
        raw = [r["test"]["accuracy"] for r in rs.values()]
        cal = [r["test"]["accuracy_calibrated"] for r in rs.values()]
        lines.append(f"| {method} | " + " | ".join(row) + f" | {_mean_std(raw)} | {_mean_std(cal)} |")
    return lines + [""]


def _passes(r: dict) -> int:
    """Training forward passes of a finished cell (cells before the budget axis: steps x passes per step)."""
    if isinstance(r.get("forward_passes"), int):
        return r["forward_passes"]
    per = r.get("forward_passes_per_step", 2)
    return r["config"]["steps"] * (per if isinstance(per, int) else 2)


def by_forward_passes(results: list[dict], zero_shot: dict | None = None) -> list[str]:
    """Markdown lines: test accuracy (raw / cal) against training forward passes, one row per (method, lr,
    budget), mean over data seeds; Adam's passes are forward passes (each also has a backward). ``zero_shot``:
    the zero-shot test result of the best template, the row at 0 passes."""
    groups: dict[tuple, list] = {}
    for r in results:
        c = r["config"]
        zo = c.get("zo") or {}  # the zeroth-order settings; flat in the config of cells made before zo
        k = "" if c["method"] == "adam" else (zo.get("n_directions") or c.get("n_directions") or 1)
        method = c["method"] + (" after probe" if c.get("probe") else "")
        lr = f"{c['lr']:g}"
        if c.get("probe") and not c["steps"]:
            method, k, lr = "linear probe (LP)", "", ""
        groups.setdefault((method, lr, k, c.get("lora") or "", _passes(r)), []).append(r)
    if not groups:
        return []
    lines = ["### By training forward passes (test acc raw / cal, mean over data seeds)", "",
             "| method | lr | directions | lora | forward passes | steps | test acc raw | test acc cal | seeds |",
             "|---|---|---|---|---|---|---|---|---|"]
    if zero_shot:
        lines.append(f"| zero-shot ({zero_shot['template']}) | | | | 0 | 0 | {zero_shot['accuracy']:.3f} | "
                     f"{zero_shot['accuracy_calibrated']:.3f} | |")
    for (method, lr, k, lora, fp), rs in sorted(groups.items(), key=lambda kv: (kv[0][4], kv[0][0])):
        lines.append(f"| {method} | {lr} | {k} | {lora} | {fp} | {', '.join(str(r.get('steps', r['config']['steps'])) for r in rs)} | "
                     f"{_mean_std([r['test']['accuracy'] for r in rs])} | "
                     f"{_mean_std([r['test']['accuracy_calibrated'] for r in rs])} | "
                     f"{', '.join(str(r['config']['data_seed']) for r in rs)} |")
    return lines + [""]


def table(args: argparse.Namespace) -> None:
    runs = Path(args.runs)
    lines = [f"Runs folder `{runs}`; test = all {args.test_n} SST-2 test sentences; accuracies from the "
             "label-word argmax (raw) and after contextual calibration (cal). `pred` = fraction predicted "
             "negative / positive.", ""]
    zs_dir = next((d for d in [runs / "zero-shot"] + [Path(k) / "zero-shot" for k in args.cells]
                   if any(d.glob("*-test.json"))), runs / "zero-shot")
    zs = sorted(zs_dir.glob("*-test.json"))
    if zs:
        lines += ["### Zero-shot (no training)", "",
                  "| template | dev acc, mean over seeds (raw / cal) | test acc raw | test acc cal | "
                  "test pred raw | test pred cal |", "|---|---|---|---|---|---|"]
        for p in zs:
            r = json.loads(p.read_text())
            name = r["template"]
            devs = [json.loads(d.read_text()) for d in sorted(zs_dir.glob(f"{name}-dev-*.json"))]
            dev = (f"{statistics.mean(d['accuracy'] for d in devs):.3f} / "
                   f"{statistics.mean(d['accuracy_calibrated'] for d in devs):.3f} "
                   f"(seeds {', '.join(str(d['data_seed']) for d in devs)}, n={devs[0]['n']} each)") if devs else "-"
            pr = "/".join(f"{x:.2f}" for x in r["predicted"])
            pc = "/".join(f"{x:.2f}" for x in r["predicted_calibrated"])
            lines.append(f"| {name} | {dev} | {r['accuracy']:.3f} | {r['accuracy_calibrated']:.3f} | {pr} | {pc} |")
        lines.append("")
    everything = load_results(runs, args.cells)
    # budget cells and linear probing alone (--steps 0 --probe): the forward-pass table only
    results = [r for r in everything if not r["config"].get("forward_passes") and r["config"]["steps"]]
    if everything:
        lines += ["### Fine-tuned (test after the last step; cells run to a step count)", "",
                  "| method | steps | forward passes / step | lr | template | test acc raw | test acc cal | "
                  "test pred raw | train loss first 10 -> last 10 | seeds |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        groups: dict[tuple, list] = {}
        for r in results:
            c = r["config"]
            planned = _planned_steps(r)
            groups.setdefault((c["method"], c["steps"], planned, c["lr"], r["template"]), []).append(r)
        for (method, steps, planned, lr, template), rs in sorted(groups.items()):
            loss = [r["history"]["loss"] for r in rs if r.get("history")]
            preds = [r["test"]["predicted"] for r in rs if r["test"].get("predicted")]

            def of(part: list) -> str:  # cells recovered without history or class balance
                return "" if len(part) == len(rs) else f" ({len(part)} of {len(rs)} seeds)"

            first = statistics.mean(statistics.mean(x[:10]) for x in loss) if loss else None
            last = statistics.mean(statistics.mean(x[-10:]) for x in loss) if loss else None
            loss_s = f"{first:.3f} -> {last:.3f}{of(loss)}" if loss else "-"
            pred = ("/".join(f"{statistics.mean(x[i] for x in preds):.2f}" for i in range(2)) + of(preds)
                    if preds else "-")
            lines.append(
                f"| {method} | {steps if planned == steps else f'{steps} (stopped; of {planned})'} | "
                f"{rs[0]['forward_passes_per_step']} | {lr:g} | {template} | "
                f"{_mean_std([r['test']['accuracy'] for r in rs])} | "
                f"{_mean_std([r['test']['accuracy_calibrated'] for r in rs])} | {pred} | {loss_s} | "
                f"{', '.join(str(r['config']['data_seed']) for r in rs)} |")
        lines.append("")
        lines += per_seed(results)
        zero = sorted(zs_dir.glob("*-test.json"))
        best = max((json.loads(p.read_text()) for p in zero), key=lambda r: r["accuracy"], default=None)
        lines += by_forward_passes(everything, best)
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(args.header.rstrip("\n") + "\n\n" + text if args.header else text)
    long_runs = [r for r in results if r.get("history") and len(r["history"]["loss"]) >= 100]  # the 40-step cells are in the table only
    if args.png and long_runs:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        longest: dict = {}  # one curve per (method, data seed): its longest run (partial copies are prefixes)
        for r in long_runs:
            key = (r["config"]["method"], r["config"]["data_seed"])
            if key not in longest or len(r["history"]["loss"]) > len(longest[key]["history"]["loss"]):
                longest[key] = r
        fig, (ax, ax_dev) = plt.subplots(1, 2, figsize=(11, 4))
        for (method, seed), r in sorted(longest.items()):
            y = np.asarray(r["history"]["loss"], dtype=float)
            w = min(50, len(y))
            label = f"{method} seed {seed}"
            line, = ax.plot(np.arange(w, len(y) + 1), np.convolve(y, np.ones(w) / w, mode="valid"), label=label)
            dev = r["history"].get("dev") or []
            if dev:
                ax_dev.plot([s for s, _ in dev], [d["accuracy"] for _, d in dev], "o-", color=line.get_color(),
                            label=label)
        ax.set_xlabel("step (batch %d)" % results[0]["config"]["batch_size"])
        ax.set_ylabel("batch loss, running mean of 50\n(ZO: mean of the ± perturbed losses)")
        ax.set_title("SST-2 k=512, SmolLM2-135M-Instruct: training loss (runs >= 100 steps)")
        ax.legend(fontsize=7)
        ax_dev.set_xlabel("step")
        ax_dev.set_ylabel("dev accuracy (class-balanced 128, raw)")
        ax_dev.set_title("dev accuracy (runs with dev evaluations)")
        if ax_dev.lines:
            ax_dev.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(args.png, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=("zero-shot", "cells", "partial", "table"))
    p.add_argument("--runs", required=True, help="folder holding one result per cell")
    p.add_argument("--data-dir", default=os.environ.get("DFO_DATA"))
    p.add_argument("--model", default="smollm2")
    p.add_argument("--task", default="sst2")
    p.add_argument("--k", type=int, default=512)
    p.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42])
    p.add_argument("--methods", nargs="+", default=["mezo", "subzero", "lozo", "lozo-m", "adam"])
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--forward-passes", type=int, default=None, help="cells: budget of training forward passes "
                   "(the run stops before a step that could pass it; --steps still caps it); cells are named "
                   "<method>-seed<S>-fp<N>")
    p.add_argument("--n-directions", type=int, default=None, help="default: the method's")
    p.add_argument("--lora", type=int, default=None, help="LoRA rank (peft adapters only)")
    p.add_argument("--probe", action="store_true",
                   help="fit the label-word head by linear probing first (dfo finetune --probe); --steps 0: LP alone")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=None, help="default: %s" % LR)
    p.add_argument("--eps", type=float, default=1e-3)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--refresh", type=int, default=50)
    p.add_argument("--template", default=None, help="default: best mean dev accuracy of the zero-shot stage")
    p.add_argument("--dev-size", type=int, default=128, help="class-balanced dev sample")
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--checkpoint-every", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    p.add_argument("--png", default=None)
    p.add_argument("--header", default="", help="text put above the table in --out")
    p.add_argument("--keep", default=None, help="zero-shot, cells: copy each result to KEEP/zero-shot/ "
                   "or KEEP/<cell>.json (commit bench/results/torch_quality_cells)")
    p.add_argument("--cells", nargs="*", default=[], help="table: folders of kept cell results (*.json) read "
                   "besides --runs")
    p.add_argument("--test-n", type=int, default=872, help=argparse.SUPPRESS)
    p.add_argument("--test-size", type=int, default=0, help="partial: test sentences (0 = all)")
    args = p.parse_args()
    {"zero-shot": zero_shot, "cells": cells, "partial": partial, "table": table}[args.stage](args)


if __name__ == "__main__":
    main()
