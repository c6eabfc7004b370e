"""YAML in, positions kept: every error about a file names its line and column."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from compute_platform.errors import InputError, Position

if TYPE_CHECKING:  # pydantic is imported by what validates, not by what only reads YAML
    from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound="BaseModel")


class WrittenInt(int):
    """An integer that remembers how the file wrote it (`1_000`, `007`, `+3`)."""

    written: str


class WrittenFloat(float):
    """A float that remembers how the file wrote it (`1e-4`, `0.10`): a command gets the text, not
    Python's rendering of the number (`0.0001`, `0.1`)."""

    written: str


def written(value: Any) -> str:
    """A scalar as the file wrote it; Python's text for anything else (and `true`/`false`)."""
    if isinstance(value, (WrittenInt, WrittenFloat)):
        return value.written
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _loader() -> Any:
    """ruamel's round-trip loader whose numbers keep their source text (see `written`)."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt", pure=True)
    yaml.Constructor = _constructor()
    return yaml


@functools.cache
def _constructor() -> Any:
    """The constructor class, made once per process (a run loads three files)."""
    from ruamel.yaml.constructor import RoundTripConstructor

    class Constructor(RoundTripConstructor):  # type: ignore[misc]
        def construct_yaml_int(self, node: Any) -> Any:
            number = WrittenInt(super().construct_yaml_int(node))
            number.written = str(node.value)
            return number

        def construct_yaml_float(self, node: Any) -> Any:
            number = WrittenFloat(super().construct_yaml_float(node))
            number.written = str(node.value)
            return number

    Constructor.add_constructor("tag:yaml.org,2002:int", Constructor.construct_yaml_int)
    Constructor.add_constructor("tag:yaml.org,2002:float", Constructor.construct_yaml_float)
    return Constructor


def read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {what} file {path}: {e}") from None


def load(path: Path, what: str, text: str | None = None) -> Any:
    """Parse a YAML file (or `text`, read from it), keeping line/column information (ruamel's
    round-trip nodes) and the text of every number as written."""
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    if text is None:
        text = read_text(path, what)
    try:
        data = _loader().load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = e.problem or e.context or "invalid YAML"
        raise InputError(f"YAML syntax error: {problem}", Position(str(path), line, col)) from None
    except RecursionError:
        raise InputError(
            "YAML error: the file is nested too deeply to be read", Position(str(path))
        ) from None
    except (YAMLError, ValueError, TypeError) as e:
        raise InputError(f"YAML error: {e}", Position(str(path))) from None
    check_text(path, data)
    return data


def check_text(path: Path, data: Any) -> None:
    """Refuse strings no command line can carry: a NUL (C strings end there, so a remote shell would
    run a truncated command) or a lone surrogate (no UTF-8 for it). Escapes like "\\0" make them."""
    stack: list[tuple[Any, Position]] = [(data, node_position(path, data))]
    seen: set[int] = set()  # anchors and aliases share nodes
    while stack:
        node, where = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, str):
            if "\x00" in node or any(0xD800 <= ord(c) <= 0xDFFF for c in node):
                raise InputError(
                    "this string holds a NUL character or a lone surrogate (from a \\0 or \\uD800 escape): "
                    "no command can carry it; remove the escape",
                    where,
                )
        elif hasattr(node, "items"):
            for i, (key, value) in enumerate(node.items()):
                stack.append((key, _child(path, node, key, i, "key")))
                stack.append((value, _child(path, node, key, i, "value")))
        elif isinstance(node, list):
            stack += [(value, _child(path, node, i, i, "item")) for i, value in enumerate(node)]


def _child(path: Path, parent: Any, key: Any, index: int, what: str) -> Position:
    lc: Any = getattr(parent, "lc", None)
    try:
        line, column = lc.item(index) if what == "item" else getattr(lc, what)(key)
    except (AttributeError, KeyError, IndexError, TypeError):
        return node_position(path, parent)
    return Position(str(path), line + 1, column + 1)


def position(file: Path | str, data: Any, loc: Sequence[int | str]) -> Position:
    """The position of the node at `loc` (a path of keys and indexes), or of its nearest parent."""
    line = column = 0
    node = data
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if lc is not None and isinstance(key, str) and hasattr(node, "keys"):
                if key in node:
                    line, column = lc.key(key)
                    line, column = line + 1, column + 1
                node = node[key]
            elif lc is not None and isinstance(key, int) and isinstance(node, list):
                line, column = lc.item(key)
                line, column = line + 1, column + 1
                node = node[key]
            else:
                break
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    if (line, column) == (0, 0) and getattr(data, "lc", None) is not None:
        line, column = data.lc.line + 1, data.lc.col + 1
    return Position(str(file), line, column)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def node_position(file: Path | str, node: Any) -> Position:
    lc = getattr(node, "lc", None)
    if lc is None or lc.line is None:  # a tagged scalar (`!!`) has a line-column record without a line
        return Position(str(file))
    return Position(str(file), lc.line + 1, (lc.col or 0) + 1)


def plain(data: Any) -> Any:
    """ruamel nodes -> plain dicts/lists/scalars (ordered), for validation. Numbers keep their
    written text (pydantic turns them into plain numbers where a field wants one)."""
    if hasattr(data, "items"):
        return {str(k) if not isinstance(k, (int, float, bool)) else k: plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    if isinstance(data, str):
        return str(data)
    if isinstance(data, bool) or data is None or isinstance(data, (WrittenInt, WrittenFloat)):
        return data
    if isinstance(data, int):
        return int(data)
    if isinstance(data, float):
        return float(data)
    return data


def validate(model: type[M], data: Any, file: Path | str, loc: Sequence[int | str] = (), what: str = "") -> M:
    """Validate `data` (found at `loc` inside the file's tree `root`) against a pydantic model."""
    from pydantic import ValidationError

    try:
        return model.model_validate(plain(data))
    except ValidationError as e:
        raise to_input_error(e, model, data, file, what) from None


def to_input_error(
    e: ValidationError, model: type[BaseModel], data: Any, file: Path | str, what: str = ""
) -> InputError:
    err = e.errors()[0]
    loc = [p for p in err["loc"] if isinstance(p, (int, str))]
    # pydantic adds union-member tags (e.g. 'str', 'list[str]', 'function-after[...]') to locs
    real = [p for p in loc if not (isinstance(p, str) and ("[" in p or p in _TYPE_TAGS))]
    pos = position(file, data, real)
    field = ".".join(str(p) for p in real)
    where = f"{what} " if what else ""
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(real[-1]) if real else "?"
        allowed = _allowed_keys(model, real[:-1])
        hint = did_you_mean(key, allowed) or (
            f"; expected one of: {', '.join(sorted(allowed))}" if allowed else ""
        )
        return InputError(f"unknown key '{key}' in {where or 'this mapping'}".rstrip() + hint, pos)
    if kind == "missing":
        return InputError(f"missing required key '{field}' in {where}".rstrip(), pos)
    value = err.get("input")
    shown = f" (got {value!r})" if value is not None and not isinstance(value, (dict, list)) else ""
    message = err["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    if not field:  # a check of the whole mapping (a model validator): no key to name
        return InputError(f"{where.rstrip()}: {message}{shown}" if where else f"{message}{shown}", pos)
    return InputError(f"{where}'{field}': {message}{shown}", pos)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "literal"}


def _allowed_keys(model: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """Field names (and aliases) accepted at `loc` of `model`, for did-you-mean hints."""
    from pydantic import BaseModel

    current: Any = model
    for part in loc:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        names: list[str] = []
        for name, f in current.model_fields.items():
            names.append(f.alias or name)
        return names
    return []


def _model_in(annotation: Any) -> Any:
    import typing

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
