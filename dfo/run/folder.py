"""Run folders: what a command may write, the checks before it writes, and the one overwrite rule.

Every command that writes a run (``dfo train``, ``dfo finetune``) has a :class:`Layout`: the
top-level names it writes (glob patterns), the folders whose insides must hold real files
only, and the entry whose presence means "a run to resume". A run folder also holds two
files of its own:

* ``.dfo-run.json`` (:data:`MANIFEST`): written before anything else, it names the command
  and the entries that run may write. It is how ``--overwrite`` knows what is the run's.
* ``.lock`` (:data:`LOCK`): held by the process writing the run (:mod:`dfo.run.lock`).

The rules, the same for every command:

* **New run** (neither flag): the folder must be missing or hold nothing but the two files
  above. A folder holding a run is refused with a line naming ``--resume`` (when it holds a
  checkpoint) and ``--overwrite``; one holding other files is refused unless ``--overwrite``.
* ``--overwrite``: deletes exactly the entries the folder's manifest lists (intersected with
  the layout of the command the manifest names, and the ``<entry>.tmp-*`` leftovers of killed
  writes of those entries); everything else — dot-files, ``.git/``, folders of yours — stays.
  A file named like a run entry but not listed (a run of an older dfo without a manifest, or a
  file of yours called ``config.json``) is never deleted: the overwrite is refused, naming it.
* ``--resume``: the folder must exist; a run of an older dfo gets its manifest then.
* Symbolic links named like a run entry, and any link inside a run's folders, are refused
  before anything is read or written, so a run never writes, truncates or deletes through a link.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> prepare(d, TRAIN, resume=False)
    >>> sorted(p.name for p in d.iterdir()), is_empty(d)
    (['.dfo-run.json'], True)
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfo.fileio import TMP_MARK, atomic_write_bytes

#: the run's own manifest: which command wrote the folder and which entries are its
MANIFEST = ".dfo-run.json"
#: lock file held while a process writes to a run folder
LOCK = ".lock"
#: format tag of :data:`MANIFEST`
FORMAT = "dfo-run/1"
#: probe files of :func:`check_writable` (and :func:`dfo.fileio.make_writable_dir`)
PROBE = ".dfo-write-test-"
#: a manifest larger than this is not one dfo wrote
MAX_MANIFEST_BYTES = 64 * 1024


class RunFolderError(ValueError):
    """A run folder cannot be used as asked (the message says why and what to do)."""


@dataclass(frozen=True, kw_only=True)
class Layout:
    """What one command writes into its run folder.

    Attributes:
        command: the command (``"train"``, ``"finetune"``), recorded in the manifest.
        entries: top-level names it writes (``fnmatch`` patterns, no ``/``, none starting with ``.``).
        deep: entries (patterns) whose whole inside is checked for symbolic links.
        checkpoint: the entry whose presence means the folder holds a run that ``--resume`` continues.
        resume_hint: how to say ``--resume`` for this command (``{path}`` is the folder).
        written_unlisted: entries an older dfo wrote for this command without listing them in the
            manifest; a manifest of this command covers them too.
    """

    command: str
    entries: tuple[str, ...]
    deep: tuple[str, ...]
    checkpoint: str
    resume_hint: str
    written_unlisted: tuple[str, ...] = ()

    def owns(self, name: str, patterns: tuple[str, ...] | None = None) -> bool:
        """Whether ``name`` is one of ``patterns`` (default: this layout's entries) or a leftover
        ``<entry>.tmp-*`` of a killed write of one."""
        for pat in self.entries if patterns is None else patterns:
            if fnmatch.fnmatchcase(name, pat) or fnmatch.fnmatchcase(name, f"{pat}{TMP_MARK}*"):
                return True
        return False


#: ``dfo train`` (dfo.policies.training): logs, best policy, checkpoints, TensorBoard
TRAIN = Layout(command="train",
               entries=("config.json", "progress.csv", "metrics.jsonl", "best_policy.npz", "best_policy.json",
                        "checkpoints", "tb"),
               deep=("checkpoints", "tb"), checkpoint="checkpoints", resume_hint="--resume {path}")
#: ``dfo finetune`` (dfo.torch.llm): results, saved model, checkpoints, metrics, TensorBoard; and the
#: checkpoint pointer and folders of an older dfo (``checkpoint.json``, ``ckpt-*``), so ``--overwrite``
#: clears those runs too
FINETUNE = Layout(command="finetune",
                  entries=("results.json", "model", "checkpoints", "progress.csv", "metrics.jsonl", "tb",
                           "checkpoint.json", "ckpt-*"),
                  deep=("checkpoints", "model", "tb", "ckpt-*"), checkpoint="checkpoints", resume_hint="--resume",
                  written_unlisted=("progress.csv", "metrics.jsonl", "tb"))
#: every layout, by the command a manifest names
LAYOUTS = {layout.command: layout for layout in (TRAIN, FINETUNE)}


def is_bookkeeping(name: str) -> bool:
    """The run folder's own files: the manifest, the lock, and leftovers of their writes and probes."""
    return name in (MANIFEST, LOCK) or name.startswith((PROBE, f"{MANIFEST}{TMP_MARK}"))


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The manifest of a run folder, or None when it has none.

    Raises:
        RunFolderError: the manifest is a link, too large, not JSON of the expected form, or
            names a command dfo does not know.
    """
    mpath = Path(path) / MANIFEST
    if mpath.is_symlink():
        raise RunFolderError(f"{mpath} is a symbolic link; a run folder holds real files only")
    if not mpath.exists():
        return None
    where = f"{mpath} is not a dfo run manifest"
    try:
        if not mpath.is_file() or mpath.stat().st_size > MAX_MANIFEST_BYTES:
            raise ValueError("not a small regular file")
        doc = json.loads(mpath.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:
        raise RunFolderError(f"{where} ({exc}); delete it if the folder holds no run of yours") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("command") not in LAYOUTS \
            or not isinstance(doc.get("entries"), list) or not all(isinstance(e, str) for e in doc["entries"]):
        raise RunFolderError(f"{where} (format, command or entries missing or unknown)")
    return doc


def write_manifest(path: str | os.PathLike[str], layout: Layout) -> None:
    """Write the manifest of a run of ``layout`` into ``path`` (atomically)."""
    doc = {"format": FORMAT, "command": layout.command, "entries": list(layout.entries)}
    atomic_write_bytes(Path(path) / MANIFEST, json.dumps(doc, indent=1).encode())


def listed_entries(path: str | os.PathLike[str], manifest: dict[str, Any] | None) -> list[Path]:
    """The entries of ``path`` that its manifest lists (only names of the manifest command's layout
    count: a manifest can never make ``--overwrite`` delete ``.git`` or ``../x``), with those the
    command wrote before its manifest listed them (:attr:`Layout.written_unlisted`)."""
    if manifest is None:
        return []
    layout = LAYOUTS[manifest["command"]]
    patterns = tuple(e for e in (*manifest["entries"], *layout.written_unlisted) if e in layout.entries)
    return sorted(p for p in Path(path).iterdir() if layout.owns(p.name, patterns))


def is_empty(path: str | os.PathLike[str]) -> bool:
    """Missing, or holding nothing but the run folder's own bookkeeping files (manifest, lock)."""
    p = Path(path)
    return not p.exists() or (p.is_dir() and all(is_bookkeeping(e.name) for e in p.iterdir()))


def find_symlinks(path: str | os.PathLike[str], layout: Layout = TRAIN) -> list[Path]:
    """Symbolic links a run could write through: top-level entries named like the layout's (or the
    bookkeeping files), and anything inside the layout's ``deep`` folders."""
    root = Path(path)
    found: list[Path] = []
    if not root.is_dir():
        return found
    stack: list[Path] = []
    for p in root.iterdir():
        if p.is_symlink():
            if is_bookkeeping(p.name) or layout.owns(p.name):
                found.append(p)
        elif p.is_dir() and layout.owns(p.name, layout.deep):
            stack.append(p)
    while stack:
        for p in stack.pop().iterdir():
            if p.is_symlink():
                found.append(p)
            elif p.is_dir():
                stack.append(p)
    return sorted(found)


def check_no_symlinks(path: str | os.PathLike[str], layout: Layout = TRAIN) -> None:
    """Raises:
        RunFolderError: :func:`find_symlinks` found one (the message names up to three)."""
    links = find_symlinks(path, layout)
    if links:
        shown = ", ".join(str(p) for p in links[:3]) + (" ..." if len(links) > 3 else "")
        raise RunFolderError(f"{path} holds symlinks ({shown}); a run directory must hold real files "
                             "only (dfo never writes or deletes through a symbolic link)")


def check_writable(path: str | os.PathLike[str]) -> None:
    """Create ``path`` if needed and prove a file can be written there.

    Raises:
        RunFolderError: ``path`` is a link or a file, or cannot be created or written.
    """
    p = Path(path)
    if p.is_symlink():
        raise RunFolderError(f"{p} is a symbolic link; give the real folder")
    if p.exists() and not p.is_dir():
        raise RunFolderError(f"{p} exists and is not a directory (it is not a folder a run can use): "
                             "pick another --out")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=PROBE)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RunFolderError(f"cannot write to {p}: {e.strerror or e}") from None


def _names(paths: list[Path], limit: int = 5) -> str:
    return ", ".join(p.name for p in paths[:limit]) + (" ..." if len(paths) > limit else "")


def plan_overwrite(path: str | os.PathLike[str], layout: Layout) -> list[Path]:
    """The entries ``--overwrite`` deletes for a new run of ``layout`` in ``path``.

    Raises:
        RunFolderError: an entry named like one the new run writes is not listed in the manifest
            (never deleted, never written over).
    """
    p = Path(path)
    if not p.is_dir():
        return []
    manifest = read_manifest(p)
    listed = listed_entries(p, manifest)
    unlisted = sorted(e for e in p.iterdir() if e not in listed and not is_bookkeeping(e.name)
                      and layout.owns(e.name))
    if unlisted:
        why = (f"the folder has no {MANIFEST}: a run of an older dfo, or files of yours" if manifest is None
               else f"its {MANIFEST} does not list them")
        raise RunFolderError(f"--overwrite refused: {p} holds {_names(unlisted)}, which no dfo run there wrote "
                             f"({why}); --overwrite deletes only the files a run lists: move or delete them "
                             "yourself, or pick another --out")
    return listed


def remove_entries(entries: list[Path]) -> None:
    """Delete run entries: files and links are unlinked (a link is never followed), folders removed."""
    for e in entries:
        if e.is_symlink() or not e.is_dir():
            e.unlink(missing_ok=True)
        else:
            shutil.rmtree(e)


def check_new_run(path: str | os.PathLike[str], layout: Layout) -> None:
    """A new run (no ``--overwrite``) needs a folder without run files and, unless an overwrite
    accepted them (the manifest is there), without files of anyone else.

    Raises:
        RunFolderError: the folder holds a run (the message says how to continue or replace it) or
            other files.
    """
    p = Path(path)
    if not p.is_dir():
        return
    manifest = read_manifest(p)
    listed = listed_entries(p, manifest)
    entries = [e for e in p.iterdir() if not is_bookkeeping(e.name)]
    runs = sorted(set(listed) | {e for e in entries if layout.owns(e.name)})
    if runs:
        cmd = LAYOUTS[manifest["command"]] if manifest is not None else layout
        resumable = (p / cmd.checkpoint).exists() and cmd.command == layout.command
        unlisted = [e for e in runs if e not in listed]
        if unlisted:  # written by an older dfo (or by hand): --overwrite would not delete them
            how = (f"no {MANIFEST} lists {_names(unlisted)}, so --overwrite will not delete them: "
                   + (f"continue the run with {layout.resume_hint.format(path=p)}, move them away"
                      if resumable and manifest is None else "move them away"))
        elif resumable:
            how = f"continue it with {layout.resume_hint.format(path=p)}, replace it with --overwrite"
        elif cmd.command != layout.command:
            how = f"it is a `dfo {cmd.command}` run; replace it with --overwrite"
        else:
            how = "it has no checkpoint to resume; replace it with --overwrite"
        raise RunFolderError(f"{p} is not empty: it already holds a run ({_names(runs)}); {how}, "
                             "or pick another --out")
    if entries and manifest is None:
        raise RunFolderError(f"{p} is not empty: it holds files no dfo run wrote ({_names(sorted(entries))}); "
                             "pick another --out, or pass --overwrite to start the run beside them "
                             "(--overwrite keeps files a run did not write)")


def prepare(path: str | os.PathLike[str], layout: Layout, *, resume: bool, overwrite: bool = False) -> None:
    """The checks (and, with ``overwrite``, the clearing) before a run of ``layout`` writes to ``path``.

    Takes no lock: callers that write hold :func:`dfo.run.lock.RunLock` (``open_run_folder`` does both).

    Raises:
        RunFolderError: the reason, naming ``path`` and the option that fixes it.
    """
    p = Path(path)
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other")
    if resume and not p.is_symlink() and not p.exists():
        raise RunFolderError(f"--resume: run folder {p} does not exist")
    check_writable(p)
    if overwrite:  # listed entries go first: a listed link is removed, never followed
        remove_entries(plan_overwrite(p, layout))
    check_no_symlinks(p, layout)
    manifest = read_manifest(p)
    if resume:
        if not (p / layout.checkpoint).exists():
            raise RunFolderError(f"--resume: no checkpoint in {p} (no {layout.checkpoint})")
        if manifest is not None and manifest["command"] != layout.command:
            raise RunFolderError(f"--resume: {p} holds a `dfo {manifest['command']}` run, "
                                 f"not a `dfo {layout.command}` one")
        if manifest is None:
            write_manifest(p, layout)  # a run of an older dfo: from now on --overwrite knows its files
        return
    if not overwrite:
        check_new_run(p, layout)
    if manifest is None or manifest["command"] != layout.command or overwrite:
        write_manifest(p, layout)
