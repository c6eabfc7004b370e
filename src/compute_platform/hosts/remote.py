"""What hosts reached over SSH share, whichever client carries the bytes (paramiko or OpenSSH):
stopping a timed-out command's whole process tree."""

from __future__ import annotations

import uuid


def with_pidfile(script: str) -> tuple[str, str]:
    """Wrap a script so that it records its process group id, for killing it on timeout."""
    pidfile = f"/tmp/compute-{uuid.uuid4().hex}.pid"
    wrapped = f"echo $$ > {pidfile}\n(\n{script}\n)\ncompute_rc=$?\nrm -f {pidfile}\nexit $compute_rc"
    return wrapped, pidfile


def kill_group_script(pidfile: str) -> str:
    """Stop a timed-out command and everything it started: sshd made its shell a session
    leader, so its pid (recorded by `with_pidfile`) is the process group of the whole tree."""
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
