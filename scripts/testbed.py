#!/usr/bin/env python3
"""`scripts/testbed up|down|env|status`: the command line of the local test bed (sshd hosts and a
single-node Slurm). The code is the package module tests/support/testbed.py, which the tests and the
benchmarks import."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.testbed import main

if __name__ == "__main__":
    sys.exit(main())
