"""One test per rule of the original tool's semantics that compute keeps (see docs/migrating.md): how
its seeds, sweeps, args, configs, hosts and task entries turn into jobs. Pure: no host, no Slurm;
where a rendered script matters, bash runs it here."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from compute_platform import playbook
from compute_platform.errors import InputError, LedgerError
from compute_platform.hosts import shell
from compute_platform.input.inventory import load_configs, load_inventory
from compute_platform.input.spec import HostSpec, ResolvedConfig
from compute_platform.ledger import JobRecord, Ledger
from compute_platform.scheduling import tmux
from compute_platform.scheduling.jobscript import seed_loop
from compute_platform.scheduling.sbatch import SbatchSpec, render
from compute_platform.scheduling.sweep import brace_expand, expand, flag_words, parse_seeds
from tests.support.cli import compute

HOSTS = """\
pando:
  host: pando.example.org
  platform: slurm
  cpus_per_node: 24
  wandb: offline
  save_path: /scratch/me/slurm_logs
  gpu: True
ws:
  host: ws.example.org
  platform: linux
"""
CONFIGS = """\
default:
  cpus:
    pando: 24
  gpu: False
  time: 0-12:00:00
  mail: True
  mail-user: me@example.org
big:
  cpus: {pando: 30}
quiet:
  mail: False
threads:
  cpus_per_task: {pando: 8}
"""


def load(
    tmp_path: Path, tasks: str, hosts: str = HOSTS, configs: str = CONFIGS, head: str = ""
) -> playbook.Playbook:
    (tmp_path / "hosts.yaml").write_text(hosts)
    (tmp_path / "configs.yaml").write_text(configs)
    book = tmp_path / "book.yaml"
    book.write_text(
        "inventory:\n  hosts: hosts.yaml\n  configs: configs.yaml\n"
        + head
        + "tasks:\n"
        + textwrap.dedent(tasks)
    )
    return playbook.load(book)


def words(book: playbook.Playbook, task: int = 0) -> list[tuple[str, ...]]:
    return [job.words() for job in book.tasks[task].action.jobs()]  # type: ignore[attr-defined]


# -- seeds: the words bash made of `for seed in <seeds>` ---------------------------------------------


@pytest.mark.parametrize(
    ("written", "seeds"),
    [
        ("0 1 2", (0, 1, 2)),
        ("0, 1, 2", (0, 1, 2)),
        ("0,1,2", (0, 1, 2)),
        ("{0..3}", (0, 1, 2, 3)),
        ("{0..8..4}", (0, 4, 8)),
        ("{1..2} 7", (1, 2, 7)),
        ("s{a,b}", ("sa", "sb")),
        ("{a..c}", ("a", "b", "c")),
        ("{08..10}", ("08", "09", 10)),
        (2, (2,)),
        ([0, 5], (0, 5)),
    ],
)
def test_seeds_are_the_words_bash_made(written: object, seeds: tuple[object, ...]) -> None:
    assert parse_seeds(written) == seeds


@pytest.mark.parametrize("written", ["$(seq 0 2)", "`seq 3`", "0 *", "{0..100000}", "{0..99}{0..999}"])
def test_seeds_that_need_a_shell_or_are_too_many_are_refused(written: str) -> None:
    with pytest.raises(ValueError, match=r"is not a seed|more than 10000 seeds"):
        parse_seeds(written)


def test_brace_expansion_nests_and_leaves_lone_braces() -> None:
    assert brace_expand("{a,b{1..2}}x") == ["ax", "b1x", "b2x"]
    assert brace_expand("{5..3}") == ["5", "4", "3"]
    assert brace_expand("{x}") == ["{x}"] and brace_expand("a{") == ["a{"]


def test_each_seed_run_sets_seed_and_nothing_is_appended(tmp_path: Path) -> None:
    [job] = expand(["--env=a"], {}, [0, 1])
    script = "\n".join(seed_loop(job, 'printf "%s|" "$seed" "$SEED" "$@"; echo', None))
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == [
        'CMD printf "%s|" "$seed" "$SEED" "$@"; echo --env=a',
        "0|0|--env=a",
        "1|1|--env=a",
    ]


def test_seed_flag_appends_only_when_asked() -> None:
    [job] = expand([], {}, [3])
    assert job.command("run", 3) == "run"
    assert job.command("run", 3, "--seed") == "run --seed 3"


# -- sweeps: order, flags, values ----------------------------------------------------------------------


def test_args_vary_fastest_and_the_last_sweep_key_slowest() -> None:
    jobs = expand(["a", "b"], {"--x": [1, 2], "--y": [3, 4]})
    assert [j.words() for j in jobs] == [
        ("a", "--x=1", "--y=3"),
        ("b", "--x=1", "--y=3"),
        ("a", "--x=2", "--y=3"),
        ("b", "--x=2", "--y=3"),
        ("a", "--x=1", "--y=4"),
        ("b", "--x=1", "--y=4"),
        ("a", "--x=2", "--y=4"),
        ("b", "--x=2", "--y=4"),
    ]


def test_a_value_with_blanks_is_the_flag_then_its_words_each_literal() -> None:
    assert flag_words({"--preset": "pando procgen canonical"}) == (
        "--preset",
        "pando",
        "procgen",
        "canonical",
    )
    assert flag_words({"--net": "canonical --im"}) == ("--net", "canonical", "--im")
    assert flag_words({"--m": "'a b' $(id) ; *"}) == ("--m", "a b", "$(id)", ";", "*")
    assert flag_words({"--one": "word", "--on": True, "--off": False}) == ("--one=word", "--on")


def test_numbers_reach_the_command_as_written(tmp_path: Path) -> None:
    book = load(
        tmp_path,
        """\
        - name: s
          hosts: pando
          srun:
            cmd: run
            sweep:
              " --lr ": [1e-4, 0.10, 1_000]
            args: [[--wd, 0.50]]
            env: {ALPHA: 1e-3}
        """,
    )
    assert words(book) == [
        ("--wd", "0.50", "--lr=1e-4"),
        ("--wd", "0.50", "--lr=0.10"),
        ("--wd", "0.50", "--lr=1_000"),
    ]
    assert book.tasks[0].action.env == {"ALPHA": "1e-3"}  # type: ignore[attr-defined]


def test_unbalanced_quotes_in_a_sweep_value_are_a_load_error_with_its_line(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load(tmp_path, '- hosts: pando\n  srun:\n    cmd: run\n    sweep:\n      --x: ["it\'s here"]\n')
    assert "book.yaml:" in str(info.value) and "cannot split sweep value" in str(info.value)


def test_args_null_and_task_level_scatter_load_as_the_original_read_them(tmp_path: Path) -> None:
    hosts = HOSTS + "pando2:\n  host: p2.example.org\n  platform: slurm\n"
    book = load(
        tmp_path,
        """\
        - name: s
          hosts: [pando, pando2]
          scatter: yes
          ignore_errors: no
          srun: {cmd: run, args: null, sweep: {--x: [1, 2, 3]}}
        """,
        hosts=hosts,
    )
    action = book.tasks[0].action
    assert action.scatter and action.args == ()  # type: ignore[attr-defined]


def test_shell_code_in_cd_is_one_folder_name_and_check_warns(tmp_path: Path) -> None:
    book = load(tmp_path, "- hosts: ws\n  tmux: {cmd: run, cd: '$HOME/xp && source env/bin/activate'}\n")
    [note] = book.notes
    assert note.position.line == 6 and "is one folder name" in note.message
    assert not load(tmp_path, "- hosts: ws\n  tmux: {cmd: run, cd: ~/xp}\n").notes


def test_shell_syntax_in_args_is_literal_and_check_warns_with_the_line(tmp_path: Path) -> None:
    book = load(
        tmp_path, "- name: s\n  hosts: pando\n  srun:\n    cmd: run\n    args: ['--job=$SLURM_JOB_ID']\n"
    )
    assert words(book) == [("--job=$SLURM_JOB_ID",)]
    [note] = book.notes
    assert note.position.line == 9 and "reaches the program as written" in note.message


# -- task entries ------------------------------------------------------------------------------------


def test_several_actions_in_an_entry_of_the_later_form_run_as_written(tmp_path: Path) -> None:
    book = load(tmp_path, "- name: both\n  hosts: pando\n  git: {path: ~/code}\n  slurm: {cmd: run}\n")
    assert [(t.kind, t.name) for t in book.tasks] == [("git", "both"), ("slurm", "both")]
    assert not book.notes


def test_several_actions_in_one_entry_run_in_the_original_order(tmp_path: Path) -> None:
    book = load(
        tmp_path,
        """\
        - name: both
          hosts: pando
          git: {path: ~/code}
          srun: {cmd: run}
          pip: [numpy]
        """,
    )
    assert [(t.kind, t.name) for t in book.tasks] == [("pip", "both"), ("slurm", "both"), ("git", "both")]
    [note] = book.notes
    assert note.position.line == 5 and "run in the order pip, srun, git, not as written" in note.message


def test_ray_false_changes_nothing(tmp_path: Path) -> None:
    book = load(tmp_path, "- hosts: pando\n  srun: {cmd: run, ray: false, parallel: True}\n")
    assert "'parallel' has no effect" in book.notes[0].message


def test_ray_true_keeps_the_originals_layout_one_task_per_node_with_every_cpu(tmp_path: Path) -> None:
    """The original's ray scripts: --nodes=ceil(cpus / cpus_per_node) --ntasks=<nodes>
    --cpus-per-task=<cpus_per_node>, whatever `cpus` said beyond that."""
    (tmp_path / "configs.yaml").write_text(CONFIGS)
    inventory = load_inventory(None, tmp_path / "configs.yaml")
    spec = SbatchSpec(
        "j",
        "run",
        tuple(expand([], {})),
        inventory.config("big", "pando"),
        "/logs",
        cpus_per_node=24,
        ray=True,
    )
    lines = [line for line in render(spec).splitlines() if line.startswith("#SBATCH")]
    assert {"#SBATCH --nodes=2", "#SBATCH --ntasks=2", "#SBATCH --cpus-per-task=24"} <= set(lines)
    assert not any("ntasks-per-core" in line for line in lines)


def test_heterogeneous_true_is_the_configs_cpu_nodes_then_one_gpu_node(tmp_path: Path) -> None:
    """The original's hetjob: one node with the config's GPUs, time and partition, and the CPU nodes
    (the config's cpus, without its GPUs), the GPU node first; each point one hetjob, never an array."""
    configs = CONFIGS + "hetero: {cpus: {pando: 48}, gpu: 2, partition: {pando: main}}\n"
    book = load(
        tmp_path,
        "- hosts: pando\n  srun: {cmd: run, ray: true, heterogeneous: true, config: hetero}\n",
        configs=configs,
    )
    action = book.tasks[0].action
    gpu, cpu = action.configs(book.inventory, "pando")
    assert (cpu.cpus, cpu.gpu, cpu.partition) == (48, 0, "main")
    assert (gpu.nodes, gpu.gpu, gpu.partition, gpu.time) == (1, 2, "main", cpu.time)
    assert action.arrays is False and action.config_label == "hetero"
    plain = load(tmp_path, "- hosts: pando\n  srun: {cmd: run, heterogeneous: true}\n")  # no GPU: a plain job
    assert len(plain.tasks[0].action.configs(plain.inventory, "pando")) == 1


@pytest.mark.parametrize(
    ("task", "configs", "message"),
    [
        ("{cmd: run, ray: true, launcher: srun}", CONFIGS, "launcher: srun would start it on every task"),
        (
            "{cmd: run, ray: true, config: c}",
            CONFIGS + "c: {nodes: 2, tasks_per_node: 2}\n",
            "ray: true runs one per node",
        ),
        ("{cmd: run, components: [default]}", CONFIGS, "two components or more"),
        ("{cmd: run, components: [default, big], config: big}", CONFIGS, "give components .* or config"),
        ("{cmd: run, heterogeneous: true, array: true}", CONFIGS, "Slurm has no arrays of them"),
        ("{cmd: run, components: [default, nope]}", CONFIGS, "unknown config 'nope'"),
    ],
)
def test_what_a_ray_job_cannot_be_is_refused_at_load_time(
    tmp_path: Path, task: str, configs: str, message: str
) -> None:
    with pytest.raises(InputError, match=message):
        load(tmp_path, f"- hosts: pando\n  srun: {task}\n", configs=configs)


def test_variables_are_replaced_in_the_inventory_and_inside_strings(tmp_path: Path) -> None:
    head = 'variables:\n  "£hosts": [pando]\n  "£common": "--a=1 --b=2"\n  "£lr": 1e-4\n'
    (tmp_path / "hosts.yaml").write_text(HOSTS)
    (tmp_path / "configs.yaml").write_text(CONFIGS)
    book = tmp_path / "book.yaml"
    book.write_text(
        head
        + "inventory:\n  hosts: £hostsfile\n  configs: configs.yaml\n".replace("£hostsfile", "hosts.yaml")
        + "tasks:\n  - hosts: £hosts\n    srun: {cmd: 'run £common --lr=£lr'}\n"
    )
    loaded = playbook.load(book)
    assert loaded.tasks[0].hosts == ("pando",)
    assert loaded.tasks[0].action.cmd == "run --a=1 --b=2 --lr=1e-4"  # type: ignore[attr-defined]
    book.write_text(
        head.replace("[pando]", '"hosts.yaml"')
        + "inventory: {hosts: £hosts}\ntasks:\n  - hosts: ws\n    cmd: ls\n"
    )
    assert playbook.load(book).inventory.hosts_file == tmp_path / "hosts.yaml"


def test_playbook_key_is_opened_from_the_current_directory_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "sub.yaml").write_text("tasks:\n  - hosts: ws\n    cmd: echo sub\n")
    (tmp_path / "hosts.yaml").write_text(HOSTS)
    main = tmp_path / "playbooks" / "main.yaml"
    main.write_text("inventory: {hosts: hosts.yaml}\ntasks:\n  - playbook: playbooks/sub.yaml\n")
    monkeypatch.chdir(tmp_path)
    book = playbook.load(main)
    assert [t.action.commands for t in book.tasks] == [("echo sub",)]  # type: ignore[attr-defined]
    assert "from the current directory" in book.notes[0].message


# -- configs: CPUs and mail -------------------------------------------------------------------------


def directives(config: ResolvedConfig, cpus_per_node: int | None = 24) -> list[str]:
    spec = SbatchSpec("j", "run", tuple(expand([], {})), config, "/logs", cpus_per_node=cpus_per_node)
    return [line for line in render(spec).splitlines() if line.startswith("#SBATCH")]


def test_cpus_render_the_original_layout_and_cpus_per_task_one_task(tmp_path: Path) -> None:
    inventory = load_inventory(None, None)
    (tmp_path / "configs.yaml").write_text(CONFIGS)
    inventory = load_inventory(None, tmp_path / "configs.yaml")
    one_node = directives(inventory.config("default", "pando"))
    assert "#SBATCH --nodes=1" in one_node and "#SBATCH --ntasks=24" in one_node
    assert "#SBATCH --ntasks-per-core=1" in one_node and "#SBATCH --threads-per-core=1" in one_node
    two_nodes = directives(inventory.config("big", "pando"))
    assert "#SBATCH --nodes=2" in two_nodes and "#SBATCH --ntasks=48" in two_nodes  # as the original asked
    threads = directives(inventory.config("threads", "pando"))
    assert "#SBATCH --ntasks=1" in threads and "#SBATCH --cpus-per-task=8" in threads
    assert not any("nodes" in line for line in threads)


def test_mail_true_is_all_false_is_no_mail_at_all(tmp_path: Path) -> None:
    (tmp_path / "configs.yaml").write_text(CONFIGS)
    inventory = load_inventory(None, tmp_path / "configs.yaml")
    loud = directives(inventory.config("default", "pando"))
    assert "#SBATCH --mail-type=ALL" in loud and "#SBATCH --mail-user=me@example.org" in loud
    assert not any("mail" in line for line in directives(inventory.config("quiet", "pando")))


@pytest.mark.parametrize("bad", ["yes please", "END,SOMETIMES"])
def test_a_mail_type_sbatch_does_not_know_is_a_load_error(tmp_path: Path, bad: str) -> None:
    (tmp_path / "configs.yaml").write_text(f"default:\n  mail: {bad}\n")
    with pytest.raises(
        InputError, match=r"configs.yaml:\d+.*mail: expected true, false or sbatch mail types"
    ):
        load_configs(tmp_path / "configs.yaml")


def test_one_task_larger_than_a_node_is_refused_before_anything_connects(tmp_path: Path) -> None:
    configs = CONFIGS + "huge:\n  cpus_per_task: 32\n"
    with pytest.raises(InputError, match="a task cannot span nodes"):
        load(tmp_path, "- hosts: pando\n  srun: {cmd: run, config: huge}\n", configs=configs)


LAYOUTS = """\
default:
  cpus: {pando: 24}
  gpu: 1
ddp:
  nodes: 2
  tasks_per_node: {pando: 4, default: 2}
  cpus_per_task: 6
  gpus_per_node: 2
  mem: 64G
"""


def test_an_explicit_layout_comes_whole_from_its_config(tmp_path: Path) -> None:
    """The default config's `cpus` (the original's layout) does not mix into a config that gives
    nodes and tasks; `gpus_per_node` is `gpu`."""
    (tmp_path / "configs.yaml").write_text(LAYOUTS)
    inventory = load_inventory(None, tmp_path / "configs.yaml")
    ddp = inventory.config("ddp", "pando")
    assert (ddp.cpus, ddp.nodes, ddp.tasks_per_node, ddp.cpus_per_task, ddp.gpu) == (None, 2, 4, 6, 2)
    assert inventory.config("ddp", "other").tasks_per_node == 2
    lines = directives(ddp)
    for expected in ("--nodes=2", "--ntasks-per-node=4", "--cpus-per-task=6", "--gres=gpu:2", "--mem=64G"):
        assert f"#SBATCH {expected}" in lines
    assert not any("--ntasks=" in line for line in lines)
    assert inventory.config("default", "pando").gpu == 1


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ("cpus: 4\n  nodes: 2", "give 'cpus' .* or nodes, not both"),
        ("gpu: 1\n  gpus_per_node: 2", "give 'gpu' or 'gpus_per_node'"),
        ("nodes: 0", "expected a whole number >= 1"),
        ("tasks_per_node: two", "expected a whole number >= 1"),
    ],
)
def test_a_layout_that_cannot_be_is_a_load_error(tmp_path: Path, config: str, message: str) -> None:
    (tmp_path / "configs.yaml").write_text(f"default:\n  time: 10\nbad:\n  {config}\n")
    with pytest.raises(InputError, match=rf"configs.yaml:\d+.*{message}"):
        load_configs(tmp_path / "configs.yaml")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            "tasks_per_node: 4\n  cpus_per_task: 8",
            "4 tasks of 8 CPU.s. on each node, 32 CPUs, on host 'pando', whose nodes have 24",
        ),
        ("nodes: 2\n  cpus_per_task: 25", "tasks of 25 CPUs on host 'pando'.*a task cannot span nodes"),
        ("nodes: 2\n  gpus_per_node: 9", None),
    ],
)
def test_a_layout_no_node_of_the_host_holds_is_refused_before_anything_connects(
    tmp_path: Path, config: str, message: str | None
) -> None:
    hosts = HOSTS.replace("  gpu: True", "  gpu: 4") if message is None else HOSTS
    with pytest.raises(InputError, match=message or "9 GPU.s. per node on host 'pando', which has 4 GPU"):
        load(
            tmp_path,
            "- hosts: pando\n  srun: {cmd: run, config: c}\n",
            hosts=hosts,
            configs=CONFIGS + f"c:\n  {config}\n",
        )


def test_yaml_1_1_booleans_of_the_original_still_mean_booleans_in_settings(tmp_path: Path) -> None:
    (tmp_path / "configs.yaml").write_text("default:\n  mail: yes\n  gpu: no\nloud:\n  mail: {pando: On}\n")
    inventory = load_inventory(None, tmp_path / "configs.yaml")
    assert (
        inventory.config("default", "pando").mail == "ALL" and inventory.config("default", "pando").gpu == 0
    )
    assert inventory.config("loud", "pando").mail == "ALL"
    from compute_platform.input.models import HostEntry

    assert HostEntry.model_validate({"gpu": "yes"}).gpu is True


def test_cpus_and_cpus_per_task_in_one_config_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "configs.yaml").write_text("default:\n  cpus: 2\n  cpus_per_task: 4\n")
    with pytest.raises(InputError, match="not both"):
        load_configs(tmp_path / "configs.yaml")


# -- hosts: init blocks, W&B ------------------------------------------------------------------------


def test_an_init_block_runs_as_written_and_a_failing_command_stops_the_job(tmp_path: Path) -> None:
    block = 'if true; then\n  export A=1 \\\n    B=2\nfi\nfalse\necho "after false"'
    script = "\n".join([*shell.prelude((block,)), "echo ran $A $B"])
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert proc.returncode == shell.PRELUDE_FAILED
    assert "after false" not in proc.stdout and "ran" not in proc.stdout  # stopped at the failure
    assert proc.stderr.strip() == "compute: init failed: false"
    good = "\n".join([*shell.prelude((block.replace("false\n", ""),)), "echo ran $A $B"])
    assert subprocess.run(["bash", "-c", good], capture_output=True, text=True).stdout.endswith("ran 1 2\n")


def test_an_init_block_that_is_not_bash_is_a_load_error_at_its_line(tmp_path: Path) -> None:
    hosts = (
        "ws:\n  host: ws.example.org\n  init: |\n    module load x\n    if [ -d ~/env ]; then\n      done\n"
    )
    with pytest.raises(InputError) as info:
        load(tmp_path, "- hosts: ws\n  cmd: ls\n", hosts=hosts)
    assert "hosts.yaml:6" in str(info.value) and "not valid bash" in str(info.value)


def test_wandb_mode_and_folder_reach_slurm_and_tmux_jobs(tmp_path: Path) -> None:
    host = HostSpec(alias="pando", save_path="/scratch/me/slurm_logs", wandb="offline")
    assert host.wandb_dir == "/scratch/me/wandb_files"
    spec = SbatchSpec(
        "j",
        'echo "$WANDB_MODE $WANDB_DIR"',
        tuple(expand([], {})),
        ResolvedConfig("d"),
        str(tmp_path),
        wandb="offline",
        wandb_dir=str(tmp_path / "wandb_files"),
    )
    proc = subprocess.run(
        ["bash", "-c", render(spec)], capture_output=True, text=True, env={**os.environ, "SLURM_JOB_ID": "1"}
    )
    assert proc.stdout.splitlines()[-1] == f"offline {tmp_path / 'wandb_files'}"
    assert (tmp_path / "wandb_files").is_dir()
    launcher = tmux.render_launcher(
        tmux.LauncherSpec("t", "run", tuple(expand([], {})), wandb="online", wandb_dir="~/slurm_logs")
    )
    assert "export WANDB_MODE=online" in launcher and 'export WANDB_DIR="$HOME"/slurm_logs' in launcher


# -- the ledger keeps reading files an older version started -------------------------------------------


def test_a_file_started_by_an_older_version_keeps_its_columns(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    old = JobRecord.columns()[: JobRecord.columns().index("wandb")]  # a version 1 file
    (tmp_path / "job.csv").write_text(",".join(old) + "\n")
    ledger.append([JobRecord("t", "p", "x", "h", "slurm", "1", "j", wandb="offline")])
    [record] = ledger.records()
    assert (record.job_id, record.wandb, record.version) == ("1", "", "1")  # that file's columns, version
    with (tmp_path / "job.csv").open(newline="") as f:
        assert {len(row) for row in csv.reader(f)} == {len(old)}  # every csv reader (pandas too) reads it
    fresh = Ledger(tmp_path / "new")
    fresh.append([JobRecord("t", "p", "x", "h", "slurm", "1", "j", wandb="offline")])
    assert fresh.records()[0].wandb == "offline"


def test_a_failed_append_leaves_no_torn_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ledger = Ledger(tmp_path)
    ledger.append([JobRecord("t", "p", "x", "h", "slurm", "1", "j")])
    before = (tmp_path / "job.csv").read_bytes()
    real_write = os.write

    def half(fd: int, data: bytes) -> int:
        return real_write(fd, data[: len(data) // 2])  # a full disk: part of the data goes in

    monkeypatch.setattr(os, "write", half)
    with pytest.raises(LedgerError):
        ledger.append([JobRecord("t", "p", "x", "h", "slurm", "2", "j")])
    monkeypatch.undo()
    assert (tmp_path / "job.csv").read_bytes() == before
    ledger.append([JobRecord("t", "p", "x", "h", "slurm", "3", "j")])
    assert [r.job_id for r in ledger.records()] == ["1", "3"]


# -- the command line ---------------------------------------------------------------------------------


def test_verbose_never_changes_the_exit_code_of_a_bad_input(tmp_path: Path) -> None:
    (tmp_path / "book.yaml").write_text("tasks: [\n")
    for args in (["check", "book.yaml"], ["check", "-v", "book.yaml"]):
        proc = compute(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == 1 and "book.yaml:" in proc.stderr


def test_compute_py_copied_into_an_original_project_runs_its_playbooks(tmp_path: Path) -> None:
    shutil.copy(Path(__file__).parents[2] / "compute.py", tmp_path / "compute.py")
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "hosts.yaml").write_text(HOSTS)
    (tmp_path / "configs.yaml").write_text(CONFIGS)
    (tmp_path / "playbooks" / "x.yaml").write_text(
        "inventory:\n  hosts: hosts.yaml\n  configs: configs.yaml\ntasks:\n"
        "  - name: train\n    hosts:\n      - pando\n    srun:\n      cmd: python run.py --seed=$seed\n"
        "      seeds: 0 1\n"
    )
    proc = subprocess.run(
        [sys.executable, "compute.py", "playbooks/x.yaml", "--dry-run"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "seed=1; export SEED" in proc.stdout and not (tmp_path / "archive").exists()
