"""`cmd`: one command or a list of commands, run in order on each host."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator, model_validator

from compute_platform.context import Outcome
from compute_platform.hosts import secret_env, shell
from compute_platform.tasks.base import Action

if TYPE_CHECKING:
    from compute_platform.context import TaskContext
    from compute_platform.hosts import Host


class Cmd(Action):
    kind = "cmd"

    commands: tuple[str, ...] = Field(min_length=1)
    """Commands run in order; the first that fails stops the task on that host. `cmd: ls` and `cmd: [a, b]`
    are short forms."""
    cd: str | None = None
    """Working directory on the host (`~` is the home there)."""
    env: dict[str, str] = Field(default_factory=dict)
    """Environment variables for these commands."""
    secret_env: tuple[str, ...] = ()
    """Variables taken from the environment of compute when it runs and passed to the commands
    without ever being written or printed (API keys, tokens: see Secrets in docs/tasks.md)."""

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

    @model_validator(mode="after")
    def _secret_names(self) -> Cmd:
        secret_env.check_names(self.secret_env, self.env)
        return self

    def plan(self, ctx: TaskContext, host: Host) -> list[str]:
        # how the secrets are read, never their values (the end marker is made anew for each run)
        receive = secret_env.receive("<end marker>") + "\n" if self.secret_env else ""
        return [host.script(receive + c, cwd=self.cd, env=self.env) for c in self.commands]

    def run(self, ctx: TaskContext, host: Host) -> Outcome:
        values = secret_env.read(self.secret_env, ctx.alias)
        for command in self.commands:
            stdin = None
            if values:  # the values travel on stdin, read first by the command's own shell
                end = secret_env.marker()
                command, stdin = f"{secret_env.receive(end)}\n{command}", secret_env.payload(values, end)
            host.run(
                command,
                cwd=self.cd,
                env=self.env,
                timeout=ctx.timeout,
                check=True,
                on_line=ctx.output(host),
                stdin=stdin,
            )
        return Outcome()
