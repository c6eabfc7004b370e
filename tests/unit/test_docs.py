"""Docs that cannot drift: the reference is generated from the models, and must be regenerated with them."""

from __future__ import annotations

from pathlib import Path

from compute_platform.playbook import reference
from compute_platform.playbook.fielddocs import describe
from compute_platform.tasks import REGISTRY
from tests.support.golden import check_golden

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_reference_is_up_to_date() -> None:
    check_golden(
        DOCS / "reference.md",
        reference.render(),
        stale="run `python -m compute_platform.playbook.reference > docs/reference.md`",
    )


def test_every_task_field_is_described() -> None:
    describe(list(REGISTRY.values()))
    for key, model in REGISTRY.items():
        for name, field in model.model_fields.items():
            assert field.description, f"{key}.{name} has no description (a docstring under the field)"
