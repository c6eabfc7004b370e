"""What the tests share, each in one place (plain functions and classes, no fixtures: those are in
tests/conftest.py).

* `golden`: checking text against a stored reference file (`COMPUTE_REGEN_GOLDEN=1` rewrites it).
* `cli`: the `compute` command line as a user runs it, in a subprocess.
* `waiting`: waiting for a condition with a deadline.
* `project`: a project folder for a test (hosts.yaml, configs.yaml, playbooks), free ports.
* `trees`: a sample file tree for the copy tests, and a listing to compare trees.
* `testbed`: the local sshd + Slurm test bed (`scripts/testbed` is its command line).
* `cluster`: the test bed's multi-node mode (`scripts/testbed up --nodes 3`): slurmd in network
  namespaces, slurmdbd + MariaDB.
* `latency`: TCP relays that hold every chunk a fixed delay each way (a far network in user space).
* `browser`: headless Chromium driven over the DevTools protocol (open, click, wait, screenshot).
* `wan`: far hosts for the benchmark: sshd in network namespaces behind those relays, some of
  them behind a jump host.
"""
