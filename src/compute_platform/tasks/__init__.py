"""Task types. REGISTRY is the one literal table of action keys -> their models."""

from __future__ import annotations

from compute_platform.tasks.base import Action, Outcome
from compute_platform.tasks.cmd import Cmd
from compute_platform.tasks.copy import Copy
from compute_platform.tasks.git import Git
from compute_platform.tasks.pip import Pip
from compute_platform.tasks.slurm import Slurm
from compute_platform.tasks.tmux import Tmux

REGISTRY: dict[str, type[Action]] = {
    "cmd": Cmd,
    "pip": Pip,
    "git": Git,
    "copy": Copy,
    "slurm": Slurm,
    "tmux": Tmux,
}

# Other spellings accepted for the same task type (the original tool's names).
ALIASES: dict[str, str] = {
    "srun": "slurm",
}

__all__ = ["ALIASES", "REGISTRY", "Action", "Outcome"]
