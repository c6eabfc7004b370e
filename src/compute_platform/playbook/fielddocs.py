"""Field docstrings (the string literal under a model's field) as field descriptions, read only
when a reference or a JSON Schema is made.

pydantic's `use_attribute_docstrings` reads, tokenizes and parses the source of every model when
its class is created: ~60 ms at every start of `compute`, for text that only `compute schema` and
docs/reference.md show. `describe` does the same on demand.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
import textwrap
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel


def describe(models: Iterable[type[BaseModel]]) -> None:
    """Give every field of `models` (and of the models they nest) its docstring as description,
    unless it has one; the models' JSON Schemas are rebuilt to show them."""
    for model in _with_nested(models):
        docs = field_docs(model)
        changed = False
        for name, field in model.model_fields.items():
            if field.description is None and name in docs:
                field.description = docs[name]
                changed = True
        if changed:
            model.model_rebuild(force=True)


def field_docs(model: type) -> dict[str, str]:
    """name -> docstring of the fields declared by `model` and its bases (a subclass's wins)."""
    docs: dict[str, str] = {}
    for cls in reversed(model.__mro__):
        if cls.__module__.startswith("compute_platform"):
            # a model made from a dataclass's fields (models.HostEntry) has its docstrings there
            docs.update(_class_docs(getattr(cls, "__doc_source__", cls)))
    return docs


@functools.cache
def _class_docs(cls: type) -> dict[str, str]:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for stmt, after in itertools.pairwise(body):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[stmt.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _with_nested(models: Iterable[type[BaseModel]]) -> list[type[BaseModel]]:
    """`models` and every model reachable through their fields' annotations, nested ones first."""
    seen: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation in seen:
                return
            for field in annotation.model_fields.values():
                visit(field.annotation)
            seen.append(annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    for model in models:
        visit(model)
    return seen
