"""SSH hosts failing under a running playbook, against the real sshd: killed in the middle of a command
or of a sweep's submissions, frozen (SIGSTOP: the TCP connection stays open, nothing answers), a port
that accepts TCP but never speaks SSH (or stalls the key exchange or the login), and commands that
hang until the task's `timeout`. Each fault hits an sshd started for the test alone, so the bed's own
hosts stay up for the other tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.faultbed import Project, ledger_ids, ledger_rows, scancel_name, slurm_jobs
from tests.support import testbed as tbm
from tests.support.waiting import wait_for


class ExtraHost:
    """One more sshd of the bed, for a test to break as it likes; stopped (and thawed) at the end."""

    def __init__(self, bed: tbm.Testbed, name: str) -> None:
        self.bed = bed
        self.name = name
        self.port = tbm.start_sshd(bed, name)

    def entry(self, **extra: Any) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.bed.user,
            "key": str(self.bed.client_key),
            "known_hosts": str(self.bed.known_hosts),
            **extra,
        }

    def pids(self) -> list[int]:
        """The listener and every process below it (the sessions and their commands)."""
        pid = tbm._read_pid(self.bed.sshd_pidfile(self.name))
        return [] if pid is None else [pid, *tbm._descendants(pid, tbm._children_map())]

    def signal(self, sig: int) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)

    def remove(self) -> None:
        self.signal(signal.SIGCONT)
        tbm.remove_sshd(self.bed, self.name)


@pytest.fixture
def extra(testbed: tbm.Testbed) -> Iterator[ExtraHost]:
    host = ExtraHost(testbed, f"x{uuid.uuid4().hex[:6]}")
    yield host
    host.remove()


@pytest.fixture
def project(testbed: tbm.Testbed, tmp_path: Path) -> Project:
    return Project(testbed, tmp_path)


def marker(bed: tbm.Testbed, what: str) -> Path:
    """A file the test user can create (the bed's 1777 jobs folder), seen by the test."""
    return Path(bed.jobs_dir) / f"{what}-{uuid.uuid4().hex[:8]}"


def assert_clean_failure(out: str, err: str, alias: str, *words: str) -> None:
    assert "Traceback" not in out + err
    failed = [line for line in out.splitlines() if line.startswith(f"failed: {alias} ")]
    assert failed, out
    for word in words:
        assert word in failed[0], failed[0]


# -- sshd killed in the middle of a command ------------------------------------------------------


@pytest.mark.slow
def test_sshd_killed_mid_command_fails_that_host_quickly_and_the_others_finish(
    project: Project, extra: ExtraHost
) -> None:
    started = marker(project.bed, "started")
    project.hosts["victim"] = extra.entry()
    project.write_hosts()
    command = f"touch {started}; sleep 4; echo finished"
    project.book([{"name": "long", "hosts": ["victim", "h2"], "cmd": command}])
    proc = project.popen()
    try:
        wait_for(started.exists, 20, "the command to start")
        tbm.stop_sshd(project.bed, extra.name)
        killed = time.monotonic()
        out, err = proc.communicate(timeout=30)
        assert time.monotonic() - killed < 6  # h2's command ends ~4 s after it started
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert_clean_failure(out, err, "victim", "connection was closed")
    assert "h2 | finished" in out and "victim | finished" not in out


# -- a frozen host: the TCP connection stays, nothing answers ----------------------------------


@pytest.mark.slow
def test_a_frozen_host_is_declared_lost_after_its_keepalives(project: Project, extra: ExtraHost) -> None:
    started = marker(project.bed, "started")
    project.hosts["frozen"] = extra.entry(keepalive=1)
    project.write_hosts()
    project.book([{"name": "long", "hosts": ["frozen", "h2"], "cmd": f"touch {started}; sleep 6; echo done"}])
    proc = project.popen()
    try:
        wait_for(started.exists, 20, "the command to start")
        extra.signal(signal.SIGSTOP)
        frozen = time.monotonic()
        out, err = proc.communicate(timeout=30)
        lost_after = time.monotonic() - frozen
    finally:
        extra.signal(signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert_clean_failure(out, err, "frozen", "stopped answering")
    assert "h2 | done" in out
    assert lost_after < 8, lost_after  # keepalive 1 s + 2 s for the answer, and h2's own 6 s


# -- hosts that accept TCP but never speak SSH properly -----------------------------------------


class SilentServer:
    """A listening socket that accepts connections and then, depending on `says`, sends nothing or
    only an SSH banner: the connection stays open, silent, until the test ends."""

    def __init__(self, says: bytes = b"") -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.says = says
        self.clients: list[socket.socket] = []
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.clients.append(client)
            if self.says:
                client.sendall(self.says)

    def close(self) -> None:
        self.sock.close()
        for client in self.clients:
            client.close()


@pytest.mark.parametrize(
    ("says", "words"),
    [
        (b"", ("SSH handshake", "timed out after 2 s")),
        (b"SSH-2.0-OpenSSH_9.2\r\n", ("SSH handshake", "timed out after 2 s")),
    ],
    ids=["no-banner", "banner-then-silence"],
)
def test_a_port_that_never_speaks_ssh_fails_within_connect_timeout(
    project: Project, says: bytes, words: tuple[str, ...]
) -> None:
    server = SilentServer(says)
    try:
        project.hosts["mute"] = {**project.hosts["h1"], "port": server.port, "connect_timeout": 2}
        project.write_hosts()
        project.book([{"name": "t", "hosts": ["mute", "h2"], "cmd": "echo hello"}])
        start = time.monotonic()
        proc = project.run(timeout=30)
        took = time.monotonic() - start
    finally:
        server.close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert took < 8, took
    assert_clean_failure(proc.stdout, proc.stderr, "mute", *words)
    assert "h2 | hello" in proc.stdout


def test_a_server_that_stalls_the_login_fails_within_connect_timeout(
    project: Project, tmp_path: Path
) -> None:
    import paramiko

    host_key = paramiko.Ed25519Key.from_private_key_file(str(project.bed.host_key))
    release = threading.Event()

    class Stalling(paramiko.ServerInterface):
        def get_allowed_auths(self, username: str) -> str:
            return "publickey"

        def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
            release.wait(30)  # answers long after the client's connect_timeout
            return paramiko.AUTH_FAILED

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    transports: list[paramiko.Transport] = []

    def serve() -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(client)
            transport.add_server_key(host_key)
            transport.start_server(server=Stalling())
            transports.append(transport)

    threading.Thread(target=serve, daemon=True).start()
    try:
        port = listener.getsockname()[1]
        project.hosts["stall"] = {**project.hosts["h1"], "port": port, "connect_timeout": 2}
        known = tmp_path / "known_hosts"
        known.write_text(
            f"[127.0.0.1]:{port} {project.bed.host_pubkey.split()[0]} {project.bed.host_pubkey.split()[1]}\n"
        )
        project.hosts["stall"]["known_hosts"] = str(known)
        project.write_hosts()
        project.book([{"name": "t", "hosts": ["stall"], "cmd": "echo hello"}])
        start = time.monotonic()
        proc = project.run(timeout=40)
        took = time.monotonic() - start
    finally:
        release.set()
        listener.close()
        for transport in transports:
            transport.close()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert took < 8, took
    assert_clean_failure(proc.stdout, proc.stderr, "stall", "authentication")


# -- a hanging command stopped by the task's timeout, process tree included ------------------------


@pytest.mark.slow
@pytest.mark.parametrize("where", ["localhost", "h1"])
def test_timeout_kills_the_whole_process_tree(project: Project, where: str) -> None:
    pids = marker(project.bed, "pids")
    # a child that ignores SIGTERM, a grandchild in a subshell, and the shell itself waiting on them
    command = (
        f"(trap '' TERM; sleep 301) & echo $! >> {pids}; "
        f"( (sleep 302 & echo $! >> {pids}; wait) ) & echo $! >> {pids}; "
        "echo waiting; wait"
    )
    project.book([{"name": "hang", "hosts": where, "timeout": 2, "cmd": command}])
    start = time.monotonic()
    proc = project.run(timeout=30)
    took = time.monotonic() - start
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert_clean_failure(proc.stdout, proc.stderr, where, "timed out")
    assert took < 10, took
    listed = [int(p) for p in pids.read_text().split()]
    assert len(listed) == 3
    wait_for(lambda: not any(tbm._alive(p) for p in listed), 5, "the process tree to be gone")


# -- the login node's sshd killed in the middle of a sweep's submissions -----------------------


def test_sshd_killed_mid_sweep_leaves_no_job_unaccounted(project: Project, extra: ExtraHost) -> None:
    """The ledger holds the jobs submitted before the connection died; a submission the connection
    died in the middle of is recorded as unconfirmed, and the resumed run finds it in Slurm's queue
    (by its token) instead of submitting it again: in the end every point exactly once."""
    name = project.job_name("killed")
    project.hosts["login"] = extra.entry(platform="slurm", save_path=f"~/{project.logs_name}")
    project.write_hosts()
    task = {
        "name": "sweep",
        "hosts": "login",
        "slurm": {"cmd": "true", "job_name": name, "array": False, "sweep": {"i": list(range(60))}},
    }
    task["slurm"]["sbatch"] = {"hold": True}
    project.book([task])
    proc = project.popen()
    try:
        wait_for(lambda: len(project.rows()) >= 10, 30, "10 submissions")
        tbm.stop_sshd(project.bed, extra.name)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 1, out + err
        assert_clean_failure(out, err, "login", "connection")
        recorded = ledger_ids(project.rows())
        in_slurm = slurm_jobs(project.bed, name)
        assert len(recorded) == len(set(recorded)) and set(recorded) <= set(in_slurm)
        assert len(set(in_slurm) - set(recorded)) <= 1  # at most the submission under way

        tbm.start_sshd(project.bed, extra.name)
        done = project.run("--skip-submitted", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        rows = ledger_rows(project.archive)
        ids = ledger_ids(rows)
        assert sorted(ids) == sorted(slurm_jobs(project.bed, name)) and len(ids) == len(set(ids))
        assert sorted(int(r["job_index"]) for r in rows) == list(range(60))
    finally:
        if proc.poll() is None:
            proc.kill()
        scancel_name(project.bed, name)


SBATCH_THEN_HANG_UP = """#!/bin/bash
# the real sbatch, then (on call number @NTH@ only) the SSH session dies before its answer is read
n=$(($(cat @COUNT@ 2>/dev/null || echo 0) + 1)); echo $n > @COUNT@
/usr/bin/sbatch "$@"; rc=$?
if [ "$n" = @NTH@ ]; then
  p=$PPID
  while [ "$p" -gt 1 ] && [ "$(ps -o comm= -p "$p")" != sshd ]; do p=$(ps -o ppid= -p "$p" | tr -d ' '); done
  kill -KILL "$p"
  sleep 5
fi
exit $rc
"""


def test_a_submission_whose_answer_is_lost_is_found_and_recorded_on_resume(project: Project) -> None:
    """The connection dies right after sbatch took a job: this run cannot know its id, so it notes the
    submission as unconfirmed (with the token in the job's --comment); the resumed run finds the job
    in the queue, records it, and submits only the points never submitted."""
    name = project.job_name("lost")
    tools = Path(project.bed.jobs_dir) / f"tools-{project.tag}"
    tools.mkdir(mode=0o755)
    wrapper = tools / "sbatch"
    text = SBATCH_THEN_HANG_UP.replace("@COUNT@", str(tools / "count")).replace("@NTH@", "4")
    wrapper.write_text(text)
    wrapper.chmod(0o755)
    (tools / "count").touch(mode=0o666)
    os.chmod(tools / "count", 0o666)
    project.hosts["login"] = {**project.hosts[project.bed.slurm_alias], "platform": "slurm"}
    project.hosts["login"]["init"] = [f"export PATH={tools}:$PATH"]
    project.write_hosts()
    task = {"name": "sweep", "hosts": "login", "slurm": {"cmd": "true", "job_name": name, "array": False}}
    task["slurm"].update(sweep={"i": list(range(8))}, sbatch={"hold": True})
    project.book([task])
    try:
        proc = project.run(timeout=60)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert_clean_failure(proc.stdout, proc.stderr, "login", "connection", "--skip-submitted")
        assert len(project.rows()) == 3 and len(slurm_jobs(project.bed, name)) == 4

        resumed = project.run("--skip-submitted", timeout=60)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert "now recorded" in resumed.stdout
        rows = ledger_rows(project.archive)
        ids = ledger_ids(rows)
        assert sorted(ids) == sorted(slurm_jobs(project.bed, name)) and len(ids) == 8 == len(set(ids))
        assert sorted(int(r["job_index"]) for r in rows) == list(range(8))
        assert all((project.archive / r["script"]).is_file() for r in rows)
        assert not list((project.archive / "login").glob(".staged-*"))
    finally:
        scancel_name(project.bed, name)
