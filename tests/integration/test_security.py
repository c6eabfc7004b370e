"""Security, against the real sshd and Slurm: host keys (unknown, changed, hashed known_hosts, another
key type), secrets that never show (output, -v, --dry-run, ledger, archived and uploaded scripts,
command lines on the host), files written with the user's umask, and private keys other users can
read. Basic host key policy tests (accept-new records, strict refuses) are in test_run_ssh.py."""

from __future__ import annotations

import shutil
import stat
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.integration.faultbed import Project, scancel_name
from tests.support import testbed as tbm
from tests.support.cli import compute
from tests.support.waiting import wait_for

SECRET = f"s3cr3t-{uuid.uuid4().hex}"


@pytest.fixture
def project(testbed: tbm.Testbed, tmp_path: Path) -> Project:
    return Project(testbed, tmp_path)


def every_file_under(folder: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


# -- host keys ------------------------------------------------------------------------------------


def keygen(folder: Path, kind: str = "ed25519") -> list[str]:
    path = folder / f"other-{kind}"
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().split()[:2]


def test_a_changed_key_in_a_hashed_known_hosts_names_the_line(project: Project, tmp_path: Path) -> None:
    kind, blob = keygen(tmp_path)
    known = tmp_path / "known_hosts"
    port = project.bed.hosts["h1"]
    known.write_text(f"[127.0.0.1]:{port + 1} {kind} {blob}\n[127.0.0.1]:{port} {kind} {blob}\n")
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(known)], check=True, capture_output=True)
    assert "127.0.0.1" not in known.read_text()  # hashed
    project.hosts["h1"]["known_hosts"] = str(known)
    project.write_hosts()
    project.book([{"name": "t", "hosts": "h1", "cmd": "echo never"}])
    proc = project.run()
    assert proc.returncode == 1
    assert "CHANGED" in proc.stdout and f"{known}, line 2" in proc.stdout and "ssh-keygen -f" in proc.stdout
    assert "never" not in proc.stdout


def test_a_host_known_with_another_key_type_is_refused(project: Project, tmp_path: Path) -> None:
    """The bed's sshd only has an ed25519 key; known_hosts has an ECDSA key for it. Accepting the
    ed25519 key as 'new' would let anyone with any key type pass: it is a changed key."""
    kind, blob = keygen(tmp_path, "ecdsa")
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{project.bed.hosts['h1']} {kind} {blob}\n")
    project.hosts["h1"]["known_hosts"] = str(known)
    project.write_hosts()
    project.book([{"name": "t", "hosts": "h1", "cmd": "echo never"}])
    proc = project.run()
    assert proc.returncode == 1
    assert "CHANGED" in proc.stdout and "ecdsa-sha2-nistp256" in proc.stdout and "line 1" in proc.stdout
    assert known.read_text().count("\n") == 1


def test_accept_new_records_a_key_once(project: Project, tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    project.hosts["h3"]["known_hosts"] = str(known)
    project.write_hosts()
    project.book([{"name": "t", "hosts": "h3", "cmd": "true"}])
    for _ in range(2):
        assert project.run().returncode == 0
    assert known.read_text().count("\n") == 1


def test_aliases_of_one_host_record_its_key_once(project: Project, tmp_path: Path) -> None:
    """Four aliases of one host:port, connecting in parallel under accept-new, write one line."""
    known = tmp_path / "known_hosts"
    aliases = [f"same{i}" for i in range(4)]
    for alias in aliases:
        project.hosts[alias] = {**project.hosts["h3"], "known_hosts": str(known)}
    project.write_hosts()
    project.book([{"name": "t", "hosts": aliases, "cmd": "true"}])
    assert project.run().returncode == 0
    assert known.read_text().count("\n") == 1, known.read_text()


# -- private keys other users can read -------------------------------------------------------------


def test_a_private_key_others_can_read_gets_a_warning(project: Project, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    shutil.copy(project.bed.client_key, key)
    project.hosts["h2"]["key"] = str(key)
    project.write_hosts()
    project.book([{"name": "t", "hosts": "h2", "cmd": "true"}])
    key.chmod(0o600)
    quiet = project.run()
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
    key.chmod(0o644)
    loud = project.run()
    assert loud.returncode == 0
    assert f"warning: {key} is accessible by other users (mode 644)" in loud.stderr
    assert f"chmod 600 {key}" in loud.stderr


# -- secrets --------------------------------------------------------------------------------------


def with_secret() -> dict[str, str]:
    """What to add to the environment of `compute`: the secret."""
    return {"WANDB_API_KEY": SECRET}


@pytest.mark.parametrize("where", ["h1", "localhost"])
def test_a_secret_reaches_the_command_and_never_shows(project: Project, where: str) -> None:
    seen = Path(project.bed.jobs_dir) / f"seen-{project.tag}"
    ps = Path(project.bed.jobs_dir) / f"ps-{project.tag}"
    command = (
        f'printf %s "$WANDB_API_KEY" > {seen}; ps -eo args > {ps}; '
        'echo "the key is $WANDB_API_KEY"; echo "on stderr $WANDB_API_KEY" >&2; exit 3'
    )
    task = {"name": "t", "hosts": where, "cmd": {"commands": [command], "secret_env": ["WANDB_API_KEY"]}}
    project.book([task])
    for flags in [(), ("-v",), ("--json",)]:
        proc = project.run(*flags, env=with_secret())
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert seen.read_text() == SECRET  # it reached the program, byte for byte
        assert SECRET not in ps.read_text()  # never on a command line of the host
        assert SECRET not in proc.stdout + proc.stderr
        assert "********" in proc.stdout
    dry = project.run("--dry-run", env=with_secret())
    assert (
        dry.returncode == 0 and SECRET not in dry.stdout + dry.stderr and "compute-secrets" not in dry.stdout
    )


def test_a_missing_secret_is_a_clear_error(project: Project) -> None:
    task = {"name": "t", "hosts": "h1", "cmd": {"commands": ["echo run"], "secret_env": ["NOPE_NOT_SET_X"]}}
    project.book([task])
    proc = project.run(unset=["NOPE_NOT_SET_X"])
    assert proc.returncode == 1
    assert "NOPE_NOT_SET_X" in proc.stdout and "not set in the environment" in proc.stdout
    assert "h1 | run" not in proc.stdout


def test_a_secret_reaches_a_slurm_job_and_is_written_nowhere(project: Project) -> None:
    name = project.job_name("secret")
    seen = Path(project.bed.jobs_dir) / f"seen-{project.tag}"
    task = {
        "name": "t",
        "hosts": "cluster",
        "slurm": {
            "cmd": f'printf %s "$WANDB_API_KEY" > {seen}; echo "job sees $WANDB_API_KEY"',
            "job_name": name,
            "sweep": {"i": [1, 2]},
            "secret_env": ["WANDB_API_KEY"],
        },
    }
    project.book([task])
    try:
        dry = project.run("--dry-run", env=with_secret())
        assert dry.returncode == 0 and SECRET not in dry.stdout + dry.stderr
        assert "secret_env WANDB_API_KEY" in dry.stdout
        proc = project.run("-v", env=with_secret())
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert SECRET not in proc.stdout + proc.stderr
        wait_for(lambda: seen.exists() and seen.read_text() == SECRET, 60, "the job to write what it saw")
        assert SECRET not in every_file_under(project.archive)  # job.csv, events.csv, scripts
        logs = project.bed.home / project.logs_name
        wait_for(lambda: len(list(logs.glob("*.out"))) == 2, 30, "the jobs' logs")
        assert f"job sees {SECRET}" in every_file_under(logs)  # the job's own output, on the host
        scripts = project.bed.home / ".compute" / "scripts"
        assert not scripts.exists() or SECRET not in every_file_under(scripts)
    finally:
        scancel_name(project.bed, name)


def test_secret_env_refuses_names_also_in_env_and_an_export_option(project: Project) -> None:
    both = {"name": "t", "hosts": "h1", "cmd": {"commands": ["true"], "env": {"A": "1"}, "secret_env": ["A"]}}
    project.book([both])
    proc = compute("check", "book.yaml", cwd=project.folder)
    assert proc.returncode == 2 and "both in env and in secret_env" in proc.stderr
    export = {"cmd": "true", "secret_env": ["A"], "sbatch": {"export": "NONE"}}
    project.book([{"name": "t", "hosts": "cluster", "slurm": export}])
    proc = compute("check", "book.yaml", cwd=project.folder)
    assert proc.returncode == 2 and "--export=ALL" in proc.stderr


# -- the user's umask -----------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o077, 0o022])
def test_archive_files_respect_the_umask(project: Project, umask: int) -> None:
    name = project.job_name("umask")
    project.book(
        [
            {
                "name": "t",
                "hosts": "cluster",
                "slurm": {"cmd": "true", "job_name": name, "sbatch": {"hold": True}},
            }
        ]
    )
    try:
        proc = project.run(umask=umask)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    finally:
        scancel_name(project.bed, name)
    files = [p for p in project.archive.rglob("*") if p.name != ".lock"]
    assert any(p.suffix == ".slurm" for p in files) and (project.archive / "job.csv") in files
    for path in [project.archive, *files]:
        mode = stat.S_IMODE(path.stat().st_mode)
        full = 0o777 if path.is_dir() else 0o666
        assert mode == full & ~umask, (path, oct(mode))


def test_a_secret_reaches_tmux_jobs_and_its_file_is_gone_once_the_lanes_read_it(project: Project) -> None:
    seen = Path(project.bed.jobs_dir) / f"seen-{project.tag}"
    task = {
        "name": "t",
        "hosts": "h1",
        "tmux": {
            # two lanes: each job names its file after its point (`--i=1`, `--i=2`, appended)
            "cmd": f"sh -c 'sleep 1; printf %s \"$WANDB_API_KEY\" > {seen}.$1' x",
            "job_name": project.job_name("tmuxsecret"),
            "sweep": {"i": [1, 2]},
            "max_parallel": 2,
            "secret_env": ["WANDB_API_KEY"],
        },
    }
    project.book([task])
    try:
        proc = project.run("-v", env=with_secret())
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert SECRET not in proc.stdout + proc.stderr
        folder = project.bed.home / project.logs_name
        assert not list(folder.rglob("secrets.env"))  # removed once every lane had read it
        files = [Path(f"{seen}.--i={i}") for i in (1, 2)]
        wait_for(lambda: all(f.exists() for f in files), 30, "the jobs")
        assert all(f.read_text() == SECRET for f in files)
        assert SECRET not in every_file_under(project.archive)
        launcher = next(folder.rglob("launcher.sh")).read_text()
        assert SECRET not in launcher and "secret_env WANDB_API_KEY" in launcher
    finally:
        shutil.rmtree(project.bed.home / project.logs_name, ignore_errors=True)


@pytest.mark.slow
def test_a_resubmitted_job_gets_its_secret_again(project: Project) -> None:
    name = project.job_name("again")
    flag = Path(project.bed.jobs_dir) / f"failed-once-{project.tag}"
    seen = Path(project.bed.jobs_dir) / f"seen-again-{project.tag}"
    command = f'[ -e {flag} ] || {{ touch {flag}; exit 1; }}; printf %s "$WANDB_API_KEY" > {seen}'
    slurm_task = {"cmd": command, "job_name": name, "secret_env": ["WANDB_API_KEY"]}
    project.book([{"name": "t", "hosts": "cluster", "slurm": slurm_task}])
    try:
        assert project.run(env=with_secret()).returncode == 0
        script = next(project.archive.rglob("*.slurm")).read_text()
        assert "secret_env WANDB_API_KEY" in script and SECRET not in script

        def failed() -> bool:
            proc = compute("jobs", "--json", cwd=project.folder)
            return '"FAILED"' in proc.stdout

        wait_for(failed, 60, "the first attempt to fail", interval=0.3)
        missing = compute("resubmit", "--failed", cwd=project.folder, unset=["WANDB_API_KEY"])
        assert missing.returncode != 0 and "WANDB_API_KEY" in missing.stderr and "not set" in missing.stderr
        again = compute("resubmit", "--failed", cwd=project.folder, env=with_secret())
        assert again.returncode == 0, again.stdout + again.stderr
        assert SECRET not in again.stdout + again.stderr
        wait_for(lambda: seen.exists() and seen.read_text() == SECRET, 60, "the resubmitted job")
    finally:
        scancel_name(project.bed, name)
