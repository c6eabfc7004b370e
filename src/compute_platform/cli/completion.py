"""Shell completion: click's scripts for bash, zsh and fish, and host aliases as candidates.

Imported by cli/main.py at start-up, so only click here; the loaders are imported when a TAB asks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem, get_completion_class

SHELLS = ("bash", "zsh", "fish")
COMPLETE_VAR = "_COMPUTE_COMPLETE"


def source(command: click.Command, shell: str) -> str:
    """The script that makes `shell` complete `compute` (what `_COMPUTE_COMPLETE=<shell>_source` prints)."""
    cls = get_completion_class(shell)
    if cls is None:
        raise click.BadParameter(f"unsupported shell {shell!r}: choose one of {', '.join(SHELLS)}")
    return cls(command, {}, "compute", COMPLETE_VAR).source()


def limit(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """`--limit a,b,<TAB>`: the hosts of the playbook already on the command line."""
    done, _, last = incomplete.rpartition(",")
    prefix = done + "," if done else ""
    chosen = set(done.split(",")) if done else set()
    return [
        CompletionItem(prefix + alias)
        for alias in _playbook_hosts(_playbook_arg(ctx))
        if alias.startswith(last) and alias not in chosen
    ]


def host_alias(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """A host alias of the hosts file given with -i (default hosts.yaml)."""
    return [
        CompletionItem(alias)
        for alias in _file_hosts(ctx.params.get("inventory") or "hosts.yaml")
        if alias.startswith(incomplete)
    ]


def _playbook_arg(ctx: click.Context) -> Any:
    """The PLAYBOOK argument. While an option still waits for its value (`--limit <TAB>`), click
    stops parsing and leaves the words it did not assign in ctx.args."""
    found = ctx.params.get("playbook")
    return found or next((a for a in ctx.args if a.endswith((".yaml", ".yml"))), None)


def _playbook_hosts(path: Any) -> list[str]:
    if not path:
        return []
    from compute_platform import playbook
    from compute_platform.errors import ComputeError

    try:
        book = playbook.load(Path(path))
    except ComputeError:  # a TAB must never print an error
        return []
    return sorted({alias for task in book.tasks for alias in task.hosts})


def _file_hosts(path: str) -> list[str]:
    from compute_platform.errors import ComputeError
    from compute_platform.input.inventory import load_hosts

    try:
        return list(load_hosts(Path(path))[0])
    except ComputeError:
        return []
