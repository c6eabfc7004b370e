"""compute jobs asks its hosts from parallel threads: one pool per hosts file, so one Host (one
connection) per host, each closed once at the end."""

from __future__ import annotations

import threading
from pathlib import Path

from compute_platform.jobs.query import Jobs


def test_threads_asking_for_hosts_of_one_hosts_file_share_one_pool(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("a: {host: 192.0.2.1}\nb: {host: 192.0.2.2}\n")
    jobs = Jobs(tmp_path / "archive")
    start = threading.Barrier(8)
    got: list[object] = []

    def ask(alias: str) -> None:
        start.wait()
        got.append((alias, jobs.host(str(hosts), alias)))

    threads = [threading.Thread(target=ask, args=("ab"[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    made = {id(host): (alias, host) for alias, host in got}
    assert sorted(alias for alias, _ in made.values()) == ["a", "b"]  # each made once
    closed: list[str] = []
    for alias, host in made.values():
        host.close = lambda alias=alias: closed.append(alias)  # type: ignore[method-assign]
    jobs.close()
    assert sorted(closed) == ["a", "b"]
