"""Process entry point. Kept tiny: `--version` answers before any heavy import."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args in (["--version"], ["-V"]):
        from compute_platform import __version__

        print(f"compute {__version__}")
        return
    # The original tool's form: `compute.py playbooks/x.yaml` means `run playbooks/x.yaml`.
    if args and args[0].endswith((".yaml", ".yml")):
        args = ["run", *args]
    from compute_platform.cli import main as cli_main

    cli_main(args)
