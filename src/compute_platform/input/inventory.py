"""The inventory a playbook may use: its hosts (hosts.yaml, validated the first time its text is seen,
then read from the cache of its settings) and configs (configs.yaml, validated by `input/models.py`),
and how a host alias and a config name resolve."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compute_platform.errors import InputError, Position
from compute_platform.input import settings_cache, yamlfile
from compute_platform.input.spec import LAYOUT, LOCAL_NAMES, HostSpec, ResolvedConfig

if TYPE_CHECKING:
    from compute_platform.input.models import ConfigSpec


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
                if picked is _MISSING and key == "gpu":
                    picked = _pick(spec.gpus_per_node, host)
                if picked is not _MISSING:
                    values[key] = picked
                    break
        # the CPU layouts exclude each other: the most specific config that gives one decides
        for spec in chain:
            layout = {k: _pick(getattr(spec, k), host) for k in LAYOUT}
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
            cpus_per_task=_count(values.get("cpus_per_task")),
            nodes=_count(values.get("nodes")),
            tasks_per_node=_count(values.get("tasks_per_node")),
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


def _count(value: Any) -> int | None:
    return None if value in (None, False) else int(value)


def load_hosts(path: Path) -> tuple[dict[str, HostSpec], dict[str, Position]]:
    """The hosts of a hosts file, validated (`models.validate_hosts`) the first time its text is
    seen, then read from the cache of its settings."""
    text = yamlfile.read_text(path, "hosts")
    found = settings_cache.read(path, text)
    if found is not None:
        return found
    from compute_platform.input import models

    hosts, positions = models.validate_hosts(path, text)
    settings_cache.write(path, text, hosts, positions)
    return hosts, positions


def load_configs(path: Path) -> dict[str, ConfigSpec]:
    from compute_platform.input import models

    return models.validate_configs(path)


def load_inventory(hosts_file: Path | None, configs_file: Path | None) -> Inventory:
    hosts, positions = load_hosts(hosts_file) if hosts_file else ({}, {})
    configs = load_configs(configs_file) if configs_file else {}
    return Inventory(hosts, configs, hosts_file, configs_file, positions)
