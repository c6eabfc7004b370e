"""`compute init`: the files of a new project, from the templates in compute_platform/cli/templates."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from compute_platform.errors import InputError
from compute_platform.input.sshconfig import ssh_config_hosts, ssh_config_path

GITIGNORE_LINE = "archive/"
IGNORED_ALREADY = (GITIGNORE_LINE, "archive", "/archive", "/archive/")


def template(name: str) -> str:
    folder = resources.files("compute_platform.cli").joinpath("templates")
    return folder.joinpath(name).read_text(encoding="utf-8")


def render_hosts(suggestions: list[str], ssh_config: str) -> str:
    """hosts.yaml: the template, then the aliases of ~/.ssh/config as commented entries."""
    text = template("hosts.yaml")
    if not suggestions:
        return text
    lines = [
        "",
        f"# Hosts found in {ssh_config}. They work as aliases as they are (HostName, User, Port,",
        "# IdentityFile and ProxyJump come from there); uncomment one to add compute settings on top.",
    ]
    lines += [f"# {alias}: {{}}" for alias in suggestions]
    return text + "\n".join(lines) + "\n"


def scaffold() -> dict[str, str]:
    """What `compute init` writes: path relative to the project -> content."""
    return {
        "hosts.yaml": render_hosts(sorted(ssh_config_hosts()), _display(ssh_config_path())),
        "configs.yaml": template("configs.yaml"),
        "playbooks/example.yaml": template("example.yaml"),
    }


def init(folder: Path) -> list[Path]:
    """Write a new project into `folder` (created if needed) and return what was written.
    Nothing is written when any of the files exists already."""
    files = scaffold()
    existing = [folder / name for name in files if (folder / name).exists()]
    if existing:
        names = ", ".join(str(p) for p in existing)
        raise InputError(
            f"{names} already exist{'s' if len(existing) == 1 else ''}: compute init never overwrites "
            "files; move them away or choose another directory (compute init DIR)"
        )
    written: list[Path] = []
    for name, content in files.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # "x": a file that appeared since the check above is still never overwritten
        with open(target, "x", encoding="utf-8") as f:
            f.write(content)
        written.append(target)
    if _ignore_archive(folder / ".gitignore"):
        written.append(folder / ".gitignore")
    return written


def _ignore_archive(path: Path) -> bool:
    """Append `archive/` to .gitignore unless it is already there; True if the file changed."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    if any(line.strip() in IGNORED_ALREADY for line in text.splitlines()):
        return False
    separator = "" if not text or text.endswith("\n") else "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{separator}# job scripts and job.csv recorded by compute\n{GITIGNORE_LINE}\n")
    return True


def _display(path: Path) -> str:
    """~/... for a path in the home directory, as users write it."""
    home = Path.home()
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)
