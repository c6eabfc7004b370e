"""JSON Schemas of playbooks, hosts.yaml and configs.yaml, for editors (`compute schema`).

Made from the pydantic models the loader validates with (HostEntry, ConfigSpec, each task type of
REGISTRY), plus what the loader itself accepts around them: task keys, short forms, includes and
`{{ variable }}` placeholders. The loader stays the judge: the schema only helps while typing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

DIALECT = "https://json-schema.org/draft/2020-12/schema"
KINDS = ("playbook", "hosts", "configs")
REF = "#/$defs/{model}"

# Where a number, a list or a mapping is expected, a playbook may hold a whole-value variable instead
# (`seeds: "{{ seeds }}"`, or the original tool's `£seeds`), replaced when the playbook is loaded.
PLACEHOLDER: dict[str, Any] = {
    "type": "string",
    "pattern": r"^\s*(\{\{\s*[A-Za-z_][A-Za-z0-9_.-]*\s*\}\}|£\S+)\s*$",
    "description": "a variable, replaced when the playbook is loaded",
}
HOSTS_FIELD: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
    ],
    "description": "a host alias or a list of aliases",
}
COMMON: dict[str, dict[str, Any]] = {
    "name": {"type": "string"},
    "hosts": HOSTS_FIELD,
    "ignore_errors": {"type": "boolean", "default": False},
    "timeout": {"type": "number", "exclusiveMinimum": 0, "description": "seconds"},
    "scatter": {"type": "boolean", "description": "spread the entry's slurm and tmux jobs over its hosts"},
}
# The short forms an action may take, as probes fed to its `shorthand` (e.g. `cmd: ls`, `pip: [a, b]`).
SHORT_FORMS: tuple[tuple[Any, dict[str, Any]], ...] = (
    ("x", {"type": "string"}),
    (["x"], {"type": "array", "items": {"type": "string"}}),
)


def schema(kind: str) -> dict[str, Any]:
    """The schema of one kind of file: playbook, hosts or configs."""
    makers: dict[str, Callable[[], dict[str, Any]]] = {
        "playbook": playbook_schema,
        "hosts": hosts_schema,
        "configs": configs_schema,
    }
    return makers[kind]()


def hosts_schema() -> dict[str, Any]:
    from compute_platform.input.models import HostEntry

    refs, defs = _models([HostEntry])
    # the alias is the entry's key, not a setting
    defs["HostSpec"]["properties"].pop("alias", None)
    return _document(
        "compute hosts file: alias -> how to reach the host",
        {"anyOf": [refs[HostEntry], {"type": "null"}]},
        defs,
    )


def configs_schema() -> dict[str, Any]:
    from compute_platform.input.models import ConfigSpec

    refs, defs = _models([ConfigSpec])
    return _document(
        "compute configs file: name -> job resource profile",
        {"anyOf": [refs[ConfigSpec], {"type": "null"}]},
        defs,
    )


def playbook_schema() -> dict[str, Any]:
    from compute_platform.playbook.loader import INCLUDE_KEYS
    from compute_platform.tasks import ALIASES, REGISTRY

    keys = {**{kind: kind for kind in REGISTRY}, **ALIASES}
    refs, defs = _models(list(REGISTRY.values()))
    for name in list(defs):
        defs[name] = _allow_placeholders(defs[name])
    actions = {key: _action(REGISTRY[kind], refs[REGISTRY[kind]]) for key, kind in keys.items()}
    variants = [_task_variant(actions), *(_include_variant(key) for key in INCLUDE_KEYS)]
    defs["task"] = {"oneOf": variants}
    defs["placeholder"] = PLACEHOLDER
    return {
        "$schema": DIALECT,
        "title": "compute playbook",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "inventory": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "hosts": {"type": "string", "description": "hosts file, relative to the playbook"},
                    "configs": {"type": "string", "description": "configs file, relative to the playbook"},
                },
            },
            "variables": {"type": "object", "description": "name -> value, used as {{ name }} in tasks"},
            "tasks": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/task"}},
        },
        # `inventory` is required by `compute run`, but not in a playbook that is only included
        "required": ["tasks"],
        "$defs": defs,
    }


def _document(title: str, entry: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    return {
        "$schema": DIALECT,
        "title": title,
        "type": ["object", "null"],
        "additionalProperties": entry,
        "$defs": defs,
    }


def _models(models: list[type[BaseModel]]) -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
    """One $defs for several models (validation mode: what the loader accepts), and a $ref to each."""
    from compute_platform.playbook.fielddocs import describe

    describe(models)
    keymap, top = models_json_schema([(m, "validation") for m in models], ref_template=REF)
    refs: dict[Any, dict[str, Any]] = {model: dict(ref) for (model, _), ref in keymap.items()}
    return refs, dict(top.get("$defs", {}))


def _action(cls: Any, ref: dict[str, Any]) -> dict[str, Any]:
    """The schema of an action key: its model, or one of the short forms its `shorthand` expands."""
    forms = [form for probe, form in SHORT_FORMS if _expands(cls, probe)]
    return {"anyOf": [ref, *forms]} if forms else ref


def _expands(cls: Any, probe: Any) -> bool:
    try:
        return isinstance(cls.shorthand(probe), Mapping)
    except Exception:  # a shorthand that rejects the probe does not take that form
        return False


def _task_variant(actions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A task entry: one action key or several (the original tool ran each; `srun` and `slurm` are
    one action). `hosts` is not required: a task of an included playbook may get it from the include."""
    return {
        "type": "object",
        "title": "task",
        "properties": {**_loose_all(COMMON), **actions},
        "anyOf": [{"required": [key]} for key in actions],
        "not": {"required": ["srun", "slurm"]},
        "additionalProperties": False,
    }


def _include_variant(key: str) -> dict[str, Any]:
    return {
        "type": "object",
        "title": key,
        "properties": {
            "name": {"type": "string"},
            "hosts": _loose(HOSTS_FIELD),
            "variables": {"type": "object", "description": "override the included playbook's variables"},
            key: {"type": "string", "description": "a playbook file, relative to this one"},
        },
        "required": [key],
        "additionalProperties": False,
    }


def _loose_all(properties: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    return {name: _loose(value) for name, value in properties.items()}


def _loose(node: dict[str, Any]) -> dict[str, Any]:
    """`node`, or a variable standing for it (strings take variables anyway)."""
    inner = _allow_placeholders(node)
    if node.get("type") == "string":
        return inner
    return {"anyOf": [inner, {"$ref": "#/$defs/placeholder"}]}


def _allow_placeholders(node: dict[str, Any]) -> dict[str, Any]:
    """Let every value below `node` (properties, items, mapping values) be a variable."""
    out = dict(node)
    if isinstance(node.get("properties"), dict):
        out["properties"] = _loose_all(node["properties"])
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out[key] = _loose(node[key])
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            out[key] = [_allow_placeholders(n) if isinstance(n, dict) else n for n in node[key]]
    return out
