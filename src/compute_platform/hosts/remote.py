"""What hosts reached over SSH share, whichever client carries the bytes (paramiko or OpenSSH): the
command line sshd gets for a script, whatever the user's login shell, and stopping a command's whole
process tree.

sshd runs every command as `$SHELL -c COMMAND`, after the shell read its start-up files. compute's
scripts are bash, so on a host whose login shell is bash a script is that COMMAND (what ~/.bashrc
defines stays defined). For any other login shell (zsh, sh, fish, tcsh, ...) COMMAND is one line that
every shell parses alike: `exec bash -c '...'` with the script base64-encoded inside the quotes, so its
syntax never meets the login shell; the environment the start-up files exported is inherited.

Either way the script first prints a token on both streams: what start-up files print before it is
not the command's output (`Opening` drops it), then turns off a `set -e` or `set -u` they left on,
goes back to the home directory (where sshd started the shell, before a start-up file's `cd`),
records its process group, and runs the command in a subshell with stdin from /dev/null unless the
caller feeds it."""

from __future__ import annotations

import base64
import re
import uuid
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Protocol

# Asked once per connection, in a form every shell parses: which login shell sshd starts.
LOGIN_MARK = "@@compute-login@@"
LOGIN_PROBE = f'echo {LOGIN_MARK} "$SHELL" {LOGIN_MARK}'
_LOGIN = re.compile(re.escape(LOGIN_MARK) + r" (.*) " + re.escape(LOGIN_MARK))
# A host's answer beyond this many bytes before the token is not kept (a start-up file may print
# without end; memory stays bounded).
NOISE_KEPT = 4096


@dataclass(frozen=True)
class Login:
    """What the probe learnt of a host's login: its shell, and whether start-up files print."""

    shell: str  # the path in $SHELL, "" when the probe got no answer
    prints: bool = False  # text on stdout or stderr before the probe's answer

    @property
    def is_bash(self) -> bool:
        return PurePosixPath(self.shell).name == "bash"

    def describe(self) -> str:
        name = self.shell or "unknown (no answer to the probe)"
        return name + (" (start-up files print text: compute ignores it)" if self.prints else "")


def parse_login(stdout: str, stderr: str) -> Login:
    found = _LOGIN.search(stdout)
    if not found:
        return Login("", bool(stdout.strip() or stderr.strip()))
    before = stdout[: found.start()]
    return Login(found.group(1).strip(), bool(before.strip() or stderr.strip()))


@dataclass(frozen=True)
class Launch:
    """A script as sshd will run it: the command line, its pid file, and the token that starts its
    own output on both streams."""

    command: str
    pidfile: str
    token: bytes


def launch(script: str, login: Login, fed: bool = False) -> Launch:
    """The command line for `script` on a host with this login (`fed`: the caller sends stdin)."""
    token = f"@@compute-{uuid.uuid4().hex}@@"
    pidfile = f"/tmp/compute-{uuid.uuid4().hex}.pid"
    stdin = "" if fed else " </dev/null"
    body = (
        f"printf '%s\\n' {token}; printf '%s\\n' {token} >&2\n"
        "set +e +u\n"
        'cd "$HOME" 2>/dev/null\n'  # where sshd started the shell, whatever `cd` a start-up file did
        # bash runs the EXIT trap when a signal ends it too (a dropped connection: HUP, PIPE)
        f"echo $$ > {pidfile}\ntrap 'rm -f {pidfile}' EXIT\n(\n{script}\n){stdin}"
    )
    if login.is_bash:
        return Launch(body, pidfile, token.encode())
    encoded = base64.b64encode(body.encode()).decode()
    command = f"exec bash -c 'eval \"$(echo {encoded} | base64 -d)\"'"
    return Launch(command, pidfile, token.encode())


class Sink(Protocol):
    def feed(self, data: bytes) -> None: ...


class Opening:
    """One output stream of a launched script: what comes before its token (start-up files'
    text) is dropped, the rest goes to `inner`. A stream that never shows the token (the login
    shell could not start the script) is passed on whole at the end, so that its error is seen."""

    def __init__(self, token: bytes, inner: Sink) -> None:
        self.mark = token + b"\n"
        self.inner = inner
        self.held = b""
        self.opened = False
        self.noise = b""

    def feed(self, data: bytes) -> None:
        if self.opened:
            self.inner.feed(data)
            return
        self.held += data
        found = self.held.find(self.mark)
        if found >= 0:
            self.noise = (self.noise + self.held[:found])[-NOISE_KEPT:]
            rest = self.held[found + len(self.mark) :]
            self.held, self.opened = b"", True
            if rest:
                self.inner.feed(rest)
            return
        # keep what could be the start of the token cut in two; the rest is noise (bounded)
        cut = max(0, len(self.held) - len(self.mark))
        self.noise = (self.noise + self.held[:cut])[-NOISE_KEPT:]
        self.held = self.held[cut:]

    def close(self) -> None:
        if not self.opened:
            self.inner.feed(self.noise + self.held)
            self.noise = self.held = b""


def kill_group_script(pidfile: str) -> str:
    """Stop a timed-out command and everything it started: sshd made its shell a session
    leader, so its pid (recorded by `launch`) is the process group of the whole tree."""
    return (
        f'pg=$(cat {pidfile} 2>/dev/null) && [ -n "$pg" ] && '
        f'{{ kill -TERM -- -"$pg" 2>/dev/null; sleep 1; kill -KILL -- -"$pg" 2>/dev/null; }}; '
        f"rm -f {pidfile}; true"
    )


def kill_groups_script(pidfiles: list[str]) -> str:
    """Ctrl-C: stop the process groups recorded in `pidfiles` (every command still running on the
    host, the persistent shell's included) at once: SIGTERM, then SIGKILL a second later."""
    files = " ".join(pidfiles)
    each = f'for f in {files}; do pg=$(cat "$f" 2>/dev/null) && [ -n "$pg" ] && kill -{{}} -- -"$pg" 2>/dev/null; done'
    return f"{each.format('TERM')}; sleep 1; {each.format('KILL')}; rm -f {files}; true"
