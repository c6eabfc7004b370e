"""The connection keeper (hosts/keeper.py): paramiko connections kept open between runs, against real
sshds of their own (their logs count every login and session). The first run connects by itself and
starts a keeper; the next ones go through the keeper's connection, with the same results, the same
host key checks and the same errors; nobody else may use it; it ends `control_persist` after its
last use, and a run that finds it dead connects by itself again."""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compute_platform.hosts import kept, make_host
from compute_platform.hosts.persistent import FED_MAX
from compute_platform.hosts.ssh import SSHHost
from compute_platform.input.spec import HostSpec
from tests.support import keepers
from tests.support import testbed as tbm
from tests.support.cli import compute, compute_popen
from tests.support.project import host_entry, write_hosts
from tests.support.waiting import wait_for

ACCEPTED = "Accepted publickey for"
OTHER_USER = "ckother"


class Sshd:
    """One sshd of the bed for this test alone; removed at the end."""

    def __init__(self, bed: tbm.Testbed, name: str, **options: str) -> None:
        self.bed = bed
        self.name = name
        self.port = tbm.start_sshd(bed, name, extra_options=options or None)

    def logins(self) -> int:
        return tbm.sshd_log(self.bed, self.name).count(ACCEPTED)

    def sessions(self) -> int:
        return tbm.sshd_log(self.bed, self.name).count("Starting session:")

    def entry(self, **extra: Any) -> dict[str, Any]:
        return host_entry(self.bed, self.name, **extra)


@pytest.fixture
def sshd(testbed: tbm.Testbed) -> Iterator[Sshd]:
    server = Sshd(testbed, f"k{uuid.uuid4().hex[:6]}")
    yield server
    tbm.remove_sshd(testbed, server.name)


@pytest.fixture
def second(testbed: tbm.Testbed) -> Iterator[Sshd]:
    server = Sshd(testbed, f"k{uuid.uuid4().hex[:6]}")
    yield server
    tbm.remove_sshd(testbed, server.name)


@pytest.fixture
def one_session(testbed: tbm.Testbed, keeper: Path) -> Iterator[Sshd]:
    """A server that allows one session at a time (sshd's MaxSessions 1)."""
    server = Sshd(testbed, f"k{uuid.uuid4().hex[:6]}", MaxSessions="1")
    try:
        yield server
    finally:
        keepers.stop(keeper)
        tbm.remove_sshd(testbed, server.name)


def hand_to_keeper(spec: HostSpec) -> None:
    """A run that logs in by itself and ends: its connection goes to the keeper, waited for."""
    first = make_host(spec)
    first.connect()
    first.close()
    keepers.wait_kept(spec.alias)


def project(folder: Path, hosts: dict[str, Any], command: str, on: str = "target") -> None:
    write_hosts(folder, hosts)
    (folder / "book.yaml").write_text(
        f"inventory: {{hosts: hosts.yaml}}\ntasks:\n  - {{name: t, hosts: {on}, cmd: {command!r}}}\n"
    )


def run(folder: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return compute("run", "book.yaml", cwd=folder, env=env or None)


def lines(proc: subprocess.CompletedProcess[str], alias: str = "target") -> list[str]:
    """What a run said of a host, durations left out."""
    said = [
        line
        for line in proc.stdout.splitlines()
        if line.startswith((f"{alias} |", f"{alias} !", f"failed: {alias}"))
    ]
    return [re.sub(r" \(\d+\.\d+ s\)", "", line) for line in said]


def test_the_next_runs_go_through_the_kept_connection(keeper: Path, sshd: Sshd, tmp_path: Path) -> None:
    project(tmp_path, {"target": sshd.entry()}, 'echo "via $SSH_CONNECTION"; echo out; echo err >&2; exit 3')
    first = run(tmp_path)
    assert first.returncode == 1, first.stdout + first.stderr
    assert sshd.logins() == 1
    keepers.wait_kept("target")
    assert sshd.logins() == 2  # the keeper's own, after the run
    second, third = run(tmp_path), run(tmp_path)
    assert sshd.logins() == 2  # no login of their own
    assert [p.returncode for p in (second, third)] == [1, 1]
    # what the command did and said is the same, whichever connection carried it (stdout and
    # stderr are two streams: which of their lines comes first is not kept, on any connection)
    results = [sorted(line for line in lines(p) if "via" not in line) for p in (first, second, third)]
    assert (
        results[0]
        == results[1]
        == results[2]
        == [
            "failed: target: command failed with exit code 3",
            "target ! err",
            "target | out",
        ]
    ), first.stdout
    # the second and third runs' commands came over one TCP connection (the keeper's), not the first's
    via = [next(line for line in lines(p) if "via" in line) for p in (first, second, third)]
    assert via[1] == via[2] != via[0]


def test_a_run_through_the_keeper_does_not_import_paramiko(keeper: Path, sshd: Sshd, tmp_path: Path) -> None:
    """Its logins are the keeper's: the run pays neither them nor paramiko's import (~90 ms)."""
    project(tmp_path, {"target": sshd.entry()}, "echo hello")
    assert run(tmp_path).returncode == 0
    keepers.wait_kept("target")
    probe = (
        "import sys\n"
        "from compute_platform.cli.main import main\n"
        "try:\n"
        "    main(['run', 'book.yaml'])\n"
        "except SystemExit as e:\n"
        "    print('exit', e.code, 'paramiko' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert "target | hello" in proc.stdout, proc.stdout + proc.stderr
    assert proc.stdout.strip().endswith("exit 0 False")


def test_a_kept_shell_serves_the_next_run_without_a_new_session(
    keeper: Path, sshd: Sshd, tmp_path: Path
) -> None:
    project(tmp_path, {"target": sshd.entry()}, "echo hello")
    assert run(tmp_path).returncode == 0
    keepers.wait_kept("target")
    assert "target | hello" in run(tmp_path).stdout
    sessions = sshd.sessions()
    third = run(tmp_path)
    assert third.returncode == 0 and "target | hello" in third.stdout
    assert sshd.sessions() == sessions  # the shell the second run left with the keeper ran it


def test_a_key_no_longer_in_known_hosts_is_not_lent(keeper: Path, sshd: Sshd, tmp_path: Path) -> None:
    """known_hosts changed while the keeper holds a connection checked against the old entry: the
    connection is not lent, a new one checks the host again, and fails as a direct one does."""
    known = tmp_path / "known_hosts"
    name = f"[127.0.0.1]:{sshd.port}"
    real = f"{name} {' '.join(sshd.bed.host_pubkey.split()[:2])}\n"
    known.write_text(real)
    project(tmp_path, {"target": sshd.entry(known_hosts=str(known))}, "echo hello")
    assert run(tmp_path).returncode == 0
    keepers.wait_kept("target")
    fake = tmp_path / "fake"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(fake)], check=True)
    known.write_text(f"{name} {' '.join(fake.with_suffix('.pub').read_text().split()[:2])}\n")
    through_keeper = run(tmp_path)
    direct = run(tmp_path, COMPUTE_KEEPER="0")
    assert through_keeper.returncode == direct.returncode == 1
    assert "CHANGED" in through_keeper.stdout and "ssh-keygen" in through_keeper.stdout
    assert lines(through_keeper) == lines(direct)  # the very same message
    assert known.read_text().count("\n") == 1  # nothing recorded
    logins = sshd.logins()
    known.write_text(real)  # the user vouches for the key again: a new connection, checked, kept
    assert run(tmp_path).returncode == 0
    assert sshd.logins() == logins + 1


def test_a_host_reinstalled_under_a_kept_connection_is_refused(
    keeper: Path, sshd: Sshd, tmp_path: Path
) -> None:
    """The host restarts with another host key: the kept connection is gone with it, and the new
    one the keeper opens is refused with the same message as a direct connection."""
    project(tmp_path, {"target": sshd.entry()}, "echo hello")
    assert run(tmp_path).returncode == 0
    keepers.wait_kept("target")
    other = tmp_path / "hostkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    tbm.stop_sshd(sshd.bed, sshd.name)  # its sessions too: the keeper's connection ends
    tbm.start_sshd(sshd.bed, sshd.name, extra_options={"HostKey": str(other)})
    through_keeper = run(tmp_path)
    direct = run(tmp_path, COMPUTE_KEEPER="0")
    assert through_keeper.returncode == direct.returncode == 1
    assert "CHANGED" in through_keeper.stdout
    assert lines(through_keeper) == lines(direct)
    wait_for(lambda: not keepers.pids(keeper), 5, "the keeper to exit, holding nothing")


def test_the_socket_is_private_and_other_users_are_refused(keeper: Path, sshd: Sshd, tmp_path: Path) -> None:
    project(tmp_path, {"target": sshd.entry()}, "echo hello")
    assert run(tmp_path).returncode == 0
    keepers.wait_kept("target")
    (sock,) = keeper.glob("keeper-*.sock")
    assert keeper.stat().st_mode & 0o777 == 0o700
    assert sock.stat().st_mode & 0o777 == 0o600
    # past the modes (as if they were loosened), the keeper itself refuses another uid
    uid = other_user()
    keeper.chmod(0o711)
    sock.chmod(0o666)
    probe = (
        "import socket, struct, json\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        f"s.connect({str(sock)!r})\n"
        "body = json.dumps({'op': 'list'}).encode()\n"
        "try:\n"
        "    s.sendall(struct.pack('>cI', b'H', len(body)) + body)\n"
        "    print('answered' if s.recv(100) else 'refused')\n"
        "except OSError:\n"
        "    print('refused')\n"
    )
    try:
        proc = subprocess.run(
            ["runuser", "-u", OTHER_USER, "--", "python3", "-c", probe],
            capture_output=True,
            text=True,
            timeout=30,
        )
    finally:
        keeper.chmod(0o700)
        sock.chmod(0o600)
    assert proc.stdout.strip() == "refused", proc.stdout + proc.stderr
    assert f"refused a connection from uid {uid}" in keepers.log(keeper)
    assert keepers.kept_aliases() == ["target"]  # and it still serves its own user


def other_user() -> int:
    """A user that is not us (the tests run as root), made once."""
    try:
        return pwd.getpwnam(OTHER_USER).pw_uid
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/bin/sh", OTHER_USER], check=True)
        return pwd.getpwnam(OTHER_USER).pw_uid


def test_the_keeper_ends_control_persist_after_the_last_use(keeper: Path, sshd: Sshd, tmp_path: Path) -> None:
    project(tmp_path, {"target": sshd.entry(control_persist="2s")}, "echo hello")
    assert run(tmp_path).returncode == 0
    keepers.wait_kept("target")
    assert run(tmp_path).returncode == 0  # through it: the 2 s start again after this run
    used = time.monotonic()
    wait_for(lambda: not keepers.pids(keeper), 10, "the keeper to exit")
    assert time.monotonic() - used >= 1.5
    assert not list(keeper.glob("keeper-*.sock"))  # no socket left behind
    assert "unused for 2 s (control_persist)" in keepers.log(keeper)


def test_control_persist_0_keeps_nothing(keeper: Path, sshd: Sshd, tmp_path: Path) -> None:
    project(tmp_path, {"target": sshd.entry(control_persist=0)}, "echo hello")
    assert run(tmp_path).returncode == 0
    time.sleep(1)
    assert keepers.pids(keeper) == [] and not list(keeper.glob("keeper-*"))
    assert run(tmp_path).returncode == 0
    assert sshd.logins() == 2


def test_a_killed_keeper_is_replaced_and_runs_connect_by_themselves(
    keeper: Path, sshd: Sshd, tmp_path: Path
) -> None:
    project(tmp_path, {"target": sshd.entry()}, "echo hello")
    assert run(tmp_path).returncode == 0
    keepers.wait_kept("target")
    (old,) = keepers.pids(keeper)
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: not keepers.pids(keeper), 5, "the keeper to die")
    assert list(keeper.glob("keeper-*.sock"))  # its socket stays, stale
    logins = sshd.logins()
    proc = run(tmp_path)
    assert proc.returncode == 0 and "target | hello" in proc.stdout, proc.stdout + proc.stderr
    assert sshd.logins() == logins + 1  # a login of its own
    keepers.wait_kept("target")  # and a new keeper, on the socket it removed
    assert keepers.pids(keeper) != [old]


def test_a_host_that_went_down_fails_within_connect_timeout(keeper: Path, sshd: Sshd, tmp_path: Path) -> None:
    project(tmp_path, {"target": sshd.entry(connect_timeout=3)}, "echo hello")
    assert run(tmp_path).returncode == 0
    keepers.wait_kept("target")
    tbm.stop_sshd(sshd.bed, sshd.name)
    start = time.monotonic()
    through_keeper = run(tmp_path)
    assert time.monotonic() - start < 3 + 2
    direct = run(tmp_path, COMPUTE_KEEPER="0")
    assert through_keeper.returncode == direct.returncode == 1
    assert lines(through_keeper) == lines(direct)
    assert "refused (is sshd running there?)" in through_keeper.stdout


@pytest.mark.slow
def test_a_frozen_host_is_declared_lost_through_the_keeper(keeper: Path, sshd: Sshd, tmp_path: Path) -> None:
    started = Path(sshd.bed.jobs_dir) / f"started-{uuid.uuid4().hex[:8]}"
    project(tmp_path, {"target": sshd.entry(keepalive=1)}, f"touch {started}; sleep 8; echo done")
    (tmp_path / "warm.yaml").write_text(
        "inventory: {hosts: hosts.yaml}\ntasks:\n  - {hosts: target, cmd: 'true'}\n"
    )
    assert compute("run", "warm.yaml", cwd=tmp_path).returncode == 0
    keepers.wait_kept("target")
    proc = compute_popen("run", "book.yaml", cwd=tmp_path)
    pid = tbm._read_pid(sshd.bed.sshd_pidfile(sshd.name))
    assert pid is not None
    frozen = [pid, *tbm._descendants(pid, tbm._children_map())]
    try:
        wait_for(started.exists, 20, "the command to start")
        for each in frozen:
            os.kill(each, signal.SIGSTOP)
        stopped = time.monotonic()
        out, err = proc.communicate(timeout=30)
        lost_after = time.monotonic() - stopped
    finally:
        for each in frozen:
            os.kill(each, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out + err
    assert "stopped answering" in out and "Traceback" not in out + err
    assert 2 <= lost_after < 8


def test_ctrl_c_kills_a_command_run_through_the_keeper(keeper: Path, sshd: Sshd, tmp_path: Path) -> None:
    seconds = 400_000 + int(uuid.uuid4().int % 500_000)
    project(tmp_path, {"target": sshd.entry()}, f"sleep {seconds}")
    (tmp_path / "warm.yaml").write_text(
        "inventory: {hosts: hosts.yaml}\ntasks:\n  - {hosts: target, cmd: 'true'}\n"
    )
    assert compute("run", "warm.yaml", cwd=tmp_path).returncode == 0
    keepers.wait_kept("target")

    def sleeping() -> int:
        found = subprocess.run(
            ["pgrep", "-u", sshd.bed.user, "-fx", f"sleep {seconds}"], capture_output=True, text=True
        )
        return len(found.stdout.split())

    proc = compute_popen("run", "book.yaml", cwd=tmp_path)
    try:
        wait_for(lambda: sleeping() == 1, 20, "the command to start")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, out + err
        wait_for(lambda: sleeping() == 0, 10, "the command to be killed")
    finally:
        proc.kill()
        subprocess.run(["pkill", "-u", sshd.bed.user, "-fx", f"sleep {seconds}"], capture_output=True)
    assert keepers.kept_aliases() == ["target"]  # the connection itself is still kept


def test_jump_hosts_are_kept_and_tunnel_for_hosts_that_are_not(
    keeper: Path, sshd: Sshd, second: Sshd, tmp_path: Path
) -> None:
    hosts = {
        "hop": sshd.entry(),
        "target": {**second.entry(), "proxy_jump": "hop"},
        "unkept": {**second.entry(), "proxy_jump": "hop", "control_persist": "no"},
    }
    project(tmp_path, hosts, 'echo "from $SSH_CONNECTION"')
    assert run(tmp_path).returncode == 0
    keepers.wait_kept("hop", "target")
    hop_logins, target_logins = sshd.logins(), second.logins()
    proc = run(tmp_path)
    assert proc.returncode == 0 and "target | from 127.0.0.1" in proc.stdout
    assert (sshd.logins(), second.logins()) == (hop_logins, target_logins)
    listed = compute("hosts", "--connections", cwd=tmp_path).stdout
    assert re.search(r"^target +\S+ via hop +open", listed, re.MULTILINE), listed
    # a host whose own connection is not kept still goes through the kept jump host's
    project(tmp_path, hosts, "echo unkept", on="unkept")
    for _ in range(2):
        assert "unkept | unkept" in run(tmp_path).stdout
    assert (sshd.logins(), second.logins()) == (hop_logins, target_logins + 2)


def test_logout_closes_a_kept_connection(keeper: Path, sshd: Sshd, tmp_path: Path) -> None:
    project(tmp_path, {"target": sshd.entry()}, "echo hello")
    assert run(tmp_path).returncode == 0
    keepers.wait_kept("target")
    listed = compute("hosts", "--connections", cwd=tmp_path).stdout
    assert re.match(rf"target +ctest@127\.0\.0\.1:{sshd.port} +open \d+s, idle \d+s, closes in 9m", listed), (
        listed
    )
    assert compute("hosts", "--logout", "target", cwd=tmp_path).stdout == "target: connection closed\n"
    assert compute("hosts", "--logout", "target", cwd=tmp_path).stdout == "target: no connection was open\n"
    wait_for(lambda: not keepers.pids(keeper), 5, "the keeper to exit")
    assert "no connection is kept open" in compute("hosts", "--connections", cwd=tmp_path).stdout


def test_a_command_fed_on_stdin_costs_no_session_of_its_own_to_open(keeper: Path, sshd: Sshd) -> None:
    """Such a command needs an exec channel: the keeper has one open in advance, and sends the
    command and its stdin in one flight."""
    spec = HostSpec(alias="target", **sshd.entry())
    hand_to_keeper(spec)
    host = make_host(spec)
    try:
        for size in (0, 10, 3 << 20):
            result = host.run("wc -c; echo err >&2; exit 5", stdin=b"x" * size, timeout=30)
            assert (result.exit_code, result.stdout.strip(), result.stderr) == (5, str(size), "err\n")
        assert host.run("cat; exit 1", stdin=b"a\nb", timeout=30).stdout == "a\nb"
    finally:
        host.close()


def test_max_sessions_1_through_the_keeper(one_session: Sshd) -> None:
    """The keeper's persistent shell and spare session do not starve a server that allows one."""
    spec = HostSpec(alias="target", **one_session.entry())
    hand_to_keeper(spec)
    host = make_host(spec)
    try:
        assert host.run("echo plain").stdout == "plain\n"
        fed = host.run("cat", stdin=b"fed")
        assert (fed.exit_code, fed.stdout) == (0, "fed")
        assert host.run("echo after").stdout == "after\n"
        assert host.run("echo timed", timeout=10).stdout == "timed\n"
        assert host.kept  # type: ignore[attr-defined]
    finally:
        host.close()


def test_max_sessions_1_a_command_gets_the_session_the_keepers_parked_shell_held(one_session: Sshd) -> None:
    """The one session a server allows is the keeper's parked shell: a command that needs an exec
    channel of its own (a large stdin) gets it, the keeper closing its shell (was: refused for
    connect_timeout, then an error)."""
    spec = HostSpec(alias="target", **one_session.entry())
    hand_to_keeper(spec)
    # the keeper's shell and its spare session race for the one session: a run's shell, parked
    # when the run ends, is sure to hold it
    first = make_host(spec)
    assert first.run("echo first").stdout == "first\n"
    first.close()
    wait_for(lambda: any(c["shell"] for c in kept.connections()), 20, "the keeper to park a shell")
    host = make_host(spec)
    try:
        started = time.monotonic()
        fed = host.run("wc -c", stdin=b"x" * (FED_MAX + 1), timeout=30)
        assert (fed.exit_code, fed.stdout.strip()) == (0, str(FED_MAX + 1))
        assert time.monotonic() - started < 5
        assert host.run("echo after").stdout == "after\n"
    finally:
        host.close()


def test_runs_that_end_together_start_one_keeper_for_all(keeper: Path, sshd: Sshd, second: Sshd) -> None:
    """Several pools closed one after the other (compute jobs has one per hosts file), or several
    runs ending at once: one keeper is started, and it opens every connection at once."""
    hosts = [
        make_host(HostSpec(alias=name, **server.entry())) for name, server in (("a", sshd), ("b", second))
    ]
    for host in hosts:
        host.connect()
    for host in hosts:
        host.close()  # a host of its own asks at once: two requests while the first keeper starts
    keepers.wait_kept("a", "b", timeout=10)
    assert keepers.log(keeper).count("serving") == 1 and "another keeper" not in keepers.log(keeper)


def test_a_pool_never_closed_loses_nothing(keeper: Path, sshd: Sshd, second: Sshd, tmp_path: Path) -> None:
    """Each connection a run makes by itself is noted when it is made: closing any pool of the run
    hands them all to the keeper, those of a pool the run forgot to close too."""
    from compute_platform.hosts import HostPool
    from compute_platform.input.inventory import load_inventory

    write_hosts(tmp_path, {"a": sshd.entry(), "b": second.entry()})
    forgotten, closed = (HostPool(load_inventory(tmp_path / "hosts.yaml", None)) for _ in range(2))
    forgotten.get("a").connect()
    closed.get("b").connect()
    closed.close()
    keepers.wait_kept("a", "b", timeout=10)
    forgotten.close()


def test_a_logout_right_after_a_run_leaves_nothing_kept(keeper: Path, sshd: Sshd, tmp_path: Path) -> None:
    """The keeper the run started may still be starting, or logging in: the logout waits for it and
    what it opens is closed, so that the next run starts from no connection (as benchmarks need)."""
    project(tmp_path, {"target": sshd.entry()}, "echo hello")
    for _ in range(2):
        assert run(tmp_path).returncode == 0
        compute("hosts", "--logout", "target", cwd=tmp_path)
        wait_for(lambda: not keepers.pids(keeper), 10, "the keeper to exit")
    assert sshd.logins() in (2, 3, 4)  # each run's own, and the keeper's if it logged in before the logout
    logins = sshd.logins()
    assert run(tmp_path).returncode == 0
    assert sshd.logins() == logins + 1  # nothing was kept: a login of its own


def test_a_connection_is_shared_only_by_hosts_that_are_the_same(
    keeper: Path, sshd: Sshd, tmp_path: Path
) -> None:
    """Two specs of one host that differ in how it is checked (another known_hosts file) get two
    connections; what does not matter to the connection (init, env) shares one."""
    other_known = tmp_path / "known_hosts"
    other_known.write_text(Path(sshd.bed.known_hosts).read_text())
    base = HostSpec(alias="target", **sshd.entry())
    hosts = [
        base,
        base.but(init=("export A=1",), env={"B": "2"}),
        base.but(known_hosts=str(other_known)),
    ]
    hand_to_keeper(hosts[0])  # later, a host of its own asks the keeper at once
    made = [make_host(spec) for spec in hosts]
    try:
        for host in made:
            assert isinstance(host, SSHHost)
            assert host.run("echo $A$B").ok
        assert [host.kept for host in made] == [True, True, True]  # type: ignore[attr-defined]
        assert made[1].run("echo $A$B").stdout == "12\n"
    finally:
        for host in made:
            host.close()
    assert sshd.logins() == 3  # the first's own, the keeper's for the first two, one for the third
    assert len(kept.connections()) == 2


@pytest.mark.slow
def test_commands_that_end_at_once_through_the_keeper_under_load(keeper: Path, sshd: Sshd) -> None:
    """A command whose output, exit status, EOF and close arrive in one flight (sbatch's answer) is
    read to its end, whichever thread runs when: many in a row and at once, with stdin of a script's
    size, while threads of the run and another process keep the CPUs busy."""
    spec = HostSpec(alias="target", **sshd.entry())
    hand_to_keeper(spec)
    host = make_host(spec)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(10_000))

    spinners = [threading.Thread(target=spin, daemon=True) for _ in range(2)]
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    failures: list[str] = []

    def submit(count: int) -> None:
        for _ in range(count):
            try:
                result = host.run("wc -c", stdin=b"x" * (1 << 20), timeout=60)
            except Exception as e:
                failures.append(str(e))
                continue
            if (result.exit_code, result.stdout.strip()) != (0, str(1 << 20)):
                failures.append(f"{result.exit_code}: {result.stdout!r} {result.stderr!r}")

    try:
        for spinner in spinners:
            spinner.start()
        submitters = [threading.Thread(target=submit, args=(60,)) for _ in range(3)]
        for submitter in submitters:
            submitter.start()
        submit(60)
        for submitter in submitters:
            submitter.join()
        assert host.kept  # type: ignore[attr-defined]
    finally:
        stop.set()
        burner.kill()
        burner.wait()
        host.close()
    assert failures == []
