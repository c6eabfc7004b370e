"""`sync`, `clone` and `run` (the original tool's keys): the parser of W&B's log lines, the script
that reads the logs (run by bash on hostile file names), and what the loader and the schema accept."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from compute_platform import playbook
from compute_platform.errors import InputError
from compute_platform.playbook.schema import schema
from compute_platform.tasks.clone import Clone
from compute_platform.tasks.cmd import Cmd
from compute_platform.tasks.sync import RUN_DIR, Sync, log_list, parse_listing, read_script, run_dirs

RUN = "/home/me/project/wandb/offline-run-20230512_101500-3k2j1h0d"
RUN2 = "/home/me/project/wandb/offline-run-20230512_111500-9x8y7z6w"


# -- the parser of log lines ---------------------------------------------------------------------


def test_the_lines_wandb_prints_at_the_end_of_an_offline_run() -> None:
    log = [
        "wandb: Waiting for W&B process to finish... (success).",
        "wandb: You can sync this run to the cloud by running:",
        f"wandb: wandb sync {RUN}",
        "wandb: Find logs at: ./wandb/offline-run-20230512_101500-3k2j1h0d/logs",
    ]
    assert run_dirs(log) == [RUN]


def test_colours_carriage_returns_and_repeats_are_seen_through() -> None:
    log = [
        f"\x1b[34m\x1b[1mwandb\x1b[0m: \x1b[1mwandb sync {RUN}\x1b[0m",
        f" 50%|#####     | 5/10\r100%|##########| 10/10\rwandb: wandb sync {RUN2}   ",
        f"wandb: wandb sync {RUN}",
    ]
    assert run_dirs(log) == [RUN, RUN2]


def test_a_path_with_spaces_is_one_path_and_several_run_directories_are_several() -> None:
    assert run_dirs(["wandb: wandb sync /home/me/my runs/wandb/offline-run-20230512_101500-ab12"]) == [
        "/home/me/my runs/wandb/offline-run-20230512_101500-ab12"
    ]
    assert run_dirs([f"wandb: wandb sync {RUN} {RUN2}/"]) == [RUN, RUN2 + "/"]
    old = "wandb/dryrun-20200101_000000-ab12"
    assert run_dirs([f"wandb: wandb sync {old} {old}x"]) == [old, old + "x"]
    assert run_dirs(["wandb: wandb sync ./wandb/offline-run-20230512_101500-ab12"]) == [
        "./wandb/offline-run-20230512_101500-ab12"
    ]
    assert run_dirs([f"wandb: wandb sync '{RUN}'"]) == [RUN]


def test_hints_echoes_and_other_mentions_are_not_runs() -> None:
    assert (
        run_dirs(
            [
                "wandb: NOTE: use wandb sync --sync-all to sync 1 unsynced runs from local directory.",
                "wandb: wandb synced 3 runs",
                'CMD echo "wandb: wandb sync /home/me/wandb/offline-run-20230512_101500-ab12"',
                "+ wandb sync /home/me/wandb/offline-run-20230512_101500-ab12",
                "wandb sync /home/me/wandb/offline-run-20230512_101500-ab12",
                "the wandb sync command is slow today",
                "wandb: wandb sync",
                "nothing here",
            ]
        )
        == []
    )


def test_hostile_text_stays_in_the_path() -> None:
    lines = [
        "wandb: wandb sync /home/me/wandb/offline-run-20230101_000000-a1$(touch pwned)",
        "wandb: wandb sync /home/me/wandb/offline-run-20230101_000001-b2; rm -rf ~",
        "wandb: wandb sync /home/me/`touch pwned`/offline-run-20230101_000002-c3 && reboot",
    ]
    assert run_dirs(lines) == [
        "/home/me/wandb/offline-run-20230101_000000-a1$(touch pwned)",
        "/home/me/wandb/offline-run-20230101_000001-b2; rm -rf ~",
        "/home/me/`touch pwned`/offline-run-20230101_000002-c3 && reboot",
    ]


PATH_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\x85"), min_size=1
)


@given(PATH_TEXT, PATH_TEXT)
def test_whatever_follows_wandb_sync_is_one_path(head: str, tail: str) -> None:
    path = f"/{head.strip()}/{tail.strip()}"
    words = path.split()
    several = len(words) > 1 and all(RUN_DIR.fullmatch(w.rstrip("/").rsplit("/", 1)[-1]) for w in words)
    if several:
        return
    assert run_dirs([f"wandb: wandb sync {path}"]) == [path]


# -- the script that reads the logs ----------------------------------------------------------------


def test_the_listing_skips_what_the_init_printed_and_keeps_each_logs_lines() -> None:
    out = textwrap.dedent(
        """\
        Loading module python/3.11
        compute-sync: wandb yes
        compute-sync: log 0
         wandb: wandb sync /a/offline-run-20230101_000000-x
         10%|#\r100%|##########|\rwandb: wandb sync /b
         compute-sync: missing 1
        compute-sync: missing 1
        compute-sync: log 2
        compute-sync: unreadable 3
        """
    )
    listing = parse_listing(out, 5)
    assert listing.wandb
    assert listing.logs == (
        (
            "log",
            (
                "wandb: wandb sync /a/offline-run-20230101_000000-x",
                "10%|#\r100%|##########|\rwandb: wandb sync /b",
                "compute-sync: missing 1",
            ),
        ),
        ("missing", ()),
        ("log", ()),
        ("unreadable", ()),
        ("missing", ()),  # not mentioned: the output was cut short
    )
    assert not parse_listing("compute-sync: wandb no\n", 0).wandb


def test_read_script_run_by_bash_reads_hostile_file_names_and_runs_no_log_line(tmp_path: Path) -> None:
    names = ["slurm.1.err", "$(touch pwned).err", "a b; touch pwned", "~", "missing.err"]
    for name in names[:4]:
        (tmp_path / name).write_text(
            f"noise\nwandb: wandb sync {RUN}$(touch pwned)\nwandb: wandb sync `touch pwned`\n"
        )
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "wandb").write_text("#!/bin/sh\n")
    (bin_dir / "wandb").chmod(0o755)
    script = read_script()
    paths = log_list([str(tmp_path / n) for n in names])
    for path, found in ((f"{bin_dir}:/usr/bin:/bin", True), ("/usr/bin:/bin", False)):
        proc = subprocess.run(
            ["bash", "-c", f"PATH={path}\n{script}"],
            input=paths,
            capture_output=True,
            cwd=tmp_path,
            timeout=30,
        )
        assert proc.returncode == 0, proc.stderr
        listing = parse_listing(proc.stdout.decode(), len(names))
        assert listing.wandb is found
        assert [state for state, _ in listing.logs] == ["log", "log", "log", "log", "missing"]
        assert all(run_dirs(lines) == [f"{RUN}$(touch pwned)"] for _, lines in listing.logs[:4])
        assert not (tmp_path / "pwned").exists()


# -- what the loader and the schema accept -------------------------------------------------------


def _load(tmp_path: Path, task: str) -> playbook.Playbook:
    (tmp_path / "hosts.yaml").write_text("localhost: {}\nh1: {host: h1.example.org, platform: slurm}\n")
    (tmp_path / "configs.yaml").write_text("default: {cpus: 1}\n")
    path = tmp_path / "book.yaml"
    path.write_text("inventory: {hosts: hosts.yaml, configs: configs.yaml}\ntasks:\n  " + task + "\n")
    return playbook.load(path)


def _schema_errors(task: str) -> list[str]:
    data = YAML(typ="safe").load("inventory: {hosts: hosts.yaml}\ntasks:\n  " + task + "\n")
    return [e.message for e in jsonschema.Draft202012Validator(schema("playbook")).iter_errors(data)]


ORIGINAL_FORMS = [
    "- {name: r, hosts: h1, run: 'module load python; python3 train.py'}",
    "- {name: r, hosts: h1, run: [echo one, echo two]}",
    "- {name: c, hosts: h1, clone: {repos: ['https://github.com/kenjyoung/MinAtar.git',"
    " 'git@github.com:TemplierPaul/BERL.git'], install: true}}",
    "- {name: s, hosts: h1, sync: {jobs: [813451], job_array: [813451, 813457]}}",
    "- {name: s, hosts: h1, sync: {job_array: [815775, 815795]}}",
]


@pytest.mark.parametrize("task", ORIGINAL_FORMS)
def test_the_original_forms_load_and_match_the_schema(task: str, tmp_path: Path) -> None:
    assert _schema_errors(task) == []
    _load(tmp_path, task)


def test_run_is_cmd(tmp_path: Path) -> None:
    one, two = (_load(tmp_path, ORIGINAL_FORMS[i]).tasks[0] for i in (0, 1))
    assert one.kind == two.kind == "cmd" and isinstance(one.action, Cmd)
    assert one.action.commands == ("module load python; python3 train.py",)
    assert two.action == Cmd(commands=("echo one", "echo two"))


def test_clone_forms(tmp_path: Path) -> None:
    task = _load(tmp_path, ORIGINAL_FORMS[2]).tasks[0]
    assert isinstance(task.action, Clone) and task.action.install and task.action.path == "~"
    assert [g.target for g in task.action.clones()] == ["~/MinAtar", "~/BERL"]
    short = _load(tmp_path, "- {hosts: h1, clone: 'https://x.org/a/BERL.git'}").tasks[0].action
    assert short == Clone(repos=("https://x.org/a/BERL.git",))


def test_sync_ids_are_text_in_order(tmp_path: Path) -> None:
    action = _load(tmp_path, ORIGINAL_FORMS[3]).tasks[0].action
    assert isinstance(action, Sync)
    assert action.ids() == ["813451", *(str(i) for i in range(813451, 813458))]


@pytest.mark.parametrize(
    ("task", "said"),
    [
        ("- {hosts: h1, sync: {}}", "nothing to sync: give 'jobs', 'job_array' or 'task'"),
        ("- {hosts: h1, sync: {job_array: [9, 3]}}", "expected [first, last] with 0 <= first <= last"),
        ("- {hosts: h1, sync: {job_array: [1, 2, 3]}}", "job_array"),
        ("- {hosts: h1, sync: {job_array: [1, 20000]}}", "holds more than 10000 ids"),
        ("- {hosts: h1, sync: {jobs: ['1 2']}}", "'1 2' is not a job id"),
        ("- {hosts: h1, sync: {jobs: [true]}}", "a job id is a number or a name"),
        ("- {hosts: h1, sync: {jobs: [1], jbos: [2]}}", "jbos"),
        ("- {name: s, hosts: h1, sync: {jobs: ['h2:5']}}", "job h2:5 is on h2, which is not one of"),
        (
            "- {name: c, hosts: h1, clone: {repos: [/a/x.git, /b/x]}}",
            "/a/x.git and /b/x would both be cloned into ~/x",
        ),
        ("- {hosts: h1, clone: {repos: []}}", "repos"),
        ("- {hosts: h1, clone: {repos: ['/']}}", "does not name a repository"),
    ],
)
def test_mistakes_are_refused_at_load_time(task: str, said: str, tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        _load(tmp_path, task)
    assert said in str(caught.value)


def test_ten_thousand_logs_are_read_in_one_call(tmp_path: Path) -> None:
    """The paths go on stdin: a command line would not hold them (the limit of one argument, 128 kB)."""
    paths = [str(tmp_path / f"{'x' * 60}.{i}.err") for i in range(10_000)]
    (tmp_path / Path(paths[-1]).name).write_text(f"wandb: wandb sync {RUN}\n")
    proc = subprocess.run(
        ["bash", "-c", read_script()], input=log_list(paths), capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    listing = parse_listing(proc.stdout.decode(), len(paths))
    assert [run_dirs(lines) for _, lines in listing.logs][-1] == [RUN]
