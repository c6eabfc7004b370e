"""hosts.yaml and configs.yaml as the rest of compute reads them: frozen settings, and the resolution
of hosts and configs. Plain data, without pydantic (~100 ms to import): the hosts layer and `compute
jobs` read a hosts file from the cache of its validated settings (`input/settings_cache.py`);
`input/models.py` validates (`input/inventory.py` loads)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, Union

LOCAL_NAMES = ("localhost",)


def known_hosts_path() -> Path:
    return Path(os.environ.get("COMPUTE_KNOWN_HOSTS", "~/.ssh/known_hosts")).expanduser()


@dataclass(frozen=True)
class HostSpec:
    """One entry of hosts.yaml (the alias is its key)."""

    alias: str = ""
    host: str | None = None
    """Host name or address to connect to (default: `~/.ssh/config`'s HostName, then the alias)."""
    user: str | None = None
    """Login name (default: `~/.ssh/config`'s User, then your local login name)."""
    port: int | None = field(default=None, metadata={"ge": 1, "le": 65535})
    """SSH port (default: `~/.ssh/config`'s Port, then 22)."""
    key: str | None = None
    """Private key file (default: `~/.ssh/config`'s IdentityFile, ssh-agent, `~/.ssh/id_*`)."""
    platform: Literal["linux", "slurm"] = "linux"
    """`slurm` for a cluster login node (slurm tasks), `linux` for a workstation."""
    cpus_per_node: int | None = field(default=None, metadata={"ge": 1})
    """CPUs of one node: larger `cpus` requests are spread over several nodes."""
    gpu: Union[bool, int] = False  # noqa: UP007 - pydantic keeps bool before int this way
    """Whether the host has GPUs (`true`/`false`) or how many; GPU requests on a host without are refused."""
    save_path: str = "~/compute/logs"
    """Directory on the host where job logs and exit-status files go."""
    code_dir: str = "~/.compute/code"
    """Directory on the host holding the code snapshots of tasks with `code:`, one folder per hash."""
    init: tuple[str, ...] = ()
    """Shell code run before every command and job on the host (`module load`, env activation, exports):
    a list of lines, or one block (`init: |`) run as written. A failing command stops the command."""
    wandb: Literal["online", "offline", "disabled"] | None = None
    """Weights & Biases mode for the host's Slurm and tmux jobs: exported as `WANDB_MODE`, with
    `WANDB_DIR` = `save_path` where `slurm_logs` becomes `wandb_files` (the original tool's rule)."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment variables exported for every command and job on the host."""
    proxy_jump: str | None = None
    """Jump host(s): an alias (hosts.yaml, `~/.ssh/config`) or `user@host:port`; `a,b`: a, then b from a."""
    python: str = "python3"
    """Python interpreter used on the host by `pip` tasks and `git` installs."""
    connection: Literal["auto", "local", "ssh", "openssh"] = "auto"
    """`auto` (localhost runs locally, anything else over paramiko), `local`, `ssh` (paramiko), `openssh`
    (the system ssh client with a ControlMaster, for 2FA clusters)."""
    host_key_checking: Literal["accept-new", "strict"] = "accept-new"
    """`accept-new` records unknown host keys; `strict` refuses them. A changed key is always refused."""
    known_hosts: str | None = None
    """known_hosts file to check host keys against (default `~/.ssh/known_hosts`)."""
    connect_timeout: float = field(default=10.0, metadata={"gt": 0})
    """Seconds to wait for the connection and the SSH handshake before failing this host."""
    keepalive: float = field(default=15.0, metadata={"gt": 0})
    """Seconds of silence during a command before the host is asked to answer; no answer within
    twice that: the host is declared lost (like OpenSSH's ServerAliveInterval, ServerAliveCountMax 2)."""
    control_persist: str = field(default="10m", metadata={"pattern": r"^(no|(\d+[smhdwSMHDW]?)+)$"})
    """How long the host's connection stays open after its last use, for the next runs to reuse (`10m`,
    `8h`, `1h30m`, seconds alone); `0` or `no`: closed at the end of each run. Over paramiko the
    connection keeper holds it, with `connection: openssh` OpenSSH's ControlMaster."""

    given: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """(not a setting) the settings hosts.yaml spelled out for this host; the others are defaults."""

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> HostSpec:
        """A spec from validated settings as JSON keeps them (a list where a tuple was)."""
        values = dict(values)
        if "init" in values:
            values["init"] = tuple(values["init"])
        if "given" in values:
            values["given"] = frozenset(values["given"])
        return cls(**values)

    def settings(self) -> dict[str, Any]:
        """Every setting, as JSON can keep them (`from_settings` reads them back)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["init"], values["given"] = list(self.init), sorted(self.given)
        return values

    def but(self, **changes: Any) -> HostSpec:
        return replace(self, **changes)

    @property
    def is_local(self) -> bool:
        if self.connection == "local":
            return True
        if self.connection != "auto":
            return False
        name = self.host or self.alias
        return name in LOCAL_NAMES and self.port is None and self.proxy_jump is None

    @property
    def gpu_count(self) -> int:
        return int(self.gpu)

    @property
    def wandb_dir(self) -> str:
        return self.save_path.replace("slurm_logs", "wandb_files")

    @property
    def address(self) -> str:
        return self.host or self.alias

    @property
    def persist_seconds(self) -> float:
        """`control_persist` in seconds (0: nothing is kept after a run)."""
        if self.control_persist == "no":
            return 0.0
        units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
        return float(
            sum(
                int(n) * units[u.lower()]
                for n, u in re.findall(r"(\d+)([smhdwSMHDW]?)", self.control_persist)
            )
        )


# What the original tool's YAML reader (YAML 1.1) took for booleans besides true/false: in settings that
# are booleans (`gpu: yes`, `mail: no`) they still are; in words that reach a command they stay words.
YAML11_BOOLS = {"yes": True, "on": True, "no": False, "off": False}


def yaml11_bool(value: Any) -> Any:
    if isinstance(value, str) and value in (value.lower(), value.capitalize(), value.upper()):
        return YAML11_BOOLS.get(value.lower(), value)
    return value


# The keys of a CPU layout: `cpus` (the original's), or the others together. The most specific config
# that gives one of them gives the whole layout (inventory.Inventory.config).
LAYOUT = ("cpus", "cpus_per_task", "nodes", "tasks_per_node")


@dataclass(frozen=True)
class ResolvedConfig:
    """A config as it applies to one host: every per-host mapping resolved, defaults filled in."""

    name: str
    cpus: int | None = None
    cpus_per_task: int | None = None  # set: one task with this many CPUs (then `cpus` is None)
    nodes: int | None = None  # the explicit layout: nodes x tasks_per_node tasks of cpus_per_task CPUs
    tasks_per_node: int | None = None
    time: str | None = None
    partition: str | None = None
    gpu: int = 0  # on each node
    mem: str | None = None  # on each node
    mail: str | None = None
    mail_user: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
