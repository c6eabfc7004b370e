"""Python environments with the real ML packages the multi-node tests run (torch for `torchrun`,
ray for `ray: true`), for the test user's jobs on every node of the cluster.

Installed from the package index pip is configured with (torch 2.13.0: a 192 MB CPU build, ~13 s;
the index's other torch builds are CUDA ones of several GB), into a venv made from /usr/bin/python3
(the default python may live under root's private home, which the test user cannot read). Kept
between test sessions on this machine, under CACHE, named by what it holds: the first session of a
fresh machine (CI) pays for the install, the others find it. Nodes share this machine's filesystem,
as a cluster's nodes share home.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

CACHE = Path(os.environ.get("COMPUTE_TEST_VENVS", "/var/cache/compute-tests"))
TORCH = ("torch==2.13.0",)
RAY = ("ray==2.60.0",)  # 79 MB wheel, a 284 MB venv


def venv(packages: tuple[str, ...]) -> Path:
    """The venv holding `packages` (made once per machine; concurrent sessions wait for the first)."""
    name = "ml-" + hashlib.sha256("\n".join(sorted(packages)).encode()).hexdigest()[:12]
    path = CACHE / name
    CACHE.mkdir(parents=True, exist_ok=True)
    os.chmod(CACHE, 0o755)
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path / "ready").exists():
            _make(path, packages)
    return path


def _make(path: Path, packages: tuple[str, ...]) -> None:
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(path)], check=True, timeout=120)
    pip = [str(path / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input"]
    proc = subprocess.run([*pip, *packages], capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(packages)} failed:\n{proc.stdout}\n{proc.stderr}")
    subprocess.run(["chmod", "-R", "a+rX", str(path)], check=True, timeout=120)
    (path / "ready").write_text(" ".join(packages) + "\n")
