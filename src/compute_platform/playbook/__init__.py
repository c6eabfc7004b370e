"""Playbooks: a playbook file -> validated, frozen Tasks (loader.py), and the documents of the three
YAML formats read from the same models (`compute schema`: schema.py; docs/reference.md: reference.py).
This layer sits above tasks/: the loader looks each action key up in the task registry."""

from compute_platform.playbook.loader import Note, Playbook, load

__all__ = ["Note", "Playbook", "load"]
