"""How hosts.yaml and configs.yaml are validated: pydantic models, and the errors they give, with the
line of the file. Imported only to read a file: what the files hold, once valid, is plain data
(`input/inventory.py`)."""

from __future__ import annotations

import dataclasses
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from compute_platform.errors import InputError, Position
from compute_platform.input import yamlfile
from compute_platform.input.spec import LAYOUT, HostSpec, yaml11_bool

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class HostChecks(BaseModel):
    """What hosts.yaml's settings must be beyond their types; the fields come from `HostSpec`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # json_schema_input_type: what `compute schema` advertises, i.e. what these validators accept
    @field_validator("init", mode="before", json_schema_input_type=Union[str, list[str]], check_fields=False)  # noqa: UP007
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
        check_fields=False,
    )
    @classmethod
    def _wandb_off(cls, value: Any) -> Any:
        return None if value is False else value

    @field_validator(
        "env",
        mode="before",
        json_schema_input_type=dict[str, str | int | float | bool],
        check_fields=False,
    )
    @classmethod
    def _env_strings(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            for name in value:
                if not ENV_NAME.match(str(name)):
                    raise ValueError(f"'{name}' is not a valid environment variable name")
            return {str(k): _scalar_str(v) for k, v in value.items()}
        return value

    @field_validator("gpu", mode="before", check_fields=False)
    @classmethod
    def _gpu_words(cls, value: Any) -> Any:
        return yaml11_bool(value)

    @field_validator(
        "control_persist",
        mode="before",
        json_schema_input_type=Union[str, int, Literal[False]],  # noqa: UP007
        check_fields=False,
    )
    @classmethod
    def _persist_words(cls, value: Any) -> Any:
        value = yaml11_bool(value)
        if value is False:
            return "no"
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("gpu", check_fields=False)
    @classmethod
    def _gpu_count(cls, value: bool | int) -> bool | int:
        if not isinstance(value, bool) and value < 0:
            raise ValueError("expected true, false or a number of GPUs >= 0")
        return value


def _host_model() -> type[HostChecks]:
    """The model of one hosts.yaml entry: HostSpec's fields (its types, defaults and, in each
    field's metadata, pydantic's constraints), with HostChecks's validators. One list of settings:
    the dataclass's; `compute schema` and the reference read their docstrings from it."""
    hints = typing.get_type_hints(HostSpec)
    made: dict[str, Any] = {}
    for f in dataclasses.fields(HostSpec):
        if not f.init or f.name == "given":
            continue
        if f.default_factory is not dataclasses.MISSING:
            made[f.name] = (hints[f.name], Field(default_factory=f.default_factory, **f.metadata))
        else:
            made[f.name] = (hints[f.name], Field(default=f.default, **f.metadata))
    model = create_model(
        "HostSpec", __base__=HostChecks, __module__=__name__, __doc__=HostSpec.__doc__, **made
    )
    model.__doc_source__ = HostSpec  # type: ignore[attr-defined]
    return model


HostEntry = _host_model()


def from_entry(entry: BaseModel, alias: str) -> HostSpec:
    """The settings of a validated hosts.yaml entry."""
    return HostSpec(**{**dict(entry), "alias": alias, "given": frozenset(entry.model_fields_set)})


def host_spec(values: Mapping[str, Any], alias: str = "") -> HostSpec:
    """`values` validated as a hosts.yaml entry (raises pydantic's ValidationError)."""
    return from_entry(HostEntry.model_validate(values), alias)


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
    """CPUs of each task (`--cpus-per-task`). Alone, instead of `cpus`: one task with this many CPUs
    (`--ntasks=1`), for programs that use threads or processes of their own rather than ranks."""
    nodes: PerHost = None
    """Nodes of the job (`--nodes`), each running `tasks_per_node` tasks (default 1)."""
    tasks_per_node: PerHost = None
    """Tasks on each node (`--ntasks-per-node`); with `launcher: srun`, one process of the command each."""
    gpus_per_node: PerHost = None
    """GPUs on each node (`--gres=gpu:N`): what `gpu` says, under the name multi-node layouts use."""
    time: PerHost = None
    """Time limit: minutes, `HH:MM:SS` or `D-HH:MM:SS`."""
    partition: PerHost = None
    """Slurm partition."""
    gpu: PerHost = None
    """Number of GPUs (`--gres=gpu:N`)."""
    mem: PerHost = None
    """Memory on each node (`--mem`, e.g. `16G`)."""
    mail: PerHost = None
    """Mail from Slurm: `true` (every event: `--mail-type=ALL`), `false` (none), or sbatch's types
    (`END,FAIL`)."""
    mail_user: PerHost = Field(default=None, alias="mail-user")
    """Where to send mail (`--mail-user`); `mail-user` is accepted too."""

    @field_validator("mail", "gpu", "gpus_per_node", mode="before")
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
        explicit = [name for name in LAYOUT if name != "cpus" and getattr(self, name) is not None]
        if self.cpus is not None and explicit:
            raise ValueError(
                f"give 'cpus' (the original tool's layout: one task per CPU) or {' and '.join(explicit)}, "
                "not both"
            )
        if None not in (self.gpu, self.gpus_per_node) and self.gpu != self.gpus_per_node:
            raise ValueError("give 'gpu' or 'gpus_per_node' (both say the GPUs of each node), not both")
        return self

    @field_validator("nodes", "tasks_per_node")
    @classmethod
    def _at_least_one(cls, value: PerHost) -> PerHost:
        for v in value.values() if isinstance(value, dict) else [value]:
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError("expected a whole number >= 1")
        return value

    @field_validator("cpus", "cpus_per_task", "gpu", "gpus_per_node")
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


def validate_hosts(path: Path, text: str) -> tuple[dict[str, HostSpec], dict[str, Position]]:
    data = yamlfile.load(path, "hosts", text)
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
        spec = from_entry(_validate_entry(HostEntry, entry, path, data, alias, f"host '{alias}':"), alias)
        if "init" in entry:
            check_init(spec.init, f"host '{alias}'", yamlfile.position(path, data, [alias, "init"]))
        hosts[alias] = spec
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


def validate_configs(path: Path) -> dict[str, ConfigSpec]:
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
