#!/usr/bin/env python3
"""The original entry point: `python3 compute.py playbooks/x.yaml` is `compute run playbooks/x.yaml`.

It works from a clone of this repository (the package is in src/ next to it), and copied into a project
written for the original tool, in place of that tool's compute.py, once compute is installed."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

try:
    from compute_platform.entry import main
except ImportError:
    sys.exit(
        "compute.py: the compute_platform package is not installed: pip install it, or run this file from a clone"
    )

if __name__ == "__main__":
    main()
