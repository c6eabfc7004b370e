"""`compute schema`: JSON Schemas made from the loader's models accept what the loader accepts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from compute_platform import playbook
from compute_platform.errors import InputError
from compute_platform.playbook.schema import KINDS, schema
from compute_platform.tasks import ALIASES, REGISTRY
from tests.support.cli import compute

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "src" / "compute_platform" / "cli" / "templates"


def errors(kind: str, text: str) -> list[str]:
    data = YAML(typ="safe").load(textwrap.dedent(text))
    validator = jsonschema.Draft202012Validator(schema(kind))
    return [e.message for e in validator.iter_errors(data)]


@pytest.mark.parametrize("kind", KINDS)
def test_schemas_are_valid_json_schemas(kind: str) -> None:
    jsonschema.Draft202012Validator.check_schema(schema(kind))


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("playbook", ROOT / "examples" / "quickstart.yaml"),
        ("hosts", ROOT / "examples" / "hosts.yaml"),
        ("configs", ROOT / "examples" / "configs.yaml"),
        ("playbook", TEMPLATES / "example.yaml"),
        ("hosts", TEMPLATES / "hosts.yaml"),
        ("configs", TEMPLATES / "configs.yaml"),
    ],
)
def test_shipped_files_validate(kind: str, path: Path) -> None:
    assert errors(kind, path.read_text()) == []


def test_every_task_type_and_alias_and_include_is_a_variant() -> None:
    variants = {v["title"]: v for v in schema("playbook")["$defs"]["task"]["oneOf"]}
    assert sorted(variants) == ["include", "playbook", "task"]
    assert {*REGISTRY, *ALIASES} <= set(variants["task"]["properties"])


HEAD = (
    "inventory: {hosts: hosts.yaml, configs: configs.yaml}\nvariables: {seeds: [1, 2], who: [h1]}\ntasks:\n"
)
TASKS_BOTH_ACCEPT = [
    "- {name: a, hosts: h1, cmd: ls}",
    "- {hosts: [h1, localhost], cmd: [make, make check], timeout: 5, ignore_errors: true}",
    "- {hosts: h1, cmd: {commands: [ls], cd: /tmp, env: {A: b}}}",
    "- {hosts: '{{ who }}', cmd: ls}",
    "- {hosts: h1, slurm: {cmd: python train.py, seeds: '{{ seeds }}'}}",
    "- {hosts: h1, srun: python train.py}",
    "- {hosts: h1, scatter: true, git: {path: /x}, slurm: {cmd: x, args: null, ray: false}}",  # the original's
    "- {include: other.yaml, hosts: [h1], variables: {x: 1}}",
]
TASKS_BOTH_REJECT = [
    "- {hosts: h1, srun: {cmd: x}, slurm: {cmd: x}}",  # one action twice
    "- {hosts: h1}",  # no action
    "- {hosts: h1, cmd: {commands: [ls], cdd: /tmp}}",  # unknown key in an action
    "- {hosts: h1, cmd: ls, timeout: 0}",
    "- {hosts: h1, cmd: ls, ignore_errors: maybe}",
    "- {hosts: h1, cmd: ls, colour: red}",
    "- {include: other.yaml, timeout: 3}",
]


@pytest.mark.parametrize("task", TASKS_BOTH_ACCEPT)
def test_schema_and_loader_both_accept(task: str, tmp_path: Path) -> None:
    assert errors("playbook", HEAD + "  " + task) == []
    playbook.load(_project(tmp_path, task))


@pytest.mark.parametrize("task", TASKS_BOTH_REJECT)
def test_schema_and_loader_both_reject(task: str, tmp_path: Path) -> None:
    assert errors("playbook", HEAD + "  " + task) != []
    with pytest.raises(InputError):
        playbook.load(_project(tmp_path, task))


def _project(folder: Path, task: str) -> Path:
    (folder / "hosts.yaml").write_text("localhost: {}\nh1: {host: h1.example.org, platform: slurm}\n")
    (folder / "configs.yaml").write_text("default: {cpus: 1}\n")
    (folder / "other.yaml").write_text("tasks: [{hosts: localhost, cmd: 'true'}]\n")
    path = folder / "book.yaml"
    path.write_text(HEAD + "  " + task + "\n")
    return path


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("localhost:\nh1: {host: a, init: 'module load x', env: {N: 1, B: true}}", True),
        ("h1: {host: a, init: [a, b], proxy_jump: 'b1,b2', connection: openssh}", True),
        ("h1: {hots: a}", False),
        ("h1: {port: 70000}", False),
        ("h1: {connection: telnet}", False),
        ("h1: {alias: other}", False),
    ],
)
def test_hosts_schema(text: str, verdict: bool) -> None:
    assert (errors("hosts", text) == []) is verdict


def test_configs_schema_allows_extra_sbatch_options_and_per_host_values() -> None:
    assert errors("configs", "default: {cpus: {h1: 4, default: 1}, qos: high, mail-user: me@x.org}") == []
    assert errors("configs", "default: {cpus: [1, 2]}") != []


def test_cli_prints_each_schema() -> None:
    for kind in KINDS:
        proc = compute("schema", kind, timeout=30)
        assert proc.returncode == 0
        document: dict[str, Any] = json.loads(proc.stdout)
        assert document["$schema"].endswith("2020-12/schema")
