"""Command line. The only place that prints errors and picks exit codes."""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from compute_platform import __version__
from compute_platform.cli import completion
from compute_platform.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, ComputeError, InputError

F = TypeVar("F", bound=Callable[..., Any])
CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def main(args: list[str]) -> NoReturn:
    """One exit door: domain errors become one line and an exit code; tracebacks only with -v."""
    verbose = "-v" in args or "--verbose" in args
    _warnings_to_stderr()
    try:
        code = cli.main(args=args, prog_name="compute", standalone_mode=False)
    except ComputeError as e:
        if verbose and not isinstance(e, InputError):  # a bad input is one message, -v or not
            traceback.print_exc(file=sys.stderr)
        _error(str(e))
        code = e.exit_code
    except click.exceptions.Abort:
        _error("interrupted")
        code = EXIT_INTERRUPTED
    except click.ClickException as e:
        e.show()
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        _error("interrupted")
        code = EXIT_INTERRUPTED
    except BrokenPipeError:
        code = EXIT_FAILED
    sys.exit(code if isinstance(code, int) else 0)


def _warnings_to_stderr() -> None:
    """Library code warns through logging (e.g. a private key other users can read): one line each."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    log = logging.getLogger("compute_platform")
    log.addHandler(handler)
    log.setLevel(logging.WARNING)
    log.propagate = False
    # paramiko logs its transport thread's failures with a traceback; they reach the user as one
    # clean HostError instead (Python would print unhandled log records to stderr)
    logging.getLogger("paramiko").addHandler(logging.NullHandler())


def _warning(message: str) -> None:
    prefix = "\x1b[1;33mwarning:\x1b[0m" if sys.stderr.isatty() else "warning:"
    click.echo(f"{prefix} {message}", err=True)


def _error(message: str) -> None:
    color = sys.stderr.isatty()
    prefix = "\x1b[1;31merror:\x1b[0m" if color else "error:"
    click.echo(f"{prefix} {message}", err=True)


def _archive_option(text: str) -> Callable[[F], F]:
    option: Callable[[F], F] = click.option(
        "--archive", default="archive", show_default=True, type=click.Path(file_okay=False), help=text
    )
    return option


@click.group(context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="compute")
def cli() -> None:
    """Run experiments described in YAML playbooks: locally, on SSH workstations (tmux)
    and on Slurm clusters (sbatch sweeps). `compute PLAYBOOK.yaml` is `compute run PLAYBOOK.yaml`."""


def _playbook(path: str) -> Any:
    """Load and check a playbook; what loads but runs differently than it reads is a warning."""
    from compute_platform import playbook

    book = playbook.load(Path(path))
    for note in book.notes:
        _warning(str(note))
    return book


@cli.command(context_settings=CONTEXT)
@click.argument("playbook", type=click.Path(dir_okay=False))
@click.option(
    "--limit", "-l", help="Only these hosts (comma-separated aliases).", shell_complete=completion.limit
)
@click.option(
    "--forks",
    "-f",
    default=10,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="How many hosts to work on at once.",
)
@click.option("--dry-run", "-n", is_flag=True, help="Print every command as it would run; run nothing.")
@click.option("--fail-fast", is_flag=True, help="Stop everything at the first failure.")
@_archive_option("Where submitted job scripts and job.csv are recorded.")
@click.option("--quiet", "-q", is_flag=True, help="Only failures and the summary's failed rows.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document at the end (docs/json.md).")
@click.option(
    "--skip-submitted",
    "--resume",
    "skip_submitted",
    is_flag=True,
    help="Sweeps: leave out the points already in the ledger (finish an interrupted run).",
)
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks of internal errors.")
def run(
    playbook: str,
    limit: str | None,
    forks: int,
    dry_run: bool,
    fail_fast: bool,
    archive: str,
    quiet: bool,
    as_json: bool,
    skip_submitted: bool,
    verbose: bool,
) -> int:
    """Run the tasks of PLAYBOOK in order, each on its hosts in parallel."""
    from compute_platform.context import RunOptions
    from compute_platform.run.reporting import make_reporter
    from compute_platform.run.runner import Runner

    book = _playbook(playbook)
    options = RunOptions(
        dry_run=dry_run,
        forks=forks,
        fail_fast=fail_fast,
        limit=tuple(h.strip() for h in (limit or "").split(",") if h.strip()),
        archive=Path(archive),
        verbose=verbose,
        skip_submitted=skip_submitted,
    )
    from compute_platform.hosts import secret_env

    # no secret value is ever printed, whatever prints it
    reporter = make_reporter(json=as_json, quiet=quiet, secrets=secret_env.collect(book.secret_names()))
    summary = Runner(book, options, reporter).run()
    return EXIT_FAILED if summary.failed else 0


@cli.command(context_settings=CONTEXT)
@click.argument("playbook", type=click.Path(dir_okay=False))
@click.option(
    "--remote",
    is_flag=True,
    help="Also connect to every host and check what the run needs there: sbatch --test-only of its "
    "jobs, tmux, save_path writable, python with pip, git. Submits and runs nothing.",
)
@click.option("--forks", "-f", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks.")
def check(playbook: str, remote: bool, forks: int, verbose: bool) -> int:
    """Validate PLAYBOOK and its inventory, resolve every host and config; touch no host
    (with --remote: then check each host, in parallel)."""
    book = _playbook(playbook)
    hosts = sorted({h for t in book.tasks for h in t.hosts})
    click.echo(f"{playbook}: OK ({len(book.tasks)} tasks, {len(hosts)} hosts: {', '.join(hosts)})")
    if not remote:
        return 0
    from compute_platform.checks import preflight
    from compute_platform.run.reporting import use_color

    checks = preflight.check_hosts(book, forks)
    for line in preflight.report_lines(checks, color=use_color(sys.stdout)):
        click.echo(line)
    click.echo(preflight.verdict(checks))
    return EXIT_FAILED if not all(c.ok for c in checks) else 0


@cli.command(context_settings=CONTEXT)
@click.option(
    "--inventory",
    "-i",
    "inventory",
    default="hosts.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The hosts file.",
)
@click.option("--ping", is_flag=True, help="Connect to every host in parallel and time a command.")
@click.option("--forks", "-f", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True, help="Print JSON (docs/json.md).")
@click.option(
    "--login",
    metavar="HOST",
    shell_complete=completion.host_alias,
    help="Open the shared connection of HOST (connection: openssh) here, typing its code once.",
)
@click.option(
    "--logout",
    metavar="HOST",
    shell_complete=completion.host_alias,
    help="Close the connection to HOST kept open between runs (either kind), now.",
)
@click.option("--logout-all", is_flag=True, help="Close every connection kept open between runs, now.")
@click.option(
    "--connections", is_flag=True, help="List the connections kept open between runs (paramiko hosts)."
)
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks.")
def hosts(
    inventory: str,
    ping: bool,
    forks: int,
    as_json: bool,
    login: str | None,
    logout: str | None,
    logout_all: bool,
    connections: bool,
    verbose: bool,
) -> int:
    """List the hosts of a hosts file; with --ping, check that each one answers."""
    if login or logout or logout_all:
        from compute_platform.hosts import close_all, shared_connection
        from compute_platform.input.inventory import load_inventory as load

        path = Path(inventory)
        if logout_all:
            click.echo(close_all(load(path, None) if path.exists() else None))
        else:
            click.echo(shared_connection(load(path, None), login or logout or "", opening=bool(login)))
        return 0
    if connections:
        from compute_platform.hosts.kept import connections as kept_connections

        rows = kept_connections()
        for row in rows:
            via = f" via {','.join(row['via'])}" if row["via"] else ""
            use = f"in use by {row['runs']} run(s)" if row["runs"] else f"idle {_span(row['idle_for'])}"
            left = max(0.0, row["persist"] - row["idle_for"])
            closes = "" if row["runs"] else f", closes in {_span(left)}"
            click.echo(
                f"{row['alias']:<20} {row['address'] + via:<40} open {_span(row['open_for'])}, {use}{closes}"
            )
        if not rows:
            click.echo(
                "no connection is kept open (paramiko hosts keep theirs after a run, for control_persist)"
            )
        return 0
    from compute_platform.checks.ping import describe, ping_all
    from compute_platform.input.inventory import load_inventory

    inv = load_inventory(Path(inventory), None)
    rows = describe(inv)
    if ping:
        for row, (_, ok, text) in zip(rows, ping_all(inv, forks), strict=True):
            row.update(reachable=ok, detail=text)
    if as_json:
        import json

        click.echo(json.dumps({"version": 1, "hosts": rows}, indent=2))
    else:
        for row in rows:
            state = "" if not ping else ("ok" if row["reachable"] else "FAILED")
            detail = f"{state:<7} {row['detail']}" if ping else ""
            click.echo(f"{row['alias']:<20} {row['platform']:<6} {row['address']:<32} {detail}".rstrip())
    return EXIT_FAILED if ping and not all(r["reachable"] for r in rows) else 0


def _span(seconds: float) -> str:
    """`45s`, `9m05s`, `2h10m`."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@cli.command(context_settings=CONTEXT)
@click.argument("directory", default=".", type=click.Path(file_okay=False))
def init(directory: str) -> int:
    """Start a project in DIRECTORY (default: here): hosts.yaml, configs.yaml, playbooks/example.yaml
    and `archive/` in .gitignore. Never overwrites a file."""
    from compute_platform.cli.scaffold import init as scaffold

    for path in scaffold(Path(directory)):
        click.echo(f"wrote {path}")
    where = "" if directory == "." else f"cd {directory} && "
    click.echo(f"next: {where}compute run playbooks/example.yaml")
    return 0


@cli.command(context_settings=CONTEXT)
@click.argument("kind", default="playbook", type=click.Choice(["playbook", "hosts", "configs"]))
def schema(kind: str) -> int:
    """Print the JSON Schema of playbooks (default), hosts.yaml or configs.yaml files, for editors."""
    import json

    from compute_platform.playbook.schema import schema as make

    click.echo(json.dumps(make(kind), indent=2, ensure_ascii=False))
    return 0


# -- following jobs: compute jobs / logs / cancel / resubmit (logic in jobs/) ------------------


def _ledger_options(command: Any) -> Any:
    options = [
        _archive_option("The archive holding job.csv."),
        click.option(
            "--inventory",
            "-i",
            type=click.Path(dir_okay=False, exists=True),
            help="Reach hosts through this hosts file instead of the one recorded with each job.",
        ),
        click.option("--verbose", "-v", is_flag=True, help="Show tracebacks."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _jobs_view(archive: str, inventory: str | None) -> Any:
    from compute_platform.jobs.query import Jobs

    return Jobs(Path(archive), Path(inventory) if inventory else None)


@cli.command(context_settings=CONTEXT)
@click.argument("job", required=False)
@click.option("--host", help="Only the jobs of this host alias.")
@click.option("--task", help="Only the jobs of this task.")
@click.option("--state", help="Only these states, comma-separated (e.g. FAILED,TIMEOUT).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows and their states as JSON.")
@click.option("--watch", "-w", is_flag=True, help="Refresh every 5 s until every job shown has ended.")
@click.option(
    "--grid",
    is_flag=False,
    flag_value="",
    default=None,
    metavar="[TASK]",
    help="Draw a task's sweep as a grid coloured by state (default: the ledger's latest task).",
)
@click.option("--summary", is_flag=True, help="Count the states of the jobs per task and host.")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Every job of the ledger (default: open ones and the latest run's).",
)
@click.option("--since", help="Jobs submitted since a date (2026-11-01), a time or an age (3d, 12h).")
@click.option("--run", "run_id", help="The jobs of one run (its id is in the rows and the --json output).")
@click.option("--last", type=click.IntRange(min=1), help="The N latest jobs.")
@_ledger_options
def jobs(
    job: str | None,
    host: str | None,
    task: str | None,
    state: str | None,
    as_json: bool,
    watch: bool,
    grid: str | None,
    summary: bool,
    show_all: bool,
    since: str | None,
    run_id: str | None,
    last: int | None,
    archive: str,
    inventory: str | None,
    verbose: bool,
) -> int:
    """The jobs of the ledger (archive/job.csv) with their live state: one query per host. With JOB
    (an id, or HOST:ID): that job in full, with what it used (sacct) and its metrics."""
    from compute_platform.jobs import query, views

    if job is not None:
        if grid is not None or summary or as_json or watch or state:
            raise click.UsageError(
                "JOB is shown alone: without --grid, --summary, --json, --watch and --state"
            )
        return _one_job(job, archive, inventory)

    if grid is not None and (summary or as_json or state or (task and grid and task != grid)):
        raise click.UsageError("--grid draws one task's sweep: it goes without --summary, --json and --state")
    if not as_json:
        _legacy_hint(archive)
    view = _jobs_view(archive, inventory)
    try:
        if grid is not None:
            name = grid or task or views.latest_task(view.records(host, last=1))
            follow_grid = _follow(view, host, name)
            query.show(view, view.records(host, name), None, watch, draw=views.draw_grid, feed=follow_grid)
            return 0
        chosen = query.Selection(show_all, since, run_id, last)
        every = query.Selection(True, since, run_id, last)  # summaries and JSON: all rows unless told
        follow = _follow(view, host, task)
        if as_json:
            follow()
        if summary:
            records, counted = view.summarized(host, task, every, state)
            if as_json:
                rows, _ = query.select(query.filter_states(view.rows(records), state), every)
                click.echo(views.summary_json(views.counts(rows, counted)))
            else:
                draw = functools.partial(views.draw_summary, counted=counted)
                query.show(view, records, state, watch, draw=draw, selection=every, feed=follow)
        elif as_json:
            records, _ = view.chosen(host, task, every, state)
            rows, _ = query.select(query.filter_states(view.rows(records), state), every)
            click.echo(query.as_json(rows))
        else:
            records, total = view.chosen(host, task, chosen, state)
            narrowed = bool(host or task or state)
            query.show(
                view, records, state, watch, selection=chosen, narrowed=narrowed, total=total, feed=follow
            )
    finally:
        view.close()
    return 0


def _one_job(job: str, archive: str, inventory: str | None) -> int:
    from compute_platform.jobs import detail
    from compute_platform.jobs.query import one_record

    view = _jobs_view(archive, inventory)
    try:
        lines, problems = detail.describe(view, one_record(view.records(job_ids=[job]), job))
    finally:
        view.close()
    for problem in problems:
        _warning(problem)
    for line in lines:
        click.echo(line)
    return 0


def _follow(view: Any, host: str | None, task: str | None) -> Callable[[], list[Any]]:
    """One look at the sweeps the cluster feeds (their new jobs join the ledger), per refresh."""

    def follow() -> list[Any]:
        found: list[Any] = view.feed(host, task)
        return found

    return follow


@cli.command(context_settings=CONTEXT)
@click.argument("job")
@click.option("--err", is_flag=True, help="The error stream instead of the output.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing what the job writes until it ends.")
@_ledger_options
def logs(job: str, err: bool, follow: bool, archive: str, inventory: str | None, verbose: bool) -> int:
    """The output of JOB (an id from `compute jobs`, or HOST:ID), read from its host."""
    from compute_platform.jobs.query import one_record

    view = _jobs_view(archive, inventory)
    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    try:
        view.logs(one_record(view.records(job_ids=[job]), job), write, err=err, follow=follow)
    except KeyboardInterrupt:
        return 0  # stopping `logs -f` is the normal way out
    finally:
        view.close()
    return 0


@cli.command(context_settings=CONTEXT)
@click.argument("job_ids", nargs=-1)
@click.option("--task", help="Every job of this task.")
@click.option("--host", help="Only jobs of this host alias.")
@_ledger_options
def cancel(
    job_ids: tuple[str, ...],
    task: str | None,
    host: str | None,
    archive: str,
    inventory: str | None,
    verbose: bool,
) -> int:
    """Cancel jobs (ids, array ids or HOST:ID) or a whole task; recorded in archive/events.csv."""
    if not job_ids and not task:
        raise click.UsageError("name the jobs to cancel, or --task NAME")
    view = _jobs_view(archive, inventory)
    try:
        # a task's feeds first: nothing is submitted after this, and what was, is recorded to cancel
        stopped = view.feed(host, task, stopping=True) if task and not job_ids else []
        cancelled, ended = view.cancel(view.records(host, task, job_ids))
    finally:
        view.close()
    for progress in stopped:
        click.echo(
            f"stopped the feed of task '{progress.feed.task}' on {progress.feed.host}: "
            f"{progress.left} point(s) will not be submitted"
        )
    if cancelled:
        click.echo(f"cancelled {len(cancelled)} job(s): {', '.join(r.record.job_id for r in cancelled)}")
    if ended:
        click.echo(f"{len(ended)} job(s) had already ended: {', '.join(r.record.job_id for r in ended)}")
    return 0


@cli.command(context_settings=CONTEXT)
@click.option("--failed", is_flag=True, help="Resubmit the jobs that FAILED (and were not resubmitted yet).")
@click.option("--task", help="Only the jobs of this task.")
@click.option("--host", help="Only the jobs of this host alias.")
@_ledger_options
def resubmit(
    failed: bool, task: str | None, host: str | None, archive: str, inventory: str | None, verbose: bool
) -> int:
    """Submit failed jobs again from their archived scripts; new rows point to the old ones."""
    if not failed:
        raise click.UsageError("say which jobs: --failed")
    from compute_platform.ledger import now, snapshots

    view = _jobs_view(archive, inventory)
    started = now()
    try:
        pairs = view.resubmit_failed(view.records(host, task), lambda text: click.echo(text, err=True))
    finally:
        view.close()
    # a snapshot `compute code --clean` had removed is put back first (scheduling/code.restore)
    for where, code_dir, digest in snapshots.sent_since(view.ledger, started, {old.code for old, _ in pairs}):
        click.echo(f"{where}: code {digest[:12]} sent again to {code_dir} (it had been cleaned)")
    for old, new in pairs:
        click.echo(f"{old.host}: {old.job_id} resubmitted as {new.job_id}")
    click.echo(f"resubmitted {len(pairs)} failed job(s)" if pairs else "no failed job to resubmit")
    return 0


@cli.command(context_settings=CONTEXT)
@click.option(
    "--every",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Seconds between two looks at the hosts.",
)
@click.option("--once", is_flag=True, help="Look once, act, and stop (for cron or a test).")
@click.option("--until-done", is_flag=True, help="Stop once no job of the ledger is open.")
@_ledger_options
def watch(
    every: float, once: bool, until_done: bool, archive: str, inventory: str | None, verbose: bool
) -> int:
    """Follow every open job of the ledger: retry those whose end their task's retry policy names
    (with more memory or time when it says so), tell of sweeps (notify), until stopped. One per
    archive; restarting it repeats nothing."""
    from compute_platform.jobs.watch import Watch, follow

    view = _jobs_view(archive, inventory)
    try:
        with view.ledger.watching():
            follow(Watch(view), lambda line: click.echo(line), once=once, until_done=until_done, pause=every)
    except KeyboardInterrupt:
        return 0  # stopping the watch is the normal way out
    finally:
        view.close()
    return 0


def _higher(higher: str | None, metric: str | None) -> set[str]:
    """--max METRICS, or --max alone: the --sort metric."""
    named = {m.strip() for m in (higher or "").split(",") if m.strip()}
    return named or ({metric} if higher is not None and metric else set())


def _higher_option(command: F) -> F:
    option: Callable[[F], F] = click.option(
        "--max",
        "higher",
        is_flag=False,
        flag_value="",
        default=None,
        metavar="[METRICS]",
        help="Higher is better: for the --sort metric (alone), or these comma-separated metrics (with the task's "
        "`metrics: {max: [...]}`).",
    )
    return option(command)


def _collected(view: Any, task: str | None, host: str | None, metric: str | None, higher: str | None) -> Any:
    """`results.collect` of TASK (default: the ledger's latest) with --sort and --max, the one way
    `results`, `plot` and `report` gather a task's points; what fetching met is warned of."""
    from compute_platform.jobs import results, views

    name = task or views.latest_task(view.records(host, last=1))
    got = results.collect(view, name, host, metric, _higher(higher, metric))
    for problem in got.problems:
        _warning(problem)
    return got


@cli.command(context_settings=CONTEXT)
@click.argument("task", required=False)
@click.option("--host", help="Only the jobs of this host alias.")
@click.option(
    "--sort",
    "metric",
    metavar="METRIC",
    help="Rank the points by this metric's final mean (default: the task's `metrics: {sort: ...}`).",
)
@_higher_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (docs/json.md).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV, one row per point (for pandas).")
@click.option(
    "--grid", is_flag=True, help="The sweep's grid (as `compute jobs --grid`), each cell the metric."
)
@_ledger_options
def results(
    task: str | None,
    host: str | None,
    metric: str | None,
    higher: str | None,
    as_json: bool,
    as_csv: bool,
    grid: bool,
    archive: str,
    inventory: str | None,
    verbose: bool,
) -> int:
    """The metrics a task's jobs wrote (COMPUTE_METRICS), one row per sweep point, final and best
    values over its seeds (default: the ledger's latest task)."""
    from compute_platform.jobs import results as found
    from compute_platform.jobs import views

    if sum((as_json, as_csv, grid)) > 1:
        raise click.UsageError("--json, --csv or --grid: one of them")
    view = _jobs_view(archive, inventory)
    try:
        got = _collected(view, task, host, metric, higher)
    finally:
        view.close()
    name, points, rows, metric, wanted = got.task, got.points, got.rows, got.metric, got.higher
    if grid:
        from rich.console import Console

        shown = metric or next(iter(found.names(points, None)), "")
        values = {(p.record.host, p.record.job_id): p.final[shown].text() for p in points if shown in p.final}
        ranked = found.ranked(points, shown, wanted) if shown else []
        best = (
            (ranked[0].record.host, ranked[0].record.job_id) if ranked and shown in ranked[0].final else None
        )
        Console().print(views.render_grids(views.grids(rows), values, best, shown), soft_wrap=True)
    elif as_json:
        click.echo(found.as_json(points, metric, wanted))
    elif as_csv:
        click.echo(found.as_csv(points, metric), nl=False)
    else:
        click.echo(f"task '{name}': {len(points)} point(s)")
        click.echo(found.table(points, metric, wanted))
    return 0


@cli.command(context_settings=CONTEXT)
@click.argument("task", required=False)
@click.option("--host", help="Only the jobs of this host alias.")
@click.option(
    "--metric", "-m", "metrics", multiple=True, help="Only this metric (again for more; default: every one)."
)
@click.option("--sort", "metric", metavar="METRIC", help="The metric that picks the best point and curves.")
@_higher_option
@click.option(
    "--output",
    "-o",
    default="plots",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The folder; the PNGs go to OUTPUT/TASK/.",
)
@_ledger_options
def plot(
    task: str | None,
    host: str | None,
    metrics: tuple[str, ...],
    metric: str | None,
    higher: str | None,
    output: str,
    archive: str,
    inventory: str | None,
    verbose: bool,
) -> int:
    """PNGs of a task's metrics (needs matplotlib: pip install 'compute[plot]'): each metric against
    each swept parameter with its spread over seeds, and learning curves (metric by step, a band over
    seeds) of the best points (default task: the ledger's latest)."""
    from compute_platform.report import png
    from compute_platform.report.pages import figures_of

    png.check()  # before any host is asked
    view = _jobs_view(archive, inventory)
    try:
        got = _collected(view, task, host, metric, higher)
        drawn = figures_of(view, got, list(metrics))
    finally:
        view.close()
    name = got.task
    if not drawn:
        raise ComputeError(f"task '{name}': no metric to plot yet (its jobs wrote none, see docs/results.md)")
    try:
        written = png.write(drawn, Path(output) / png.file_name(name).removesuffix(".png"))
    except OSError as e:
        raise ComputeError(f"cannot write the plots: {e.filename or output}: {e.strerror or e}") from None
    for path in written:
        click.echo(f"wrote {path}")
    return 0


@cli.command(context_settings=CONTEXT)
@click.argument("task", required=False)
@click.option("--host", help="Only the jobs of this host alias.")
@click.option(
    "--sort",
    "metric",
    metavar="METRIC",
    help="Rank the points by this metric (default: the task's `metrics: {sort: ...}`).",
)
@_higher_option
@click.option(
    "--output",
    "-o",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The page to write.",
)
@_ledger_options
def report(
    task: str | None,
    host: str | None,
    metric: str | None,
    higher: str | None,
    output: str,
    archive: str,
    inventory: str | None,
    verbose: bool,
) -> int:
    """One self-contained page of a task (it loads nothing: open it offline, send it): the results
    table (sortable), the sweep's grid coloured by the metric, the plots, the sweep's config, commit
    and commands, its jobs and their states (default task: the ledger's latest)."""
    from compute_platform.ledger.records import write_whole
    from compute_platform.report import html, pages

    view = _jobs_view(archive, inventory)
    try:
        page = pages.task_page(view, _collected(view, task, host, metric, higher))
    finally:
        view.close()
    name = page.found.task
    try:
        write_whole(Path(output), html.task_page(page).encode())
    except OSError as e:
        raise ComputeError(f"cannot write {output}: {e.strerror or e}") from None
    click.echo(
        f"wrote {output}: task '{name}', {len(page.found.points)} point(s), {len(page.found.rows)} job(s)"
    )
    return 0


@cli.command(context_settings=CONTEXT)
@click.option(
    "--port", "-p", default=0, type=click.IntRange(0, 65535), help="The port (default: a free one)."
)
@click.option(
    "--every",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=5.0),
    help="Seconds between two looks at the hosts (at least 5, as `compute jobs --watch`).",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the page in this machine's browser.")
@click.option(
    "--sort",
    "metric",
    metavar="METRIC",
    help="The metric that picks each task's best point (where it has it).",
)
@_higher_option
@_ledger_options
def ui(
    port: int,
    every: float,
    open_browser: bool,
    metric: str | None,
    higher: str | None,
    archive: str,
    inventory: str | None,
    verbose: bool,
) -> int:
    """Serve the pages of `compute report` live for the whole ledger, every task and host, on
    127.0.0.1 only, behind a random token in the URL; Ctrl-C stops it."""
    from compute_platform.report import serve

    view = _jobs_view(archive, inventory)
    view.records(last=1)  # a missing ledger is an error now, not on the first page
    try:
        httpd, url = serve.server(view, port, every, metric=metric, higher=_higher(higher, metric))
    except OSError as e:
        view.close()
        raise ComputeError(f"cannot serve on {serve.ADDRESS}:{port}: {e.strerror or e}") from None
    click.echo(f"compute ui: {url}")
    click.echo("(only this machine can open it, with the token; Ctrl-C stops)")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        httpd.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        return 0  # stopping the server is the normal way out
    finally:
        httpd.server_close()
        view.close()
    return 0


@cli.command("code", context_settings=CONTEXT)
@click.argument("job", required=False)
@click.option("--diff", "against", is_flag=True, help="The job's code against the same files now.")
@click.option(
    "--root", type=click.Path(file_okay=False, exists=True), help="Where those files are now (with --diff)."
)
@click.option("--clean", is_flag=True, help="Remove from the hosts the snapshots no open job runs.")
@click.option("--host", help="With --clean: only this host.")
@click.option("--dry-run", "-n", is_flag=True, help="With --clean: say what would be removed.")
@_ledger_options
def code_command(
    job: str | None,
    against: bool,
    root: str | None,
    clean: bool,
    host: str | None,
    dry_run: bool,
    archive: str,
    inventory: str | None,
    verbose: bool,
) -> int:
    """The code JOB ran (its snapshot's commit and uncommitted changes; --diff: against the files now),
    or --clean the snapshots no open job needs."""
    from compute_platform.jobs import code
    from compute_platform.jobs.query import one_record

    if clean == bool(job):
        raise click.UsageError("name a JOB, or --clean")
    view = _jobs_view(archive, inventory)
    try:
        if clean:
            lines = code.clean(view, host, dry_run, lambda text: click.echo(text, err=True))
        else:
            record = one_record(view.records(job_ids=[job or ""]), job or "")
            lines = (
                code.against_now(view, record, Path(root) if root else None)
                if against
                else code.describe(view, record)
            )
    finally:
        view.close()
    for line in lines:
        click.echo(line)
    return 0


def _legacy_hint(archive: str) -> None:
    """One line on stderr when ./jobs.csv holds jobs of the original tool not in the ledger yet."""
    from compute_platform.ledger import legacy

    hint = legacy.hint(Path(legacy.DEFAULT_FILE), Path(archive))
    if hint:
        click.echo(hint, err=True)


@cli.command("import-legacy", context_settings=CONTEXT)
@click.argument("jobs_csv", default="jobs.csv", type=click.Path(dir_okay=False))
@click.option(
    "--inventory",
    "-i",
    default="hosts.yaml",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The hosts file defining the aliases of JOBS_CSV (their save_path locates the logs).",
)
@_archive_option("The archive holding job.csv (and the original's archived scripts).")
@click.option("--dry-run", "-n", is_flag=True, help="Say what would be imported; write nothing.")
@click.option("--verbose", "-v", is_flag=True, help="Show tracebacks.")
def import_legacy(jobs_csv: str, inventory: str, archive: str, dry_run: bool, verbose: bool) -> int:
    """Add the jobs of the original tool's JOBS_CSV (default: ./jobs.csv) to the ledger, so that
    `compute jobs` follows them; jobs already there are left out, so running it again adds nothing."""
    from compute_platform.ledger import legacy

    result = legacy.import_jobs(Path(jobs_csv), Path(inventory), Path(archive), dry_run=dry_run)
    for line in legacy.report(result):
        click.echo(line)
    return 0


@cli.command("completion", context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(completion.SHELLS))
def completion_script(shell: str) -> int:
    """Print the completion script for SHELL. Load it from your shell's startup file:
    bash: eval "$(compute completion bash)"; zsh: eval "$(compute completion zsh)";
    fish: compute completion fish | source."""
    click.echo(completion.source(cli, shell))
    return 0
