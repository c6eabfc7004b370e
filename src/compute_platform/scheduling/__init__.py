"""Schedulers. Per scheduler: a pure renderer of its job scripts (sbatch.py, the launcher half of
tmux.py) with reference-file tests, pure parsers of its answers, and one backend that talks to a host
(prepare, submit, states, cancel, resubmit: slurm.py's functions and SlurmBackend, tmux.py's
TmuxBackend; the protocol is backend.py). sweep.py expands a task's sweep into jobs and jobscript.py
writes the body both schedulers run; neither does I/O."""
