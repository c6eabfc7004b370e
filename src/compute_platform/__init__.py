"""compute: run experiments described in YAML playbooks on localhost, SSH workstations and Slurm clusters."""

__version__ = "0.1.0"
