"""Process entry point. Kept tiny: `--version` answers before any heavy import."""

from __future__ import annotations

import gc
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
    # Start-up (imports, validation models) makes ~10^5 objects that live until exit, so the
    # default collection pace (every 700 allocations) re-scans them over and over, and the
    # interpreter's last collections at exit walk them all again (~40 ms, measured). Collect young
    # objects less often, and leave what exists at exit to the process's end.
    gc.set_threshold(50_000, 10, 10)
    from compute_platform.cli import main as cli_main

    try:
        cli_main(args)
    finally:
        gc.freeze()
