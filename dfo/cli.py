"""The ``dfo`` command.

Each sub-command lives in its own module, imported only when it runs, so that
``dfo study`` never pays for importing torch and ``dfo finetune`` never imports
MuJoCo. A command module exposes two functions::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int | None: ...

The table :data:`COMMANDS` names each command's module as a string: it is one of the
name tables through which the core reaches the packages above it (tests/test_package_edges.py).

Example:
    $ dfo --version
    $ python -m dfo demo             # the same as `dfo demo`
    $ dfo demo                       # the core on a noisy Rosenbrock problem
    $ dfo train Swimmer-v5           # policy search on MuJoCo
    $ dfo study --preset berahas     # estimator accuracy study
    $ dfo finetune --model PATH --task sst2 --method subzero
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable

#: sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("dfo.demo", "minimize a noisy test problem with every estimator of the registry (core demo)"),
    "train": ("dfo.policies.commands.train", "train a policy on a gymnasium MuJoCo task"),
    "evaluate": ("dfo.policies.commands.evaluate", "evaluate a saved policy checkpoint"),
    "plot": ("dfo.policies.commands.plot", "plot learning curves of one or more runs"),
    "render": ("dfo.policies.commands.render", "render a video of a saved policy"),
    "study": ("dfo.study.command", "measure the accuracy of gradient estimators"),
    "finetune": ("dfo.torch.llm.finetune_command", "zeroth-order fine-tuning of a causal or masked LM"),
    "data": ("dfo.torch.llm.kshot", "build k-shot SST-2/RTE splits from GLUE files you downloaded"),
}


def build_parser(load: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser; imports the modules of the commands in ``load`` (default: every command).

    A command that is not loaded still appears, with its one-line help, in ``dfo --help``.
    """
    from dfo import __version__

    parser = argparse.ArgumentParser(prog="dfo", description="Derivative-free optimization toolkit.")
    parser.add_argument("--version", action="version", version=f"dfo {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if load is None or name in load:
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:  # optional extra not installed
                p.set_defaults(_missing=f"'dfo {name}' needs an optional dependency: {exc}")
                continue
            module.add_arguments(p)
            p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``dfo`` command line; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(load=[command] if command in COMMANDS else [])
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "_missing", None):
        parser.exit(2, f"dfo: {args._missing}\n")
    return int(args._run(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
