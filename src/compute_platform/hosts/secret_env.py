"""Secret environment variables: `secret_env: [WANDB_API_KEY, ...]` on `cmd`, `slurm` and `tmux` tasks.

A secret's value is never written in a playbook: it is read from the environment of `compute` itself
when the task runs (export it in your shell, or from a password manager), and it travels to the host
only inside the SSH channel, on the command's standard input, after which the remote shell exports it:

  * never on a command line (where `ps` on the host would show it to every user),
  * never in a file the tool writes: not in the scripts uploaded or archived, not in job.csv,
  * never in what `compute` prints: not in `--dry-run` (which shows how it is read, not its value),
    and every value of 4 characters or more is masked in the output of the commands, even with -v.

For a Slurm job, sbatch hands the exported variable to the job (its default `--export=ALL`); Slurm
keeps the job's environment in its own state, as for any variable. The tmux server does not pass a
client's environment on: the launch writes the values to a 0600 file of the session directory, each lane
reads it as it starts, and the launcher removes it once every lane has (scheduling/tmux.py).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence

from compute_platform.errors import InputError
from compute_platform.hosts import shell

MIN_MASKED = 4  # shorter values would mask ordinary words of the output


def check_names(names: Sequence[str], env: Mapping[str, str]) -> None:
    """Load-time checks of a `secret_env` list: identifiers, distinct, not also in `env`."""
    for name in names:
        shell.check_env_name(name)
    if len(set(names)) != len(names):
        raise ValueError("secret_env lists a variable twice")
    both = sorted(set(names) & set(env))
    if both:
        raise ValueError(f"{', '.join(both)} cannot be both in env and in secret_env")


def read(names: Sequence[str], alias: str) -> dict[str, str]:
    """The values of `names` in the environment of this process."""
    missing = [n for n in names if n not in os.environ]
    if missing:
        raise InputError(
            f"{alias}: secret_env {', '.join(missing)}: not set in the environment of compute; export "
            f"it before running (e.g. `read -rs {missing[0]} && export {missing[0]}`)"
        )
    return {name: os.environ[name] for name in names}


def names_in(script: str) -> tuple[str, ...]:
    """The secret_env names an archived script says it needs (its `secret_env A B` comment): what a
    resubmission must pass again, read afresh from the environment."""
    found = re.search(r"^\s*#.*\bsecret_env((?: [A-Za-z_][A-Za-z0-9_]*)+)", script, re.MULTILINE)
    return tuple(found.group(1).split()) if found else ()


def marker() -> str:
    return f"compute-secrets-{uuid.uuid4().hex}"


def payload(values: Mapping[str, str], end: str) -> bytes:
    """What goes on stdin first: `export NAME='value'` lines, then the end marker line."""
    return "".join(f"{line}\n" for line in [*shell.env_exports(values), end]).encode()


def receive(end: str) -> str:
    """Shell lines that read the exports from stdin up to the end marker (line by line: a shell
    reading a pipe never takes more than the line, so the rest of stdin stays for what follows)
    and run them. The values are single-quoted by the sender: evaluating them runs nothing."""
    return (
        'compute_s=; while IFS= read -r compute_l && [ "$compute_l" != '
        f'{shell.quote(end)} ]; do compute_s="$compute_s$compute_l\n"; done\n'
        'eval "$compute_s"; unset compute_s compute_l'
    )


def collect(names: Iterable[str]) -> list[str]:
    """The values of these secrets that are set here and long enough to mask in the output."""
    return [os.environ[n] for n in sorted(set(names)) if len(os.environ.get(n, "")) >= MIN_MASKED]
