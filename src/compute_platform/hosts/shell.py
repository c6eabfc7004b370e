"""The ONE command builder: every shell string run on any host is made here, quoted with shlex."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# Exit code of the prelude when the host's init or the working directory fails, so that a
# broken `module load` or a missing `cd` is never mistaken for the user's command failing.
PRELUDE_FAILED = 97
# A variable name is written unquoted in `export NAME=...`: anything else than an identifier there
# would be shell code.
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def quote(value: object) -> str:
    """Quote one value as exactly one shell word."""
    return shlex.quote(str(value))


def quote_path(path: str) -> str:
    """Quote a path for the shell, keeping a leading `~` meaning the home of the user running it."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        rest = path[2:]
        return '"$HOME"/' + shlex.quote(rest) if rest else '"$HOME"/'
    return shlex.quote(path)


def join(argv: Sequence[object]) -> str:
    """A command line from a list of arguments, each one quoted."""
    return " ".join(quote(a) for a in argv)


def check_env_name(name: str) -> str:
    if not ENV_NAME.fullmatch(name):
        raise ValueError(f"'{name}' is not a valid environment variable name (letters, digits, _)")
    return name


def env_exports(env: Mapping[str, object]) -> list[str]:
    return [f"export {check_env_name(name)}={quote(value)}" for name, value in env.items()]


def prelude(
    init: Iterable[str] = (),
    env: Mapping[str, object] | None = None,
    cwd: str | None = None,
) -> list[str]:
    """Shell lines that prepare a command: the host's init lines (shell code written by the user,
    run as-is), exported variables and the working directory. Any failure stops the script."""
    lines: list[str] = []
    for item in init:
        lines += (
            init_block(item)
            if "\n" in item
            else [
                f"{{ {item}\n}} || {{ echo {quote('compute: init failed: ' + item)} >&2;"
                f" exit {PRELUDE_FAILED}; }}"
            ]
        )
    lines.extend(env_exports(env or {}))
    if cwd:
        lines.append(
            f"cd {quote_path(cwd)} || {{ echo {quote('compute: cannot cd to ' + cwd)} >&2;"
            f" exit {PRELUDE_FAILED}; }}"
        )
    return lines


def init_block(block: str) -> list[str]:
    """A block of init code runs as written (an `if ... fi` or a `\\` continuation cannot be cut
    into lines). The first of its commands that fails, as `set -e` would see one, stops the script
    there, naming that command: an ERR trap, set around the block only (the block is not inside an
    `if` or a `||`, where bash would ignore the trap)."""
    stop = f'echo "compute: init failed: $BASH_COMMAND" >&2; exit {PRELUDE_FAILED}'
    return [f"trap {quote(stop)} ERR", block, "trap - ERR"]


def wandb_exports(mode: str | None, folder: str) -> list[str]:
    """The original tool's W&B set-up, through the environment (no `wandb` command needed): the
    mode, and the folder runs are written to (created)."""
    if not mode:
        return []
    return [
        f"export WANDB_MODE={quote(mode)}",
        f"export WANDB_DIR={quote_path(folder)}",
        'mkdir -p "$WANDB_DIR" 2>/dev/null || true',
    ]


def build(
    command: str,
    *,
    init: Iterable[str] = (),
    env: Mapping[str, object] | None = None,
    cwd: str | None = None,
) -> str:
    """The full script for one command: prelude then the command (itself shell code)."""
    return "\n".join([*prelude(init, env, cwd), command])


# -- several scripts in one round trip ------------------------------------------------------------

FLIGHT_MARK = "@@compute-part"


@dataclass(frozen=True)
class Part:
    """One question to a host: a script, what it reads on stdin, how long it may take. Several fly in
    one round trip (`Host.ask`)."""

    script: str
    stdin: bytes = b""
    timeout: float = 60
    whole: bool = False  # its answer may be binary or large: brought through a file, byte for byte


# exactly N bytes of stdin and no more: GNU head reads no further than it writes; another head may
# read ahead into a buffer (stdio), so elsewhere dd reads byte by byte (slower, as exact). And the
# options a host's init may set are the flight's no more: `set -e` would end it at a part that fails.
_TAKE = (
    "set +e +o pipefail\n"
    'case "$(head --version </dev/null 2>/dev/null)" in\n'
    '  *"GNU coreutils"*) compute_take() { head -c "$1"; } ;;\n'
    '  *) compute_take() { dd bs=1 count="$1" 2>/dev/null; } ;;\n'
    "esac"
)


def flight(parts: Sequence[Part], token: str) -> tuple[str, bytes]:
    """Several parts as one command and its stdin, for one round trip: each part reads exactly its
    own bytes of the stdin (`compute_take`; the rest of a part's share is drained when the part
    leaves early, so that the next part starts at its own), runs in a subshell of its own (its `exit`
    ends only it), and its output is followed by a line with the flight's `token`, the part's number
    and its exit status (`apart` cuts the answer there). The token is random per flight: no output
    can foresee it."""
    lines = [_TAKE]
    for number, part in enumerate(parts):
        script, stdin = part.script, part.stdin
        if stdin:
            lines.append(f"compute_take {len(stdin)} | ( (\n{script}\n); s=$?; cat >/dev/null; exit $s )")
        else:
            lines.append(f"(\n{script}\n) </dev/null")
        lines.append(f"printf '\\n%s %s %s\\n' {quote(f'{FLIGHT_MARK}-{token}')} {number} $?")
    return "\n".join(lines), b"".join(part.stdin for part in parts)


def apart(answer: bytes, token: str, count: int) -> list[tuple[int, bytes] | None]:
    """The output and exit status of each of a flight's `count` parts; None for a part whose answer is
    not known whole: the flight stopped before its end, or its output and the mark before it were cut
    out of the middle of a long answer."""
    mark = re.compile(rb"\n" + re.escape(f"{FLIGHT_MARK}-{token}".encode()) + rb" (\d+) (\d+)\n")
    found: list[tuple[int, bytes] | None] = [None] * count
    start, expected = 0, 0
    for match in mark.finditer(answer):
        number = int(match.group(1))
        if number == expected and number < count:
            found[number] = (int(match.group(2)), answer[start : match.start()])
        expected, start = number + 1, match.end()
    return found
