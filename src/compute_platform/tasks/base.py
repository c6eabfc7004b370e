"""What every task type provides: a pydantic model of its YAML, load-time checks, a plan, a run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from compute_platform.context import Outcome
from compute_platform.input import yamlfile

if TYPE_CHECKING:
    from compute_platform.context import Task, TaskContext
    from compute_platform.hosts import Host
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec


def one_or_many(value: Any) -> Any:
    """A list field given one item alone (`exclude: .git` for `exclude: [.git]`): a `before` validator."""
    return [value] if isinstance(value, str) else value


class Action(BaseModel):
    """The value of a task's action key, validated. Subclasses are frozen and reject unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: ClassVar[str] = ""

    @classmethod
    def shorthand(cls, raw: Any) -> Any:
        """Turn a short form (e.g. `cmd: "ls"`) into the mapping the model validates."""
        return raw

    @classmethod
    def parse(cls, raw: Any, file: Path, task_node: Any, key: str, label: str) -> Action:
        data = cls.shorthand(yamlfile.plain(raw))
        from pydantic import ValidationError

        try:
            return cls.model_validate(data)
        except ValidationError as e:
            err = yamlfile.to_input_error(e, cls, raw, file, f"{label}: {key}")
            if not err.position or not err.position.line:
                from compute_platform.errors import InputError

                err = InputError(err.reason, yamlfile.position(file, task_node, [key]))
            raise err from None

    def check(self, task: Task, host: HostSpec, inventory: Inventory) -> None:
        """Cross-checks against the inventory, before any connection (raise InputError)."""

    def remote_needs(self) -> frozenset[str]:
        """What `compute check --remote` must probe on a host for this task (preflight.NEEDS names)."""
        return frozenset()

    def test_scripts(self, ctx: TaskContext, host: Host, cluster: Any) -> list[str]:
        """The job scripts `check --remote` asks the scheduler about (`sbatch --test-only`)."""
        return []

    def notes(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Warnings about what loads but may not run as a reader expects, each with the path of keys
        (inside this action's mapping) it is about: `compute check` prints them with their line."""
        return []

    def plan(self, ctx: TaskContext, host: Host) -> list[str]:
        """What `--dry-run` prints for this host: the commands, exactly as they would run."""
        return []

    def run(self, ctx: TaskContext, host: Host) -> Outcome:
        raise NotImplementedError
