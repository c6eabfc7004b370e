"""`cmd`: one command or a list of commands, run in order on each host."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from compute_platform import shell
from compute_platform.tasks.base import Action, Outcome

if TYPE_CHECKING:
    from compute_platform.hosts import Host
    from compute_platform.runner import RunContext


class Cmd(Action):
    kind = "cmd"

    commands: tuple[str, ...] = Field(min_length=1)
    """Commands run in order; the first that fails stops the task on that host. `cmd: ls` and `cmd: [a, b]`
    are short forms."""
    cd: str | None = None
    """Working directory on the host (`~` is the home there)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables for these commands."""

    @classmethod
    def shorthand(cls, raw: Any) -> Any:
        if isinstance(raw, str):
            return {"commands": [raw]}
        if isinstance(raw, list):
            return {"commands": raw}
        if isinstance(raw, dict) and "cmd" in raw and "commands" not in raw:
            raw = dict(raw)
            value = raw.pop("cmd")
            raw["commands"] = [value] if isinstance(value, str) else value
        return raw

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            shell.check_env_name(name)  # written unquoted in `export NAME=...`
        return value

    def plan(self, ctx: RunContext, host: Host) -> list[str]:
        return [host.script(c, cwd=self.cd, env=self.env) for c in self.commands]

    def run(self, ctx: RunContext, host: Host) -> Outcome:
        for command in self.commands:
            host.run(
                command,
                cwd=self.cd,
                env=self.env,
                timeout=ctx.timeout,
                check=True,
                on_line=ctx.output(host),
            )
        return Outcome()
