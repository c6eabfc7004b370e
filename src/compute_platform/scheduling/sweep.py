"""Sweep expansion, shared by the Slurm and tmux tasks: args x sweep points -> jobs, each with seeds."""

from __future__ import annotations

import functools
import itertools
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from compute_platform.hosts import shell
from compute_platform.input import yamlfile

if TYPE_CHECKING:
    from compute_platform.scheduling.recovery import Policy
    from compute_platform.scheduling.sources import MetricSources

SeedValue = Union[int, str]  # noqa: UP007
ArgsEntry = Union[str, list[Union[str, int, float, bool]]]  # noqa: UP007
SweepValue = Union[str, int, float, bool, None]  # noqa: UP007
JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


MAX_SEEDS = 10_000
# Characters that would have made the original's `for seed in <seeds>` run shell code or glob: a seed
# word of the string form holding one is refused rather than passed on as a strange literal seed (a
# YAML list's items are taken as they are: that form is compute's own).
SEED_SYNTAX = re.compile(r"[$`'\"()<>;|&*?\\]")


def parse_seeds(value: Any) -> tuple[SeedValue, ...]:
    """Seeds as the words bash made of the original tool's `for seed in <seeds>`: words separated by
    blanks (`0 1 2`), brace ranges and lists (`{0..9}`, `{0..8..2}`, `{00..10}`, `{a..c}`, `s{1,2}`),
    and also by commas (`"0, 1, 2"`, where bash would have made words like `0,` that no program
    reads as a seed); a YAML list, or one integer."""
    if value is None:
        return ()
    if isinstance(value, bool):
        raise ValueError("expected seeds such as `0 1 2`, `{0..4}`, a list or an integer, got a boolean")
    if isinstance(value, int):
        return (_seed(yamlfile.written(value)),)
    if isinstance(value, str):
        items: list[Any] = [w for word in _seed_words(value) for w in brace_expand(word)]
        shell_code = next((w for w in items if SEED_SYNTAX.search(w)), None)
        if shell_code is not None:
            raise ValueError(
                f"{shell_code!r} is not a seed: compute runs no shell code to make seeds; "
                "list them (0 1 2) or give a range ({0..2})"
            )
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError("expected seeds such as `0 1 2`, `{0..4}`, a list or an integer")
    seeds: list[SeedValue] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float, str)):
            raise ValueError(f"a seed must be an integer or a word, got {item!r}")
        text = yamlfile.written(item).strip()
        if not text:
            raise ValueError("empty seed")
        seeds.append(_seed(text))
    if len(seeds) > MAX_SEEDS:
        raise ValueError(f"{len(seeds)} seeds: at most {MAX_SEEDS} per job")
    if len(set(map(str, seeds))) != len(seeds):
        raise ValueError("seeds must be distinct")
    return tuple(seeds)


def _seed(text: str) -> SeedValue:
    return int(text) if re.fullmatch(r"-?\d+", text) and str(int(text)) == text else text


def _seed_words(text: str) -> list[str]:
    """Split on blanks, and on commas outside braces (`{1,2}` is one brace list)."""
    words: list[str] = []
    current = ""
    depth = 0
    for char in text:
        depth += (char == "{") - (char == "}" and depth > 0)
        if char.isspace() or (char == "," and depth == 0):
            if current:
                words.append(current)
            current = ""
        else:
            current += char
    return [*words, current] if current else words


_NUMBERS = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$")
_LETTERS = re.compile(r"^([A-Za-z])\.\.([A-Za-z])(?:\.\.(-?\d+))?$")


def brace_expand(word: str) -> list[str]:
    """bash's brace expansion of one word: `{0..3}` -> 0 1 2 3, `{0..6..3}` -> 0 3 6, `{08..10}` -> 08
    09 10, `{a..c}` -> a b c, `{a,b}c` -> ac bc, nested and in sequence; a word without a complete
    brace pair stays as it is. At most MAX_SEEDS words."""
    start = word.find("{")
    while start != -1:
        end, commas = _brace_pair(word, start)
        if end == -1:
            return [word]
        values = _brace_values(word[start + 1 : end], [c - start - 1 for c in commas])
        if values is None:  # `{x}`: not an expansion, as in bash; look further on
            start = word.find("{", start + 1)
            continue
        head, tail = word[:start], word[end + 1 :]
        out: list[str] = []
        for value in values:
            out += brace_expand(head + value + tail)
            if len(out) > MAX_SEEDS:
                raise ValueError(f"{word!r} makes more than {MAX_SEEDS} seeds")
        return out
    return [word]


def _brace_pair(word: str, start: int) -> tuple[int, list[int]]:
    """Where the brace opened at `start` closes (-1: never), and its top-level commas."""
    depth, commas = 0, list[int]()
    for i in range(start, len(word)):
        if word[i] == "{":
            depth += 1
        elif word[i] == "}":
            depth -= 1
            if depth == 0:
                return i, commas
        elif word[i] == "," and depth == 1:
            commas.append(i)
    return -1, commas


def _brace_values(inner: str, commas: list[int]) -> list[str] | None:
    """The words one brace pair stands for: a sequence, a comma list, or None for neither."""
    numbers, letters = _NUMBERS.match(inner), _LETTERS.match(inner)
    found = numbers or letters
    if found:
        step = abs(int(found.group(3) or 1)) or 1
        first, last = (int(found.group(1)), int(found.group(2))) if numbers else map(ord, found.groups()[:2])
        if abs(last - first) // step + 1 > MAX_SEEDS:
            raise ValueError(f"{{{inner}}} makes more than {MAX_SEEDS} seeds")
        points = range(first, last + (1 if last >= first else -1), step if last >= first else -step)
        if letters:
            return [chr(p) for p in points]
        ends = (found.group(1), found.group(2))
        padded = any(len(e.lstrip("-")) > 1 and e.lstrip("-").startswith("0") for e in ends)
        width = max(len(e) for e in ends) if padded else 0
        return [f"{p:0{width}d}" for p in points]
    if commas:
        bounds = [-1, *commas, len(inner)]
        return [inner[a + 1 : b] for a, b in itertools.pairwise(bounds)]
    return None


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
    return yamlfile.written(value)


def flag_name(name: str) -> str:
    name = name.strip()
    return name if name.startswith("-") else f"--{name}"


def value_words(value: str) -> list[str]:
    """A sweep value with blanks is several words, split as a shell would (quotes group words),
    each passed literally: nothing in it is expanded or run."""
    try:
        return shlex.split(value)
    except ValueError as e:
        raise ValueError(f"cannot split sweep value {value!r} into words: {e}") from None


def flag_words(point: dict[str, Any]) -> tuple[str, ...]:
    """Sweep point -> flags, as the original tool made them: `true` is a bare flag, `false` omits it,
    a value with blanks is the flag followed by the value's words (`--preset a b`), anything else is
    one word `--name=value`."""
    words: list[str] = []
    for name, value in point.items():
        if value is True:
            words.append(flag_name(name))
        elif value is False or value is None:
            continue
        elif isinstance(value, str) and any(c.isspace() for c in value):
            words += [flag_name(name), *value_words(value)]
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
        return self._words

    @functools.cached_property
    def _words(self) -> tuple[str, ...]:
        # asked for the script, the ledger's row and each seed: made once (a 100,000-point sweep)
        return (*self.args, *flag_words(self.point))

    def command(self, cmd: str, seed: SeedValue | None = None, seed_flag: str | None = None) -> str:
        """The command line for one seed: the user's command (shell code, as written, where `$seed`
        is the seed) followed by every argument quoted as exactly one word, then `seed_flag SEED`
        when the task asks for one."""
        words = list(self.words())
        if seed is not None and seed_flag:
            words += [seed_flag, str(seed)]
        return " ".join([cmd, *(shell.quote(w) for w in words)]) if words else cmd

    def commands(self, cmd: str, seed_flag: str | None = None) -> list[tuple[SeedValue | None, str]]:
        """(seed, command line) for every seed in order; one entry with seed None when no seeds."""
        if not self.seeds:
            return [(None, self.command(cmd))]
        return [(s, self.command(cmd, s, seed_flag)) for s in self.seeds]

    def label(self) -> str:
        """A short human description: the args and the sweep point."""
        parts = [" ".join(self.args)] if self.args else []
        parts += [f"{k}={_word(v)}" for k, v in self.point.items()]
        return " ".join(parts) or f"job {self.index}"


RetryOn = Union[Literal["preempted", "node_fail", "timeout", "oom", "lost", "log", "failed"], int]  # noqa: UP007
SIGNALS = ("USR1", "USR2", "HUP")  # TERM and INT stop jobs; QUIT is ignored by background commands


# what `sleep` takes between two looks of fail_on_log (GNU suffixes), and that is not 0
_SECONDS = re.compile(r"(?!0*\.?0*[smhd]?$)(\d+\.?\d*|\.\d+)[smhd]?")


def _patterns(value: tuple[str, ...]) -> tuple[str, ...]:
    """Log patterns: extended regular expressions (grep -E), one line each."""
    for pattern in value:
        if not pattern or "\n" in pattern or "\0" in pattern:
            raise ValueError("a log pattern is one non-empty line")
        try:
            re.compile(pattern)
        except re.error as e:
            raise ValueError(f"{pattern!r} is not a regular expression: {e}") from None
    return value


class Escalate(BaseModel):
    """How resources grow for the next attempt."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mem: float = Field(default=1.0, ge=1, le=64)
    """Memory times this after an `oom` (the script's `--mem`: give `mem` in the config)."""
    time: float = Field(default=1.0, ge=1, le=64)
    """Time limit times this after a `timeout` without a checkpoint."""


class CheckpointSpec(BaseModel):
    """A job near its time limit checkpoints and is requeued on the cluster, without compute."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    before: int = Field(default=120, ge=10, le=86400)
    """Seconds before the time limit (Slurm's `--signal=B:SIG@before`; it may come up to a minute early)."""
    signal: str = "USR1"
    """The signal the program gets (USR1, USR2 or HUP); `COMPUTE_CHECKPOINT_SIGNAL` names it."""
    command: str | None = None
    """Shell code to run instead of signalling the program (e.g. `touch STOP`), in the job's directory."""

    @field_validator("signal")
    @classmethod
    def _signal(cls, value: str) -> str:
        name = value.upper().removeprefix("SIG")
        if name not in SIGNALS:
            raise ValueError(f"expected one of {', '.join(SIGNALS)}")
        return name


class RetrySpec(BaseModel):
    """Which failures earn another attempt, how many, with what resources (docs/recovery.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max: int = Field(default=3, ge=1, le=100)
    """Attempts in all, the first included."""
    on: tuple[RetryOn, ...] = ("preempted", "node_fail", "timeout", "oom")
    """Which ends are retried: `preempted`, `node_fail`, `timeout`, `oom`, `lost` (tmux), `failed` (any
    other error), or exit codes."""
    on_log: tuple[str, ...] = ()
    """A failed job whose output matches one of these (grep -E) is retried: `["CUDA out of memory"]`."""
    escalate: Escalate = Field(default_factory=Escalate)
    """`{mem: 2, time: 1.5}`: the next attempt asks for that much more (oom, timeout)."""
    checkpoint: CheckpointSpec | None = None
    """A signal before the time limit, then a requeue in place (the `timeout` of Slurm jobs)."""

    _on_log = field_validator("on_log")(classmethod(lambda cls, v: _patterns(v)))


class NotifySpec(BaseModel):
    """Where `compute watch` tells of a sweep's first failure and of its end."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    webhook: str | None = None
    """A URL that gets a JSON POST `{"text": ...}` (Slack's incoming webhooks read it)."""
    mail: tuple[str, ...] = ()
    """Addresses that get a mail, through `smtp`."""
    smtp: str = "localhost:25"
    """The SMTP server (`host:port`) the mail goes through, from where `compute watch` runs."""

    @field_validator("mail", mode="before")
    @classmethod
    def _mail(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s]+$", value):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @field_validator("smtp")
    @classmethod
    def _smtp(cls, value: str) -> str:
        host, _, port = value.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("expected host:port")
        return value


class CodeSource(BaseModel):
    """The code jobs run, sent once per run and content-addressed (docs/code.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    git: bool = False
    """The git repository holding the playbook: its HEAD plus uncommitted changes, as `.gitignore` says."""
    path: str | None = None
    """A folder, relative to the playbook's (`.` for the playbook's own)."""
    exclude: tuple[str, ...] = ()
    """Patterns of paths left out (`*.ckpt`, `data/`, `wandb/`): a name or a path below the root."""

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):  # `code: git` or `code: src/`
            return {"git": True} if value == "git" else {"path": value}
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CodeSource:
        if self.git == (self.path is not None):
            raise ValueError(
                "expected `git` or a folder: `code: git`, or `code: {path: src, exclude: [...]}`"
            )
        return self


class MetricsSpec(BaseModel):
    """Where `compute results` finds the jobs' metrics besides COMPUTE_METRICS (docs/results.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    from_log: dict[str, str] = Field(default_factory=dict)
    """`{val_loss: "val_loss=([0-9.eE+-]+)"}`: each match in the job's output, its first group the value."""
    file: str | None = None
    """A CSV (a header, then numbers) or JSON lines file the program writes anyway, relative to the job's
    directory; `{seed}` in it is the seed."""
    sort: str | None = None
    """The metric that picks the best point (`compute results`, `plot`, `report`, `ui`), unless `--sort` says."""
    max: tuple[str, ...] = ()
    """The metrics for which higher is better (accuracy, reward); the others: lower is better."""

    @field_validator("from_log")
    @classmethod
    def _patterns(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            _patterns((pattern,))
            if re.compile(pattern).groups < 1:
                raise ValueError(f"the pattern of {name!r} has no group: write the value's part in ( )")
        return value

    @field_validator("sort", "max")
    @classmethod
    def _names(cls, value: str | tuple[str, ...] | None) -> str | tuple[str, ...] | None:
        for name in (value,) if isinstance(value, str) else value or ():
            if not name.strip() or "\n" in name:
                raise ValueError("expected a metric's name")
        return value

    @field_validator("file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip() or "\n" in value or "\0" in value):
            raise ValueError("expected a path")
        return value

    def sources(self) -> MetricSources:
        from compute_platform.scheduling.sources import MetricSources

        return MetricSources(tuple(self.from_log.items()), self.file or "", self.sort or "", self.max)


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
    # Any: a number keeps the text it was written with (yamlfile.WrittenFloat), which pydantic would
    # turn into a plain float; _sweep_values checks the types instead
    sweep: dict[str, tuple[Any, ...]] = Field(default_factory=dict)
    """`{param: [values]}`: one job per point of the cartesian product (crossed with `args`). `true` is a
    bare flag, `false` omits it, else `--param=value`."""
    seeds: tuple[SeedValue, ...] = ()
    """Seeds run one after another in each job: `0 1 2`, `"0, 1, 2"`, `{0..9}`, a list or one integer.
    Each run sets the shell variable `seed` (write `--seed=$seed` in `cmd`) and exports `SEED`."""
    seed_flag: str | None = None
    """A flag to append with each seed (`seed_flag: --seed` appends `--seed <s>`); none by default."""
    scatter: bool = False
    """Spread the jobs round-robin over the task's hosts instead of running every job on every host."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables for the jobs."""
    secret_env: tuple[str, ...] = ()
    """Variables taken from compute's environment when it runs and handed to the jobs through stdin:
    never written in a script, the ledger or any output (see Secrets in docs/tasks.md)."""
    retry: RetrySpec | None = None
    """Automatic retries: `{max: 3, on: [preempted, node_fail, timeout, oom], escalate: {mem: 2}}`, or
    a number of attempts (docs/recovery.md)."""
    fail_on_log: tuple[str, ...] = ()
    """Patterns (grep -E) that stop a running job when its output matches: it would hang or waste
    its allocation. Such a job is not retried."""
    notify: NotifySpec | None = None
    """`{webhook: URL, mail: you@lab.org}`: `compute watch` tells of the first failure and of the end."""
    metrics: MetricsSpec | None = None
    """Metrics besides COMPUTE_METRICS (patterns of the output, `from_log`, or a file the program writes), and
    which one picks the best point (`sort`), which are better higher (`max`)."""
    code: CodeSource | None = None
    """The code the jobs run: `git` (the playbook's repository, uncommitted changes included) or a folder;
    sent to `<code_dir>/<hash>` on each host (unchanged code never again) and the jobs start there."""

    @field_validator("retry", mode="before")
    @classmethod
    def _retry(cls, value: Any) -> Any:
        return {"max": value} if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("fail_on_log", mode="before")
    @classmethod
    def _fail_on_log_text(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    _fail_on_log = field_validator("fail_on_log")(classmethod(lambda cls, v: _patterns(v)))

    @model_validator(mode="after")
    def _signals_apart(self) -> SweepFields:
        point = self.retry.checkpoint if self.retry else None
        if point and point.signal == "USR2" and self.fail_on_log:
            raise ValueError("fail_on_log stops the job with USR2: give the checkpoint another signal (USR1)")
        every = self.env.get("COMPUTE_LOG_EVERY")
        if self.fail_on_log and every is not None and not _SECONDS.fullmatch(every):
            raise ValueError(
                f"env COMPUTE_LOG_EVERY is how often fail_on_log looks at the output: give a number of seconds"
                f" above 0 (10, 0.5, 2m), not '{every}'"
            )
        if point and point.command is not None and not point.command.strip():
            raise ValueError(
                "retry.checkpoint.command is empty: give shell code, or leave it out to signal the program"
            )
        return self

    def policy(self) -> Policy | None:
        """The retry policy the jobs' scripts carry (None: the task gives none)."""
        from compute_platform.scheduling.recovery import Checkpoint, Policy

        retry, notify = self.retry, self.notify
        if retry is None and not self.fail_on_log and notify is None:
            return None
        point = retry.checkpoint if retry else None
        return Policy(
            max=retry.max if retry else 1,
            on=retry.on if retry else (),
            on_log=retry.on_log if retry else (),
            mem=retry.escalate.mem if retry else 1,
            time=retry.escalate.time if retry else 1,
            checkpoint=Checkpoint(point.before, point.signal, point.command or "") if point else None,
            fail_on_log=self.fail_on_log,
            webhook=(notify.webhook or "") if notify else "",
            mail=notify.mail if notify else (),
            smtp=notify.smtp if notify and notify.mail else "",
            retries=retry is not None,
        )

    @model_validator(mode="after")
    def _secret_env_names(self) -> SweepFields:
        from compute_platform.hosts.secret_env import check_names

        check_names(self.secret_env, self.env)
        return self

    @field_validator("seeds", mode="before")
    @classmethod
    def _seeds(cls, value: Any) -> Any:
        return parse_seeds(value)

    @field_validator("sweep", mode="before", json_schema_input_type=dict[str, SweepValue | list[SweepValue]])
    @classmethod
    def _sweep(cls, value: Any) -> Any:
        # keys as the original tool read them (`" --sigma"`)
        if isinstance(value, dict):
            return {str(k).strip(): (v if isinstance(v, list) else [v]) for k, v in value.items()}
        return value

    @field_validator("sweep")
    @classmethod
    def _sweep_values(cls, value: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
        for name, values in value.items():
            if not values:
                raise ValueError(f"sweep parameter '{name}' has no values")
            if not name.lstrip("-") or any(c.isspace() or c == "=" for c in name):
                raise ValueError(f"'{name}' is not a valid flag name")
            for item in values:
                if item is not None and not isinstance(item, (str, int, float)):
                    raise ValueError(f"sweep parameter '{name}': a value is a string, a number or true/false")
                if isinstance(item, str) and any(c.isspace() for c in item):
                    value_words(item)  # fail at load time on unbalanced quotes
        return value

    @field_validator("args", mode="before", json_schema_input_type=Union[None, str, list[ArgsEntry]])  # noqa: UP007
    @classmethod
    def _args_written(cls, value: Any) -> Any:
        if value is None:  # `args:` with nothing after it (the original failed on it): no args
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list):
            return [[_as_written(w) for w in a] if isinstance(a, list) else a for a in value]
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
            return {str(k): ("1" if v is True else "0" if v is False else _word(v)) for k, v in value.items()}
        return value

    def jobs(self) -> list[Job]:
        """Every job, in the original tool's order: `args` vary fastest, the last sweep key slowest."""
        return expand(self.args, self.sweep, self.seeds)

    def dealt(self, host_index: int, host_count: int) -> list[Job]:
        """The jobs one of the task's hosts runs: all of them, or its round-robin share (`scatter`)."""
        jobs = self.jobs()
        return scatter(jobs, host_index, host_count) if self.scatter else jobs

    def command_text(self, job: Job) -> str:
        """A job's command lines as they run, one per seed (once when every seed runs the same line,
        which then reads `$seed`): what the ledger records, and with the job's index what identifies
        a sweep point when a run resumes (`--skip-submitted`)."""
        lines = [line for _, line in job.commands(self.cmd, self.seed_flag)]
        return "\n".join(dict.fromkeys(lines))

    def sweep_notes(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Words the original tool let the shell expand and compute passes as written."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        for i, entry in enumerate(self.args):
            for word in [entry] if isinstance(entry, str) else [str(w) for w in entry]:
                if SHELL_SYNTAX.search(word):
                    found.append((("args", i), _literal_note(word)))
        for name, values in self.sweep.items():
            for value in values:
                if isinstance(value, str) and SHELL_SYNTAX.search(value):
                    found.append((("sweep", name), _literal_note(value)))
        if self.cd and CD_SYNTAX.search(self.cd):  # the original ran `cd <cd> && ...` as shell code
            found.append(
                (("cd",), f"cd {self.cd!r} is one folder name (a leading ~ is the home): " + _SHELL_WAS)
            )
        return found

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
    # itertools.product varies its last iterable fastest: reversed keys, then args last
    combos = itertools.product(*(sweep[n] for n in reversed(names)), arg_list)
    jobs: list[Job] = []
    for combo in combos:
        point = dict(zip(names, reversed(combo[:-1]), strict=True))
        jobs.append(Job(len(jobs), combo[-1], point, tuple(seeds)))
    return jobs


# What a shell would have expanded or run in the original tool's args and sweep values, and in a
# `cd` (where compute keeps a leading `~` meaning the home, as the shell did).
SHELL_SYNTAX = re.compile(r"[$`;|&<>()*?]|(^|\s)~")
CD_SYNTAX = re.compile(r"[$`;|&<>()*?]|\s~")
_SHELL_WAS = "the original tool let the shell expand $VAR, $(...), globs and ; | & here; write shell code in 'cmd' to have it run"


def _literal_note(word: str) -> str:
    return f"{word!r} reaches the program as written: " + _SHELL_WAS


def _as_written(value: Any) -> Any:
    """A number from the file becomes its text as written; other values stay."""
    if isinstance(value, (yamlfile.WrittenInt, yamlfile.WrittenFloat)):
        return value.written
    return value


def scatter(jobs: Sequence[Job], host_index: int, host_count: int) -> list[Job]:
    """Round-robin share of the jobs for one of the task's hosts."""
    return list(jobs[host_index::host_count])
