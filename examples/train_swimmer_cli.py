"""Train Swimmer-v5 with `dfo train` defaults from Python (the same code path as the CLI).

    PYTHONPATH=. python examples/train_swimmer_cli.py --episodes 40   # quick look
    PYTHONPATH=. python examples/train_swimmer_cli.py                 # 2000 episodes, all cores

Equivalent shell command: ``dfo train Swimmer-v5 --episodes 2000 --out runs/swimmer``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from dfo.cli import main as dfo_main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--out", default=None, help="run directory (default: a new temporary one)")
    args = ap.parse_args()
    args.out = args.out or tempfile.mkdtemp(prefix="swimmer_")
    code = dfo_main(["train", "Swimmer-v5", "--episodes", str(args.episodes), "--out", args.out])
    if code == 0:
        code = dfo_main(["evaluate", args.out, "--episodes", "5"])
    return code


if __name__ == "__main__":
    sys.exit(main())
