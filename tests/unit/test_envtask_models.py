"""pip, git and copy tasks: their YAML forms, the checks made before any connection, and git's
error classification (retry only when the remote cannot be reached)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from compute_platform import playbook
from compute_platform.errors import InputError
from compute_platform.tasks.git import diagnose, repo_name

HOSTS = "localhost: {}\nbox: {host: box.example.org}\n"


def load(tmp_path: Path, tasks: str) -> playbook.Playbook:
    (tmp_path / "hosts.yaml").write_text(HOSTS)
    book = tmp_path / "book.yaml"
    book.write_text(
        "inventory: {hosts: hosts.yaml}\ntasks:\n" + textwrap.indent(textwrap.dedent(tasks), "  ")
    )
    return playbook.load(book)


def error(tmp_path: Path, tasks: str) -> str:
    with pytest.raises(InputError) as info:
        load(tmp_path, tasks)
    return str(info.value)


# -- pip ---------------------------------------------------------------------------------------


def test_pip_list_form_installs_those_packages(tmp_path: Path) -> None:
    book = load(tmp_path, "- {hosts: box, pip: [numpy, 'pandas>=2']}\n- {hosts: box, pip: torch}\n")
    first, second = (t.action for t in book.tasks)
    assert first.action == "install" and first.packages == ("numpy", "pandas>=2")  # type: ignore[attr-defined]
    assert second.packages == ("torch",)  # type: ignore[attr-defined]
    assert first.words() == ["numpy", "'pandas>=2'"]  # type: ignore[attr-defined]


def test_pip_mapping_form_and_its_checks(tmp_path: Path) -> None:
    (tmp_path / "req.txt").write_text("numpy\n")
    book = load(
        tmp_path,
        f"- hosts: box\n  pip: {{requirements: {tmp_path}/req.txt, upgrade: true, extra_args: '--pre -q'}}\n",
    )
    action = book.tasks[0].action
    assert action.words() == ["--upgrade", "--pre", "-q"]  # type: ignore[attr-defined]
    assert "nothing to install" in error(tmp_path, "- {hosts: box, pip: {upgrade: true}}\n")
    assert "only apply to action: install" in error(
        tmp_path, "- {hosts: box, pip: {action: uninstall, packages: [a], editable: ~/x}}\n"
    )
    message = error(tmp_path, "- {hosts: box, pip: {requirements: nope.txt}}\n")
    assert "requirements file not found: nope.txt" in message and "book.yaml:3" in message
    assert "unknown key 'packges'" in error(tmp_path, "- {hosts: box, pip: {packges: [a]}}\n")


# -- git ---------------------------------------------------------------------------------------


def test_git_checks_fields_against_the_action(tmp_path: Path) -> None:
    book = load(tmp_path, "- {hosts: box, git: {path: ~/code/BERL}}\n")
    assert book.tasks[0].action.action == "pull"  # type: ignore[attr-defined]
    assert "clone needs 'repo'" in error(tmp_path, "- {hosts: box, git: {action: clone, path: ~/code}}\n")
    assert "'depth' only applies to action: clone" in error(
        tmp_path, "- {hosts: box, git: {path: x, depth: 1}}\n"
    )
    assert "'retries'" in error(tmp_path, "- {hosts: box, git: {path: x, retries: 0}}\n")
    assert "'action'" in error(tmp_path, "- {hosts: box, git: {path: x, action: fetch}}\n")


@pytest.mark.parametrize(
    ("repo", "name"),
    [
        ("https://github.com/me/BERL.git", "BERL"),
        ("git@github.com:me/BERL.git", "BERL"),
        ("ssh://u@h:2222/srv/git/BERL/", "BERL"),
        ("~/repos/thing", "thing"),
        ("host:proj.git", "proj"),
    ],
)
def test_clone_lands_in_path_slash_repo_name(repo: str, name: str) -> None:
    assert repo_name(repo) == name


UNREACHABLE = [
    "ssh: connect to host 127.0.0.1 port 1: Connection refused\r\n"
    "fatal: Could not read from remote repository.",
    "ssh: Could not resolve hostname nonexistent.invalid: Name or service not known",
    "ssh: connect to host github.com port 22: Connection timed out",
    "fatal: unable to access 'https://github.com/x/': Could not resolve host: github.com",
    "fatal: unable to access 'https://127.0.0.1:1/x.git/': Failed to connect to 127.0.0.1 port 1 after 0 ms: "
    "Couldn't connect to server",
    "fatal: unable to access 'https://github.com/x/': Could not resolve proxy: proxy.lab",
    "fatal: unable to access 'https://github.com/x/': Proxy CONNECT aborted",
    "fatal: unable to access 'https://github.com/x/': OpenSSL SSL_connect: SSL_ERROR_SYSCALL "
    "in connection to github.com:443",
    "fatal: unable to access 'https://github.com/x/': gnutls_handshake() failed: The TLS connection was "
    "non-properly terminated.",
    "kex_exchange_identification: read: Connection reset by peer",
]
PERMANENT = [
    "ctest@127.0.0.1: Permission denied (publickey).\r\nfatal: Could not read from remote repository.",
    "Host key verification failed.\r\nfatal: Could not read from remote repository.",
    "fatal: could not read Username for 'https://github.com': terminal prompts disabled",
    "fatal: '/nope.git' does not appear to be a git repository\n"
    "fatal: Could not read from remote repository.",
    "fatal: repository '/nonexistent/x.git' does not exist",
    "remote: Repository not found.\nfatal: repository 'https://github.com/x/y.git/' not found",
    "error: Your local changes to the following files would be overwritten by merge:\n\tf\n"
    "Please commit your changes or stash them before you merge.\nAborting",
    "CONFLICT (content): Merge conflict in f\n"
    "Automatic merge failed; fix conflicts and then commit the result.",
    " ! [rejected]        main -> main (fetch first)\nerror: failed to push some refs to 'x'",
    "fatal: not a git repository (or any of the parent directories): .git",
]


@pytest.mark.parametrize("said", UNREACHABLE)
def test_unreachable_remotes_are_retried(said: str) -> None:
    assert diagnose(said).retry


@pytest.mark.parametrize("said", PERMANENT)
def test_errors_that_retrying_cannot_fix_are_not(said: str) -> None:
    assert not diagnose(said).retry


def test_permanent_errors_say_what_to_do() -> None:
    assert "credentials" in diagnose(PERMANENT[0]).hint
    assert "URL or path" in diagnose(PERMANENT[3]).hint
    assert "local changes" in diagnose(PERMANENT[6]).hint
    assert "pull first" in diagnose(PERMANENT[8]).hint


# -- copy --------------------------------------------------------------------------------------


def test_copy_fields(tmp_path: Path) -> None:
    book = load(tmp_path, "- {hosts: box, copy: {mode: push, src: a, dest: b, exclude: .git/}}\n")
    assert book.tasks[0].action.exclude == (".git",)  # type: ignore[attr-defined]
    assert "missing required key 'mode'" in error(tmp_path, "- {hosts: box, copy: {src: a, dest: b}}\n")
    assert "'mode'" in error(tmp_path, "- {hosts: box, copy: {mode: sync, src: a, dest: b}}\n")
    assert "exclude pattern is empty" in error(
        tmp_path, "- {hosts: box, copy: {mode: push, src: a, dest: b, exclude: ['']}}\n"
    )


def test_pulling_one_path_from_several_hosts_into_one_dest_is_refused(tmp_path: Path) -> None:
    message = error(tmp_path, "- {hosts: [box, localhost], copy: {mode: pull, src: r, dest: out}}\n")
    assert "overwrite one host's copy with another's" in message
    load(tmp_path, "- {hosts: [box, localhost], copy: {mode: push, src: r, dest: out}}\n")


def test_the_line_that_told_is_kept_for_the_countdown() -> None:
    said = "Cloning into 'x'...\nssh: connect to host 127.0.0.1 port 1: Connection refused\r\nfatal: Could"
    assert diagnose(said).line == "ssh: connect to host 127.0.0.1 port 1: Connection refused"
