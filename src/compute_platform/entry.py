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
    # Start-up (imports, validation models) makes ~10^5 objects that live until exit: the cyclic
    # garbage collector scans them again and again for nothing (~25 ms), and once more at exit
    # (~40 ms). It starts after the first second, with what exists then left out of its scans.
    import threading

    gc.disable()
    timer = threading.Timer(1.0, _collect_from_now_on)
    timer.daemon = True
    timer.start()
    from compute_platform.cli.main import main as cli_main

    try:
        cli_main(args)
    finally:
        gc.freeze()


def _collect_from_now_on() -> None:
    gc.freeze()
    gc.enable()
