"""Every fenced code block of README.md, docs/*.md and examples/README*.md is run by this file
(issue 26, item 5), or carries a marker that says why not.

The rule
--------
A block is run according to its language tag:

- ```python: written to a script and run with this interpreter in a fresh subprocess, in a fresh
  temporary folder (which holds copies of `examples/` and `bench/*.py`, so repository-relative
  commands resolve and nothing is written into the repository).
- ```sh / ```bash / ```shell / ```console: run by `bash -e` in such a folder (for `console`, only
  the lines that start with `$ `); `dfo` and `python` are this interpreter's, `$DFO_DATA` is the
  shared data folder (../shared/data unless set), W&B is disabled, matplotlib draws off-screen.
- ```json: parsed (and run through its `check`, if it has one).
- ```text: a listing (a file tree, an output sample), never run; a text block whose lines look
  like commands fails, so a command cannot hide there. An untagged block fails: tag it.

Markers are HTML comments on the lines right above the opening fence, one directive each
(invisible in the rendered page; several may stack):

    <!-- snippet: skip REASON -->         not run; the reason is required and skips are counted
                                          (EXPECTED_SKIPS below: a new one fails until it is
                                          counted, so an unrunnable block cannot slip in)
    <!-- snippet: text REASON -->         an untagged block that is a listing (for pages whose
                                          fences this file's authors may not retag)
    <!-- snippet: tested-by PATH -->      run, with checks, by another test file (which must exist
                                          and name this page)
    <!-- snippet: continue -->            runs after the previous runnable block of the page, in
                                          the same folder; consecutive python blocks of a chain
                                          share one namespace (one script)
    <!-- snippet: slow -->                the block (its chain) is marked `slow`
    <!-- snippet: given NAME -->          run the setup PRELUDES[NAME] of this file first (what the
                                          snippet assumes: a `model`, a run folder, a user module)
    <!-- snippet: check NAME -->          run CHECKS[NAME] of this file afterwards (a claim of the
                                          text around the block)
    <!-- snippet: budget PREFIX FLAGS --> shell: append FLAGS (from the first ` --`, or after `=>`
                                          when PREFIX holds flags itself) to every command line
                                          that starts with PREFIX (small budgets for commands that
                                          run for minutes as written; argparse takes the last value
                                          of a repeated flag)
    <!-- snippet: drop PREFIX: REASON --> shell: command lines starting with PREFIX are not run
                                          (e.g. `pip install`, which would change this
                                          environment); counted like skips
    <!-- snippet: replace OLD => NEW -->  replace the text OLD in the block before it runs
                                          (placeholders such as a cluster's HOST); OLD must occur
    <!-- snippet: fast DIRECTIVE -->      a block with `fast` directives runs twice: with them in
                                          the default suite (e.g. a 1 MB model in place of a 135M
                                          one), and as written, without them, marked `slow`

Every budget, drop and replace must match something in its block, so a marker cannot outlive
the command it was written for. Pages this file's authors do not own (docs/architecture.md)
get their markers from FOREIGN_MARKERS below, keyed by the block's first line.
Run the slow blocks with `python -m pytest tests/test_docs_snippets.py -m slow`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DFO_DATA") or ROOT.parent / "shared" / "data")
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").glob("README*")])

EXPECTED_SKIPS = 6          # whole blocks marked `skip` (with FOREIGN_MARKERS)
EXPECTED_DROPS = 11         # command lines marked `drop`

PY = {"python", "py"}
SH = {"sh", "bash", "shell", "console"}
KNOWN = {"skip", "tested-by", "continue", "slow", "given", "check", "budget", "drop", "replace", "text", "fast"}
MARKER = re.compile(r"^\s*<!--\s*snippet:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")

# Markers for pages owned by others, keyed by (page, first line of the block).
FOREIGN_MARKERS = {
    ("docs/architecture.md", "dfo/                    the core: numpy and scipy at import time, nothing else"):
        ["text the package map (a file tree)"],
}

_TINY_LM = """
import torch
from transformers import LlamaConfig, LlamaForCausalLM

torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                     num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32))
_ids = torch.randint(0, 64, (4, 8))
"""

# What a snippet assumes exists (`given NAME`): language, code.
PRELUDES = {
    # docs/torch.md Usage: `model` and `loader` (batches of keyword arguments with labels).
    "tiny-lm-loader": ("python", _TINY_LM + "loader = [dict(input_ids=_ids[i:i + 2], labels=_ids[i:i + 2]) for i in (0, 2)]\n"),
    # docs/torch.md HF Trainer: `model` and a training dataset `ds`.
    "tiny-lm-dataset": ("python", _TINY_LM + "ds = [dict(input_ids=row, labels=row) for row in _ids]\n"),
    # docs/torch.md step rules: `model`, `logits(batch)`, `labels`, `F` and the optimizer class.
    "tiny-classifier": ("python", """
import torch
import torch.nn.functional as F
from dfo.torch import ZerothOrder

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
batch, labels = torch.randn(16, 6), torch.randint(0, 3, (16,))
logits = model
"""),
    # docs/rl.md: `mypkg.envs` registers MyTask-v0 (the point mass of tests/dfo_test_custom_env.py).
    "mypkg": ("sh", f"""
mkdir -p mypkg && touch mypkg/__init__.py
sed 's/DfoTestPointMass-v0/MyTask-v0/' '{ROOT / "tests" / "dfo_test_custom_env.py"}' > mypkg/envs.py
"""),
    # docs/rl.md SB3: a Hopper run under the name `dfo train Hopper-v5` gives it.
    "hopper-run": ("sh", "dfo train Hopper-v5 --episodes 8 --horizon 50 --n-jobs 1 --eval-episodes 1 --no-progress\n"),
    # docs/cluster.md Python API: a Dask scheduler on this machine, at SCHEDULER (the HOST of the page).
    "local-dask-scheduler": ("python", """
from distributed import LocalCluster
_cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=None)
SCHEDULER = _cluster.scheduler_address
"""),
}

# Claims of the text around a block, checked after it ran (`check NAME`): language, code.
CHECKS = {
    # README: `dfo train` alone trains Swimmer-v5 with orthogonal.
    "swimmer-default": ("sh", "test -f runs/Swimmer-v5_orthogonal_s0/config.json\n"),
    # README core: the result and the estimate say what the comments say.
    "core": ("python", """
assert res.nfev <= 20000 and res.status in (0, 1, 2, 3) and res.success == (res.status == 0), res
assert g.grad.shape == p.x0.shape and g.nfev > 0 and isinstance(g.info, dict)
"""),
    # docs/torch.md task file: it loads as a task (with its files beside it, as the text says).
    "task-file": ("python", """
import pathlib
from dfo.torch.llm.tasks import task_from_json
pathlib.Path("my_task.json").write_text(BLOCK)
for split in ("imdb/16-13/train.tsv", "imdb/16-13/dev.tsv", "imdb/test.tsv"):
    pathlib.Path(split).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(split).write_text("text\\tlabel\\nfine film\\tpos\\ndull film\\tneg\\n")
task = task_from_json("my_task.json")
assert task.name == "imdb" and [t.name for t in task.templates] == ["it-was"], task
"""),
    # docs/torch.md: the finetune runs wrote what the page says a run folder holds.
    "finetune-folders": ("sh", """
for f in checkpoints results.json model/README.md model/config.json; do test -e runs/sst2-subzero/$f; done
python -c "import json; r = json.load(open('runs/sst2-subzero/results.json')); assert r['config']['method'] == 'subzero', r.keys()"
"""),
    # docs/cluster.md: "the two progress.csv files agree in every seed-determined column"; the resume ran on.
    "dask-equals-loky": ("python", """
import csv
dask, loky = (list(csv.DictReader(open(f"{run}/progress.csv"))) for run in ("run_dask", "run_loky"))
columns = ["iteration", "episodes", "env_steps", "eval_return", "eval_return_std", "train_return_mean",
           "train_return_max", "nonfinite_episodes", "grad_norm", "step_size"]
assert len(dask) == 4 and len(loky) == 6, (len(dask), len(loky))
assert [[r[c] for c in columns] for r in dask] == [[r[c] for c in columns] for r in loky[:4]]
"""),
    # docs/rl.md "Outputs": a run folder holds what the listing names, and nothing else.
    "rl-outputs": ("python", """
from pathlib import Path
run = Path("runs/Swimmer-v5_orthogonal_s0")
top = {p.name for p in run.iterdir()}
assert top == {"config.json", "progress.csv", "metrics.jsonl", "tb", "checkpoints", "best_policy.npz",
               "best_policy.json", ".dfo-run.json", ".lock"}, top
for ckpt in (run / "checkpoints").iterdir():
    assert ckpt.name.startswith("iter_") and len(ckpt.name) == len("iter_NNNNNN"), ckpt
    files = {p.name for p in ckpt.iterdir()}
    assert files == {"policy.npz", "policy.json", "state.json", "arrays.npz", "manifest.json"}, files
"""),
    # docs/rl.md: the plot and the video were written.
    "rl-first": ("sh", "test -f swimmer.png && test -f swimmer.mp4\n"),
}


@dataclass
class Block:
    page: str
    line: int
    lang: str
    code: str
    markers: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    def directives(self, name: str) -> list[str]:
        return [m[len(name):].strip() for m in self.markers if m.split(maxsplit=1)[0] == name]

    def fast(self) -> Block:
        """The block as the default suite runs it: its `fast` directives applied, never slow."""
        markers = [m for m in self.markers if m.split(maxsplit=1)[0] != "slow"]
        markers = [m[len("fast"):].strip() if m.split(maxsplit=1)[0] == "fast" else m for m in markers]
        return Block(self.page, self.line, self.lang, self.code, markers)


def _blocks(page: Path) -> tuple[list[Block], list[int]]:
    """The fenced blocks of a page with their markers, and the lines of markers attached to none."""
    lines = page.read_text().splitlines()
    rel = page.relative_to(ROOT).as_posix()
    blocks, attached, i = [], set(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang, start = m.group(1), m.group(2), i
        i += 1
        body = []
        while i < len(lines) and not re.match(r"^\s*```\s*$", lines[i]):
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i].lstrip())
            i += 1
        i += 1
        markers, j = [], start - 1
        while j >= 0 and (not lines[j].strip() or MARKER.match(lines[j])):
            if lines[j].strip():
                markers.insert(0, MARKER.match(lines[j]).group(1))
                attached.add(j)
            j -= 1
        block = Block(rel, start + 1, lang, "\n".join(body) + "\n", markers)
        block.markers += FOREIGN_MARKERS.get((rel, body[0] if body else ""), [])
        blocks.append(block)
    stray = [k + 1 for k, line in enumerate(lines) if MARKER.match(line) and k not in attached]
    return blocks, stray


ALL = [b for page in PAGES for b in _blocks(page)[0]]


def _kind(block: Block) -> str:
    if block.directives("skip"):
        return "skip"
    if block.directives("tested-by"):
        return "tested-by"
    if block.lang in PY or block.lang in SH:
        return "run"
    if block.lang == "json":
        return "run" if block.directives("check") else "parsed"
    if block.lang == "text" or block.directives("text"):
        return "text"
    return "untagged"


# --- shell lines ---------------------------------------------------------------------------------

def _split_outside_quotes(line: str, sep: str) -> list[str]:
    parts, cur, quote, k = [], "", None, 0
    while k < len(line):
        c = line[k]
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif line.startswith(sep, k):
            parts.append(cur)
            cur, k = "", k + len(sep)
            continue
        cur += c
        k += 1
    return parts + [cur]


def _strip_comment(line: str) -> str:
    quote = None
    for k, c in enumerate(line):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c == "#" and (k == 0 or line[k - 1].isspace()):
            return line[:k].rstrip()
    return line.rstrip()


def _commands(code: str, lang: str) -> list[list[str]]:
    """Logical lines (continuations joined, comments cut), each split at `&&`."""
    raw = code.splitlines()
    if lang == "console":
        raw = [line[2:] for line in raw if line.startswith("$ ")]
    lines, cur = [], ""
    for line in raw:
        if line.rstrip().endswith("\\"):
            cur += line.rstrip()[:-1] + " "
            continue
        lines.append(cur + line)
        cur = ""
    lines.append(cur)
    out = []
    for line in lines:
        line = _strip_comment(line)
        if line.strip():
            out.append([c.strip() for c in _split_outside_quotes(line, "&&")])
    return out


def _starts(command: str, prefix: str) -> bool:
    return command == prefix or command.startswith(prefix + " ")


def _budgets(block: Block) -> list[tuple[str, str]]:
    out = []
    for d in block.directives("budget"):
        prefix, flags = d.split("=>", 1) if "=>" in d else d.replace(" --", " => --", 1).split(" => ", 1)
        out.append((prefix.strip(), flags.strip()))
    return out


def _drops(block: Block) -> list[tuple[str, str]]:
    return [tuple(part.strip() for part in d.split(":", 1)) for d in block.directives("drop")]


def _replaced(block: Block, code: str | None = None) -> str:
    """The block's code (or `code`, made from it) with its `replace` markers applied."""
    code = block.code if code is None else code
    for d in block.directives("replace"):
        old, new = (part.strip() for part in d.split("=>", 1))
        assert old in block.code, f"{block.id}: `replace {old} => ...` matches nothing in the block"
        code = code.replace(old, new)
    return code


def _shell_script(block: Block) -> tuple[str, list[str]]:
    """The bash script a shell block runs, and the commands it drops (with reasons). Budgets and
    drops match the commands as written; replacements are made afterwards."""
    budgets, drops = _budgets(block), _drops(block)
    used_b, used_d, dropped, lines = set(), set(), [], []
    for command_line in _commands(block.code, block.lang):
        kept = []
        for command in command_line:
            background = command.endswith("&")
            command = command[:-1].rstrip() if background else command
            drop = next((d for d in drops if _starts(command, d[0])), None)
            if drop:
                used_d.add(drop)
                dropped.append(f"{command}  ({drop[1]})")
                continue
            for prefix, flags in budgets:
                if _starts(command, prefix):
                    used_b.add((prefix, flags))
                    command = f"{command} {flags}"
            kept.append(command + (" &" if background else ""))
        if kept:
            lines.append(" && ".join(kept))
    assert not set(budgets) - used_b, f"{block.id}: budget markers that match no command: {set(budgets) - used_b}"
    assert not set(drops) - used_d, f"{block.id}: drop markers that match no command: {set(drops) - used_d}"
    return _replaced(block, "\n".join(lines) + "\n"), dropped


# --- the static checks -------------------------------------------------------------------------

def test_every_block_is_run_or_says_why_not():
    counts = {"run": 0, "skip": 0, "tested-by": 0, "parsed": 0, "text": 0}
    n_dropped, problems = 0, []
    for page in PAGES:
        blocks, stray = _blocks(page)
        rel = page.relative_to(ROOT).as_posix()
        problems += [f"{rel}:{k}: a snippet marker attached to no code block" for k in stray]
        for b in blocks:
            kind = _kind(b)
            for m in b.markers + b.directives("fast"):
                name = m.split(maxsplit=1)[0] if m.strip() else ""
                if name not in KNOWN or (name == "fast" and m in b.directives("fast")):
                    problems.append(f"{b.id}: unknown marker {m!r}")
            for name in ("skip", "text", "tested-by"):
                if any(not d for d in b.directives(name)):
                    problems.append(f"{b.id}: `{name}` needs a reason / a path")
            for name in ("given", "check"):
                for d in b.directives(name):
                    if d not in (PRELUDES if name == "given" else CHECKS):
                        problems.append(f"{b.id}: no {name} named {d!r} in this file")
            if kind == "untagged":
                problems.append(f"{b.id}: untagged block: tag it python, sh, json or text "
                                f"(or mark it `skip REASON`)")
                continue
            counts[kind] += 1
            if kind == "tested-by":
                for path in b.directives("tested-by"):
                    test_file = ROOT / path
                    if not test_file.exists() or b.page not in test_file.read_text():
                        problems.append(f"{b.id}: {path} does not exist or does not name {b.page}")
            if kind == "text":
                looks = [ln for ln in b.code.splitlines() if re.match(r"^\s*(\$ |dfo |python |pip )", ln)]
                if looks:
                    problems.append(f"{b.id}: a text block holding commands ({looks[0]!r}): tag it sh")
            if b.lang == "json":
                try:
                    json.loads(b.code)
                except ValueError as e:
                    problems.append(f"{b.id}: the JSON does not parse: {e}")
            for variant in [b, b.fast()] if b.directives("fast") else [b]:
                if b.lang in SH and kind == "run":
                    try:
                        dropped = len(_shell_script(variant)[1])
                        n_dropped += dropped if variant is b else 0
                    except AssertionError as e:
                        problems.append(str(e))
                if b.lang in PY and kind == "run":
                    try:
                        compile(_replaced(variant), b.id, "exec")
                    except (SyntaxError, AssertionError) as e:
                        problems.append(f"{b.id}: {e}")
    assert not problems, "\n".join(problems)
    print(f"code blocks: {counts}, command lines dropped: {n_dropped}")
    assert counts["skip"] == EXPECTED_SKIPS and n_dropped == EXPECTED_DROPS, (
        f"{counts['skip']} blocks skipped and {n_dropped} command lines dropped, this file expects "
        f"{EXPECTED_SKIPS} and {EXPECTED_DROPS}: run the new snippet, or give it a reason and update the counts")


# --- running ------------------------------------------------------------------------------------

def _chains() -> list[list[Block]]:
    chains: list[list[Block]] = []
    last_page = None
    for b in ALL:
        if _kind(b) != "run":
            continue
        if b.directives("continue"):
            assert chains and last_page == b.page, f"{b.id}: `continue` with no runnable block above it on the page"
            chains[-1].append(b)
        else:
            chains.append([b])
        last_page = b.page
    return chains


def _steps(chain: list[Block]) -> list[tuple[str, str, str]]:
    """(language, code, label) in order; consecutive python steps are merged into one script."""
    steps = []
    for b in chain:
        for name in b.directives("given"):
            steps.append((*PRELUDES[name], f"given {name}"))
        if b.lang in PY:
            steps.append(("python", _replaced(b), b.id))
        elif b.lang in SH:
            steps.append(("sh", _shell_script(b)[0], b.id))
        else:  # json with a check
            steps.append(("python", f"BLOCK = {b.code!r}\n", b.id))
        for name in b.directives("check"):
            steps.append((*CHECKS[name], f"check {name}"))
    merged = []
    for lang, code, label in steps:
        if merged and lang == "python" and merged[-1][0] == "python":
            merged[-1] = ("python", merged[-1][1] + f"\n# --- {label}\n" + code, merged[-1][2] + f" + {label}")
        else:
            merged.append((lang, code, label))
    return merged


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "WANDB_", "MLFLOW_"))}
    env.update(DFO_DATA=str(DATA), MPLBACKEND="Agg", WANDB_MODE="disabled", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def _workdir(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "bench" / "results").mkdir(parents=True)
    for script in (ROOT / "bench").glob("*.py"):
        shutil.copy(script, tmp_path / "bench" / script.name)
    return tmp_path


def _run_chain(chain: list[Block], tmp_path: Path, timeout: int) -> None:
    cwd, env = _workdir(tmp_path), _env()
    for k, (lang, code, label) in enumerate(_steps(chain)):
        if lang == "python":
            script = cwd / f"_snippet_{k}.py"
            script.write_text(code)
            cmd = [sys.executable, str(script)]
        else:
            script = cwd / f"_snippet_{k}.sh"
            script.write_text("set -eo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + code)
            cmd = ["bash", str(script)]
        # its own process group, so that servers a block starts in the background die with it
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            pytest.fail(f"{label} ran past {timeout} s; it ran:\n{code}\n--- stderr:\n{stderr[-3000:]}")
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        assert proc.returncode == 0, (
            f"{label} failed (exit {proc.returncode}); it ran:\n{code}\n--- stdout:\n{stdout[-3000:]}"
            f"\n--- stderr:\n{stderr[-4000:]}")


def _params():
    out = []
    for chain in _chains():
        name = " + ".join(b.id for b in chain)
        if any(b.directives("fast") for b in chain):
            out.append(pytest.param([b.fast() for b in chain], False, id=name + " (fast)"))
            out.append(pytest.param(chain, True, id=name, marks=[pytest.mark.slow]))
            continue
        slow = any(b.directives("slow") for b in chain)
        out.append(pytest.param(chain, slow, id=name, marks=[pytest.mark.slow] if slow else []))
    return out


@pytest.mark.parametrize("chain, slow", _params())
def test_snippet_runs(chain, slow, tmp_path):
    if not DATA.is_dir() and any("DFO_DATA" in b.code or "finetune" in b.code for b in chain):
        pytest.skip(f"the shared data folder {DATA} is not here (set $DFO_DATA)")
    _run_chain(chain, tmp_path, timeout=1500 if slow else 300)
