"""Hostile input: whatever string a playbook puts in a sweep value, an argument, a seed, a path, a job
name or an env value, the program receives it literally, byte for byte: as exactly ONE argument (or
variable), except a sweep value with blanks, which is split into words as a shell would split it
(quotes group words; the original tool's `--preset a b`), each word literal; or the value is refused
at load time with a clean error. Nothing is ever run that the user did not write.

The rendered commands are executed for real with bash: the `cmd` prelude, an sbatch script's body and a
tmux launcher's job, each running a tiny printer that reports its argv, working directory and
environment as JSON.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from compute_platform.hosts import shell
from compute_platform.input.spec import ResolvedConfig
from compute_platform.scheduling import tmux
from compute_platform.scheduling.sbatch import SbatchSpec, render
from compute_platform.scheduling.sweep import JOB_NAME, SEED_SYNTAX, Job, SweepFields, expand, parse_seeds

PRINTER = """\
import json, os, sys
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(),
                  "env": {k: v for k, v in os.environ.items() if k.startswith("HOSTILE_")},
                  "seed": os.environ.get("SEED")}))
"""

# Text a YAML file can hold and a command line can carry: no NUL (no C string holds one) and no lone
# surrogate (not encodable as UTF-8). Both are refused at load time (see test_yaml_fuzz.py).
CHARS = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")
NASTY = st.sampled_from(
    [
        "'",
        '"',
        "$(touch pwned)",
        "`touch pwned`",
        "; touch pwned",
        "&& touch pwned",
        "a\nb",
        "\n",
        "--help",
        "-n",
        "*",
        "~",
        "$HOME",
        "${IFS}",
        "\\",
        "é✓ 中文 🙂",
        "",
        " ",
        "\t",
        "#",
        "!",
        "a b",
        "%j",
        "\r",
    ]
)
TEXT = st.one_of(NASTY, st.text(CHARS, max_size=20), st.lists(NASTY, max_size=4).map("".join))
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def printer(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("printer")
    path = folder / "printer.py"
    path.write_text(PRINTER)
    return f"{shell.quote(sys.executable)} -S {shell.quote(str(path))}"


def bash(script: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
    )


def report(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The printer's report: the last line of output (jobs print `CMD <command>` first)."""
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, proc.stdout
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def flag(name: str, value: str) -> list[str] | None:
    """What the program gets for `--name` = value: one word, or the flag and the value's words;
    None when the value is refused (quotes that do not balance)."""
    if not any(c.isspace() for c in value):
        return [f"--{name}={value}"]
    try:
        return [f"--{name}", *shlex.split(value)]
    except ValueError:
        return None


def nothing_injected(folder: Path) -> None:
    assert not (folder / "pwned").exists()


# -- the cmd prelude and a sweep job's command line ------------------------------------------------


@pytest.mark.slow
@FAST
@given(values=st.lists(TEXT, min_size=1, max_size=3), word=TEXT, seed=TEXT)
def test_sweep_values_and_args_reach_the_program_as_one_argument_each(
    printer: str, tmp_path: Path, values: list[str], word: str, seed: str
) -> None:
    if any(flag("lr", v) is None for v in values):
        with pytest.raises(ValidationError):
            SweepFields(cmd="true", sweep={"lr": values})
        return
    jobs = expand([[word, "--literal"]], {"lr": values, "flag": [True]}, ())
    for job, value in zip(jobs, values, strict=True):
        seeded = Job(job.index, job.args, job.point, (seed,) if seed.strip() else ())
        for seed_value, line in seeded.commands(printer, seed_flag="--seed"):
            out = report(bash(shell.build(line), tmp_path))
            expected = [word, "--literal", *(flag("lr", value) or []), "--flag"]
            if seed_value is not None:
                expected += ["--seed", str(seed_value)]
            assert out["argv"] == expected
    nothing_injected(tmp_path)


@FAST
@given(value=TEXT, name=st.sampled_from(["HOSTILE_A", "HOSTILE_b_2"]))
def test_env_values_reach_the_program_verbatim(printer: str, tmp_path: Path, value: str, name: str) -> None:
    out = report(bash(shell.build(printer, env={name: value}), tmp_path))
    assert out["env"] == {name: value}
    nothing_injected(tmp_path)


@pytest.mark.slow
@FAST
@given(name=st.text(CHARS, min_size=1, max_size=12).filter(lambda n: "/" not in n and n not in (".", "..")))
def test_any_directory_name_is_one_path(printer: str, tmp_path: Path, name: str) -> None:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    out = report(bash(shell.build(printer, cwd=str(folder)), tmp_path))
    assert out["cwd"] == str(folder)
    # `~/NAME`: the home of whoever runs it, the rest literal
    out = report(bash(shell.build(printer, cwd="~/" + name), tmp_path, env={"HOME": str(tmp_path)}))
    assert out["cwd"] == str(folder)
    nothing_injected(tmp_path)


@pytest.mark.parametrize("name", ["A;touch pwned", "A B", "1A", "A=B", "$(touch pwned)", "", "A-B"])
def test_env_names_that_are_not_identifiers_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        shell.env_exports({name: "x"})
    with pytest.raises(ValidationError):
        SweepFields(cmd="true", env={name: "x"})


# -- seeds -----------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(TEXT, st.integers(), st.lists(st.one_of(st.integers(), TEXT), max_size=5)))
def test_seed_parsing_accepts_or_refuses_cleanly(value: Any) -> None:
    try:
        seeds = parse_seeds(value)
    except ValueError:
        return
    assert all(isinstance(s, (int, str)) and not isinstance(s, bool) for s in seeds)
    assert len({str(s) for s in seeds}) == len(seeds)
    # the comma- and space-separated forms read back the same seeds (when no seed holds a separator,
    # a blank, a brace or what the string form refuses as shell syntax)
    plain = [not set(s) & set(",{}") and not any(c.isspace() for c in s) for s in map(str, seeds)]
    if all(plain) and not any(SEED_SYNTAX.search(str(s)) for s in seeds):
        assert parse_seeds(", ".join(str(s) for s in seeds)) == seeds
        assert parse_seeds(" ".join(str(s) for s in seeds)) == seeds


@settings(max_examples=200, deadline=None)
@given(seeds=st.lists(st.integers(-(10**12), 10**12), unique=True, max_size=8))
def test_integer_seeds_round_trip_through_the_string_form(seeds: list[int]) -> None:
    assert parse_seeds(",".join(map(str, seeds))) == tuple(seeds)


# -- job names -------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(name=TEXT)
def test_job_names_are_refused_or_safe_everywhere(name: str) -> None:
    try:
        fields = SweepFields(cmd="true", job_name=name)
    except ValidationError:
        assert not JOB_NAME.match(name) or "\n" in name
        return
    assert JOB_NAME.match(name) and "\n" not in name
    assert fields.name("any task") == name
    assert shell.quote(name) == name  # nothing in it a shell would read specially
    assert tmux.session_base(name).replace("_", "").replace("+", "").replace("-", "").isalnum()


@settings(max_examples=300, deadline=None)
@given(task_name=TEXT)
def test_job_names_made_from_task_names_are_plain_words(task_name: str) -> None:
    name = SweepFields(cmd="true").name(task_name)
    assert name and shell.quote(name) == name
    assert not name.startswith("-")


# -- rendered job scripts, executed --------------------------------------------------------------


def sbatch_body(printer: str, job: Job, env: dict[str, str], cd: str, save: Path) -> str:
    spec = SbatchSpec(
        job_name="hostile",
        cmd=printer + ' "$seed"',  # the original tool's form: the command reads the seed from $seed
        jobs=(job,),
        config=ResolvedConfig(name="default"),
        save_path=str(save),
        env=env,
        cd=cd,
    )
    return render(spec)


@FAST
@given(value=TEXT, word=TEXT, env_value=TEXT, seed=st.one_of(st.integers(), TEXT.filter(lambda s: s.strip())))
def test_an_sbatch_script_runs_the_values_as_written(
    printer: str, tmp_path: Path, value: str, word: str, env_value: str, seed: int | str
) -> None:
    seeds = parse_seeds([seed]) if not isinstance(seed, str) or "," not in seed else (seed.strip(),)
    expected = flag("x", value)
    if expected is None:
        return  # refused at load time (test_sweep_values_and_args_reach_the_program_as_one_argument_each)
    job = Job(0, (word,), {"x": value}, seeds)
    folder = tmp_path / "dir with 'quote' $(x)"
    folder.mkdir(exist_ok=True)
    script = sbatch_body(printer, job, {"HOSTILE_V": env_value}, str(folder), tmp_path)
    (tmp_path / "job.sbatch").write_text(script)
    proc = subprocess.run(
        ["bash", str(tmp_path / "job.sbatch")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "SLURM_JOB_ID": "7"},
    )
    out = report(proc)
    assert out["argv"] == [str(seeds[0]), word, *expected]
    assert out["env"] == {"HOSTILE_V": env_value}
    assert out["seed"] == str(seeds[0])
    assert out["cwd"] == str(folder)
    assert (tmp_path / "hostile.7.status").read_text() == "0 exit\n"
    nothing_injected(tmp_path)
    nothing_injected(folder)


@FAST
@given(value=TEXT, env_value=TEXT)
def test_a_tmux_launcher_job_runs_the_values_as_written(
    printer: str, tmp_path: Path, value: str, env_value: str
) -> None:
    expected = flag("v", value)
    if expected is None:
        return  # refused at load time
    session = tmp_path / "session"
    session.mkdir(exist_ok=True)
    job = Job(3, (value,), {"v": value}, ())
    spec = tmux.LauncherSpec(task="t", cmd=printer, jobs=(job,), env={"HOSTILE_V": env_value})
    (session / tmux.LAUNCHER).write_text(tmux.render_launcher(spec))
    (session / "queue").write_text("3\n")
    for stale in session.glob("3.*"):
        stale.unlink()
    proc = subprocess.run(
        ["bash", str(session / tmux.LAUNCHER), "lane", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    out = report(subprocess.CompletedProcess([], 0, (session / "3.log").read_text(), ""))
    assert out["argv"] == [value, *expected]
    assert out["env"] == {"HOSTILE_V": env_value}
    assert (session / "3.status").read_text() == "0\n"
    nothing_injected(tmp_path)
    nothing_injected(session)


def test_cmd_task_env_names_are_checked_at_load_time() -> None:
    from compute_platform.tasks.cmd import Cmd

    with pytest.raises(ValidationError):
        Cmd.model_validate({"commands": ["true"], "env": {"A;touch pwned": "x"}})
    assert Cmd.model_validate({"commands": ["true"], "env": {"OK_1": "x"}}).env == {"OK_1": "x"}


# -- secrets on stdin -------------------------------------------------------------------------------


@FAST
@given(values=st.lists(TEXT, min_size=1, max_size=3), rest=st.binary(max_size=64))
@pytest.mark.parametrize("sh", ["bash", "sh"])
def test_secret_values_arrive_verbatim_and_leave_the_rest_of_stdin(
    printer: str, tmp_path: Path, sh: str, values: list[str], rest: bytes
) -> None:
    from compute_platform.hosts import secret_env

    secrets = {f"HOSTILE_S{i}": v for i, v in enumerate(values)}
    end = secret_env.marker()
    script = f"{secret_env.receive(end)}\n{printer} >&2; cat"
    proc = subprocess.run(
        [sh, "-c", script], input=secret_env.payload(secrets, end) + rest, capture_output=True, timeout=30
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stderr.decode().splitlines()[-1])["env"] == secrets
    assert proc.stdout == rest  # what follows the secrets (an sbatch script) is intact
    nothing_injected(tmp_path)


def test_masking_hides_every_secret_value_in_what_is_printed() -> None:
    from compute_platform.run.reporting import MASK, mask

    assert mask("key=abcd1234 and abcd1234x", ["abcd1234"]) == f"key={MASK} and {MASK}x"
