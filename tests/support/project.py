"""A project folder for a test, as a user has one: hosts.yaml, configs.yaml and playbooks, written
from Python structures; entries for the test bed's hosts; a free loopback port (the bed's
`free_port`: never one it gave before, in this process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.support.testbed import free_port as free_port  # a loopback port nobody listens on (right now)

CONFIGS = "default: {cpus: 1, time: '00:05:00'}\n"
INVENTORY = {"hosts": "hosts.yaml", "configs": "configs.yaml"}


def host_entry(testbed: Any, alias: str, **extra: Any) -> dict[str, Any]:
    """The hosts.yaml entry of one host of the test bed (with `extra` settings)."""
    return {
        "host": "127.0.0.1",
        "port": testbed.hosts[alias],
        "user": testbed.user,
        "key": str(testbed.client_key),
        "known_hosts": str(testbed.known_hosts),
        **extra,
    }


def bed_hosts(testbed: Any) -> dict[str, Any]:
    """The test bed's own hosts.yaml (h1..hN and the Slurm login node `cluster`), a fresh copy."""
    hosts: dict[str, Any] = yaml.safe_load(Path(testbed.hosts_yaml).read_text())
    return hosts


def write_hosts(folder: Path, hosts: dict[str, Any]) -> Path:
    path = folder / "hosts.yaml"
    path.write_text(yaml.safe_dump(hosts, sort_keys=False))
    return path


def book_text(tasks: list[dict[str, Any]], inventory: dict[str, str] | None = None) -> str:
    """A playbook with these tasks and the project's hosts.yaml and configs.yaml as its inventory."""
    return yaml.safe_dump({"inventory": inventory or INVENTORY, "tasks": tasks}, sort_keys=False)


def write_book(folder: Path, tasks: list[dict[str, Any]], name: str = "book.yaml") -> Path:
    path = folder / name
    path.write_text(book_text(tasks))
    return path


def write_project(
    folder: Path,
    testbed: Any,
    book: str,
    *,
    extra_hosts: dict[str, Any] | None = None,
    known_hosts: Path | None = None,
    strict: bool = False,
    configs: str = CONFIGS,
) -> Path:
    """hosts.yaml (every test bed host + localhost), configs.yaml and book.yaml (the text `book`) in
    `folder`; returns the playbook's path."""
    hosts: dict[str, Any] = {"localhost": {}}
    for alias in testbed.hosts:
        entry = host_entry(testbed, alias)
        if known_hosts is not None:
            entry["known_hosts"] = str(known_hosts)
        if strict:
            entry["host_key_checking"] = "strict"
        hosts[alias] = entry
    hosts.update(extra_hosts or {})
    write_hosts(folder, hosts)
    (folder / "configs.yaml").write_text(configs)
    path = folder / "book.yaml"
    path.write_text(book)
    return path
