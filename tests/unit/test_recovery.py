"""Retry policies (scheduling/recovery.py): the classes of a job's end, the decisions, the grown
resources and scripts; and the recovery part of an sbatch script run by bash here, with a stand-in
`scontrol` that records what the script asks of Slurm."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from compute_platform.errors import InputError
from compute_platform.input.spec import ResolvedConfig
from compute_platform.scheduling import recovery
from compute_platform.scheduling.backend import CANCELLED, COMPLETED, FAILED, TIMEOUT, UNKNOWN, JobState
from compute_platform.scheduling.recovery import Checkpoint, Policy, decide
from compute_platform.scheduling.sbatch import SbatchSpec, render
from compute_platform.scheduling.sweep import expand
from compute_platform.tasks.slurm import Slurm
from compute_platform.tasks.tmux import Tmux


@pytest.mark.parametrize(
    ("state", "log", "expected"),
    [
        (JobState(COMPLETED, 0), "", ""),
        (JobState(CANCELLED, None, "PREEMPTED"), "", "preempted"),
        (JobState(FAILED, None, "NODE_FAIL"), "", "node_fail"),
        (JobState(FAILED, 0, "OUT_OF_MEMORY"), "", "oom"),
        (JobState(FAILED, 137), "", "oom"),
        (JobState(FAILED, 0, "JobLaunchFailure"), "exceeded memory limit", "oom"),  # OverMemoryKill's words
        (JobState(TIMEOUT, 143), "", "timeout"),
        (JobState(CANCELLED, 143), "", ""),  # the user's scancel
        (JobState(CANCELLED, 137), "", ""),  # compute cancel's SIGKILL after its grace: not an oom
        (JobState(FAILED, 1), "CUDA out of memory", "log"),
        (JobState(FAILED, 1, "fail_on_log"), "", "fail_on_log"),
        (
            JobState(FAILED, None, "ended without an exit status (tmux session killed or host rebooted)"),
            "",
            "lost",
        ),
        (JobState(FAILED, 2), "", "failed"),
        (JobState(UNKNOWN, None, "gone from the queue, no exit status"), "", "failed"),
    ],
)
def test_each_end_has_its_class(state: JobState, log: str, expected: str) -> None:
    assert recovery.classify(state, log) == expected


DEFAULT = Policy()


def test_the_default_policy_retries_the_clusters_failures_not_the_programs() -> None:
    assert decide(DEFAULT, JobState(CANCELLED, None, "PREEMPTED"), 1).retry
    verdict = decide(DEFAULT, JobState(FAILED, 1), 1)
    assert not verdict.retry and verdict.why.startswith("exit 1 is not retried")
    assert not decide(None, JobState(FAILED, 137), 1).retry  # no policy, no retry
    assert decide(DEFAULT, JobState(COMPLETED, 0), 1) == recovery.Verdict("", False, "")


def test_exit_codes_and_log_patterns_name_what_is_retried() -> None:
    policy = Policy(on=(3, "failed"), on_log=("NCCL timeout",))
    assert decide(policy, JobState(FAILED, 3), 1).retry
    assert decide(Policy(on=(3,)), JobState(FAILED, 4), 1).retry is False
    assert decide(Policy(on=(), on_log=("NCCL",)), JobState(FAILED, 1), 1, log_match="NCCL").retry


def test_the_last_attempt_is_the_last() -> None:
    verdict = decide(Policy(max=2), JobState(TIMEOUT, 143), 2)
    assert not verdict.retry and "attempt 2 of 2 was the last" in verdict.why


SCRIPT = "#!/bin/bash\n#SBATCH --job-name=t\n#SBATCH --time=01:30:00\n#SBATCH --mem=6G\ncompute_attempts_before=0\n"


def test_memory_and_time_grow_by_their_factors() -> None:
    policy = Policy(mem=2, time=1.5)
    oom = decide(policy, JobState(FAILED, 137), 1, SCRIPT)
    assert (oom.retry, oom.overrides) == (True, {"mem": "12G"})
    assert "attempt 2 of 3 with --mem=12G" in oom.why
    assert decide(policy, JobState(TIMEOUT, 143), 1, SCRIPT).overrides == {"time": "135"}
    again = decide(policy, JobState(FAILED, 137), 2, SCRIPT, base={"mem": "12G"})
    assert again.overrides == {"mem": "24G"}  # from the attempt's own memory
    assert not decide(policy, JobState(FAILED, 137), 1, "#SBATCH --job-name=t\n").retry  # nothing to grow


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("90", 90),
        ("1:30", 1.5),
        ("01:30:00", 90),
        ("2-00", 2880),
        ("1-02:03", 1563),
        ("1-00:00:30", 1440.5),
        ("x", None),
    ],
)
def test_slurm_times_read_as_minutes(text: str, minutes: float | None) -> None:
    assert recovery.parse_time(text) == minutes


def test_slurm_memory_reads_and_writes() -> None:
    assert [recovery.parse_mem(t) for t in ("4G", "500M", "4000", "1T", "x")] == [
        4096,
        500,
        4000,
        1048576,
        None,
    ]
    assert [recovery.format_mem(m) for m in (8192, 750.2, 100)] == ["8G", "751M", "100M"]


def test_a_script_again_carries_its_attempts_and_grown_resources() -> None:
    text = recovery.script_again(SCRIPT, {"mem": "12G", "gres": "gpu:2"}, 2)
    assert "#SBATCH --mem=12G" in text and "--mem=6G" not in text
    assert "#SBATCH --job-name=t\n#SBATCH --gres=gpu:2\n" in text  # a new option after the first
    assert "compute_attempts_before=2\n" in text


def test_a_script_again_says_its_attempts() -> None:
    assert recovery.attempts_before(recovery.script_again(SCRIPT, {}, 4)) == 4
    assert recovery.attempts_before("#!/bin/bash\n") == 0


def test_a_policy_travels_in_its_script() -> None:
    policy = Policy(
        max=4, on=("oom", 75), mem=2, checkpoint=Checkpoint(60, "USR2", "touch s"), webhook="http://h/x"
    )
    assert Policy.from_json(policy.to_json()) == policy
    spec = SbatchSpec("t", "run", tuple(expand([], {})), ResolvedConfig("d"), "/tmp", policy=policy)
    assert recovery.policy_in(render(spec)) == policy
    assert recovery.policy_in("#!/bin/bash\n") is None
    assert Policy.from_json("{not json") is None


def test_the_task_fields_give_the_policy() -> None:
    task = Slurm.model_validate(
        {"cmd": "x", "retry": 2, "fail_on_log": "NCCL", "notify": {"mail": "me@lab.org"}}
    )
    policy = task.policy()
    assert policy is not None and (policy.max, policy.on, policy.fail_on_log) == (
        2,
        recovery.DEFAULT_ON,
        ("NCCL",),
    )
    assert (policy.mail, policy.smtp) == (("me@lab.org",), "localhost:25")
    assert Slurm.model_validate({"cmd": "x"}).policy() is None
    assert Tmux.model_validate({"cmd": "x", "retry": 2}).policy().on == ("lost",)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"retry": {"on": ["boom"]}}, "retry.on"),
        ({"retry": {"max": 0}}, "greater than or equal to 1"),
        ({"retry": {"escalate": {"mem": 0.5}}}, "greater than or equal to 1"),
        ({"retry": {"checkpoint": {"signal": "KILL"}}}, "expected one of USR1"),
        ({"retry": {"checkpoint": {"signal": "TERM"}}}, "expected one of USR1"),
        (
            {"retry": {"checkpoint": {"signal": "USR2"}}, "fail_on_log": "x"},
            "give the checkpoint another signal",
        ),
        ({"retry": {"checkpoint": {"command": "  "}}}, "checkpoint.command is empty"),
        ({"retry": {"checkpoint": {"before": 600}}, "config": "short"}, "the signal would come at once"),
        ({"fail_on_log": ["(unclosed"]}, "is not a regular expression"),
        ({"fail_on_log": "x", "env": {"COMPUTE_LOG_EVERY": "ten"}}, "a number of seconds above 0"),
        ({"fail_on_log": "x", "env": {"COMPUTE_LOG_EVERY": "0"}}, "not '0'"),
        ({"fail_on_log": "x", "env": {"COMPUTE_LOG_EVERY": "5 "}}, "not '5 '"),  # sleep refuses it
        ({"notify": {"webhook": "ftp://x"}}, "expected an http:// or https:// URL"),
    ],
)
def test_bad_policies_are_refused_at_load_time(tmp_path: Path, fields: dict[str, object], says: str) -> None:
    from tests.support.project import write_book, write_hosts

    write_hosts(tmp_path, {"c": {"host": "127.0.0.1", "platform": "slurm"}})
    (tmp_path / "configs.yaml").write_text("default: {cpus: 1}\nshort: {cpus: 1, time: '00:05:00'}\n")
    book = write_book(tmp_path, [{"name": "t", "hosts": "c", "slurm": {"cmd": "x", **fields}}])
    from compute_platform import playbook

    with pytest.raises(InputError, match=says.replace(".", r"\.")):
        playbook.load(book)


# -- the recovery part of a script, run by bash here ----------------------------------------------


def _script(tmp_path: Path, cmd: str, policy: Policy, env: dict[str, str] | None = None) -> Path:
    spec = SbatchSpec(
        "job", cmd, tuple(expand([], {})), ResolvedConfig("d"), str(tmp_path), policy=policy, env=env or {}
    )
    path = tmp_path / "job.sbatch"
    path.write_text(render(spec))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.calls\n')
    (bin_dir / "scontrol").chmod(0o755)
    return path


def _start(tmp_path: Path, script: Path, restarts: int = 0) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SLURM_JOB_ID": "7",
        "SLURM_RESTART_COUNT": str(restarts),
        "PATH": f"{tmp_path}/bin:{os.environ['PATH']}",
    }
    out = open(tmp_path / "job.7.out", "wb")  # noqa: SIM115 (the child holds it)
    return subprocess.Popen(["bash", str(script)], env=env, stdout=out, stderr=subprocess.STDOUT)


def _wait_for(path: Path, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text() if path.exists() else ""):
        assert time.monotonic() < deadline, f"{text!r} not in {path}"
        time.sleep(0.05)


CHECKPOINTING = (
    "python3 -c 'import signal, sys, time\n"
    'signal.signal(signal.SIGUSR1, lambda *_: (print("saved", flush=True), sys.exit(1)))\n'
    'print("ready", flush=True); time.sleep(60)\''
)


def test_the_checkpoint_signal_reaches_the_program_then_the_job_requeues_itself(tmp_path: Path) -> None:
    script = _script(tmp_path, CHECKPOINTING, Policy(checkpoint=Checkpoint(30)))
    proc = _start(tmp_path, script)
    _wait_for(tmp_path / "job.7.out", "\nready\n")  # the line, not the CMD line quoting it
    proc.send_signal(signal.SIGUSR1)  # what Slurm's --signal=B:USR1@30 sends the batch shell
    _wait_for(tmp_path / "scontrol.calls", "requeue 7")
    assert "saved" in (tmp_path / "job.7.out").read_text()
    assert (tmp_path / "job.7.status").read_text() == "1 requeue 1\n"
    proc.send_signal(signal.SIGTERM)  # Slurm stops the requeued job's script
    assert proc.wait(10) == 0
    assert (tmp_path / "job.7.status").read_text() == "1 requeue 1\n"  # not overwritten by the stop


def test_a_shell_script_program_gets_the_signal_too(tmp_path: Path) -> None:
    program = tmp_path / "train.sh"
    program.write_text("trap 'echo saved; exit 1' USR1\necho ready\nwhile :; do sleep 0.1; done\n")
    script = _script(tmp_path, f"bash {program}", Policy(checkpoint=Checkpoint(30)))
    proc = _start(tmp_path, script)
    _wait_for(tmp_path / "job.7.out", "\nready\n")  # the line, not the CMD line quoting it
    proc.send_signal(signal.SIGUSR1)
    _wait_for(tmp_path / "scontrol.calls", "requeue 7")
    assert "saved" in (tmp_path / "job.7.out").read_text()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_the_last_attempt_is_not_requeued(tmp_path: Path) -> None:
    script = _script(tmp_path, CHECKPOINTING, Policy(max=2, checkpoint=Checkpoint(30)))
    proc = _start(tmp_path, script, restarts=1)  # attempt 2 of 2
    _wait_for(tmp_path / "job.7.out", "\nready\n")  # the line, not the CMD line quoting it
    proc.send_signal(signal.SIGUSR1)
    assert proc.wait(10) == 1  # the program saved and exited: its code is the job's
    assert (tmp_path / "job.7.status").read_text() == "1 exit 2\n"
    assert "requeue 7" not in (tmp_path / "scontrol.calls").read_text()
    assert "update jobid=7 requeue=0" in (tmp_path / "scontrol.calls").read_text()


def test_a_fail_on_log_line_cut_by_a_look_is_looked_at_whole(tmp_path: Path) -> None:
    cmd = "printf 'NCCL watch'; sleep 1.6; printf 'dog timeout\\n'; sleep 59.53"
    script = _script(
        tmp_path, cmd, Policy(retries=False, fail_on_log=("NCCL watchdog",)), {"COMPUTE_LOG_EVERY": "1"}
    )
    proc = _start(tmp_path, script)
    assert proc.wait(15) == 1
    assert (tmp_path / "job.7.status").read_text() == "1 log 1\n"


def test_a_fail_on_log_pattern_stops_the_job_within_its_period(tmp_path: Path) -> None:
    cmd = 'echo starting; sleep 0.5; echo "NCCL watchdog timeout: rank 3"; sleep 59.25'
    script = _script(
        tmp_path, cmd, Policy(retries=False, fail_on_log=("NCCL watchdog",)), {"COMPUTE_LOG_EVERY": "1"}
    )
    started = time.monotonic()
    proc = _start(tmp_path, script)
    assert proc.wait(15) == 1
    assert time.monotonic() - started < 5
    assert (tmp_path / "job.7.status").read_text() == "1 log 1\n"
    assert "matches a fail_on_log pattern" in (tmp_path / "job.7.out").read_text()
    assert subprocess.run(["pgrep", "-f", "sleep 59.25"], capture_output=True).returncode == 1  # nothing left
