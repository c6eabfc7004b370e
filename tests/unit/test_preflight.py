"""`compute check --remote`, the pure parts: which probes each host's tasks need, the probe script
(a reference file in golden/preflight/, and run here with bash), reading its answers, the sbatch
header that `--test-only` gets, and the report. Regenerate the reference files after a deliberate
change with `COMPUTE_REGEN_GOLDEN=1 pytest tests/unit/test_preflight.py` and review the diff."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from compute_platform import playbook
from compute_platform.checks import preflight
from compute_platform.checks.preflight import Check, Probe
from compute_platform.input.spec import ResolvedConfig
from compute_platform.scheduling.sbatch import SbatchSpec, render
from compute_platform.scheduling.sweep import expand
from tests.support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden" / "preflight"

HOSTS = """\
cluster: {host: login.example.org, platform: slurm, save_path: /scratch/me/logs}
ws: {host: ws.example.org, python: ~/venv/bin/python}
plain: {host: plain.example.org}
"""
BOOK = """\
inventory: {hosts: hosts.yaml, configs: configs.yaml}
tasks:
  - {name: train, hosts: cluster, slurm: {cmd: echo, sweep: {lr: [1, 2]}}}
  - {name: side, hosts: ws, tmux: {cmd: echo}}
  - {name: deps, hosts: ws, pip: [numpy]}
  - {name: code, hosts: [ws, plain], git: {path: ~/code}}
  - {name: run, hosts: plain, cmd: ls}
  - {name: rm, hosts: plain, pip: {packages: [x], action: uninstall}}
  - {name: sys, hosts: cluster, pip: {packages: [x], extra_args: [--break-system-packages]}}
"""


@pytest.fixture
def book(tmp_path: Path) -> playbook.Playbook:
    (tmp_path / "hosts.yaml").write_text(HOSTS)
    (tmp_path / "configs.yaml").write_text("default: {cpus: 1}\n")
    (tmp_path / "book.yaml").write_text(BOOK)
    return playbook.load(tmp_path / "book.yaml")


def test_each_host_gets_the_probes_its_tasks_need(book: playbook.Playbook) -> None:
    names = {alias: [p.name for p in preflight.probes(book, alias)] for alias in ("cluster", "ws", "plain")}
    assert names == {
        "cluster": ["save_path /scratch/me/logs writable", "sbatch", preflight.CLUSTER, "python3 with pip"],
        "ws": ["save_path ~/compute/logs writable", "tmux", "~/venv/bin/python with pip", "git"],
        "plain": ["python3 with pip", "git"],
    }
    # only an install into a Python that may be the system's is checked for PEP 668
    by_host = {
        alias: {p.name: p for p in preflight.probes(book, alias)} for alias in ("cluster", "ws", "plain")
    }
    assert "EXTERNALLY-MANAGED" in by_host["ws"]["~/venv/bin/python with pip"].script
    assert "EXTERNALLY-MANAGED" not in by_host["plain"]["python3 with pip"].script  # uninstall
    assert (
        "EXTERNALLY-MANAGED" not in by_host["cluster"]["python3 with pip"].script
    )  # --break-system-packages


def test_probe_script_matches_reference_and_is_valid_sh(book: playbook.Playbook) -> None:
    script = preflight.probe_script(preflight.probes(book, "ws"))
    check_golden(GOLDEN / "probe_ws.sh", script)
    for shell in ("bash", "sh"):
        proc = subprocess.run([shell, "-n"], input=script, capture_output=True, text=True, timeout=10)
        assert proc.returncode == 0, proc.stderr


def run_locally(probes: list[Probe]) -> dict[int, tuple[int, str]]:
    proc = subprocess.run(
        ["sh"], input=preflight.probe_script(probes), capture_output=True, text=True, timeout=30
    )
    return preflight.parse_markers(proc.stdout)


def test_probes_run_by_a_posix_shell_answer_each_with_its_status(tmp_path: Path) -> None:
    probes = [
        preflight.save_path_probe(str(tmp_path / "new" / "logs"), "h"),
        preflight.save_path_probe("/proc/compute-nope", "h"),
        preflight.tool_probe("sh", "hint"),
        preflight.tool_probe("no-such-tool-here", "install it"),
        preflight.python_probe(sys.executable, "h", managed=False),
        preflight.python_probe(str(tmp_path / "nope" / "python"), "h", managed=False),
        Probe("exits", "exit 5"),  # one probe ending its shell does not end the others
        preflight.save_path_probe(str(tmp_path), "h"),
    ]
    answers = run_locally(probes)
    assert sorted(answers) == list(range(len(probes)))
    assert answers[0] == (0, str(tmp_path / "new" / "logs")) and (tmp_path / "new" / "logs").is_dir()
    assert answers[1][0] != 0 and "cannot create directory '/proc/compute-nope'" in answers[1][1]
    assert answers[2][0] == 0 and answers[2][1].endswith("/sh")
    assert answers[3] == (127, "no-such-tool-here: command not found")
    assert (
        answers[4][0] == 0 and answers[4][1].startswith(f"{sys.executable} 3.") and ", pip " in answers[4][1]
    )
    assert answers[5][0] != 0 and "nope/python" in answers[5][1]
    assert answers[6] == (5, "")
    assert answers[7] == (0, str(tmp_path)) and not list(tmp_path.glob(".compute-probe-*"))


@pytest.mark.skipif(
    not Path("/usr/bin/python3").exists() or not list(Path("/usr/lib").glob("python3*/EXTERNALLY-MANAGED")),
    reason="needs a system Python marked externally managed (PEP 668)",
)
def test_the_systems_managed_python_fails_the_install_check() -> None:
    [(code, output)] = run_locally([preflight.python_probe("/usr/bin/python3", "h", managed=True)]).values()
    assert code == preflight.MANAGED
    assert output == preflight.MANAGED_MESSAGE.format("/usr/bin/python3")


def test_sbatch_reads_only_the_header_of_the_rendered_script() -> None:
    spec = SbatchSpec(
        "sweep",
        "python train.py",
        tuple(expand([], {"lr": [0.1, 0.01]}, [0])),
        ResolvedConfig("gpu", cpus=4, time="01:00:00", partition="gpu", gpu=1),
        "/home/alice/logs",
        array=True,
        comment="compute: playbook b.yaml, task 'sweep', host c",
    )
    header = preflight.sbatch_header(render(spec))
    check_golden(GOLDEN / "sbatch_header.txt", header)
    assert header.startswith("#!/bin/bash\n") and "#SBATCH --array=0-1" in header
    assert all(line.startswith("#") for line in header.splitlines())
    script = preflight.test_only_script([header])
    assert f"sbatch --test-only <<'{preflight.EOF_WORD}'\n{header}true\n{preflight.EOF_WORD}" in script


def test_test_only_answers_quote_sbatch() -> None:
    ok = preflight.test_only_answer(
        "c",
        "t",
        0,
        "sbatch: Job 12 to start at 2026-11-24T23:29:46 using 1 processors on nodes vm in partition gpu",
    )
    assert ok == Check(
        "c",
        "t",
        True,
        "Job 12 to start at 2026-11-24T23:29:46 using 1 processors on nodes vm in partition gpu",
    )
    refused = preflight.test_only_answer(
        "c",
        "t",
        1,
        "sbatch: error: invalid partition specified: nope\n"
        "sbatch: error: Batch job submission failed: Invalid partition name specified\n",
    )
    assert refused == Check(
        "c",
        "t",
        False,
        "sbatch: error: invalid partition specified: nope; "
        "sbatch: error: Batch job submission failed: Invalid partition name specified",
    )
    assert preflight.test_only_answer("c", "t", 1, "").detail == "sbatch --test-only: exit status 1"


def test_a_failed_probe_says_what_it_saw_and_what_to_do() -> None:
    probe = preflight.tool_probe("tmux", "install tmux")
    assert preflight.answer("h", probe, 127, "tmux: command not found\n") == Check(
        "h", "tmux", False, "tmux: command not found (install tmux)"
    )
    assert preflight.answer("h", probe, 0, "/usr/bin/tmux\n") == Check("h", "tmux", True, "/usr/bin/tmux")


def test_markers_split_the_output_even_without_a_final_newline() -> None:
    out = f"a\nb\n\n{preflight.MARK} 0 0\nc\n{preflight.MARK} 1 2\n"
    assert preflight.parse_markers(out) == {0: (0, "a\nb"), 1: (2, "c")}


def test_cluster_facts_fall_back_to_slurms_default_array_size() -> None:
    assert preflight.cluster_of("/home/me\n5000\n") == preflight.Cluster("/home/me", 5000)
    assert preflight.cluster_of("/home/me\n") == preflight.Cluster(
        "/home/me", preflight.DEFAULT_MAX_ARRAY_SIZE
    )


def test_report_matches_reference() -> None:
    checks = [
        Check("cluster", "connect", True, "21 ms"),
        Check(
            "cluster",
            "task 'bad': sbatch --test-only",
            False,
            "sbatch: error: invalid partition specified: x",
        ),
        Check("ws", "tmux", True, "tmux 3.3a"),
        Check("ws", "git", False, "git: command not found (install git on the host)"),
    ]
    text = "\n".join([*preflight.report_lines(checks), preflight.verdict(checks)]) + "\n"
    check_golden(GOLDEN / "report.txt", text)
    assert preflight.verdict(checks[:1]) == "remote checks: all 1 ok"
    assert "\x1b[1;31mFAILED\x1b[0m" in preflight.report_lines(checks, color=True)[1]
