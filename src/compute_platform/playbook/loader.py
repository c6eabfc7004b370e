"""Playbook YAML -> validated, frozen Tasks. Every cross-check happens here, before any connection."""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compute_platform.context import Task
from compute_platform.errors import InputError, Position
from compute_platform.input import yamlfile
from compute_platform.input.inventory import Inventory, load_inventory
from compute_platform.input.spec import yaml11_bool

COMMON_KEYS = ("name", "hosts", "ignore_errors", "timeout", "scatter")
# An entry with several action keys becomes that many tasks, each with the entry's name. The original
# tool's first runner (2022, whose keys were srun, run, sync and clone) ran them in this order whatever
# their order in the file; its later runner (the `slurm` key) in the order written. An entry with a key of
# the first kind keeps the first order; any other, the order written.
ACTION_ORDER = ("run", "pip", "copy", "sync", "tmux", "srun", "slurm", "cmd", "clone", "git")
FIRST_RUNNER_KEYS = ("srun", "run", "sync", "clone")
# `scatter` beside `hosts` (the original's first form) applies to the entry's sweep actions.
SCATTER_KINDS = ("slurm", "tmux")
TOP_KEYS = ("inventory", "variables", "code", "tasks")
# A task with one of these keys runs another playbook's tasks in its place.
INCLUDE_KEYS = ("include", "playbook")
INCLUDE_TASK_KEYS = ("name", "hosts", "variables")
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*\}\}")


@dataclass(frozen=True)
class Note:
    """Something that loads but runs differently than a reader (or the original tool) may expect:
    `compute check` and `compute run` print it as a warning."""

    position: Position
    message: str

    def __str__(self) -> str:
        return f"{self.position}: {self.message}"


@dataclass(frozen=True)
class Playbook:
    path: Path
    inventory: Inventory
    tasks: tuple[Task, ...]
    variables: dict[str, Any] = field(default_factory=dict)
    notes: tuple[Note, ...] = ()

    @property
    def name(self) -> str:
        return self.path.stem

    def secret_names(self) -> set[str]:
        """The environment variables the tasks pass to their hosts as secrets."""
        return {name for task in self.tasks for name in getattr(task.action, "secret_env", ())}


def load(path: Path) -> Playbook:
    path = Path(path)
    data = _read(path)
    variables = _variables(path, data)
    if hasattr(data.get("inventory"), "items"):  # `hosts: £hosts_file`, as the original allowed
        substitute(data["inventory"], variables, path)
    inventory = _inventory(path, data)
    tasks_node = _tasks_node(path, data)
    substitute(tasks_node, variables, path)
    notes: list[Note] = []
    tasks = _with_code(_code(path, data), _tasks(path, tasks_node, inventory, (path.resolve(),), None, notes))
    # one index per task of the run, included ones too (reporters key their output by it)
    numbered = tuple(dataclasses.replace(task, index=i) for i, task in enumerate(tasks))
    return Playbook(path, inventory, numbered, yamlfile.plain(variables), tuple(notes))


def _code(path: Path, data: Any) -> Any:
    """The playbook's `code:` (the default of its slurm and tmux tasks), validated; None without."""
    if data.get("code") is None:
        return None
    from pydantic import ValidationError

    from compute_platform.scheduling.sweep import CodeSource

    try:
        return CodeSource.model_validate(yamlfile.plain(data["code"]))
    except ValidationError as e:
        problem = e.errors()[0]["msg"].removeprefix("Value error, ")
        raise InputError(f"code: {problem}", yamlfile.position(path, data, ["code"])) from None


def _with_code(code: Any, tasks: list[Task]) -> list[Task]:
    if code is None:
        return tasks
    return [
        dataclasses.replace(task, action=task.action.model_copy(update={"code": code}))  # type: ignore[attr-defined]
        if "code" in type(task.action).model_fields and "code" not in task.action.model_fields_set  # type: ignore[attr-defined]
        else task
        for task in tasks
    ]


def _read(path: Path) -> Any:
    """A playbook file's top-level mapping, with its keys checked."""
    data = yamlfile.load(path, "playbook")
    if data is None or (hasattr(data, "__len__") and len(data) == 0):
        raise InputError("the playbook is empty: expected 'inventory' and 'tasks'", Position(str(path)))
    if not hasattr(data, "items"):
        raise InputError(
            "a playbook is a mapping with 'inventory' and 'tasks' keys", yamlfile.node_position(path, data)
        )
    for key in data:
        if key not in TOP_KEYS:
            raise InputError(
                f"unknown top-level key '{key}'"
                + yamlfile.did_you_mean(str(key), TOP_KEYS)
                + f"; expected: {', '.join(TOP_KEYS)}",
                yamlfile.position(path, data, [key]),
            )
    return data


def _tasks_node(path: Path, data: Any) -> list[Any]:
    tasks_node = data.get("tasks")
    if not isinstance(tasks_node, list) or not tasks_node:
        where = yamlfile.position(path, data, ["tasks"]) if "tasks" in data else Position(str(path))
        raise InputError("expected 'tasks': a non-empty list of tasks", where)
    return tasks_node


def _tasks(
    path: Path,
    nodes: list[Any],
    inventory: Inventory,
    chain: tuple[Path, ...],
    hosts: tuple[str, ...] | None,
    notes: list[Note],
) -> list[Task]:
    """The tasks of one file, includes expanded in place. `chain`: the files including this one
    (for cycles); `hosts`: set by an including task, replaces every task's own hosts."""
    tasks: list[Task] = []
    for i, node in enumerate(nodes):
        key = next((k for k in INCLUDE_KEYS if hasattr(node, "items") and k in node), None)
        if key is None:
            tasks.extend(_task(path, i, node, inventory, notes, hosts))
        else:
            tasks.extend(_include(path, i, node, key, inventory, chain, hosts, notes))
    return tasks


def _include(
    path: Path,
    index: int,
    node: Any,
    key: str,
    inventory: Inventory,
    chain: tuple[Path, ...],
    hosts: tuple[str, ...] | None,
    notes: list[Note],
) -> list[Task]:
    """`include: other.yaml` (or `playbook:`): the tasks of other.yaml, with its own variables
    (overridden by the task's `variables`), checked against the including playbook's inventory."""
    label = f"task '{node['name']}'" if node.get("name") else f"task {index + 1}"
    for other in node:
        if other != key and other not in INCLUDE_TASK_KEYS:
            raise InputError(
                f"{label}: '{other}' cannot be used with '{key}' (allowed: {', '.join(INCLUDE_TASK_KEYS)})",
                yamlfile.position(path, node, [other]),
            )
    pos = yamlfile.position(path, node, [key])
    value = node[key]
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{label}: '{key}' must be the path of a playbook file", pos)
    target = _include_target(path, value, key, pos, label, notes)
    if target.resolve() in chain:
        cycle = " -> ".join(os.path.relpath(p) for p in (*chain, target.resolve()))
        raise InputError(f"{label}: include cycle: {cycle}", pos)
    if hosts is None and "hosts" in node:
        hosts = _hosts(path, node, label, inventory)
    data = _read(target)
    _check_same_inventory(target, data, inventory, pos)
    variables = {**_variables(target, data), **_variables(path, node)}
    nodes = _tasks_node(target, data)
    substitute(nodes, variables, target)
    return _tasks(target, nodes, inventory, (*chain, target.resolve()), hosts, notes)


def _include_target(path: Path, value: str, key: str, pos: Position, label: str, notes: list[Note]) -> Path:
    """`include:` is relative to the including file. `playbook:` is the original tool's key, which
    it opened from the current directory: that first, then beside the including file."""
    target = Path(value).expanduser()
    if target.is_absolute():
        candidates = [target]
    elif key == "playbook":
        candidates = [Path.cwd() / target, path.parent / target]
    else:
        candidates = [path.parent / target]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        where = " or ".join(str(c.parent) for c in candidates)
        raise InputError(f"{label}: playbook not found: {value} (looked in {where})", pos)
    if key == "playbook" and not target.is_absolute():
        origin = (
            "the current directory, as the original tool did"
            if found == candidates[0]
            else "beside " + path.name
        )
        notes.append(Note(pos, f"{label}: playbook {value} is {os.path.relpath(found)} (from {origin})"))
    return found


def _check_same_inventory(path: Path, data: Any, inventory: Inventory, where: Position) -> None:
    """An included playbook runs with the including one's inventory; its own `inventory`, if any,
    must name the same files (so that it means the same hosts whether included or run alone)."""
    node = data.get("inventory")
    if not hasattr(node, "items"):
        return
    used = {"hosts": inventory.hosts_file, "configs": inventory.configs_file}
    for key, current in used.items():
        value = node.get(key)
        mine = find_file(path, str(value)).resolve() if value is not None else None
        theirs = current.resolve() if current is not None else None
        if value is not None and mine != theirs:
            raise InputError(
                f"{path} uses {key} file {mine} but the including playbook uses {theirs or 'none'}: "
                "an included playbook runs with the including playbook's inventory; "
                f"point its '{key}' at the same file or remove it",
                where,
            )


def find_file(playbook: Path, name: str) -> Path:
    """Inventory paths are relative to the playbook's directory first, then to the current one."""
    candidate = Path(name).expanduser()
    if candidate.is_absolute():
        return candidate
    beside = playbook.parent / candidate
    if beside.exists():
        return beside
    return candidate if candidate.exists() else beside


def _inventory(path: Path, data: Any) -> Inventory:
    node = data.get("inventory")
    if node is None:
        raise InputError(
            "missing 'inventory': expected {hosts: hosts.yaml, configs: configs.yaml}", Position(str(path), 1)
        )
    pos = yamlfile.position(path, data, ["inventory"])
    if not hasattr(node, "items"):
        raise InputError("'inventory' must be a mapping {hosts: path, configs: path}", pos)
    for key in node:
        if key not in ("hosts", "configs"):
            raise InputError(
                f"unknown inventory key '{key}'" + yamlfile.did_you_mean(str(key), ["hosts", "configs"]),
                yamlfile.position(path, node, [key]),
            )
    files: dict[str, Path | None] = {}
    for key in ("hosts", "configs"):
        value = node.get(key)
        if value is None:
            files[key] = None
            continue
        found = find_file(path, str(value))
        if not found.exists():
            raise InputError(
                f"{key} file not found: {value} (looked in {path.parent or '.'} and the current directory)",
                yamlfile.position(path, node, [key]),
            )
        files[key] = found
    return load_inventory(files["hosts"], files["configs"])


def _variables(path: Path, data: Any) -> dict[str, Any]:
    node = data.get("variables")
    if node is None:
        return {}
    if not hasattr(node, "items"):
        raise InputError(
            "'variables' must be a mapping name: value", yamlfile.position(path, data, ["variables"])
        )
    return dict(node.items())


def substitute(node: Any, variables: dict[str, Any], path: Path) -> Any:
    """Replace variables in place, everywhere in the task tree. Two forms: Ansible-like `{{ name }}`,
    and the original tool's, where a key such as `£hosts` is itself the placeholder. A string that is
    exactly one placeholder takes the value itself (a list stays a list)."""
    if hasattr(node, "items"):
        for key in list(node.keys()):
            node[key] = _value(node[key], variables, path, yamlfile.position(path, node, [key]), node, key)
        return node
    if isinstance(node, list):
        for i in range(len(node)):
            node[i] = _value(node[i], variables, path, yamlfile.position(path, node, [i]), node, i)
        return node
    return node


def _value(value: Any, variables: dict[str, Any], path: Path, pos: Position, parent: Any, key: Any) -> Any:
    if hasattr(value, "items") or isinstance(value, list):
        return substitute(value, variables, path)
    if not isinstance(value, str):
        return value
    whole = PLACEHOLDER.fullmatch(value.strip())
    if whole:
        return _lookup(whole.group(1), variables, pos)
    if value in variables and not PLACEHOLDER.search(value):
        return variables[value]

    def one(match: re.Match[str]) -> str:
        found = _lookup(match.group(1), variables, pos)
        if isinstance(found, (dict, list)):
            raise InputError(f"variable '{match.group(1)}' is a {type(found).__name__}: use it alone", pos)
        return yamlfile.written(found)

    text = PLACEHOLDER.sub(one, value)
    for name, replacement in variables.items():
        # the original tool's form: a key like "£path" replaced wherever it appears in a string
        if name and not name[0].isalnum() and name != "_" and name in text:
            if isinstance(replacement, (dict, list)):
                raise InputError(f"variable '{name}' is a {type(replacement).__name__}: use it alone", pos)
            text = text.replace(name, yamlfile.written(replacement))
    return type(value)(text) if type(value) is not str and text == value else text


def _lookup(name: str, variables: dict[str, Any], pos: Position) -> Any:
    if name not in variables:
        raise InputError(
            f"unknown variable '{{{{ {name} }}}}'"
            + yamlfile.did_you_mean(name, [str(k) for k in variables])
            + ("" if variables else " (the playbook has no 'variables')"),
            pos,
        )
    return variables[name]


def _task(
    path: Path,
    index: int,
    node: Any,
    inventory: Inventory,
    notes: list[Note],
    hosts: tuple[str, ...] | None = None,
) -> list[Task]:
    """One task entry: one task per action key (the original tool allowed several in one entry)."""
    from compute_platform.tasks import ALIASES, REGISTRY

    pos = yamlfile.node_position(path, node)
    label = f"task {index + 1}"
    if not hasattr(node, "items"):
        raise InputError(f"{label}: expected a mapping with 'name', 'hosts' and one action", pos)
    name = str(node.get("name") or f"{label}")
    label = f"task '{name}'" if node.get("name") else label
    keys = _action_keys(path, node, label, pos)
    written = [str(k) for k in node if k not in COMMON_KEYS]
    if keys != written:
        notes.append(
            Note(
                pos,
                f"{label}: its actions run in the order {', '.join(keys)}, not as written: the original "
                f"tool ran an entry with {' or '.join(FIRST_RUNNER_KEYS)} in that order",
            )
        )
    if hosts is None:
        hosts = _hosts(path, node, label, inventory)
    ignore, timeout = _common(path, node, label)
    scatter = _task_scatter(path, node, label, [ALIASES.get(k, k) for k in keys], notes)
    tasks = []
    for key in keys:
        kind = ALIASES.get(key, key)
        action = REGISTRY[kind].parse(node[key], path, node, key, label)
        if scatter and kind in SCATTER_KINDS and not getattr(action, "scatter", False):
            action = action.model_copy(update={"scatter": True})
        where = yamlfile.position(path, node, [key]) if len(keys) > 1 else pos
        task = Task(index, name, kind, action, hosts, where, ignore, timeout)
        try:
            for alias in hosts:
                action.check(task, inventory.host(alias), inventory)
        except InputError as e:
            raise e.within(label) from None
        for loc, message in action.notes():
            notes.append(Note(yamlfile.position(path, node, [key, *loc]), f"{label}: {message}"))
        tasks.append(task)
    return tasks


def _common(path: Path, node: Any, label: str) -> tuple[bool, float | None]:
    """The entry's `ignore_errors` and `timeout`, checked."""
    ignore = yaml11_bool(node.get("ignore_errors", False))
    if not isinstance(ignore, bool):
        raise InputError(
            f"{label}: 'ignore_errors' must be true or false",
            yamlfile.position(path, node, ["ignore_errors"]),
        )
    timeout = node.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
    ):
        raise InputError(
            f"{label}: 'timeout' must be a number of seconds > 0", yamlfile.position(path, node, ["timeout"])
        )
    return ignore, float(timeout) if timeout else None


def _action_keys(path: Path, node: Any, label: str, pos: Position) -> list[str]:
    """The entry's action keys, known ones only, in the order the original tool ran them."""
    from compute_platform.tasks import ALIASES, REGISTRY

    kinds = [str(k) for k in node if k not in COMMON_KEYS]
    known = [*REGISTRY, *ALIASES]
    unknown = [k for k in kinds if k not in known]
    if unknown:
        key = unknown[0]
        raise InputError(
            f"{label}: unknown key '{key}'"
            + (
                yamlfile.did_you_mean(key, [*known, *COMMON_KEYS, *INCLUDE_KEYS])
                or f"; expected one of the actions {', '.join(REGISTRY)} or {', '.join(COMMON_KEYS)}"
            ),
            yamlfile.position(path, node, [key]),
        )
    if not kinds:
        raise InputError(f"{label}: expected an action ({', '.join(REGISTRY)}), got none", pos)
    same = [k for k in kinds if ALIASES.get(k, k) == "slurm"]
    if len(same) > 1:
        raise InputError(f"{label}: '{same[0]}' and '{same[1]}' are the same action: keep one", pos)
    if not any(k in FIRST_RUNNER_KEYS for k in kinds):
        return kinds
    order = {k: i for i, k in enumerate(ACTION_ORDER)}
    return sorted(kinds, key=lambda k: order.get(k, len(order)))


def _task_scatter(path: Path, node: Any, label: str, kinds: list[str], notes: list[Note]) -> bool:
    if "scatter" not in node:
        return False
    value = yaml11_bool(node["scatter"])
    where = yamlfile.position(path, node, ["scatter"])
    if not isinstance(value, bool):
        raise InputError(f"{label}: 'scatter' must be true or false", where)
    if value and not any(k in SCATTER_KINDS for k in kinds):
        notes.append(Note(where, f"{label}: 'scatter' only spreads slurm and tmux jobs: no effect here"))
    return bool(value)


def _hosts(path: Path, node: Any, label: str, inventory: Inventory) -> tuple[str, ...]:
    if "hosts" not in node:
        raise InputError(
            f"{label}: missing 'hosts' (a host alias or a list of them)", yamlfile.node_position(path, node)
        )
    value = node["hosts"]
    pos = yamlfile.position(path, node, ["hosts"])
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(h, str) and h for h in items):
        raise InputError(f"{label}: 'hosts' must be a host alias or a non-empty list of aliases", pos)
    for i, alias in enumerate(items):
        inventory.host(str(alias), yamlfile.position(path, value, [i]) if isinstance(value, list) else pos)
    seen: dict[str, None] = dict.fromkeys(str(h) for h in items)
    return tuple(seen)
