"""Loading and validation of playbooks, hosts.yaml and configs.yaml: every bad input is one clean
error naming the file and line, with exit code 2 — and no connection is ever opened to find out."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from compute_platform import playbook
from compute_platform.errors import InputError
from compute_platform.input.inventory import load_configs, load_hosts, load_inventory
from tests.support.cli import compute

HOSTS = """\
localhost: {}
pando:
  host: pando.example.org
  user: me
  platform: slurm
  cpus_per_node: 24
  gpu: false
calmip:
  host: calmip.example.org
  platform: slurm
  gpu: 2
"""

CONFIGS = """\
default:
  cpus: 1
  time: "01:00:00"
  partition: {default: debug, calmip: small}
big:
  cpus: {pando: 24, calmip: 36}
  mem: 64G
  mail-user: me@example.org
  qos: high
"""


def project(tmp_path: Path, book: str, hosts: str = HOSTS, configs: str = CONFIGS) -> Path:
    (tmp_path / "hosts.yaml").write_text(hosts)
    (tmp_path / "configs.yaml").write_text(configs)
    path = tmp_path / "book.yaml"
    path.write_text(textwrap.dedent(book))
    return path


def error(tmp_path: Path, book: str, **files: str) -> InputError:
    with pytest.raises(InputError) as info:
        playbook.load(project(tmp_path, book, **files))
    return info.value


HEAD = "inventory: {hosts: hosts.yaml, configs: configs.yaml}\n"


def test_valid_playbook_loads_with_every_host_form(tmp_path: Path) -> None:
    book = playbook.load(
        project(
            tmp_path,
            HEAD
            + """\
variables:
  group: [pando, calmip]
  "£msg": hello
  who: world
tasks:
  - name: one host
    hosts: localhost
    cmd: echo £msg {{ who }}
  - name: a list from a variable
    hosts: "{{ group }}"
    cmd: [hostname, "echo {{who}}"]
  - name: the original form of variables
    hosts: localhost
    cmd: {commands: [ls], cd: /tmp}
""",
        )
    )
    assert [t.hosts for t in book.tasks] == [("localhost",), ("pando", "calmip"), ("localhost",)]
    assert book.tasks[0].action.commands == ("echo hello world",)  # type: ignore[attr-defined]
    assert book.tasks[1].action.commands == ("hostname", "echo world")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("book", "line", "words"),
    [
        ("tasks: [\n", 2, ["YAML syntax error"]),
        (
            HEAD + "tasks:\n  - name: x\n    hosts: localhost\n    srun: ls\n    slurm: ls\n",
            3,
            ["'srun' and 'slurm' are the same action"],
        ),
        (HEAD + "tasks:\n  - name: x\n    hosts: localhost\n", 3, ["expected an action", "none"]),
        (
            HEAD + "tasks:\n  - name: x\n    hosts: localhost\n    tmx: {cmd: a}\n",
            5,
            ["'tmx'", "did you mean 'tmux'"],
        ),
        (
            HEAD + "tasks:\n  - name: x\n    hosts: [localhost, pandoo]\n    cmd: ls\n",
            4,
            ["unknown host 'pandoo'", "did you mean 'pando'"],
        ),
        (HEAD + "tasks:\n  - name: x\n    cmd: ls\n", 3, ["missing 'hosts'"]),
        (
            HEAD + "tasks:\n  - name: x\n    hosts: localhost\n    cmd: 'echo {{ nope }}'\n",
            5,
            ["unknown variable", "nope"],
        ),
        (
            "inventory: {hosts: missing.yaml}\ntasks: [{name: x, hosts: localhost, cmd: ls}]\n",
            1,
            ["hosts file not found", "missing.yaml"],
        ),
        (
            HEAD + "tasks:\n  - name: x\n    hosts: localhost\n    cmd: {commands: [ls], cdd: /tmp}\n",
            5,
            ["unknown key 'cdd'", "did you mean 'cd'"],
        ),
        (HEAD + "taks: []\n", 2, ["unknown top-level key 'taks'", "did you mean 'tasks'"]),
        (
            HEAD + "tasks:\n  - name: x\n    hosts: localhost\n    timeout: soon\n    cmd: ls\n",
            5,
            ["timeout"],
        ),
    ],
)
def test_bad_playbooks_name_file_and_line(tmp_path: Path, book: str, line: int, words: list[str]) -> None:
    e = error(tmp_path, book)
    assert e.position is not None and e.position.file.endswith("book.yaml")
    assert e.position.line == line, str(e)
    for word in words:
        assert word in str(e)


def test_empty_playbook(tmp_path: Path) -> None:
    assert "empty" in str(error(tmp_path, ""))


def test_hosts_file_that_is_a_list(tmp_path: Path) -> None:
    e = error(tmp_path, HEAD + "tasks: [{name: x, hosts: localhost, cmd: ls}]\n", hosts="- a\n- b\n")
    assert e.position is not None and e.position.file.endswith("hosts.yaml")
    assert "mapping of host aliases" in str(e)


@pytest.mark.parametrize(
    ("hosts", "line", "words"),
    [
        ("a:\n  host: x\n  port: abc\n", 3, ["'port'", "integer", "'abc'"]),
        ("a:\n  host: x\n  usr: me\n", 3, ["unknown key 'usr'", "did you mean 'user'"]),
        ("a:\n  platform: pbs\n", 2, ["'platform'", "'linux' or 'slurm'"]),
        ("a:\n  env: {1BAD: x}\n", 2, ["not a valid environment variable name"]),
    ],
)
def test_bad_hosts(tmp_path: Path, hosts: str, line: int, words: list[str]) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(hosts)
    with pytest.raises(InputError) as info:
        load_hosts(path)
    assert info.value.position is not None and info.value.position.line == line, str(info.value)
    for word in words:
        assert word in str(info.value)


def test_bad_config_value(tmp_path: Path) -> None:
    path = tmp_path / "configs.yaml"
    path.write_text("default:\n  cpus: 2\ngpu:\n  cpus: many\n")
    with pytest.raises(InputError) as info:
        load_configs(path)
    assert info.value.position is not None and info.value.position.line == 4
    assert "cpus" in str(info.value) and "many" in str(info.value)


def test_config_resolution_per_host_and_defaults(tmp_path: Path) -> None:
    (tmp_path / "hosts.yaml").write_text(HOSTS)
    (tmp_path / "configs.yaml").write_text(CONFIGS)
    inv = load_inventory(tmp_path / "hosts.yaml", tmp_path / "configs.yaml")
    big_pando = inv.config("big", "pando")
    assert (big_pando.cpus, big_pando.partition, big_pando.time, big_pando.mem) == (
        24,
        "debug",
        "01:00:00",
        "64G",
    )
    assert big_pando.mail_user == "me@example.org" and big_pando.extra == {"qos": "high"}
    big_calmip = inv.config("big", "calmip")
    assert (big_calmip.cpus, big_calmip.partition) == (36, "small")
    default_local = inv.config("default", "localhost")
    assert (default_local.cpus, default_local.partition) == (1, "debug")
    # resolution never mutates the shared data
    assert inv.config("big", "pando") == big_pando
    with pytest.raises(InputError, match=r"unknown config 'bigg'.*did you mean 'big'"):
        inv.config("bigg", "pando")


def test_ssh_config_alias_is_a_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host jeanzay\n  HostName jz.example.org\n  User me\nHost *.internal\n  User x\n")
    monkeypatch.setenv("COMPUTE_SSH_CONFIG", str(config))
    inv = load_inventory(None, None)
    assert inv.host("jeanzay").alias == "jeanzay"
    with pytest.raises(InputError, match="unknown host"):
        inv.host("x.internal")


def test_localhost_runs_locally() -> None:
    from compute_platform.input.spec import HostSpec

    assert HostSpec(alias="localhost").is_local
    assert HostSpec(alias="box", host="localhost").is_local
    assert not HostSpec(alias="localhost", port=2222).is_local
    assert not HostSpec(alias="box", host="127.0.0.1").is_local


def test_cli_bad_input_is_exit_2_without_traceback(tmp_path: Path) -> None:
    path = project(tmp_path, HEAD + "tasks:\n  - name: x\n    hosts: localhost\n    tmx: {cmd: a}\n")
    for argv in (["check", str(path)], ["run", str(path)], [str(path)]):
        proc = compute(*argv, timeout=60)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert f"{path}:5:5" in proc.stderr and "did you mean 'tmux'" in proc.stderr
