"""Reachability checks of hosts (used by `compute hosts --ping`)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from compute_platform.errors import ComputeError
from compute_platform.hosts import HostPool
from compute_platform.input.inventory import Inventory


def describe(inventory: Inventory) -> list[dict[str, object]]:
    """One row per host of the inventory: alias, platform, where it is reached."""
    rows: list[dict[str, object]] = []
    for alias, spec in inventory.hosts.items():
        if spec.is_local:
            address = "local"
        else:
            user = f"{spec.user}@" if spec.user else ""
            port = f":{spec.port}" if spec.port else ""
            address = f"{user}{spec.address}{port}"
        rows.append(
            {"alias": alias, "platform": spec.platform, "address": address, "connection": spec.connection}
        )
    return rows


def ping_all(inventory: Inventory, forks: int = 10) -> list[tuple[str, bool, str]]:
    """Connect to every host in parallel; (alias, ok, round-trip or error) in inventory order."""
    pool = HostPool(inventory)

    def one(alias: str) -> tuple[str, bool, str]:
        start = time.monotonic()
        try:
            host = pool.get(alias)
            host.connect()
            connected = time.monotonic()
            host.run("true", check=True, timeout=30)
            end = time.monotonic()
            return (
                alias,
                True,
                f"connect {1000 * (connected - start):.0f} ms, command {1000 * (end - connected):.0f} ms",
            )
        except ComputeError as e:
            return alias, False, e.about(alias)

    try:
        with ThreadPoolExecutor(max_workers=max(1, min(forks, len(inventory.hosts) or 1))) as ex:
            return list(ex.map(one, inventory.hosts))
    finally:
        pool.close()
