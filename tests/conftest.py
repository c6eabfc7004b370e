"""Session-wide fixtures: the local test bed (tests/support/testbed.py) and ssh isolation.

* Every test runs with COMPUTE_SSH_CONFIG pointing at a file that does not exist and
  COMPUTE_KNOWN_HOSTS at a private file, so no test reads the developer's ~/.ssh, and with
  XDG_CACHE_HOME in the session's temporary folder.
* No test keeps a paramiko connection after its run (COMPUTE_KEEPER=0: no connection keeper is
  started or used), so that no test depends on another's connections; the tests of the keeper turn
  it on, each in a control directory of its own (the `keeper` fixture of tests/integration).
* `testbed` (session): h1..h4 sshd + `cluster` (Slurm login node) + munge/slurmctld/slurmd,
  brought up once (~0.2 s) and taken down at the end. With COMPUTE_TESTBED=DIR pointing at a
  bed that is up (`scripts/testbed up --state DIR`), that bed is reused and left running.
  While it is in use COMPUTE_KNOWN_HOSTS is the bed's known_hosts (it lists every test sshd).
* `multinode` (session): the test bed's multi-node mode in a state dir of its own: the login sshd
  `cluster`, 3 slurmd in network namespaces, slurmctld, slurmdbd + MariaDB (tests/support/cluster.py),
  brought up once (~4 s) by the first test that asks and taken down at the end. COMPUTE_MULTINODE=DIR
  reuses a bed that is up (`scripts/testbed up --nodes 3 --hosts 0 --state DIR`) and leaves it running.
* The API of the bed (start_sshd, stop_sshd, sshd_log, slurm_env, wait_idle, ...) is the module
  `tests.support.testbed`: `from tests.support import testbed as tbm` in a test module. The other
  shared helpers are beside it in tests/support/ (their asserts are rewritten like the tests').
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.support")

from tests.support import browser as browsing  # noqa: E402
from tests.support import testbed as tbm  # noqa: E402  (after the rewrite hook, which must see it first)


@pytest.fixture(scope="session", autouse=True)
def _isolated_ssh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads or writes the developer's ~/.ssh/config or ~/.ssh/known_hosts."""
    base = tmp_path_factory.mktemp("ssh-isolation")
    mp = pytest.MonkeyPatch()
    mp.setenv("COMPUTE_SSH_CONFIG", str(base / "no-ssh-config"))  # does not exist
    mp.setenv("COMPUTE_KNOWN_HOSTS", str(base / "known_hosts"))
    mp.setenv("COMPUTE_KEEPER", "0")
    mp.setenv(
        "XDG_CACHE_HOME", str(base / "cache")
    )  # the settings of hosts files read (input/settings_cache.py)
    yield
    mp.undo()


@pytest.fixture(scope="session", autouse=True)
def control_dir() -> Iterator[Path]:
    """The master sockets of `connection: openssh` hosts go to a private, short directory (not
    ~/.cache/compute/cm); the masters still open at the end are closed."""
    folder = Path(tempfile.mkdtemp(prefix="compute-cm-", dir="/tmp"))
    mp = pytest.MonkeyPatch()
    mp.setenv("COMPUTE_CONTROL_DIR", str(folder))
    yield folder
    for socket in folder.iterdir():
        if socket.is_socket():
            subprocess.run(
                ["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "any"], capture_output=True, timeout=10
            )
    mp.undo()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def testbed(_isolated_ssh: None) -> Iterator[tbm.Testbed]:
    """The running test bed (see tests/support/testbed.py for the Testbed fields)."""
    reuse = os.environ.get("COMPUTE_TESTBED")
    owned: Path | None = None
    if reuse and tbm.is_up(Path(reuse)):
        bed = tbm.Testbed.load(Path(reuse))
    else:
        owned = Path(f"/tmp/compute-testbed-{os.getpid()}")
        bed = tbm.up(owned)
    mp = pytest.MonkeyPatch()
    mp.setenv("COMPUTE_KNOWN_HOSTS", str(bed.known_hosts))
    try:
        yield bed
    finally:
        mp.undo()
        if owned is not None:
            tbm.down(owned)
            if not os.environ.get("COMPUTE_TESTBED_KEEP"):
                shutil.rmtree(owned, ignore_errors=True)


@pytest.fixture(scope="session")
def multinode(_isolated_ssh: None) -> Iterator[tbm.Testbed]:
    """The multi-node cluster (Testbed.nodes: node1..node3; Testbed.cluster: its network and
    switches); its login node is the alias `cluster` of its own hosts.yaml and ssh_config."""
    reuse = os.environ.get("COMPUTE_MULTINODE")
    owned: Path | None = None
    if reuse and tbm.is_up(Path(reuse)):
        bed = tbm.Testbed.load(Path(reuse))
        if not bed.nodes:
            raise RuntimeError(f"COMPUTE_MULTINODE={reuse} is a single-node bed (up it with --nodes 3)")
    else:
        owned = Path(f"/tmp/compute-multinode-{os.getpid()}")
        bed = tbm.up(owned, hosts=0, nodes=3)
    try:
        yield bed
    finally:
        if owned is not None:
            tbm.down(owned)
            if not os.environ.get("COMPUTE_TESTBED_KEEP"):
                shutil.rmtree(owned, ignore_errors=True)


@pytest.fixture
def slurm_env(testbed: tbm.Testbed, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """SLURM_CONF is set in os.environ for the test; returns a copy of the whole environment
    (pass it as env= to subprocess calls of sbatch/squeue/scontrol; mutate it freely)."""
    for key, value in tbm.slurm_env(testbed).items():
        monkeypatch.setenv(key, value)
    return dict(os.environ)


@pytest.fixture
def tb_hosts_yaml(testbed: tbm.Testbed) -> Path:
    """hosts.yaml of the bed: h1..hN (linux) and `cluster` (platform: slurm, 32 CPUs, 2 GPUs).
    Shared by the session: copy it before changing it."""
    return Path(testbed.hosts_yaml)


@pytest.fixture(scope="module")
def browser() -> Iterator[browsing.Browser]:
    """Headless Chromium, one per test module (a fresh profile: no cookies or storage from another
    module). It fails, not skips, without Chromium: tests against real programs always run."""
    try:
        started: browsing.Browser | str = browsing.Browser.start()
    except browsing.BrowserError as err:
        started = str(err)
    if isinstance(started, str):  # failed outside the `except`: the message alone, no chained traceback
        pytest.fail(f"no headless browser: {started}", pytrace=False)
    with started:
        yield started
