"""~/.ssh/config, read here only: where it is, the host names it defines, the settings it gives a host
(paramiko's SSHConfig, which reads it as OpenSSH does), and importing paramiko as cheaply as it allows.

paramiko ignores `Include`, so the config is handed to it with every Include line replaced by the
files it names, read as OpenSSH reads them (see `man ssh_config`): globs in lexical order, relative
paths under ~/.ssh, nested up to 16 deep, a pattern matching nothing ignored. OpenSSH applies an
included file inside the block that includes it: its own `Host`/`Match` lines only ever match hosts
that block matches, and the block resumes after the Include line. Those lines are therefore rewritten
as `Match` lines that also carry the enclosing block's condition (`Host a` is `Match originalhost a`),
and the enclosing header is repeated after the included text.

paramiko imports `invoke` (which pulls in asyncio and unittest.mock: ~45 ms, a third of paramiko's
import time) only to run the commands of `Match exec` lines of an ssh config. Unless the user's
ssh config has such a line, paramiko is imported with `invoke` made unavailable, which paramiko
handles as an optional dependency.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compute_platform.errors import HostError

_import_lock = threading.Lock()
_MATCH_EXEC = re.compile(r"^\s*match\b.*\bexec\b", re.IGNORECASE | re.MULTILINE)
_KEYWORD = re.compile(r"\s*(\w+)(?:\s*=\s*|\s+)(.*)")  # `Keyword value` or `Keyword=value`, as ssh reads them
_MAX_DEPTH = 16  # OpenSSH's limit on nested Includes (READCONF_MAX_DEPTH): deeper is taken as a cycle
_BARE = ("all", "canonical", "final")  # the Match keywords that take no argument

# A block's condition as Match criteria (`["originalhost", "a,b"]`); None: it holds for every host.
_Criteria = list[str] | None


class IncludeError(ValueError):
    """An Include that OpenSSH refuses too: nested too deep (a cycle), an unreadable file, bad quoting."""


def ssh_config_path() -> Path:
    return Path(os.environ.get("COMPUTE_SSH_CONFIG", "~/.ssh/config")).expanduser()


def ssh_config_hosts() -> set[str]:
    """Literal (non-pattern) Host names of the user's ~/.ssh/config and the files it includes (also
    those OpenSSH applies only within an including block: best effort, `lookup` has the last word).
    Read without paramiko: an unknown alias is looked up here while a playbook is checked, which
    must stay quick."""
    names: set[str] = set()
    try:
        text = _Reader(strict=False, scoped=False).text(ssh_config_path())
    except OSError:
        return names
    for raw in text.splitlines():
        parts = _KEYWORD.match(raw)
        if parts and parts.group(1).lower() == "host":
            names.update(n for n in parts.group(2).split() if not any(c in n for c in "*?!"))
    return names


def expanded_text() -> str:
    """The user's ssh config with its Includes in place ("" without one), read without paramiko:
    what the connections the keeper holds depend on (hosts/kept.py)."""
    try:
        return _Reader(strict=False, scoped=False).text(ssh_config_path())
    except OSError:
        return ""


def lookup(name: str, alias: str) -> dict[str, Any]:
    """The ~/.ssh/config settings for host `name`, its Includes read as OpenSSH reads them (empty
    without a config file); errors (a bad config, an include cycle) name `alias` and the file."""
    path = ssh_config_path()
    if not path.exists():
        return {}
    load_paramiko()
    import paramiko

    try:
        return dict(paramiko.SSHConfig.from_text(config_text(path)).lookup(name))
    except Exception as e:  # paramiko raises several types for bad configs
        raise HostError(alias, f"cannot read {path}: {e}") from e


def proxy_jump(given: str | None, settings: Mapping[str, Any]) -> str | None:
    """The jump hosts on the way to a host: those `given` in hosts.yaml, else its ~/.ssh/config
    `settings`' ProxyJump; `none` (as OpenSSH spells it) for none."""
    jump = given or settings.get("proxyjump")
    if jump and jump.lower() == "none":
        return None
    return jump


def load_paramiko() -> None:
    """Import paramiko (once, whichever thread asks first)."""
    with _import_lock:
        if "paramiko" in sys.modules:
            return
        if "invoke" in sys.modules or _runs_commands():
            import paramiko

            return
        sys.modules["invoke"] = None  # type: ignore[assignment]  # `import invoke` fails at once
        try:
            import paramiko  # noqa: F401
        finally:
            del sys.modules["invoke"]


def _runs_commands() -> bool:
    # the Match exec line may be in an included file: those are read too
    try:
        text = _Reader(strict=False, scoped=False).text(ssh_config_path())
    except OSError:
        return False
    return _MATCH_EXEC.search(text) is not None


def config_text(path: Path) -> str:
    """The ssh config at `path` with its Includes expanded, each block confined as OpenSSH applies
    it (for paramiko). Raises OSError for `path` itself, IncludeError for a bad Include."""
    return _Reader(strict=True, scoped=True).text(path)


@dataclass(frozen=True)
class _Reader:
    """Reads an ssh config with the lines of each included file in place of its Include line."""

    strict: bool  # a bad Include raises IncludeError; else it is skipped (listing names is best effort)
    scoped: bool  # included Host/Match lines confined to the including block; else inserted verbatim

    def text(self, path: Path) -> str:
        out: list[str] = []
        try:
            self._file(path, None, 0, out)
        except _TooDeep as e:
            if self.strict:
                raise IncludeError(str(e)) from None
            # what was read up to there: going on would read the cycle again from every other branch
        return "".join(f"{line}\n" for line in out)

    def _file(self, path: Path, outer: _Criteria, depth: int, out: list[str]) -> bool:
        """Append the lines of `path` (included in a block of condition `outer`) to `out`; whether
        it has a Host/Match line of its own."""
        own: tuple[str, str] | None = None  # the Host/Match line of the current block, when it has one
        for number, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            parts = _KEYWORD.match(raw)
            keyword = parts.group(1).lower() if parts else ""
            if parts and keyword in ("host", "match"):
                own = (keyword, parts.group(2))
                if self.scoped and outer is not None:
                    raw = _header(_both(outer, _criteria(*own)))
            if parts and keyword == "include":
                # the block's condition is worked out only here: a config without Include is paramiko's alone
                block = _both(outer, _criteria(*own)) if self.scoped and own else outer
                self._include(parts.group(2), f"{path} line {number}", block, depth + 1, out)
            else:
                out.append(raw)
        return own is not None

    def _include(self, value: str, where: str, block: _Criteria, depth: int, out: list[str]) -> None:
        """Append the lines of the files an Include names, then `block`'s header again if they
        started blocks of their own: the including block goes on after the Include line."""
        if depth > _MAX_DEPTH:
            raise _TooDeep(f"{where}: Include nested more than {_MAX_DEPTH} deep (an include cycle?)")
        try:
            paths = _include_paths(value)
        except ValueError as e:  # shlex: unbalanced quotes
            return self._fail(f"{where}: cannot parse Include {value}: {e}")
        for path in paths:
            try:
                opened = self._file(path, block, depth, out)
            except FileNotFoundError:  # gone since the glob saw it: as if it had not matched
                continue
            except OSError as e:
                self._fail(f"{where}: cannot read {path}: {e.strerror or e}")
                continue
            if opened and self.scoped:
                out.append(_header(block))

    def _fail(self, message: str) -> None:
        if self.strict:
            raise IncludeError(message)


class _TooDeep(Exception):
    """Includes nested past OpenSSH's limit: the whole read stops, as ssh's does."""


def _include_paths(value: str) -> list[Path]:
    """The files an Include line's `value` names: each word a path or glob, `~` expanded, relative to
    ~/.ssh (as OpenSSH has it for a user config), matches in lexical order; a missing file is none."""
    paths: list[Path] = []
    for word in shlex.split(value, comments=True):
        pattern = os.path.expanduser(word)
        if not os.path.isabs(pattern):
            pattern = str(Path.home() / ".ssh" / pattern)
        paths += [Path(p) for p in sorted(glob.glob(pattern)) if os.path.isfile(p)]
    return paths


def _criteria(keyword: str, value: str) -> _Criteria:
    """A Host or Match line's condition as Match criteria: `Host a b` is `originalhost a,b`."""
    words = shlex.split(value)
    if keyword == "host":
        return None if words == ["*"] else ["originalhost", ",".join(words)]
    kept: list[str] = []
    while words:
        word = words.pop(0)
        argument = [] if word.lstrip("!").lower() in _BARE or not words else [words.pop(0)]
        if word.lower() != "all":  # `all` would be true anyway, and paramiko refuses it beside others
            kept += [word, *argument]
    return kept or None


def _both(outer: _Criteria, inner: _Criteria) -> _Criteria:
    """The condition of a block inside a block: both must hold."""
    if outer is None or inner is None:
        return inner if outer is None else outer
    return outer + inner


def _header(block: _Criteria) -> str:
    return "Host *" if block is None else "Match " + shlex.join(block)
