"""sbatch retries while Slurm's controller is unreachable, against fake `sbatch` and `squeue` programs
(shell scripts first in PATH) run through the real LocalHost and the real submission command.

The fakes keep their queue in a file: `sbatch` appends `<id>|<comment>` and prints the id; a scenario
file lists, one line per call, what sbatch does: `ok`, `down` (refused, nothing queued: the controller
is unreachable), `lost` (queued, but the answer never comes back), `bad` (refused for good)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from compute_platform.errors import Interrupted, TaskError
from compute_platform.hosts.local import LocalHost
from compute_platform.input.spec import HostSpec
from compute_platform.scheduling import slurm

SBATCH = r"""#!/bin/bash
state=@STATE@
n=$(($(cat "$state/calls" 2>/dev/null || echo 0) + 1)); echo $n > "$state/calls"
what=$(sed -n "${n}p" "$state/scenario"); what=${what:-ok}
comment=; for a in "$@"; do case $a in --comment=*) comment=${a#--comment=};; esac; done
script=${!#}; [ -f "$script" ] || { echo "sbatch: error: no script $script" >&2; exit 1; }
id=$((100 + n))
failed="sbatch: error: Batch job submission failed"
case $what in
  ok) echo "$id|$comment" >> "$state/queue"; echo "$id" ;;
  lost) echo "$id|$comment" >> "$state/queue"
        echo "$failed: Socket timed out on send/recv operation" >&2; exit 1 ;;
  down) echo "$failed: Unable to contact slurm controller (connect failure)" >&2; exit 1 ;;
  bad) echo "$failed: Invalid partition name specified" >&2; exit 1 ;;
esac
"""
SQUEUE = r"""#!/bin/bash
state=@STATE@
[ -e "$state/squeue-down" ] && { echo "squeue: error: Unable to contact slurm controller" >&2; exit 1; }
cat "$state/queue" 2>/dev/null
exit 0
"""
SCRIPT = "#!/bin/bash\n#SBATCH --job-name=x\ntrue\n"


class FakeSlurm:
    def __init__(self, folder: Path) -> None:
        self.state = folder / "state"
        self.state.mkdir()
        bindir = folder / "bin"
        bindir.mkdir()
        (folder / ".compute" / "scripts").mkdir(parents=True)  # made by slurm.prepare() on clusters
        for name, text in (("sbatch", SBATCH), ("squeue", SQUEUE)):
            path = bindir / name
            path.write_text(text.replace("@STATE@", str(self.state)))
            path.chmod(0o755)
        self.host = LocalHost(
            HostSpec(alias="fake", env={"PATH": f"{bindir}:{os.environ['PATH']}", "HOME": str(folder)})
        )

    def scenario(self, *steps: str) -> None:
        (self.state / "scenario").write_text("".join(f"{s}\n" for s in steps))

    @property
    def calls(self) -> int:
        path = self.state / "calls"
        return int(path.read_text()) if path.exists() else 0

    @property
    def queue(self) -> list[str]:
        path = self.state / "queue"
        return path.read_text().split() if path.exists() else []


@pytest.fixture
def fake(tmp_path: Path) -> FakeSlurm:
    return FakeSlurm(tmp_path)


def fast(seconds: float = 5.0, **kw: object) -> slurm.Retry:
    return slurm.Retry(seconds, first_pause=0.01, max_pause=0.05, **kw)  # type: ignore[arg-type]


def test_an_unreachable_controller_is_retried_until_it_answers(fake: FakeSlurm) -> None:
    fake.scenario("down", "down", "ok")
    heard: list[str] = []
    assert slurm.submit(fake.host, SCRIPT, retry=fast(report=heard.append)) == "103"
    assert fake.calls == 3 and len(fake.queue) == 1
    assert len(heard) == 2 and "Unable to contact slurm controller" in heard[0]


def test_a_lost_answer_is_found_in_the_queue_instead_of_submitting_twice(fake: FakeSlurm) -> None:
    fake.scenario("lost", "ok")
    assert slurm.submit(fake.host, SCRIPT, retry=fast()) == "101"
    assert fake.calls == 1  # the retry found job 101 by its token and did not call sbatch again
    assert len(fake.queue) == 1 and "compute-submission:" in fake.queue[0]


def test_looking_for_a_lost_job_while_squeue_fails_is_retried_too(fake: FakeSlurm) -> None:
    fake.scenario("lost", "ok")
    (fake.state / "squeue-down").write_text("")
    timer = threading.Timer(0.3, (fake.state / "squeue-down").unlink)
    timer.start()
    try:
        assert slurm.submit(fake.host, SCRIPT, retry=fast()) == "101"
    finally:
        timer.cancel()
    assert len(fake.queue) == 1


def test_the_retries_end_after_submit_retry_seconds_with_a_clear_error(fake: FakeSlurm) -> None:
    fake.scenario(*["down"] * 100)
    with pytest.raises(TaskError) as info:
        slurm.submit(fake.host, SCRIPT, retry=fast(0.3))
    assert "controller did not answer" in info.value.message and "--skip-submitted" in info.value.message
    assert fake.queue == []


@pytest.mark.parametrize("seconds", [0.0, 5.0])
def test_a_refusal_is_never_retried(fake: FakeSlurm, seconds: float) -> None:
    fake.scenario("bad", "ok")
    with pytest.raises(TaskError, match=r"sbatch refused the job: .*Invalid partition"):
        slurm.submit(fake.host, SCRIPT, retry=fast(seconds))
    assert fake.calls == 1


def test_without_retry_an_unreachable_controller_fails_at_once(fake: FakeSlurm) -> None:
    fake.scenario("down", "ok")
    with pytest.raises(TaskError, match="controller did not answer for 0 s"):
        slurm.submit(fake.host, SCRIPT)
    assert fake.calls == 1


def test_a_user_comment_is_kept_and_an_uncertain_failure_is_not_retried(fake: FakeSlurm) -> None:
    fake.scenario("lost", "ok")
    with pytest.raises(TaskError, match="Socket timed out"):
        slurm.submit(fake.host, "#!/bin/bash\n#SBATCH --comment=mine\ntrue\n", retry=fast())
    assert fake.queue == ["101|"]  # no token replaced the user's comment


def test_ctrl_c_ends_the_pause_between_attempts(fake: FakeSlurm) -> None:
    fake.scenario(*["down"] * 100)
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted):
        slurm.submit(fake.host, SCRIPT, retry=slurm.Retry(60, stop=stop))


def test_two_submissions_never_share_a_remote_file_name() -> None:
    names = {slurm.submit_command([], None).split("cat > ")[1].split()[0] for _ in range(1000)}
    assert len(names) == 1000
