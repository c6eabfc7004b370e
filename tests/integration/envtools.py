"""Helpers for the pip, git and copy integration tests: a workspace in the test user's home,
tiny Python packages built without any network (a hand-made wheel, a project with an in-tree
PEP 517/660 build backend), and a loopback wheel server."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.project import free_port
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def user_workspace(testbed: Any, label: str) -> Iterator[Path]:
    """A fresh directory owned by the test user in its home (test beds of concurrent sessions
    share that home: the name is unique), removed afterwards."""
    path = Path(testbed.home) / f"ct-{label}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    shutil.chown(path, testbed.user, testbed.user)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def chown_tree(path: Path, user: str) -> None:
    for folder, dirs, files in os.walk(path):
        for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
            os.chown(name, *_ids(user), follow_symlinks=False)


def _ids(user: str) -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam(user)
    return entry.pw_uid, entry.pw_gid


def as_user(user: str, command: str, timeout: float = 60) -> str:
    """Run a shell command as `user` on this machine (set up and check what a host did)."""
    proc = subprocess.run(
        [shutil.which("runuser") or "/usr/sbin/runuser", "-u", user, "--", "bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(Path("~" + user).expanduser())},
    )
    assert proc.returncode == 0, f"{command}\n{proc.stdout}{proc.stderr}"
    return proc.stdout


# -- packages ----------------------------------------------------------------------------------


def wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel written by hand (no setuptools, no network)."""
    dist = f"{name}-{version}"
    files = {
        **files,
        f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    path = folder / f"{dist}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            data = text.encode()
            archive.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{member},sha256={digest},{len(data)}")
        record.append(f"{dist}.dist-info/RECORD,,")
        archive.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return path


# An in-tree PEP 517/660 backend: `pip install -e` of the project needs no setuptools, no wheel
# package and no index (Debian's venvs have setuptools 66 but not `wheel`, and tests are offline).
BACKEND = """\
import base64, hashlib, os, zipfile

NAME, VERSION = {name!r}, "0.1"
HERE = os.path.dirname(os.path.abspath(__file__))


def _wheel(directory, files):
    dist = NAME + "-" + VERSION
    files = dict(files)
    metadata = "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n" % (NAME, VERSION)
    files[dist + ".dist-info/METADATA"] = metadata
    files[dist + ".dist-info/WHEEL"] = "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    record = []
    name = dist + "-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(directory, name), "w") as z:
        for path, text in files.items():
            data = text.encode()
            z.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append("%s,sha256=%s,%d" % (path, digest, len(data)))
        record.append(dist + ".dist-info/RECORD,,")
        z.writestr(dist + ".dist-info/RECORD", "\\n".join(record) + "\\n")
    return name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    package = os.path.join(HERE, NAME)
    sources = [f for f in os.listdir(package) if f.endswith(".py")]
    return _wheel(wheel_directory, {{
        NAME + "/" + f: open(os.path.join(package, f)).read() for f in sources
    }})


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {{"__editable__." + NAME + ".pth": HERE + "\\n"}})


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_editable(config_settings=None):
    return []
"""


def python_project(folder: Path, name: str, value: str) -> Path:
    """A project `name` (package `name` with VALUE = value) installable offline with pip."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(
        f'[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n\n'
        f'[project]\nname = "{name}"\nversion = "0.1"\n'
    )
    (folder / "backend.py").write_text(BACKEND.format(name=name))
    (folder / name).mkdir(exist_ok=True)
    (folder / name / "__init__.py").write_text(f"VALUE = {value!r}\n")
    return folder


@contextmanager
def wheel_server(folder: Path) -> Iterator[str]:
    """`python -m http.server` on loopback serving `folder`: a --find-links URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: _listening(port), 10, f"the wheel server on 127.0.0.1:{port}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
