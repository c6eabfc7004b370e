"""How a Slurm job's command is started over its allocation (the task's `launcher`). Pure renderers:
the lines that set the rendezvous before the job, and each seed's command line.

- `none`: the command runs once, in the batch step, on the first node (what the original did).
- `srun`: the command runs as every task of the allocation (`srun`), each with the variables that
  `torch.distributed` (`init_method="env://"`) and MPI-style programs read, from Slurm's own:
  RANK, LOCAL_RANK, WORLD_SIZE, NODE_RANK, and MASTER_ADDR, MASTER_PORT.
- `torchrun`: one `torchrun` per node (`srun` with one task per node), `--nproc-per-node`
  processes each, meeting through c10d's rendezvous on the first node.

MASTER_ADDR is the job's first node; MASTER_PORT is chosen per job, from its id, in 20000-29999
(below Linux's ephemeral ports): two jobs that share a first node do not meet unless their ids are
10,000 apart. A MASTER_PORT the task's `env` sets is kept.
"""

from __future__ import annotations

import functools

from compute_platform.hosts import shell
from compute_platform.scheduling import script

LAUNCHERS = ("none", "srun", "torchrun")
PORT_BASE, PORT_SPAN = 20000, 10000

RENDEZVOUS = [
    'compute_nodes=$(scontrol show hostnames "$SLURM_JOB_NODELIST")',
    "export MASTER_ADDR=\"${compute_nodes%%$'\\n'*}\"",
    f'export MASTER_PORT="${{MASTER_PORT:-$(( {PORT_BASE} + SLURM_JOB_ID % {PORT_SPAN} ))}}"',
]

# In each task: what torch.distributed's env:// and MPI-style programs read, from Slurm's variables;
# `seed`, which commands read (the batch script sets it, unexported), from the exported SEED.
_RANKS = (
    'export RANK="$SLURM_PROCID" LOCAL_RANK="$SLURM_LOCALID" WORLD_SIZE="$SLURM_NTASKS" '
    'NODE_RANK="$SLURM_NODEID"; seed="${SEED-}"'
)


def prelude(launcher: str) -> list[str]:
    """Lines before the job: the rendezvous address and port, for the launchers that need them."""
    return [] if launcher == "none" else list(RENDEZVOUS)


def command(launcher: str, line: str, procs_per_node: int = 1) -> str:
    """One seed's command line started by `launcher` (`line` is shell code, as the user wrote it)."""
    if launcher == "none":
        return line
    if launcher == "srun":
        # srun before 23.11 does not take the allocation's --cpus-per-task for its tasks: said again
        cpus = '--cpus-per-task="${SLURM_CPUS_PER_TASK:-1}"'
        return f"srun --kill-on-bad-exit=1 {cpus} bash -c {shell.quote(_RANKS + chr(10) + line)}"
    if launcher == "torchrun":
        inner = shell.quote('seed="${SEED-}"\n' + line)
        return (
            'srun --kill-on-bad-exit=1 --nodes="$SLURM_NNODES" --ntasks="$SLURM_NNODES" --ntasks-per-node=1 '
            '--cpus-per-task="$SLURM_CPUS_ON_NODE" '
            f'torchrun --nnodes="$SLURM_NNODES" --nproc-per-node={procs_per_node} '
            '--rdzv-id="$SLURM_JOB_ID" --rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" '
            f"--no-python bash -c {inner}"
        )
    raise ValueError(f"unknown launcher {launcher!r}")


@functools.cache
def ray_cluster() -> str:
    """The Ray cluster's shell functions (scripts/ray-cluster.sh), for `ray: true` jobs of both
    schedulers: over a Slurm job's nodes (`compute_ray_up`), or one head for a tmux job
    (`compute_ray_local`)."""
    return script("ray-cluster.sh")
