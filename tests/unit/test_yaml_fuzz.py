"""A fuzzer over the YAML loaders: random structures (dumped as YAML), random bytes and random edits of
valid files. Whatever the file holds, loading it either succeeds or raises InputError: never a
traceback, never another exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from compute_platform import playbook
from compute_platform.errors import InputError
from compute_platform.input.inventory import load_configs, load_hosts
from compute_platform.tasks import REGISTRY

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

KEYS = sorted(
    {
        *REGISTRY,
        "name",
        "hosts",
        "ignore_errors",
        "timeout",
        "include",
        "playbook",
        "variables",
        "inventory",
        "tasks",
        "cmd",
        "commands",
        "cd",
        "env",
        "args",
        "sweep",
        "seeds",
        "seed_flag",
        "job_name",
        "config",
        "array",
        "parallel",
        "gpus",
        "max_parallel",
        "scatter",
        "sbatch",
        "dependency",
        "host",
        "user",
        "port",
        "key",
        "platform",
        "gpu",
        "init",
        "save_path",
        "proxy_jump",
        "connection",
        "cpus",
        "time",
        "partition",
        "mem",
        "default",
        "src",
        "dest",
        "mode",
        "action",
        "packages",
    }
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["{{ x }}", "£x", "{{", "}}", "localhost", "h1", "default", "~", "..", "/", "*"]),
    st.sampled_from(KEYS),
)
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.sampled_from(KEYS), st.text(max_size=6), st.integers()), children, max_size=5
        ),
    ),
    max_leaves=25,
)


def dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def loads_cleanly(load: Any, path: Path) -> None:
    try:
        load(path)
    except InputError as e:
        assert str(e)  # a message, and nothing else escapes
    except RecursionError:
        pytest.fail("RecursionError escaped")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "hosts.yaml").write_text("h1: {host: 127.0.0.1}\ncluster: {platform: slurm}\n")
    (tmp_path / "configs.yaml").write_text("default: {cpus: 1}\n")
    return tmp_path


def inventory_header() -> dict[str, Any]:
    return {"inventory": {"hosts": "hosts.yaml", "configs": "configs.yaml"}}


@FUZZ
@given(data=TREES)
def test_random_structures_as_playbooks(project: Path, data: Any) -> None:
    path = project / "book.yaml"
    path.write_text(dump(data))
    loads_cleanly(playbook.load, path)


@pytest.mark.slow
@FUZZ
@given(tasks=st.lists(st.dictionaries(st.sampled_from(KEYS), TREES, max_size=5), min_size=1, max_size=3))
def test_random_tasks_in_a_valid_playbook(project: Path, tasks: list[dict[str, Any]]) -> None:
    path = project / "book.yaml"
    path.write_text(dump({**inventory_header(), "tasks": tasks}))
    loads_cleanly(playbook.load, path)


@pytest.mark.slow
@FUZZ
@given(
    kind=st.sampled_from(sorted(REGISTRY)),
    body=st.dictionaries(st.sampled_from(KEYS), TREES, max_size=6),
    hosts=st.sampled_from(["h1", "cluster", ["h1", "cluster"], "localhost", "nope"]),
)
def test_random_bodies_of_every_task_type(project: Path, kind: str, body: dict[str, Any], hosts: Any) -> None:
    path = project / "book.yaml"
    path.write_text(dump({**inventory_header(), "tasks": [{"name": "t", "hosts": hosts, kind: body}]}))
    loads_cleanly(playbook.load, path)


@FUZZ
@given(data=TREES)
def test_random_structures_as_hosts_and_configs(tmp_path: Path, data: Any) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(dump(data))
    loads_cleanly(load_hosts, path)
    loads_cleanly(load_configs, path)


@pytest.mark.slow
@FUZZ
@given(entry=st.dictionaries(st.sampled_from(KEYS), TREES, max_size=6))
def test_random_host_and_config_entries(tmp_path: Path, entry: dict[str, Any]) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(dump({"a": entry}))
    loads_cleanly(load_hosts, path)
    loads_cleanly(load_configs, path)


@FUZZ
@given(raw=st.binary(max_size=300))
@example(raw=b"!!")  # a tagged scalar: its line-column record has no line
def test_random_bytes(project: Path, raw: bytes) -> None:
    for name, load in [("book.yaml", playbook.load), ("h.yaml", load_hosts), ("c.yaml", load_configs)]:
        path = project / name
        path.write_bytes(raw)
        loads_cleanly(load, path)


VALID = """\
inventory: {hosts: hosts.yaml, configs: configs.yaml}
variables: {who: [h1], n: 3}
tasks:
  - name: a
    hosts: "{{ who }}"
    cmd: {commands: [echo hi], cd: /tmp, env: {A: "1"}}
  - name: sweep
    hosts: cluster
    slurm: {cmd: python x.py, sweep: {lr: [0.1, 0.2]}, seeds: "1, 2", args: ["--a 1"]}
"""


@FUZZ
@given(cut=st.integers(0, len(VALID)), junk=st.text(max_size=8), where=st.integers(0, len(VALID)))
def test_truncated_and_corrupted_valid_playbooks(project: Path, cut: int, junk: str, where: int) -> None:
    path = project / "book.yaml"
    text = VALID[:cut]
    path.write_text(text[:where] + junk + text[where:], encoding="utf-8")
    loads_cleanly(playbook.load, path)


@pytest.mark.parametrize("value", ['"a\\0b"', '"\\ud800"', '"\\x00"'])
def test_nul_and_lone_surrogates_are_refused_with_a_position(project: Path, value: str) -> None:
    path = project / "book.yaml"
    path.write_text(
        "inventory: {hosts: hosts.yaml, configs: configs.yaml}\n"
        f"tasks:\n  - name: t\n    hosts: h1\n    cmd: {value}\n"
    )
    with pytest.raises(InputError) as info:
        playbook.load(path)
    assert info.value.position is not None and info.value.position.line == 5


DEEP = "tasks: " + "[" * 5000 + "]" * 5000 + "\n"  # deeper than Python's recursion limit
CYCLE = "a: &a [*a]\n"  # an alias cycle: infinitely deep


@pytest.mark.parametrize(
    ("text", "load"),
    [
        pytest.param(DEEP, playbook.load, id="5000 levels", marks=pytest.mark.slow),
        pytest.param(CYCLE, playbook.load, id="alias cycle, playbook"),
        pytest.param(CYCLE, load_hosts, id="alias cycle, hosts"),
        pytest.param(CYCLE, load_configs, id="alias cycle, configs"),
    ],
)
def test_deeply_nested_yaml_is_a_clean_error(project: Path, text: str, load: Any) -> None:
    """Refused with an input error that names the file (exit code 2, no traceback), neither loaded
    nor a RecursionError."""
    path = project / "book.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(str(path)) and len(message) > len(str(path)) + 2, message
