"""hosts.yaml and configs.yaml -> validated, frozen models; host and config resolution."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from compute_platform.errors import InputError, Position
from compute_platform.input import yamlfile

LOCAL_NAMES = ("localhost",)
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def known_hosts_path() -> Path:
    return Path(os.environ.get("COMPUTE_KNOWN_HOSTS", "~/.ssh/known_hosts")).expanduser()


class HostSpec(BaseModel):
    """One entry of hosts.yaml (the alias is its key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alias: str = ""
    host: str | None = None
    """Host name or address to connect to (default: `~/.ssh/config`'s HostName, then the alias)."""
    user: str | None = None
    """Login name (default: `~/.ssh/config`'s User, then your local login name)."""
    port: int | None = Field(default=None, ge=1, le=65535)
    """SSH port (default: `~/.ssh/config`'s Port, then 22)."""
    key: str | None = None
    """Private key file (default: `~/.ssh/config`'s IdentityFile, ssh-agent, `~/.ssh/id_*`)."""
    platform: Literal["linux", "slurm"] = "linux"
    """`slurm` for a cluster login node (slurm tasks), `linux` for a workstation."""
    cpus_per_node: int | None = Field(default=None, ge=1)
    """CPUs of one node: larger `cpus` requests are spread over several nodes."""
    gpu: Union[bool, int] = False  # noqa: UP007 - pydantic keeps bool before int this way
    """Whether the host has GPUs (`true`/`false`) or how many; GPU requests on a host without are refused."""
    save_path: str = "~/compute/logs"
    """Directory on the host where job logs and exit-status files go."""
    init: tuple[str, ...] = ()
    """Shell code run before every command and job on the host (`module load`, env activation, exports):
    a list of lines, or one block (`init: |`) run as written. A failing command stops the command."""
    wandb: Literal["online", "offline", "disabled"] | None = None
    """Weights & Biases mode for the host's Slurm and tmux jobs: exported as `WANDB_MODE`, with
    `WANDB_DIR` = `save_path` where `slurm_logs` becomes `wandb_files` (the original tool's rule)."""
    env: dict[str, str] = Field(default_factory=dict)
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
    connect_timeout: float = Field(default=10.0, gt=0)
    """Seconds to wait for the connection and the SSH handshake before failing this host."""
    keepalive: float = Field(default=15.0, gt=0)
    """Seconds of silence during a command before the host is asked to answer; no answer within
    twice that: the host is declared lost (like OpenSSH's ServerAliveInterval, ServerAliveCountMax 2)."""
    control_persist: str = Field(default="10m", pattern=r"^(no|(\d+[smhdwSMHDW]?)+)$")
    """How long the host's connection stays open after its last use, for the next runs to reuse (`10m`,
    `8h`, `1h30m`, seconds alone); `0` or `no`: closed at the end of each run. Over paramiko the
    connection keeper holds it, with `connection: openssh` OpenSSH's ControlMaster."""

    # json_schema_input_type: what `compute schema` advertises, i.e. what these validators accept
    @field_validator("init", mode="before", json_schema_input_type=Union[str, list[str]])  # noqa: UP007
    @classmethod
    def _init_lines(cls, value: Any) -> Any:
        # a block (`init: |` with `if ... fi`, `\` continuations) runs as written, as one piece
        if isinstance(value, str):
            return (value.strip("\n"),) if value.strip() else ()
        return value

    @field_validator(
        "wandb",
        mode="before",
        json_schema_input_type=Union[Literal["online", "offline", "disabled", False], None],  # noqa: UP007
    )
    @classmethod
    def _wandb_off(cls, value: Any) -> Any:
        return None if value is False else value

    @field_validator("env", mode="before", json_schema_input_type=dict[str, Union[str, int, float, bool]])  # noqa: UP007
    @classmethod
    def _env_strings(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            for name in value:
                if not ENV_NAME.match(str(name)):
                    raise ValueError(f"'{name}' is not a valid environment variable name")
            return {str(k): _scalar_str(v) for k, v in value.items()}
        return value

    @field_validator("gpu", mode="before")
    @classmethod
    def _gpu_words(cls, value: Any) -> Any:
        return yaml11_bool(value)

    @field_validator("control_persist", mode="before", json_schema_input_type=Union[str, int, Literal[False]])  # noqa: UP007
    @classmethod
    def _persist_words(cls, value: Any) -> Any:
        value = yaml11_bool(value)
        if value is False:
            return "no"
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("gpu")
    @classmethod
    def _gpu_count(cls, value: bool | int) -> bool | int:
        if not isinstance(value, bool) and value < 0:
            raise ValueError("expected true, false or a number of GPUs >= 0")
        return value

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


def _scalar_str(value: Any) -> Any:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, (int, float)):
        return str(value)
    return value


# A config value: a scalar, or a mapping host alias -> scalar (with an optional `default` key).
Scalar = Union[str, int, float, bool, None]  # noqa: UP007
PerHost = Union[Scalar, dict[str, Scalar]]  # noqa: UP007


class ConfigSpec(BaseModel):
    """One named job resource profile of configs.yaml. Unknown keys are extra sbatch options."""

    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)

    cpus: PerHost = None
    """CPUs for the job, as the original tool asked for them: one task per CPU (`--ntasks`), on as
    many nodes as the host's `cpus_per_node` makes needed (`--nodes`), one task per core."""
    cpus_per_task: PerHost = None
    """Instead of `cpus`: one task with this many CPUs (`--ntasks=1 --cpus-per-task=N`), for
    programs that use threads or processes of their own rather than `srun`/MPI ranks."""
    time: PerHost = None
    """Time limit: minutes, `HH:MM:SS` or `D-HH:MM:SS`."""
    partition: PerHost = None
    """Slurm partition."""
    gpu: PerHost = None
    """Number of GPUs (`--gres=gpu:N`)."""
    mem: PerHost = None
    """Memory (`--mem`, e.g. `16G`)."""
    mail: PerHost = None
    """Mail from Slurm: `true` (every event: `--mail-type=ALL`), `false` (none), or sbatch's types
    (`END,FAIL`)."""
    mail_user: PerHost = Field(default=None, alias="mail-user")
    """Where to send mail (`--mail-user`); `mail-user` is accepted too."""

    @field_validator("mail", "gpu", mode="before")
    @classmethod
    def _bool_words(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: yaml11_bool(v) for k, v in value.items()}
        return yaml11_bool(value)

    @field_validator("mail")
    @classmethod
    def _mail(cls, value: PerHost) -> PerHost:
        for v in value.values() if isinstance(value, dict) else [value]:
            if v is None or isinstance(v, bool):
                continue
            bad = [t for t in str(v).upper().split(",") if t.strip() not in MAIL_TYPES]
            if bad:
                raise ValueError(
                    f"mail: expected true, false or sbatch mail types separated by commas "
                    f"({', '.join(MAIL_TYPES)}), got {v!r}"
                )
        return value

    @model_validator(mode="after")
    def _one_layout(self) -> ConfigSpec:
        if self.cpus is not None and self.cpus_per_task is not None:
            raise ValueError("give 'cpus' (one task per CPU) or 'cpus_per_task' (one task), not both")
        return self

    @field_validator("cpus", "cpus_per_task", "gpu")
    @classmethod
    def _counts(cls, value: PerHost) -> PerHost:
        for v in value.values() if isinstance(value, dict) else [value]:
            if v is None or isinstance(v, bool):
                continue
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"expected a whole number >= 0, got {v!r}")
        return value

    @field_validator("time")
    @classmethod
    def _time(cls, value: PerHost) -> PerHost:
        for v in value.values() if isinstance(value, dict) else [value]:
            if v is not None and not isinstance(v, bool) and not TIME.match(str(v)):
                raise ValueError(f"expected a Slurm time such as 90, '02:00:00' or '1-12:00:00', got {v!r}")
        return value

    def extras(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


MAIL_TYPES = (
    "NONE",
    "BEGIN",
    "END",
    "FAIL",
    "REQUEUE",
    "ALL",
    "INVALID_DEPEND",
    "STAGE_OUT",
    "TIME_LIMIT",
    "TIME_LIMIT_90",
    "TIME_LIMIT_80",
    "TIME_LIMIT_50",
    "ARRAY_TASKS",
)
TIME = re.compile(r"^(\d+|\d+:\d{2}(:\d{2})?|\d+-\d+(:\d{2}(:\d{2})?)?)$")


@dataclass(frozen=True)
class ResolvedConfig:
    """A config as it applies to one host: every per-host mapping resolved, defaults filled in."""

    name: str
    cpus: int | None = None
    cpus_per_task: int | None = None  # set: one task with this many CPUs (then `cpus` is None)
    time: str | None = None
    partition: str | None = None
    gpu: int = 0
    mem: str | None = None
    mail: str | None = None
    mail_user: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


_MISSING = object()


def _pick(value: Any, host: str) -> Any:
    if isinstance(value, dict):
        if host in value:
            return value[host]
        return value.get("default", _MISSING)
    return _MISSING if value is None else value


@dataclass(frozen=True)
class Inventory:
    """The hosts and configs a playbook may use, as loaded from its inventory files."""

    hosts: dict[str, HostSpec]
    configs: dict[str, ConfigSpec]
    hosts_file: Path | None = None
    configs_file: Path | None = None
    positions: dict[str, Position] = field(default_factory=dict)

    def host(self, alias: str, where: Position | None = None) -> HostSpec:
        """The spec of a host alias: hosts.yaml, then `localhost`, then ~/.ssh/config."""
        if alias in self.hosts:
            return self.hosts[alias]
        if alias in LOCAL_NAMES:
            return HostSpec(alias=alias)
        # imported only for a name hosts.yaml lacks: loading a playbook needs nothing of hosts/
        from compute_platform.input import sshconfig

        if alias in sshconfig.ssh_config_hosts():
            return HostSpec(alias=alias)
        choices = [*self.hosts, *LOCAL_NAMES]
        where_file = f" in {self.hosts_file}" if self.hosts_file else ""
        raise InputError(
            f"unknown host '{alias}': not defined{where_file} nor in {sshconfig.ssh_config_path()}"
            + yamlfile.did_you_mean(alias, choices),
            where,
        )

    def config(self, name: str, host: str, where: Position | None = None) -> ResolvedConfig:
        """Resolve config `name` for `host`: per-host value, its `default` key, then the `default` config."""
        if name not in self.configs and not (name == "default"):
            raise InputError(
                f"unknown config '{name}'"
                + (f" (not in {self.configs_file})" if self.configs_file else "")
                + yamlfile.did_you_mean(name, self.configs),
                where,
            )
        chain = [self.configs[n] for n in (name, "default") if n in self.configs]
        values: dict[str, Any] = {}
        for key in ("time", "partition", "gpu", "mem", "mail", "mail_user"):
            for spec in chain:
                picked = _pick(getattr(spec, key), host)
                if picked is not _MISSING:
                    values[key] = picked
                    break
        # the two CPU layouts exclude each other: the most specific config that gives one decides
        for spec in chain:
            layout = {k: _pick(getattr(spec, k), host) for k in ("cpus", "cpus_per_task")}
            layout = {k: v for k, v in layout.items() if v is not _MISSING}
            if layout:
                values.update(layout)
                break
        extra: dict[str, str] = {}
        for spec in reversed(chain):  # the named config's extras override the default's
            for key, value in spec.extras().items():
                picked = _pick(value, host)
                if picked is not _MISSING and picked is not None:
                    extra[key] = str(picked)
        gpu = values.get("gpu")
        mail = values.get("mail")
        return ResolvedConfig(
            name=name,
            cpus=int(values["cpus"]) if values.get("cpus") not in (None, False) else None,
            cpus_per_task=int(values["cpus_per_task"])
            if values.get("cpus_per_task") not in (None, False)
            else None,
            time=str(values["time"]) if values.get("time") is not None else None,
            partition=str(values["partition"]) if values.get("partition") is not None else None,
            gpu=int(gpu) if gpu not in (None, False) else 0,
            mem=str(values["mem"]) if values.get("mem") is not None else None,
            mail="ALL" if mail is True else None if mail in (None, False) else str(mail).upper(),
            mail_user=str(values["mail_user"])
            if values.get("mail_user") is not None and mail is not False  # false: no mail at all
            else None,
            extra=extra,
        )


def load_hosts(path: Path) -> tuple[dict[str, HostSpec], dict[str, Position]]:
    data = yamlfile.load(path, "hosts")
    if data is None:
        return {}, {}
    if not hasattr(data, "items"):
        raise InputError(
            "expected a mapping of host aliases (alias: {host: ..., user: ...}), "
            f"got a {type(data).__name__}",
            yamlfile.node_position(path, data),
        )
    hosts: dict[str, HostSpec] = {}
    positions: dict[str, Position] = {}
    for alias, entry in data.items():
        pos = yamlfile.position(path, data, [alias])
        alias = str(alias)
        if entry is None:
            entry = {}
        if not hasattr(entry, "items"):
            raise InputError(f"host '{alias}': expected a mapping of settings (host, user, port, ...)", pos)
        spec = _validate_entry(HostSpec, entry, path, data, alias, f"host '{alias}':")
        if "init" in entry:
            check_init(spec.init, f"host '{alias}'", yamlfile.position(path, data, [alias, "init"]))
        hosts[alias] = spec.model_copy(update={"alias": alias})
        positions[alias] = pos
    return hosts, positions


def check_init(init: tuple[str, ...], label: str, where: Position) -> None:
    """A block of init code must be valid bash: `bash -n` finds a missing `fi` here, not in a job
    that fails at run time. The error points at the block's line in hosts.yaml."""
    import subprocess

    for block in init:
        if "\n" not in block:
            continue
        try:
            answer = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return  # no bash here to ask: the host's own bash will tell
        if answer.returncode == 0:
            continue
        message = answer.stderr.strip().splitlines()[-1] if answer.stderr.strip() else "syntax error"
        found = re.search(r"line (\d+): (.*)", message)
        # bash counts an unexpected end of file one line past the block
        inside = min(int(found.group(1)), len(block.splitlines())) if found else 0
        line = where.line + inside if where.line else 0
        reason = found.group(2) if found else message
        raise InputError(f"{label}: init is not valid bash: {reason}", Position(where.file, line))


def load_configs(path: Path) -> dict[str, ConfigSpec]:
    data = yamlfile.load(path, "configs")
    if data is None:
        return {}
    if not hasattr(data, "items"):
        raise InputError(
            "expected a mapping of config names (default: {cpus: ..., time: ...})",
            yamlfile.node_position(path, data),
        )
    configs: dict[str, ConfigSpec] = {}
    for name, entry in data.items():
        pos = yamlfile.position(path, data, [name])
        if entry is None:
            entry = {}
        if not hasattr(entry, "items"):
            raise InputError(f"config '{name}': expected a mapping (cpus, time, partition, ...)", pos)
        configs[str(name)] = _validate_entry(ConfigSpec, entry, path, data, str(name), f"config '{name}':")
    return configs


def _validate_entry(model: Any, entry: Any, path: Path, root: Any, key: str, what: str) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(yamlfile.plain(entry))
    except ValidationError as e:
        err = yamlfile.to_input_error(e, model, entry, path, what)
        if err.position is None or not err.position.line:
            err = InputError(err.reason, yamlfile.position(path, root, [key]))
        raise err from None


def load_inventory(hosts_file: Path | None, configs_file: Path | None) -> Inventory:
    hosts, positions = load_hosts(hosts_file) if hosts_file else ({}, {})
    configs = load_configs(configs_file) if configs_file else {}
    return Inventory(hosts, configs, hosts_file, configs_file, positions)
