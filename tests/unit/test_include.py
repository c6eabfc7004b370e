"""Composition: `include: other.yaml` (or `playbook:`) expands another playbook's tasks in place."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from compute_platform import playbook
from compute_platform.errors import InputError
from compute_platform.tasks.cmd import Cmd

HOSTS = "localhost: {}\nh1: {host: h1.example.org}\nh2: {host: h2.example.org}\n"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write(tmp_path, "hosts.yaml", HOSTS)
    write(tmp_path, "configs.yaml", "default: {cpus: 1}\n")
    return tmp_path


def commands(book: playbook.Playbook) -> list[tuple[int, str, tuple[str, ...], str]]:
    out = []
    for task in book.tasks:
        assert isinstance(task.action, Cmd)
        out.append((task.index, task.name, task.hosts, task.action.commands[0]))
    return out


def test_included_tasks_run_in_place_with_their_own_variables(folder: Path) -> None:
    write(
        folder,
        "parts/setup.yaml",
        """\
        variables: {what: default-what, where: [h1]}
        tasks:
          - {name: inner one, hosts: "{{ where }}", cmd: "echo {{ what }}"}
          - {name: inner two, hosts: localhost, cmd: "echo two"}
        """,
    )
    book = write(
        folder,
        "main.yaml",
        """\
        inventory: {hosts: hosts.yaml, configs: configs.yaml}
        variables: {what: outer-what, mine: passed}
        tasks:
          - {name: first, hosts: localhost, cmd: echo first}
          - name: setup
            include: parts/setup.yaml
          - name: setup again
            playbook: parts/setup.yaml
            variables: {what: "{{ mine }}", where: [h2, localhost]}
          - {name: last, hosts: localhost, cmd: "echo {{ what }}"}
        """,
    )
    assert commands(playbook.load(book)) == [
        (0, "first", ("localhost",), "echo first"),
        (1, "inner one", ("h1",), "echo default-what"),  # the included file's variables, not the outer ones
        (2, "inner two", ("localhost",), "echo two"),
        (3, "inner one", ("h2", "localhost"), "echo passed"),  # overridden by the include task
        (4, "inner two", ("localhost",), "echo two"),
        (5, "last", ("localhost",), "echo outer-what"),
    ]


def test_hosts_on_an_include_replace_every_included_tasks_hosts(folder: Path) -> None:
    write(folder, "deeper.yaml", "tasks: [{hosts: h1, cmd: echo deep}]\n")
    write(
        folder,
        "sub/mid.yaml",
        "tasks:\n  - {hosts: localhost, cmd: echo mid}\n  - {include: ../deeper.yaml}\n",
    )
    book = write(
        folder,
        "main.yaml",
        "inventory: {hosts: hosts.yaml}\ntasks:\n  - {include: sub/mid.yaml, hosts: [h2]}\n",
    )
    assert [(t.hosts, t.position.file) for t in playbook.load(book).tasks] == [
        (("h2",), str(folder / "sub/mid.yaml")),
        (("h2",), str(folder / "sub/../deeper.yaml")),
    ]


def test_include_cycle_names_the_chain(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(folder)
    write(folder, "a.yaml", "inventory: {hosts: hosts.yaml}\ntasks:\n  - {include: b.yaml}\n")
    write(folder, "b.yaml", "tasks:\n  - {hosts: localhost, cmd: 'true'}\n  - {include: a.yaml}\n")
    with pytest.raises(InputError) as info:
        playbook.load(folder / "a.yaml")
    assert str(info.value) == f"{folder / 'b.yaml'}:3:6: task 2: include cycle: a.yaml -> b.yaml -> a.yaml"


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ("{include: missing.yaml}", "task 1: playbook not found: missing.yaml (looked in"),
        ("{include: [a, b]}", "task 1: 'include' must be the path of a playbook file"),
        ("{include: other.yaml, timeout: 3}", "task 1: 'timeout' cannot be used with 'include'"),
        ("{include: other.yaml, hosts: nope}", "main.yaml:3:27: unknown host 'nope'"),
        ("{includ: other.yaml, hosts: h1}", "unknown key 'includ' (did you mean 'include'?)"),
        ("{include: bad-inventory.yaml}", "uses hosts file"),
        ("{include: other.yaml, variables: [x]}", "'variables' must be a mapping"),
    ],
)
def test_bad_includes(folder: Path, task: str, message: str) -> None:
    write(folder, "other.yaml", "inventory: {hosts: hosts.yaml}\ntasks: [{hosts: localhost, cmd: 'true'}]\n")
    write(folder, "elsewhere/hosts.yaml", HOSTS)
    write(
        folder,
        "bad-inventory.yaml",
        "inventory: {hosts: elsewhere/hosts.yaml}\ntasks: [{hosts: h1, cmd: x}]\n",
    )
    book = write(folder, "main.yaml", f"inventory: {{hosts: hosts.yaml}}\ntasks:\n  - {task}\n")
    with pytest.raises(InputError) as info:
        playbook.load(book)
    assert message in str(info.value)


def test_an_error_inside_an_included_file_points_into_it(folder: Path) -> None:
    write(folder, "other.yaml", "tasks:\n  - hosts: localhost\n    cmd: {commands: [x], cdd: y}\n")
    book = write(folder, "main.yaml", "inventory: {hosts: hosts.yaml}\ntasks:\n  - {include: other.yaml}\n")
    with pytest.raises(InputError) as info:
        playbook.load(book)
    assert str(info.value).startswith(f"{folder / 'other.yaml'}:3:")
