"""The archive's resubmission lock (`.resubmit.lock`) across processes, and the resubmissions in doubt
that nobody resubmits meanwhile."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from compute_platform.ledger import CONFIRMED, UNCONFIRMED, Event, Ledger
from compute_platform.ledger.store import RESUBMIT_LOCK

HOLD = """
import fcntl, sys, time
with open(sys.argv[1], "a+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_a_resubmitter_waits_for_another_process_and_says_so(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    tmp_path.mkdir(exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path / RESUBMIT_LOCK), "0.8"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        told: list[str] = []
        started = time.monotonic()
        with ledger.resubmitting(told.append):
            waited = time.monotonic() - started
        assert waited > 0.3, waited
        assert len(told) == 1 and RESUBMIT_LOCK in told[0] and "another compute resubmit" in told[0]
        told.clear()
        with ledger.resubmitting(told.append):  # free: nothing said
            pass
        assert told == []
    finally:
        holder.wait(10)


def test_a_resubmission_in_doubt_is_named_until_it_is_resolved(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path)
    lost = {"resubmits": ["41_3", "41_5"], "token": "t1", "script": "c/x.sbatch", "attempt": 2}
    other = {"playbook": "b.yaml", "task": "t", "token": "t2"}  # a run's submission: it names no job
    ledger.append_events(
        [
            Event("2026-01-01T00:00:00+00:00", "c", "", UNCONFIRMED, json.dumps(lost)),
            Event("2026-01-01T00:00:01+00:00", "c", "", UNCONFIRMED, json.dumps(other)),
        ]
    )
    assert ledger.resubmitted_in_doubt() == {("c", "41_3"), ("c", "41_5")}
    assert [info["token"] for _, info in ledger.unconfirmed("b.yaml", "t", "c")] == ["t2"]
    ledger.append_events(
        [Event("2026-01-01T00:00:02+00:00", "c", "42", CONFIRMED, json.dumps({"token": "t1"}))]
    )
    assert ledger.resubmitted_in_doubt() == set()
