#!/usr/bin/env python3
"""The original entry point: `python3 compute.py playbooks/x.yaml` is `compute run playbooks/x.yaml`."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))

from compute_platform.entry import main  # noqa: E402

if __name__ == "__main__":
    main()
