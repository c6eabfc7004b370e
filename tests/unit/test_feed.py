"""Sweeps larger than the submit limit, fed by the cluster (scheduling/feed.py, ledger/feeds.py): the
user's limits as `scontrol show assoc_mgr` tells them, the chunks, the feeder's script (against its
reference file, and run with bash against fake `sbatch` and `squeue` programs), what a look at the
feed's folder says, and the planned rows becoming ledger rows.

The reference feeder lives in tests/unit/golden/feed/; after an intended change of the template,
regenerate it with `COMPUTE_REGEN_GOLDEN=1 pytest tests/unit/test_feed.py` and review the diff."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from compute_platform.hosts.local import LocalHost
from compute_platform.input.spec import HostSpec
from compute_platform.ledger import JobRecord, Ledger, feeds
from compute_platform.scheduling import feed, slurm
from compute_platform.scheduling.sweep import expand
from compute_platform.tasks.slurm import chunks
from tests.support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden" / "feed"

# `scontrol show assoc_mgr users=ctest flags=assoc,qos`, the lines slurm.ASSOC_LINES keeps: the test
# bed's accounts with MaxSubmitJobs=30 set on the account (inherited by the user), GrpSubmitJobs=50 on
# it, MaxSubmitJobsPerUser=25 on the QOS normal and 12 on the QOS long; 6 jobs queued.
ASSOC = """\
ClusterName=testbed Account=root UserName= Partition= Priority=0 ID=1
    ParentAccount= Lft=1 DefAssoc=No
    GrpSubmitJobs=N(6) GrpWall=N(0.00)
    MaxJobs= MaxJobsAccrue= MaxSubmitJobs= MaxWallPJ=
ClusterName=testbed Account=testacct UserName= Partition= Priority=0 ID=3
    ParentAccount=root(1) Lft=2 DefAssoc=No
    GrpSubmitJobs=50(44) GrpWall=N(0.00)
    MaxJobs= MaxJobsAccrue= MaxSubmitJobs=30(6) MaxWallPJ=
ClusterName=testbed Account=testacct UserName=ctest(1001) Partition= Priority=0 ID=4
    ParentAccount= Lft=3 DefAssoc=Yes
    GrpSubmitJobs=N(6) GrpWall=N(0.00)
    MaxJobs= MaxJobsAccrue= MaxSubmitJobs=30(6) MaxWallPJ=
ClusterName=testbed Account=other UserName=ctest(1001) Partition= Priority=0 ID=5
    ParentAccount= Lft=5 DefAssoc=No
    GrpSubmitJobs=N(0) GrpWall=N(0.00)
    MaxJobs= MaxJobsAccrue= MaxSubmitJobs=1000(0) MaxWallPJ=
QOS=normal(1)
    GrpJobs=N(0) GrpJobsAccrue=N(0) GrpSubmitJobs=N(6) GrpWall=N(0.00)
    Account Limits
      testacct
        MaxJobsPA=N(0) MaxJobsAccruePA=N(0) MaxSubmitJobsPA=N(6)
    User Limits
      1001
        MaxJobsPU=N(0) MaxJobsAccruePU=N(0) MaxSubmitJobsPU=25(6)
QOS=long(2)
    GrpJobs=N(0) GrpJobsAccrue=N(0) GrpSubmitJobs=N(0) GrpWall=N(0.00)
    User Limits
      1001
        MaxJobsPU=N(0) MaxJobsAccruePU=N(0) MaxSubmitJobsPU=12(0)
"""


def limits() -> slurm.SubmitLimits:
    found = slurm.parse_assoc_mgr(ASSOC, "ctest")
    assert found is not None
    return found


# -- the user's limits ------------------------------------------------------------------------------


def test_the_default_association_its_accounts_and_the_normal_qos_apply() -> None:
    found = {(x.name, x.limit, x.used) for x in limits().applying(None, None, None)}
    assert found == {
        ("MaxSubmitJobs of association testacct/ctest", 30, 6),
        ("GrpSubmitJobs of account testacct", 50, 44),
        ("MaxSubmitJobsPerUser of QOS normal", 25, 6),
    }
    tightest = limits().tightest(None, None, None)
    assert (
        tightest is not None and tightest.name == "GrpSubmitJobs of account testacct" and tightest.room == 6
    )


def test_an_account_and_a_qos_given_in_the_task_pick_their_own_limits() -> None:
    other = limits().tightest("other", "long", None)
    assert other is not None and (other.name, other.room) == ("MaxSubmitJobsPerUser of QOS long", 12)
    assert limits().tightest("nosuch", None, None) is None


def test_a_cluster_that_enforces_no_limits_has_none() -> None:
    home = "/home/ctest\nMaxArraySize=2001\n"
    assoc = f"{slurm.SECTION}\nctest\n{ASSOC}"
    enforced = slurm.parse_prepare(home + "AccountingStorageEnforce=associations,limits\n" + assoc)
    assert enforced.max_array_size == 2001 and enforced.limits is not None
    assert slurm.parse_prepare(home + "AccountingStorageEnforce=none\n" + assoc).limits is None
    plain = slurm.parse_prepare("/home/ctest\n")  # no scontrol (or an old prepare's answer)
    assert (plain.home, plain.max_array_size, plain.limits) == ("/home/ctest", 1001, None)
    assert slurm.parse_assoc_mgr("", "ctest") is None  # no accounting: the controller says nothing


# -- chunks ---------------------------------------------------------------------------------------


def test_chunks_fill_the_room_the_feeders_leave() -> None:
    assert feed.chunk_sizes(200, 20) == [19] + [18] * 10 + [1]
    assert feed.chunk_sizes(20, 20) == [20]  # fits: no feed
    assert feed.chunk_sizes(4, 3) == [2, 1, 1]
    with pytest.raises(ValueError):
        feed.chunk_sizes(10, 2)


def test_each_chunk_is_laid_out_like_the_sweep_split_by_max_array_size() -> None:
    jobs = expand([], {"x": list(range(30))})
    parts = chunks(jobs, "auto", None, 10, 14)  # chunks of 13, 12 and 5 jobs; arrays of at most 10
    assert [[len(b.jobs) for b in part] for part in parts] == [[10, 3], [10, 2], [5]]
    assert all(b.array for part in parts for b in part)
    assert [j.index for part in parts for b in part for j in b.jobs] == list(range(30))
    plain = chunks(jobs[:6], False, None, 10, 4)
    assert [len(part) for part in plain] == [3, 2, 1] and not any(b.array for p in plain for b in p)


def test_slurm_time_limits_in_minutes() -> None:
    assert [feed.slurm_minutes(t) for t in ("5", "5:30", "01:00:00", "1-0", "1-02:03", "2-00:00:01")] == [
        5,
        6,
        60,
        1440,
        1563,
        2881,
    ]
    assert feed.slurm_minutes("infinite") is None
    assert feed.feeder_minutes("00:05:00") == 5 and feed.feeder_minutes("1-00:00:00") == 10
    assert feed.feeder_minutes(None) == 10


# -- the feeder's script ----------------------------------------------------------------------------

FEED_ID = "0123456789abcdef"


def feeder(folder: str, chunks: int = 11, pause: float = 30) -> str:
    return feed.render_feeder(
        feed.FeederSpec(
            feed=FEED_ID,
            folder=folder,
            chunks=chunks,
            job_name="sweep",
            comment="compute: playbook sweep.yaml, task 'train', host pando",
            options={"partition": "debug", "account": "proj 1", "qos": None, "constraint": "a100"},
            pause=pause,
        )
    )


def test_the_feeder_script_matches_its_reference() -> None:
    check_golden(GOLDEN / "feeder.sh", feeder(f"/home/alice/.compute/feeds/{FEED_ID}"))


def test_the_feeder_script_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n"], input=feeder("/tmp/x"), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# fake sbatch: appends `<comment>|<id>|<cwd>|<SLURM_JOB_ID>|<args>` to the queue; the scenario file
# says, one line per call, what it does: ok, limit (refused: MaxSubmitJobs), lost (queued, the answer
# lost), bad (refused for good)
SBATCH = r"""#!/bin/bash
state=@STATE@
n=$(($(cat "$state/calls" 2>/dev/null || echo 0) + 1)); echo $n > "$state/calls"
what=$(sed -n "${n}p" "$state/scenario" 2>/dev/null); what=${what:-ok}
comment=; for a in "$@"; do case $a in --comment=*) comment=${a#--comment=};; esac; done
id=$((100 + n))
line="$comment|$id|$PWD|${SLURM_JOB_ID:-}|${SLURM_CONF:-}|$*"
case $what in
  ok) echo "$line" >> "$state/queue"; echo "$id" ;;
  lost) echo "$line" >> "$state/queue"; echo "sbatch: error: Socket timed out on send/recv operation" >&2; exit 1 ;;
  limit) echo "sbatch: error: AssocMaxSubmitJobLimit" >&2; exit 1 ;;
  bad) echo "sbatch: error: Invalid partition name specified" >&2; exit 1 ;;
esac
"""
SQUEUE = r"""#!/bin/bash
cut -d'|' -f1,2 @STATE@/queue 2>/dev/null
"""


class FakeFeed:
    """A feed's folder with the scripts of chunks 1 (two batches) and 2, and fake Slurm programs."""

    def __init__(self, tmp: Path, chunks: int = 2) -> None:
        self.home = tmp / "home"
        self.dir = self.home / ".compute" / "feeds" / FEED_ID
        self.dir.mkdir(parents=True)
        self.state = tmp / "state"
        self.state.mkdir()
        bindir = tmp / "bin"
        bindir.mkdir()
        for name, text in (("sbatch", SBATCH), ("squeue", SQUEUE)):
            (bindir / name).write_text(text.replace("@STATE@", str(self.state)))
            (bindir / name).chmod(0o755)
        for name in ("000001.000000", "000001.000001", "000002.000000"):
            (self.dir / f"{name}.sbatch").write_text(f"#!/bin/bash\necho {name}\n")
        (self.dir / "feed.sh").write_text(feeder(str(self.dir), chunks, pause=0.01))
        self.env = {
            "PATH": f"{bindir}:{os.environ['PATH']}",
            "HOME": str(self.home),
            "SLURM_JOB_ID": "99",
            "SLURM_CONF": "/etc/slurm/slurm.conf",
        }

    def scenario(self, *steps: str) -> None:
        (self.state / "scenario").write_text("".join(f"{s}\n" for s in steps))

    def run(self, chunk: int) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.dir / "feed.sh"), str(chunk)],
            env=self.env,
            cwd="/",
            capture_output=True,
            text=True,
            timeout=30,
        )

    def queue(self) -> list[list[str]]:
        path = self.state / "queue"
        return [line.split("|") for line in path.read_text().splitlines()] if path.exists() else []

    def submitted(self) -> list[list[str]]:
        path = self.dir / "submitted"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


def test_a_feeder_submits_its_chunk_then_the_next_feeder_after_it(tmp_path: Path) -> None:
    fake = FakeFeed(tmp_path)
    proc = fake.run(1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    queue = fake.queue()
    assert [q[0] for q in queue] == [
        f"compute-submission:{FEED_ID}.000001.000000",
        f"compute-submission:{FEED_ID}.000001.000001",
        f"compute-submission:{FEED_ID}.000002.feeder",
    ]
    # from the home directory, without the feeder's own SLURM_* variables but SLURM_CONF
    assert {(q[2], q[3], q[4]) for q in queue} == {(str(fake.home), "", "/etc/slurm/slurm.conf")}
    assert queue[2][5].startswith("--parsable ") and queue[2][5].endswith(
        f"--dependency=afterany:101:102 {fake.dir}/feed.sh 2"
    )
    assert [line[:2] for line in fake.submitted()] == [
        [f"{FEED_ID}.000001.000000", "101"],
        [f"{FEED_ID}.000001.000001", "102"],
        [f"{FEED_ID}.000002.feeder", "103"],
    ]
    assert sorted(p.name for p in fake.dir.glob("*.sbatch")) == ["000002.000000.sbatch"]  # chunk 1's went
    last = fake.run(2)  # the last chunk: no feeder after it
    assert last.returncode == 0, last.stderr
    assert [q[0] for q in fake.queue()][3:] == [f"compute-submission:{FEED_ID}.000002.000000"]


def test_a_submit_limit_is_waited_out_and_a_lost_answer_found_by_its_token(tmp_path: Path) -> None:
    fake = FakeFeed(tmp_path)
    fake.scenario("limit", "limit", "lost", "ok", "ok")
    proc = fake.run(1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "AssocMaxSubmitJobLimit" in proc.stderr
    tokens = [q[0].rpartition(".")[2] for q in fake.queue()]
    assert tokens == ["000000", "000001", "feeder"]  # the lost one is not submitted twice
    assert [line[1] for line in fake.submitted()] == ["103", "104", "105"]


def test_a_refusal_for_good_fails_the_feeder_and_a_stopped_feed_submits_nothing(tmp_path: Path) -> None:
    fake = FakeFeed(tmp_path)
    fake.scenario("ok", "bad")
    proc = fake.run(1)
    assert proc.returncode == 1 and "Invalid partition" in proc.stderr
    assert len(fake.queue()) == 1
    (fake.dir / "stop").write_text("")
    stopped = fake.run(1)
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert len(fake.queue()) == 1


def test_a_feeder_run_again_does_not_submit_its_chunk_twice(tmp_path: Path) -> None:
    fake = FakeFeed(tmp_path)
    (fake.dir / "submitted").write_text(f"{FEED_ID}.000001.000000 77 2026-11-30T10:00:00+00:00\n")
    assert fake.run(1).returncode == 0
    queue = fake.queue()
    assert [q[0].rpartition(".")[2] for q in queue] == ["000001", "feeder"]
    assert queue[1][5].endswith(f"--dependency=afterany:77:101 {fake.dir}/feed.sh 2")


# -- what a look says --------------------------------------------------------------------------------


def test_a_look_reads_the_queue_and_each_feed_s_submitted_file() -> None:
    other = "fedcba9876543210"
    text = (
        f"compute-submission:{FEED_ID}.000002.feeder|120|PENDING\n"
        f"compute-submission:{FEED_ID}.000002.000000|121|RUNNING\n"  # never reached `submitted`
        "compute-submission:4b1d|90|RUNNING\n"
        f"{feed.SECTION} {FEED_ID}\n"
        f"{FEED_ID}.000001.000000 101 2026-11-30T10:00:00+00:00\n"
        f"{FEED_ID}.000002.feeder 120 2026-11-30T10:00:01+00:00\n"
        f"{feed.SECTION} {other}\n"
        f"{other}.000001.000000 130 2026-11-30T11:00:00+00:00\n"
        f"{feed.STOPPED}\n"
    )
    news = feed.parse_look(text, [FEED_ID, other])
    assert news[FEED_ID] == feed.News(
        {
            f"{FEED_ID}.000001.000000": ("101", "2026-11-30T10:00:00+00:00"),
            f"{FEED_ID}.000002.000000": ("121", ""),
        },
        {"120": "PENDING"},
        False,
    )
    assert news[other].stopped and news[other].feeders == {} and len(news[other].submitted) == 1


# -- planned rows in the ledger ------------------------------------------------------------------------


def planned(index: int) -> JobRecord:
    return JobRecord(
        submitted_at="2026-11-30T09:00:00+00:00",
        playbook="/p/book.yaml",
        task="sweep",
        host="cluster",
        scheduler="slurm",
        job_id="",
        job_name="sweep",
        command=f"echo --i={index}",
        job_index=str(index),
        run_id="run-1",
    )


def staged_feed(ledger: Ledger) -> feeds.Feed:
    batches = []
    for chunk, indexes in ((1, [3, 4]), (2, [5])):
        token = feed.batch_token(FEED_ID, chunk, 0)
        rows = [planned(i) for i in indexes]
        script = feeds.stage_batch(ledger, FEED_ID, token, "cluster", f"#!/bin/bash\n# chunk {chunk}\n", rows)
        batches.append(feeds.Batch(token, chunk, True, script, "/home/ctest/logs", len(rows)))
    plan = feeds.Feed(
        FEED_ID, "cluster", "/p/book.yaml", "sweep", "run-1", "", "/home/ctest/x", 2, tuple(batches)
    )
    feeds.start(ledger, plan)
    (found,) = feeds.open_feeds(ledger)
    return found


def test_planned_rows_reach_job_csv_once_their_job_exists(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "archive")
    plan = staged_feed(ledger)
    assert plan.points == 3 and plan.started
    assert not ledger.jobs_file.exists()  # nothing submitted yet: nothing in job.csv
    assert feeds.planned_points(ledger, "/p/book.yaml", "sweep", "cluster") == {
        (str(i), f"echo --i={i}") for i in (3, 4, 5)
    }
    token = plan.batches[0].token
    new = feeds.record(ledger, plan, {token: ("130", "2026-11-30T10:00:00+00:00")})
    assert [(r.job_id, r.job_index, r.submitted_at) for r in new] == [
        ("130_0", "3", "2026-11-30T10:00:00+00:00"),
        ("130_1", "4", "2026-11-30T10:00:00+00:00"),
    ]
    assert new[1].log_out == "/home/ctest/logs/sweep.130_1.out" and new[1].script == "cluster/130.slurm"
    assert (ledger.root / "cluster" / "130.slurm").read_text() == "#!/bin/bash\n# chunk 1\n"
    assert feeds.record(ledger, plan, {token: ("130", "")}) == []  # recorded once
    assert [r.job_id for r in ledger.records()] == ["130_0", "130_1"]
    assert feeds.points_left(ledger, plan) == 1
    assert feeds.planned_points(ledger, "/p/book.yaml", "sweep", None) == {("5", "echo --i=5")}
    feeds.end(ledger, plan, feeds.CANCELLED)
    assert feeds.open_feeds(ledger) == []
    assert feeds.planned_points(ledger, "/p/book.yaml", "sweep", None) == set()  # a resumed run submits it
    assert not (ledger.root / plan.batches[1].script).exists()  # its staged script went
    (ended,) = [json.loads(e.detail) for e in ledger.events() if e.event == feeds.FEED_ENDED]
    assert ended == {"feed": FEED_ID, "why": "cancelled", "left": 1}
    assert json.loads((feeds.folder(ledger, FEED_ID) / "plan.json").read_text())["task"] == "sweep"


def test_two_commands_recording_the_same_batch_add_it_once(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "archive")
    plan = staged_feed(ledger)
    token = plan.batches[0].token
    (feeds.folder(ledger, FEED_ID) / "recorded").unlink(missing_ok=True)
    first = feeds.record(ledger, plan, {token: ("130", "")})
    (feeds.folder(ledger, FEED_ID) / "recorded").unlink()  # as if the other command had not noted it yet
    second = feeds.record(ledger, plan, {token: ("130", "")})  # the script was renamed already
    assert len(first) == 2 and second == []
    assert len(ledger.records()) == 2


def test_what_compute_jobs_says_of_a_feed(tmp_path: Path) -> None:
    plan = staged_feed(Ledger(tmp_path / "archive"))
    going = feed.Progress(plan, 120, ("4242", "PENDING"))
    assert going.open
    assert (
        going.line()
        == "120 points still to be fed by the cluster (task 'sweep' on cluster, feeder job 4242 pending)"
    )
    away = feed.Progress(plan, 120, unreachable="connection refused")
    assert away.line().endswith("(task 'sweep' on cluster, host unreachable: connection refused)")
    stopped = feed.Progress(plan, 120, None, "its feeder ended before submitting every chunk")
    assert not stopped.open
    assert stopped.line() == (
        "the feed of task 'sweep' on cluster stopped, 120 points not submitted: its feeder ended before "
        "submitting every chunk; `compute run /p/book.yaml --resume` submits them"
    )
    assert feed.Progress(plan, 0, None, feeds.DONE).line() == ""


def test_stop_finds_the_feeders_of_its_feeds_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stop command's grep, run on a queue listing (`%k|%F`) with another feed's feeder in it."""
    other = "fedcba9876543210"
    queue = (
        f"compute-submission:{FEED_ID}.000003.feeder|120\n"
        f"compute-submission:{FEED_ID}.000003.000000|121\n"
        f"compute-submission:{other}.000002.feeder|130\n"
    )
    fake = tmp_path / "squeue"
    fake.write_text(f"#!/bin/bash\nprintf '%s' {shlex.quote(queue)}\n")
    fake.chmod(0o755)
    (tmp_path / "scancel").write_text(f'#!/bin/bash\necho "$@" >> {tmp_path}/cancelled\n')
    (tmp_path / "scancel").chmod(0o755)
    host = LocalHost(HostSpec(alias="fake", env={"PATH": f"{tmp_path}:{os.environ['PATH']}"}))
    folder = tmp_path / "feed"
    folder.mkdir()
    monkeypatch.setattr(feed, "STOP_WAIT", 1)  # the fake queue never empties: wait 1 s, not 60
    news = feed.stop(host, [(FEED_ID, str(folder))])
    assert (tmp_path / "cancelled").read_text() == "120\n"
    assert (folder / "stop").exists() and news[FEED_ID].stopped
