"""Sweep expansion, shared by the Slurm and tmux tasks: args x sweep points -> jobs, each with seeds."""

from __future__ import annotations

import itertools
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from compute_platform import shell

SeedValue = Union[int, str]  # noqa: UP007
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def parse_seeds(value: Any) -> tuple[SeedValue, ...]:
    """Seeds as a list, a comma-separated string ("0, 1, 2", the original tool's form) or one integer."""
    if value is None:
        return ()
    if isinstance(value, bool):
        raise ValueError("expected a list of seeds, a comma-separated string or an integer, got a boolean")
    if isinstance(value, int):
        return (value,)
    if isinstance(value, str):
        items: list[Any] = [s.strip() for s in value.split(",") if s.strip()]
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError("expected a list of seeds, a comma-separated string or an integer")
    seeds: list[SeedValue] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise ValueError(f"a seed must be an integer or a word, got {item!r}")
        if isinstance(item, str):
            text = item.strip()
            if not text:
                raise ValueError("empty seed")
            seeds.append(int(text) if re.fullmatch(r"-?\d+", text) else text)
        else:
            seeds.append(item)
    if len(set(map(str, seeds))) != len(seeds):
        raise ValueError("seeds must be distinct")
    return tuple(seeds)


def args_words(entry: str | Sequence[Any]) -> tuple[str, ...]:
    """One `args` entry as separate words: a string is split like a shell would (quotes group words,
    nothing is expanded), a list is taken word by word."""
    if isinstance(entry, str):
        try:
            return tuple(shlex.split(entry))
        except ValueError as e:
            raise ValueError(f"cannot split args entry {entry!r}: {e}") from None
    return tuple(_word(w) for w in entry)


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flag_name(name: str) -> str:
    return name if name.startswith("-") else f"--{name}"


def flag_words(point: dict[str, Any]) -> tuple[str, ...]:
    """Sweep point -> flags: `true` is a bare flag, `false` omits it, anything else is `--name=value`."""
    words: list[str] = []
    for name, value in point.items():
        if value is True:
            words.append(flag_name(name))
        elif value is False or value is None:
            continue
        else:
            words.append(f"{flag_name(name)}={_word(value)}")
    return tuple(words)


@dataclass(frozen=True)
class Job:
    """One point of a sweep: what runs in one Slurm job (or tmux slot), once per seed."""

    index: int
    args: tuple[str, ...]
    point: dict[str, Any]
    seeds: tuple[SeedValue, ...]

    def words(self) -> tuple[str, ...]:
        return (*self.args, *flag_words(self.point))

    def command(self, cmd: str, seed: SeedValue | None = None, seed_flag: str | None = "--seed") -> str:
        """The command line for one seed: the user's command (shell code, as written) followed by
        every argument quoted as exactly one word."""
        words = list(self.words())
        if seed is not None and seed_flag:
            words += [seed_flag, str(seed)]
        return " ".join([cmd, *(shell.quote(w) for w in words)]) if words else cmd

    def commands(self, cmd: str, seed_flag: str | None = "--seed") -> list[tuple[SeedValue | None, str]]:
        """(seed, command line) for every seed in order; one entry with seed None when no seeds."""
        if not self.seeds:
            return [(None, self.command(cmd))]
        return [(s, self.command(cmd, s, seed_flag)) for s in self.seeds]

    def label(self) -> str:
        """A short human description: the args and the sweep point."""
        parts = [" ".join(self.args)] if self.args else []
        parts += [f"{k}={v}" for k, v in self.point.items()]
        return " ".join(parts) or f"job {self.index}"


class SweepFields(BaseModel):
    """Fields shared, with the same meaning, by the `slurm` and `tmux` tasks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cmd: str = Field(min_length=1)
    """The command to run (shell code, as you would type it); arguments below are appended, each quoted."""
    job_name: str | None = None
    """Job name (default: from the task name); letters, digits and `._+-`."""
    cd: str | None = None
    """Working directory on the host."""
    args: tuple[Union[str, tuple[Union[str, int, float, bool], ...]], ...] = ()  # noqa: UP007
    """One job per entry: a string (split like a shell would, nothing expanded) or a list of words."""
    sweep: dict[str, tuple[Union[str, int, float, bool], ...]] = Field(default_factory=dict)  # noqa: UP007
    """`{param: [values]}`: one job per point of the cartesian product (crossed with `args`). `true` is a
    bare flag, `false` omits it, else `--param=value`."""
    seeds: tuple[SeedValue, ...] = ()
    """Seeds run one after another in each job: a list, `"0, 1, 2"` or one integer. `SEED` is exported."""
    seed_flag: str | None = "--seed"
    """Flag appended with each seed (`--seed <s>`); `null` appends nothing."""
    scatter: bool = False
    """Spread the jobs round-robin over the task's hosts instead of running every job on every host."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables for the jobs."""
    secret_env: tuple[str, ...] = ()
    """Variables taken from compute's environment when it runs and handed to the jobs through stdin:
    never written in a script, the ledger or any output (see Secrets in the README)."""

    @model_validator(mode="after")
    def _secret_env_names(self) -> SweepFields:
        from compute_platform.secret_env import check_names

        check_names(self.secret_env, self.env)
        return self

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        return parse_seeds(value)

    @field_validator("sweep", mode="before")
    @classmethod
    def _sweep(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (v if isinstance(v, list) else [v]) for k, v in value.items()}
        return value

    @field_validator("sweep")
    @classmethod
    def _sweep_values(cls, value: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
        for name, values in value.items():
            if not values:
                raise ValueError(f"sweep parameter '{name}' has no values")
            if not name.lstrip("-") or any(c.isspace() or c == "=" for c in name):
                raise ValueError(f"'{name}' is not a valid flag name")
        return value

    @field_validator("args")
    @classmethod
    def _args(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        for entry in value:
            args_words(entry)  # fail at load time on unbalanced quotes
        return value

    @field_validator("job_name")
    @classmethod
    def _job_name(cls, value: str | None) -> str | None:
        if value is not None and not JOB_NAME.match(value):
            raise ValueError(
                "a job name has letters, digits and . _ + - (no spaces), starting with a letter or digit"
            )
        return value

    @field_validator("env", mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name in value:
                shell.check_env_name(str(name))
            return {str(k): ("1" if v is True else "0" if v is False else str(v)) for k, v in value.items()}
        return value

    def jobs(self) -> list[Job]:
        """Every job, in a deterministic order: args outer, then sweep keys in file order."""
        return expand(self.args, self.sweep, self.seeds)

    def command_text(self, job: Job) -> str:
        """A job's command lines as they run, one per seed: what the ledger records, and with the job's
        index what identifies a sweep point when a run resumes (`--skip-submitted`)."""
        return "\n".join(line for _, line in job.commands(self.cmd, self.seed_flag))

    def name(self, task_name: str) -> str:
        if self.job_name:
            return self.job_name
        slug = re.sub(r"[^A-Za-z0-9_.+-]+", "-", task_name).strip("-.")
        return slug or "job"


def expand(
    args: Sequence[str | Sequence[Any]],
    sweep: Mapping[str, Sequence[Any]],
    seeds: Sequence[SeedValue] = (),
) -> list[Job]:
    arg_list: list[tuple[str, ...]] = [args_words(a) for a in args] or [()]
    names = list(sweep)
    points = [
        dict(zip(names, combo, strict=False)) for combo in itertools.product(*(sweep[n] for n in names))
    ]
    jobs: list[Job] = []
    for words in arg_list:
        for point in points:
            jobs.append(Job(len(jobs), words, point, tuple(seeds)))
    return jobs


def scatter(jobs: Sequence[Job], host_index: int, host_count: int) -> list[Job]:
    """Round-robin share of the jobs for one of the task's hosts."""
    return list(jobs[host_index::host_count])
