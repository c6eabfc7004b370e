"""docs/reference.md, generated from the models the loader validates with, so it cannot drift.

Regenerate with `python -m compute_platform.playbook.reference > docs/reference.md`; a test fails when the file
is stale.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

HEADER = """\
# Reference

Every field of every file and task, generated from the models `compute` validates with
(`python -m compute_platform.playbook.reference > docs/reference.md`). Unknown keys are errors everywhere
except in configs, where they become extra `sbatch` options.
"""


def render() -> str:
    from compute_platform.input.models import ConfigSpec, HostEntry
    from compute_platform.playbook.fielddocs import describe
    from compute_platform.playbook.loader import COMMON_KEYS
    from compute_platform.tasks import ALIASES, REGISTRY

    describe([HostEntry, ConfigSpec, *REGISTRY.values()])
    parts = [HEADER]
    parts.append("## hosts.yaml\n\nA mapping `alias: settings`.\n")
    parts.append(_table(HostEntry, skip={"alias"}))
    parts.append(
        "## configs.yaml\n\nA mapping `name: settings`. Every value may also be a mapping keyed by host "
        "alias, with a `default` key; a value a config leaves out comes from the `default` config.\n"
    )
    parts.append(_table(ConfigSpec))
    parts.append(
        "## Playbooks\n\nTop-level keys: `inventory` (`hosts`, `configs`: paths relative to the playbook, "
        "then to the current directory), `variables` (a mapping; `{{ name }}` and the original `£name` "
        "forms), `tasks` (a list).\n\nEvery task has the keys "
        + ", ".join(f"`{k}`" for k in COMMON_KEYS)
        + " and exactly one action key. `include: other.yaml` (or `playbook: other.yaml`) instead of an "
        "action runs another playbook's tasks in place, with its own variables (`hosts` is then optional "
        "and, when given, replaces the hosts of every included task).\n"
    )
    for key, model in REGISTRY.items():
        aliases = [a for a, target in ALIASES.items() if target == key]
        title = f"### `{key}`" + (f" (also `{'`, `'.join(aliases)}`)" if aliases else "")
        doc = inspect.cleandoc(model.__doc__ or "")
        parts.append(f"{title}\n\n{doc}\n" if doc else f"{title}\n")
        parts.append(_table(model))
    return "\n".join(parts)


def _table(model: type[BaseModel], skip: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    rows = ["| field | type | default | description |", "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        shown = field.alias or name
        rows.append(
            f"| `{shown}` | {_type(field.annotation)} | {_default(field)} | {_text(field.description)} |"
        )
    return "\n".join(rows) + "\n"


def _type(annotation: Any) -> str:
    from compute_platform.input.models import PerHost

    text = "value | {host: value}" if annotation == PerHost else _type_name(annotation)
    return f"`{text}`".replace("|", "\\|")


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(_type_name(a) for a in args)
    if origin in (tuple, list):
        inner = _type_name(args[0]) if args else "any"
        return f"list[{inner}]"
    if origin is dict:
        return f"mapping[{_type_name(args[0])}, {_type_name(args[1])}]" if args else "mapping"
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is PydanticUndefined or value is None:
        return ""
    if value in ((), {}, []):
        return "empty"
    return f"`{value}`".replace("|", "\\|")


def _text(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


if __name__ == "__main__":
    print(render(), end="")
