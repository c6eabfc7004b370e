"""A sample tree for copy tests (nested directories, odd names, modes, links) and a way to
compare trees."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def make_tree(root: Path) -> Path:
    """A tree with nested directories, odd names, modes, an empty file and an internal symlink."""
    tree = root / "proj"
    for rel in [
        "src/pkg/__pycache__/m.pyc",
        "src/pkg/m.py",
        ".git/HEAD",
        "a/.git/x",
        "model.ckpt",
        "deep/er/model.ckpt",
        "data/raw/1.bin",
        "data/rawer/1.bin",
        "x/data/raw/2.bin",
        "logs/a.txt",
        "logs/a.log",
        "logs/sub/b.txt",
        "bad",
        "bid/f",
        "good",
        'with space/it\'s "quoted".txt',
    ]:
        path = tree / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    (tree / "empty").write_text("")
    (tree / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(tree / "run.sh", 0o751)
    os.chmod(tree / "src", 0o750)
    os.symlink("good", tree / "link")
    return tree


def listing(root: Path) -> dict[str, tuple[str, int, str]]:
    """rel path -> (kind, mode, content or link target), for comparing trees."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("link", 0, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", stat.S_IMODE(st.st_mode), "")
            else:
                found[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_text())
    return found
