"""Schedulers. Per scheduler: a pure renderer of its job scripts (sbatch.py, the launcher half of
tmux.py) with reference-file tests, pure parsers of its answers, and one backend that talks to a host
(prepare, submit, states, cancel, resubmit: slurm.py's functions and SlurmBackend, tmux.py's
TmuxBackend; the protocol is backend.py). sweep.py expands a task's sweep into jobs and jobscript.py
writes the body both schedulers run; neither does I/O."""

from pathlib import Path


def script(name: str) -> str:
    """A piece of the scripts run on hosts, kept as a shell file of its own (scheduling/scripts/,
    package data) so that it reads, and is checked (`bash -n`, shellcheck), as shell. Read from
    beside this file: importlib.resources costs `compute jobs` ~6 ms of imports (zipfile) for it."""
    return (Path(__file__).parent / "scripts" / name).read_text(encoding="utf-8").rstrip("\n")
