"""`compute watch`: follow every open job of the ledger, apply the retry policies their scripts
carry (scheduling/recovery.py), and tell of sweeps (jobs/notify.py).

Each refresh is one query per host with open jobs (Jobs.rows), then for the jobs that ended since the
last one (read from states.csv, wherever their end was learnt: this watch, `compute jobs`):
  - the failed ones whose policy looks at logs: one more round trip per host, the last 64 KiB of each
    job's output searched on the host for the patterns (only the pattern's number comes back);
  - the decision (recovery.decide) and the retries, through the backends' one submission path;
  - the notifications: a sweep's first failure, and its end.
It repeats nothing when restarted: a job already replaced (its retry's row has `replaces`) is not
retried again, a sweep already told of (a `notified` event) is not told again, and a retry whose
sbatch answer was lost is looked for in the queue (by its token) before anything is decided.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from compute_platform.errors import ComputeError, LedgerError
from compute_platform.hosts import shell
from compute_platform.jobs.query import FINAL, Jobs, Row, backend, final_state, since_time
from compute_platform.ledger import (
    CONFIRMED,
    NOT_SUBMITTED,
    NOTIFIED_EVENT,
    RESUBMITTED_EVENT,
    Ended,
    Event,
    JobRecord,
    now,
)
from compute_platform.scheduling.backend import COMPLETED, FAILED, Again, JobState
from compute_platform.scheduling.recovery import Policy, Verdict, attempts_before, decide, policy_in

if TYPE_CHECKING:
    from compute_platform.hosts import Host

LOG_BYTES = 65536  # of each output file searched for the log patterns, from its end
FIRST_LOOK = "1d"  # a watch's first start looks at the ends of the last day only


@dataclass
class Refresh:
    """What one refresh saw and did, for the lines the command prints."""

    open: int = 0
    ended: int = 0
    retried: list[tuple[JobRecord, JobRecord, Verdict]] = field(default_factory=list)
    given_up: list[tuple[JobRecord, Verdict]] = field(default_factory=list)
    told: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    blocked: bool = False  # an end could not be acted on: the cursor stays before it


Send = Callable[[Policy, str, str], list[str]]


class Watch:
    def __init__(self, view: Jobs, send: Send | None = None) -> None:
        from compute_platform.jobs import notify

        self.view = view
        self.ledger = view.ledger
        self.send = send or notify.send
        self._policies: dict[str, Policy | None] = {}
        self._cursor = self.ledger.watch_cursor()

    def refresh(self) -> Refresh:
        seen = Refresh()
        redo = self.resolve_lost(seen)
        self.view.feed()  # the jobs the cluster's feeders submitted become rows first
        records = self.ledger.open_records()
        seen.open = len(records)
        rows = {row.key: row for row in self.view.rows(records)}
        ends, cursor = self.ledger.ended_since(self._cursor or 0)
        if self._cursor is None:  # a first watch: what ended long before it is history
            since = since_time(FIRST_LOOK)
            ends = [e for e in ends if e.at >= since]
        seen.ended = len(ends)
        ended = self.ended_rows(ends, rows)
        known = {row.key for row in ended}
        redone = self.ledger.ended(redo)  # retries found not submitted: their jobs are decided again
        ended += [
            Row(r, final_state(redone[(r.host, r.job_id)]))
            for r in redo
            if (r.host, r.job_id) in redone and (r.host, r.job_id) not in known
        ]
        self.act(ended, seen)
        if seen.blocked:  # a retry or a log search failed: those ends are looked at again next time
            return seen
        self._cursor = cursor
        try:
            self.ledger.save_watch_cursor(cursor)
        except OSError as e:
            seen.problems.append(f"cannot write {self.ledger.root}: {e.strerror or e}")
        return seen

    def ended_rows(self, ends: Sequence[Ended], rows: dict[tuple[str, str], Row]) -> list[Row]:
        """Each end with its ledger row (found among the open rows, else in the ledger's blocks)."""
        wanted = {(e.host, e.job_id): e for e in ends}
        missing = [key for key in wanted if key not in rows]
        found = {key: rows[key].record for key in wanted if key in rows}
        if missing:
            ids = sorted({job_id for _, job_id in missing})
            for record in self.ledger.records_where(mentioning=ids):
                key = (record.host, record.job_id)
                if key in wanted:
                    found.setdefault(key, record)
        return [Row(found[key], final_state(end)) for key, end in wanted.items() if key in found]

    def act(self, ended: Sequence[Row], seen: Refresh) -> None:
        replaced = self.ledger.replacements()
        todo = [row for row in ended if row.key not in replaced and self.policy(row.record)]
        matches = self.log_matches([row for row in todo if row.state.state == FAILED], seen)
        retries: dict[tuple[str, str, str], list[tuple[Row, Verdict]]] = {}
        for row in todo:
            script = self._script(row.record)
            verdict = decide(
                self.policy(row.record), row.state, self._attempt(row), script, matches.get(row.key, "")
            )
            if verdict.retry:
                group = (row.record.scheduler, row.record.hosts_file, row.record.host)
                retries.setdefault(group, []).append((row, verdict))
            elif verdict.failure:
                seen.given_up.append((row.record, verdict))
        if retries:
            # a `compute resubmit` may have resubmitted some of them since `replaced` was read
            with self.ledger.resubmitting():
                gone = set(self.ledger.replacements()) | self.ledger.resubmitted_in_doubt()
                for (scheduler, hosts_file, alias), items in retries.items():
                    items = [(row, verdict) for row, verdict in items if row.key not in gone]
                    if items:
                        self.retry(scheduler, hosts_file, alias, items, seen)
        self.tell(ended, seen)

    def retry(
        self, scheduler: str, hosts_file: str, alias: str, items: list[tuple[Row, Verdict]], seen: Refresh
    ) -> None:
        again = {
            row.record.job_id: Again(self._attempt(row) + 1, verdict.failure, verdict.overrides)
            for row, verdict in items
        }
        try:
            host = self.view.host(hosts_file, alias)
            new = backend(scheduler).resubmit(host, [row.record for row, _ in items], self.ledger, again)
        except ComputeError as e:
            seen.problems.append(f"{alias}: cannot retry {', '.join(again)}: {e.about(alias)}")
            seen.blocked = True
            return
        old = {row.record.job_id: (row.record, verdict) for row, verdict in items}
        for record in new:
            before, verdict = old[record.replaces]
            seen.retried.append((before, record, verdict))
        self.ledger.append_events(
            [Event(now(), n.host, n.replaces, RESUBMITTED_EVENT, n.job_id) for n in new]
        )

    # -- the logs of failed jobs ----------------------------------------------------------------

    def log_matches(self, rows: Sequence[Row], seen: Refresh) -> dict[tuple[str, str], str]:
        """(host, job id) -> the first of its policy's log patterns its output's end matches."""
        groups: dict[tuple[str, str], list[Row]] = {}
        for row in rows:
            policy = self.policy(row.record)
            if policy and policy.log_patterns and row.state.reason != "OUT_OF_MEMORY":
                groups.setdefault((row.record.hosts_file, row.record.host), []).append(row)

        def one(item: tuple[tuple[str, str], list[Row]]) -> dict[tuple[str, str], str]:
            (hosts_file, alias), group = item
            try:
                return search_logs(self.view.host(hosts_file, alias), group, self.policy)
            except ComputeError as e:
                seen.problems.append(f"{alias}: cannot read the logs of failed jobs: {e.about(alias)}")
                seen.blocked = True  # deciding without them would give up what a pattern retries
                return {}

        found: dict[tuple[str, str], str] = {}
        for part in self.view.parallel(one, list(groups.items())):
            found.update(part)
        return found

    # -- notifications ----------------------------------------------------------------------------

    def tell(self, ended: Sequence[Row], seen: Refresh) -> None:
        """A sweep (a task of a run) is told of once at its first failure and once at its end."""
        told = self.told()
        sweeps: dict[tuple[str, str], list[Row]] = {}
        for row in ended:
            policy = self.policy(row.record)
            if policy and (policy.webhook or policy.mail):
                sweeps.setdefault((row.record.run_id, row.record.task), []).append(row)
        events = []
        for (run, task), rows in sweeps.items():
            policy = self.policy(rows[0].record)
            assert policy is not None
            failed = [r for r in rows if r.state.state != COMPLETED]
            counts = self.sweep_counts(run, task)
            if failed and (run, task, "failure") not in told:
                first = failed[0]
                what = f"job {first.record.job_id} on {first.record.host} ended {first.state.state}"
                events += self._send(policy, run, task, "failure", f"first failure: {what}", counts, seen)
            if counts is not None and not counts.get("open") and (run, task, "end") not in told:
                events += self._send(policy, run, task, "end", "every job has ended", counts, seen)
        self.ledger.append_events(events)

    def _send(
        self,
        policy: Policy,
        run: str,
        task: str,
        what: str,
        text: str,
        counts: dict[str, int] | None,
        seen: Refresh,
    ) -> list[Event]:
        tally = ", ".join(f"{n} {state.lower()}" for state, n in (counts or {}).items() if n)
        subject = f"compute: task '{task}' of run {run}: {text}"
        problems = self.send(policy, subject, f"{text}. Jobs: {tally}.")
        if problems:
            seen.problems += problems
            return []
        seen.told.append(subject)
        return [Event(now(), "", "", NOTIFIED_EVENT, json.dumps({"run": run, "task": task, "what": what}))]

    def told(self) -> set[tuple[str, str, str]]:
        found = set()
        for event in self.ledger.run_events():
            if event.event == NOTIFIED_EVENT:
                try:
                    info = json.loads(event.detail)
                    found.add((str(info["run"]), str(info["task"]), str(info["what"])))
                except (ValueError, KeyError, TypeError):
                    continue
        return found

    def sweep_counts(self, run: str, task: str) -> dict[str, int] | None:
        """The states of a sweep's points, each by its latest attempt, and how many are open."""
        records = self.ledger.records_where(task=task, run=run)
        replaced = self.ledger.replacements()
        latest = [r for r in records if (r.host, r.job_id) not in replaced]
        ended = self.ledger.ended(latest)
        cancelled = self.ledger.cancelled(latest)  # cancelled before it started: no end is recorded
        counts: dict[str, int] = {"open": 0}
        for record in latest:
            key = (record.host, record.job_id)
            end = ended.get(key)
            state = final_state(end).state if end else "CANCELLED" if key in cancelled else "open"
            counts[state] = counts.get(state, 0) + 1
        return counts

    # -- what a row's script says ---------------------------------------------------------------

    def policy(self, record: JobRecord) -> Policy | None:
        if record.script not in self._policies:
            self._policies[record.script] = policy_in(self._script(record))
        return self._policies[record.script]

    def _attempt(self, row: Row) -> int:
        """The attempt a job ended in: as the job or its row says, else as its script counts (an
        archive started before rows had `attempt` keeps the column out of its rows)."""
        return max(row.attempt, attempts_before(self._script(row.record)) + 1)

    def _script(self, record: JobRecord) -> str:
        try:
            return self.ledger.script_text(record) if record.script else ""
        except LedgerError:
            return ""

    # -- retries whose answer was lost ----------------------------------------------------------

    def resolve_lost(self, seen: Refresh) -> list[JobRecord]:
        """A retry whose sbatch answer was lost (the watch or its connection died then): found in the
        queue by its token, it is recorded; not found, it is forgotten, and the jobs it retried are
        returned, to be decided again."""
        redo: list[JobRecord] = []
        doubts = [(event, info) for event, info in self.ledger.in_doubt() if "attempt" in info]
        if doubts:
            with self.ledger.resubmitting():  # what it records, a `compute resubmit` must see
                for event, info in doubts:
                    redo += self._resolve(event, info, seen)
        return redo

    def _resolve(self, event: Event, info: dict[str, object], seen: Refresh) -> list[JobRecord]:
        from compute_platform.scheduling import slurm

        named, token, script = info.get("resubmits"), info.get("token"), info.get("script")
        ids = [str(i) for i in named] if isinstance(named, list) else []
        olds = [r for r in self.ledger.records_where(host=event.host, mentioning=ids) if r.job_id in ids]
        if not olds or not isinstance(token, str) or not isinstance(script, str):
            return []  # not one of ours, or hand-edited: nothing to look for
        try:
            host = self.view.host(olds[0].hosts_file, event.host)
            job_id = slurm.find_submissions(host, [token]).get(token, "")
        except ComputeError as e:
            seen.problems.append(
                f"{event.host}: cannot look for a retry left unconfirmed: {e.about(event.host)}"
            )
            return []
        staged = self.ledger.root / script
        if job_id:
            try:
                archived = self.ledger.relative(self.ledger.commit_script(staged, job_id))
            except OSError:
                archived = script  # its staged script is gone: the row names where it was
            attempt, reason = str(info.get("attempt", "")), str(info.get("reason", ""))
            rows = slurm.renewed_rows(olds, job_id, archived, attempt, reason)
            self.ledger.append(rows)
            self.ledger.append_events(
                [Event(now(), r.host, r.replaces, RESUBMITTED_EVENT, r.job_id) for r in rows]
            )
        else:
            self.ledger.discard(staged)
        outcome = CONFIRMED if job_id else NOT_SUBMITTED
        self.ledger.append_events([Event(now(), event.host, job_id, outcome, json.dumps({"token": token}))])
        return [] if job_id else olds


def search_logs(
    host: Host, rows: Sequence[Row], policy_of: Callable[[JobRecord], Policy | None]
) -> dict[tuple[str, str], str]:
    """The end of each job's output and error files, searched on the host for its policy's patterns
    in turn: `<job id> <pattern number>` comes back for the first that matches. One command per set
    of patterns (a sweep's jobs share theirs), its jobs and files on stdin (any number of them)."""
    groups: dict[tuple[str, ...], list[Row]] = {}
    for row in rows:
        policy = policy_of(row.record)
        if policy and policy.log_patterns:
            groups.setdefault(policy.log_patterns, []).append(row)
    found: dict[tuple[str, str], str] = {}
    for patterns, group in groups.items():
        script = "\n".join(
            [
                f"compute_patterns=({shell.join(patterns)})",
                "while IFS= read -r -d '' id && IFS= read -r -d '' out && IFS= read -r -d '' err; do",
                f'  t=$({{ [ -z "$out" ] || tail -c {LOG_BYTES} -- "$out"; [ -z "$err" ] || tail -c {LOG_BYTES} -- "$err"; }} 2>/dev/null)',
                "  k=0",
                '  for p in "${compute_patterns[@]}"; do',
                '    if printf \'%s\\n\' "$t" | grep -E -q -e "$p"; then printf \'%s %s\\n\' "$id" "$k"; break; fi',
                "    k=$((k + 1))",
                "  done",
                "done",
            ]
        )
        stdin = "".join(f"{r.record.job_id}\0{r.record.log_out}\0{r.record.log_err}\0" for r in group)
        result = host.run(script, stdin=stdin.encode(), timeout=120, check=True)
        for line in result.stdout.splitlines():
            job_id, _, number = line.rpartition(" ")
            if number.isdigit() and int(number) < len(patterns):
                found.setdefault((host.alias, job_id), patterns[int(number)])
    return found


def describe(seen: Refresh) -> list[str]:
    """What a refresh did, one line each, for the user."""
    lines = [
        f"{old.host}: job {old.job_id} ({verdict.failure}) retried as {new.job_id}: {verdict.why}"
        for old, new, verdict in seen.retried
    ]
    lines += [f"{r.host}: job {r.job_id} not retried: {verdict.why}" for r, verdict in seen.given_up]
    lines += [f"told: {subject}" for subject in seen.told]
    lines += [f"problem: {text}" for text in seen.problems]
    return lines


def follow(
    watch: Watch,
    say: Callable[[str], None],
    once: bool = False,
    until_done: bool = False,
    pause: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Refresh, say what happened, wait `pause` seconds, again (until every job has ended with
    `until_done`, once with `once`)."""
    while True:
        seen = watch.refresh()
        for line in describe(seen):
            say(f"{now()} {line}")
        if once or (until_done and not seen.open and not seen.retried):
            say(f"{now()} {seen.open} open job(s)")
            return
        sleep(pause)


__all__ = ["FINAL", "JobState", "Refresh", "Watch", "describe", "follow", "search_logs"]
