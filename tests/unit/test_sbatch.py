"""The sbatch renderer against reference files.

The reference scripts live in tests/unit/golden/sbatch/. After an intended change of the renderer,
regenerate them with `COMPUTE_REGEN_GOLDEN=1 pytest tests/unit/test_sbatch.py` and review the diff.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from compute_platform.input.spec import ResolvedConfig
from compute_platform.scheduling.recovery import Checkpoint, Policy
from compute_platform.scheduling.sbatch import SbatchSpec, check_option, cpu_options, directive, render
from compute_platform.scheduling.sweep import expand
from tests.support.golden import check_golden

GOLDEN = Path(__file__).parent / "golden" / "sbatch"
BASIC = ResolvedConfig("default", cpus=1, time="00:10:00", partition="debug")

CASES: dict[str, SbatchSpec] = {
    "single": SbatchSpec(
        "train",
        "python train.py --seed=$seed",
        tuple(expand(["--epochs 3"], {}, [0])),
        BASIC,
        "/home/alice/compute/logs",
        comment="playbook sweep.yaml, task 'train'",
    ),
    "multinode": SbatchSpec(
        "mpi",
        "srun ./solver",
        tuple(expand([], {})),
        ResolvedConfig("big", cpus=80, time="1-00:00:00", partition="long", mem="64G"),
        "/scratch/alice/logs",
        cpus_per_node=32,
    ),
    "array": SbatchSpec(
        "sweep",
        "python train.py",
        tuple(expand(["--model small", "--model large"], {"lr": [0.1, 0.01], "fast": [True, False]}, [1, 2])),
        BASIC,
        "/home/alice/logs/",
        array=True,
        max_parallel=3,
        seed_flag="--random-seed",
    ),
    "gpu": SbatchSpec(
        "gpu-job",
        "python train.py",
        tuple(expand([], {}, [0])),
        ResolvedConfig("gpu", cpus=8, time="02:00:00", partition="gpu", gpu=2),
        "/home/alice/logs",
        seed_flag=None,
        init=("module load cuda/12.1", "source ~/venv/bin/activate"),
        env={"OMP_NUM_THREADS": "8"},
        cd="~/project",
    ),
    "mail": SbatchSpec(
        "mailed",
        "./run.sh",
        tuple(expand([], {})),
        ResolvedConfig("default", time="30", mail="END,FAIL", mail_user="alice@example.org"),
        "/home/alice/logs",
    ),
    "extras": SbatchSpec(
        "extras",
        "./run.sh",
        tuple(expand([], {})),
        ResolvedConfig("a100", cpus=4, extra={"qos": "normal", "constraint": "a100|h100", "account": "proj"}),
        "/home/alice/logs",
        options={
            "qos": "high",
            "exclusive": True,
            "requeue": False,
            "comment": "lr sweep #3",
            "mail_type": "ALL",
        },
    ),
    "layout": SbatchSpec(
        "ddp",
        "python train.py",
        tuple(expand([], {}, [0])),
        ResolvedConfig("ddp", nodes=2, tasks_per_node=4, cpus_per_task=8, gpu=4, mem="128G", time="08:00:00"),
        "/scratch/alice/logs",
        cpus_per_node=64,
    ),
    "srun": SbatchSpec(
        "ranks",
        "python train.py --seed=$seed",
        tuple(expand(["--lr 0.1"], {}, [0, 1])),
        ResolvedConfig("pairs", nodes=2, tasks_per_node=2, time="10"),
        "/scratch/alice/logs",
        launcher="srun",
    ),
    "torchrun": SbatchSpec(
        "ddp",
        "python -m trainer --data 'my data'",
        tuple(expand([], {"lr": [0.1, 0.01]})),
        ResolvedConfig("ddp", nodes=2, gpu=4, time="10"),
        "/scratch/alice/logs",
        array=True,
        launcher="torchrun",
    ),
    "retry": SbatchSpec(
        "train",
        "python train.py --seed=$seed",
        tuple(expand([], {"lr": [0.1, 0.01]}, [0])),
        ResolvedConfig("big", cpus=4, mem="8G", time="04:00:00"),
        "/scratch/alice/logs",
        array=True,
        policy=Policy(
            max=3,
            mem=2,
            checkpoint=Checkpoint(before=300, command="touch STOP"),
            fail_on_log=("NCCL timeout", "Traceback"),
        ),
    ),
    "ray": SbatchSpec(
        "rl",
        "python3 train.py --seed=$seed",
        tuple(expand([], {}, [0, 1])),
        ResolvedConfig("rl", nodes=3, cpus_per_task=4, mem="8G", time="60"),
        "/scratch/alice/logs",
        ray=True,
    ),
    "hetjob": SbatchSpec(
        "het",
        "python3 run.py",
        tuple(expand([], {}, [0])),
        ResolvedConfig("gpu", nodes=1, gpu=2, partition="gpu", time="30", mail="END", mail_user="a@b.org"),
        "/scratch/alice/logs",
        components=(
            ResolvedConfig(
                "cpu", nodes=2, cpus_per_task=8, mem="32G", time="30", extra={"constraint": "skylake"}
            ),
        ),
        ray=True,
    ),
    "quoting": SbatchSpec(
        "quoting",
        "printf '%s\\n'",
        tuple(expand([["it's", "a b", "$HOME", "x;y", '"q"']], {"msg": ["hello world"]}, ["0", "a b"])),
        BASIC,
        "/home/alice/my logs",
        env={"GREETING": "hi $USER; `id`"},
        cd="/data/with space",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_render_matches_reference(name: str) -> None:
    check_golden(GOLDEN / f"{name}.sbatch", render(CASES[name]))


@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_scripts_are_valid_bash(name: str) -> None:
    proc = subprocess.run(
        ["bash", "-n"], input=render(CASES[name]), capture_output=True, text=True, timeout=10
    )
    assert proc.returncode == 0, proc.stderr


ONE_PER_CORE = {"ntasks-per-core": 1, "threads-per-core": 1}


def cpus(per_node: int | None, **layout: int) -> dict[str, object]:
    return cpu_options(ResolvedConfig("c", **layout), per_node)


def test_cpus_are_one_task_each_on_one_node_as_the_original_asked() -> None:
    assert cpus(32, cpus=8) == {"nodes": 1, "ntasks": 8, **ONE_PER_CORE}
    assert cpus(None, cpus=8) == {"nodes": 1, "ntasks": 8, **ONE_PER_CORE}
    assert cpus(32) == {}


def test_cpus_beyond_a_node_take_every_cpu_of_enough_nodes() -> None:
    # the original: -N ceil(cpus / cpus_per_node), -n nodes * cpus_per_node beyond one node
    assert cpus(32, cpus=64) == {"nodes": 2, "ntasks": 64, **ONE_PER_CORE}
    assert cpus(32, cpus=65) == {"nodes": 3, "ntasks": 96, **ONE_PER_CORE}
    assert cpus(24, cpus=384) == {"nodes": 16, "ntasks": 384, **ONE_PER_CORE}


def test_cpus_per_task_is_one_task_with_many_cpus() -> None:
    assert cpus(32, cpus_per_task=8) == {"ntasks": 1, "cpus-per-task": 8}
    assert cpus(None, cpus_per_task=48) == {"ntasks": 1, "cpus-per-task": 48}


def test_nodes_and_tasks_per_node_are_written_as_given() -> None:
    layout = {"nodes": 4, "ntasks-per-node": 8, "cpus-per-task": 6}
    assert cpus(48, nodes=4, tasks_per_node=8, cpus_per_task=6) == layout
    assert cpus(None, nodes=3) == {"nodes": 3, "ntasks-per-node": 1, "cpus-per-task": None}
    assert cpus(None, tasks_per_node=2) == {"nodes": None, "ntasks-per-node": 2, "cpus-per-task": None}


def test_directive_quotes_what_sbatch_would_split() -> None:
    assert directive("comment", "a b") == '--comment="a b"'
    assert directive("comment", "x#y") == '--comment="x#y"'
    assert directive("exclusive", True) == "--exclusive"
    assert directive("qos", "high") == "--qos=high"


def test_options_sbatch_cannot_read_or_compute_owns_are_refused() -> None:
    assert check_option("output", "x") is not None
    assert check_option("--array", "1-3") is not None
    assert check_option("comment", 'say "hi"') is not None
    assert check_option("comment", "two\nlines") is not None
    assert check_option("bad name", "x") is not None
    assert check_option("qos", "high") is None


def test_a_plain_script_runs_exactly_one_job() -> None:
    spec = CASES["array"]
    with pytest.raises(ValueError):
        render(SbatchSpec(spec.job_name, spec.cmd, spec.jobs, spec.config, spec.save_path))
