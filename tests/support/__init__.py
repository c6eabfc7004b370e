"""What the tests share, each in one place (plain functions and classes, no fixtures: those are in
tests/conftest.py).

* `testbed`: the local sshd + Slurm test bed (`scripts/testbed` is its command line).
"""
