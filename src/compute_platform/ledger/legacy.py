"""The original tool's record of its Slurm jobs, read into the ledger (`compute import-legacy`).

The original appended one headerless line per submitted job to ./jobs.csv:

    f"{alias} , {job_id} , {cmd} {args} \\n"      (older versions: f"{alias} , {job_id} , {args} \\n")

The command may itself hold commas; the job id is empty when sbatch failed, and garbage when the host's
`init` printed something before sbatch's answer. The script went to archive/<alias>/<alias>_<job_id>.slurm
(the id as written, a leading space included) and Slurm wrote the logs to <save_path>/slurm.<job_id>.out
and .err (sbatch's --output/--error, save_path from hosts.yaml). Those jobs wrote no exit-status file:
`compute jobs` asks squeue and sacct about them.

Parsing is pure. `import_jobs` adds the I/O: hosts.yaml (each alias's save_path), the archived scripts
(job names) and one append to the ledger of the jobs it does not hold yet, checked under its lock.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from compute_platform.errors import InputError, Position
from compute_platform.ledger import JobPaths, JobRecord, Ledger, new_run_id

if TYPE_CHECKING:
    from compute_platform.input.inventory import Inventory
    from compute_platform.input.spec import HostSpec

DEFAULT_FILE = "jobs.csv"
COMMAND = "compute import-legacy"
TASK = "legacy"  # the task of every imported row: `compute jobs --task legacy`
HINT_IDS = 50  # jobs not imported yet that the hint looks for by id; more: it reads every row's
SEPARATOR = " , "
NO_ID = "no job id (sbatch failed)"
BAD_ID = "not a Slurm job id"
# Slurm refuses ids of 0 and from NO_VAL (0xfffffffe) up, and one such id in `squeue -j` fails the
# whole query of its host: such a line is skipped, not imported.
MAX_JOB_ID = 0xFFFFFFFE
SHOWN_GROUPS = 8  # line ranges listed per reason in the report


@dataclass(frozen=True)
class LegacyJob:
    """One valid line: a job that sbatch accepted."""

    line: int
    alias: str
    job_id: str  # as Slurm prints it (no spaces, no leading zeros)
    written_id: str  # the field as written: the archived script is named after it
    command: str


@dataclass(frozen=True)
class Skipped:
    line: int
    reason: str


@dataclass(frozen=True)
class LegacyFile:
    jobs: tuple[LegacyJob, ...]
    skipped: tuple[Skipped, ...]


def parse_line(text: str, line: int, file: str) -> LegacyJob | Skipped | None:
    """One line of jobs.csv: a job, a line to skip (no usable job id), or None for a blank line.
    A line that is not `ALIAS , JOB_ID , COMMAND` raises: the file is not the original's jobs.csv."""
    text = text.rstrip("\r\n")
    if not text.strip():
        return None
    parts = text.split(SEPARATOR, 2)
    if len(parts) < 3 or not parts[0].strip():
        raise InputError(
            f"cannot read this line: expected `ALIAS , JOB_ID , COMMAND` (the original tool's "
            f"jobs.csv), got {_short(text)!r}",
            Position(file, line),
        )
    alias, written_id, command = parts[0].strip(), parts[1], parts[2].strip()
    job_id = written_id.strip()
    if not job_id:
        return Skipped(line, NO_ID)
    if not re.fullmatch(r"[0-9]+", job_id) or not 0 < int(job_id) < MAX_JOB_ID:
        return Skipped(line, BAD_ID)
    return LegacyJob(line, alias, str(int(job_id)), written_id, command)


def parse(data: bytes, file: str) -> LegacyFile:
    """The whole file (bytes: a line that is not UTF-8 is named by its number)."""
    jobs: list[LegacyJob] = []
    skipped: list[Skipped] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(
                f"cannot read this line: byte {e.start + 1} is not UTF-8 text", Position(file, number)
            ) from None
        found = parse_line(text, number, file)
        if isinstance(found, LegacyJob):
            jobs.append(found)
        elif isinstance(found, Skipped):
            skipped.append(found)
    return LegacyFile(tuple(jobs), tuple(skipped))


def job_name(script: str) -> str:
    """The `#SBATCH -J NAME` (or `--job-name`) of a script; '' without one. Like sbatch, only the
    #SBATCH lines before the first command count, and the last one given wins."""
    name = ""
    for raw in script.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            break
        if not line.startswith("#SBATCH") or ("-J" not in line and "--job-name" not in line):
            continue
        try:
            words = shlex.split(line[len("#SBATCH") :], comments=True)
        except ValueError:
            words = line[len("#SBATCH") :].split()
        for i, word in enumerate(words):
            if word in ("-J", "--job-name") and i + 1 < len(words):
                name = words[i + 1]
            elif word.startswith("--job-name="):
                name = word.removeprefix("--job-name=")
            elif word.startswith("-J") and len(word) > 2:
                name = word[2:]
    return name


def to_record(
    job: LegacyJob,
    save_path: str | None,
    script: str,
    name: str,
    source: str,
    hosts_file: str,
    run_id: str,
) -> JobRecord:
    """The ledger row of an imported job. The original recorded no time, playbook or task: the row's
    playbook is the (absolute) path of the file it came from, its task is `legacy`."""
    paths = JobPaths.original(save_path, job.job_id) if save_path is not None else JobPaths("", "", "")
    out, err = paths.out, paths.err
    return JobRecord(
        submitted_at="",
        playbook=source,
        task=TASK,
        host=job.alias,
        scheduler="slurm",
        job_id=job.job_id,
        job_name=name,
        command=job.command,
        script=script,
        log_out=out,
        log_err=err,
        run_id=run_id,
        hosts_file=hosts_file,
    )


# -- the import (I/O) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportResult:
    source: Path
    ledger: Path  # job.csv
    imported: tuple[JobRecord, ...]
    already: int  # jobs not imported because the ledger holds them already
    repeated: tuple[int, ...]  # lines whose job an earlier line names already
    skipped: tuple[Skipped, ...]
    without_logs: tuple[str, ...]  # aliases whose hosts.yaml entry has no save_path
    dry_run: bool = False


def read(source: Path) -> LegacyFile:
    try:
        data = source.read_bytes()
    except FileNotFoundError:
        raise InputError(
            f"{source} not found: give the path of the original tool's jobs.csv ({COMMAND} PATH)"
        ) from None
    except OSError as e:
        raise InputError(f"cannot read {source}: {e.strerror or e}") from None
    return parse(data, str(source))


def import_jobs(source: Path, hosts_file: Path, archive: Path, dry_run: bool = False) -> ImportResult:
    """Append to the ledger one row per valid job of `source` that it does not hold yet."""
    from compute_platform.input.inventory import load_inventory

    legacy = read(source)
    inventory = load_inventory(hosts_file, None)
    specs = {job.alias: host_of(job, inventory, source) for job in legacy.jobs}
    ledger = Ledger(archive)
    run_id = new_run_id()
    origin, hosts = str(source.resolve()), str(hosts_file.resolve())
    records: dict[tuple[str, str], JobRecord] = {}
    repeated = []
    for job in legacy.jobs:
        if (job.alias, job.job_id) in records:
            repeated.append(job.line)
            continue
        spec = specs[job.alias]
        save_path = spec.save_path if "save_path" in spec.given else None
        script, name = archived_script(ledger.root, job)
        records[(job.alias, job.job_id)] = to_record(job, save_path, script, name, origin, hosts, run_id)
    if dry_run:
        held = ledger.job_keys()
        new = [r for key, r in records.items() if key not in held]
    else:
        new = ledger.append_new(list(records.values())) if records else []
    return ImportResult(
        source=source,
        ledger=ledger.jobs_file,
        imported=tuple(new),
        already=len(records) - len(new),
        repeated=tuple(repeated),
        skipped=legacy.skipped,
        without_logs=tuple(sorted({r.host for r in records.values() if not r.log_out})),
        dry_run=dry_run,
    )


def host_of(job: LegacyJob, inventory: Inventory, source: Path) -> HostSpec:
    """The hosts.yaml entry of a job's alias: it must be there, and be a Slurm host."""
    from compute_platform.input.yamlfile import did_you_mean

    where = Position(str(source), job.line)
    spec = inventory.hosts.get(job.alias)
    if spec is None:
        raise InputError(
            f"unknown host '{job.alias}': not in {inventory.hosts_file} (add it, or pass --inventory "
            "with the original's hosts.yaml)" + did_you_mean(job.alias, inventory.hosts),
            where,
        )
    if spec.platform != "slurm":
        raise InputError(
            f"host '{job.alias}' is not a Slurm host in {inventory.hosts_file} (platform: "
            f"{spec.platform}); the original tool recorded only Slurm jobs in jobs.csv",
            where,
        )
    return spec


def archived_script(archive: Path, job: LegacyJob) -> tuple[str, str]:
    """(path relative to the archive, job name) of the script the original archived for the job;
    ('', '') when it is not there."""
    for name in dict.fromkeys([f"{job.alias}_{job.written_id}.slurm", f"{job.alias}_{job.job_id}.slurm"]):
        try:
            text = (archive / job.alias / name).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        return f"{job.alias}/{name}", job_name(text)
    return "", ""


# -- what the user reads ----------------------------------------------------------------------------


def report(result: ImportResult) -> list[str]:
    verb = "would import" if result.dry_run else "imported"
    lines = [
        f"{result.source}: {verb} {len(result.imported)} job(s) into {result.ledger} (task {TASK}), "
        f"{result.already} already there, "
        + (f"{len(result.repeated)} repeated line(s), " if result.repeated else "")
        + f"{len(result.skipped)} invalid line(s) skipped"
    ]
    by_reason: dict[str, list[int]] = {}
    for skipped in result.skipped:
        by_reason.setdefault(skipped.reason, []).append(skipped.line)
    for reason, numbers in by_reason.items():
        lines.append(f"  {reason}: {line_ranges(numbers)}")
    if result.repeated:
        lines.append(f"  the same job as an earlier line: {line_ranges(list(result.repeated))}")
    for alias in result.without_logs:
        lines.append(f"  host {alias} has no save_path in the hosts file: the logs of its jobs are not known")
    if result.imported and not result.dry_run:
        lines.append(f"see them: compute jobs --task {TASK}")
    return lines


def line_ranges(numbers: list[int]) -> str:
    """`line 9` or `lines 9, 106, 132-135 and 40 more`: the first few ranges of sorted line numbers."""
    groups: list[tuple[int, int]] = []
    for n in sorted(numbers):
        if groups and n == groups[-1][1] + 1:
            groups[-1] = (groups[-1][0], n)
        else:
            groups.append((n, n))
    shown = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in groups[:SHOWN_GROUPS])
    rest = sum(b - a + 1 for a, b in groups[SHOWN_GROUPS:])
    return ("line " if len(numbers) == 1 else "lines ") + shown + (f" and {rest} more" if rest else "")


def hint(source: Path, archive: Path) -> str | None:
    """For `compute jobs`: one line naming the import command when ./jobs.csv holds jobs of the
    original tool that the ledger does not. No network and no hosts.yaml; a file that does not start
    like the original's jobs.csv gives no hint, an unreadable line is passed over."""
    try:
        lines = source.read_bytes().decode("utf-8", errors="replace").split("\n")
    except OSError:
        return None
    keys: set[tuple[str, str]] = set()
    first = True
    for number, text in enumerate(lines, start=1):
        try:
            found = parse_line(text, number, str(source))
        except InputError:
            if first:
                return None
            continue
        if found is not None:
            first = False
        if isinstance(found, LegacyJob):
            keys.add((found.alias, found.job_id))
    if not keys:
        return None
    ledger = Ledger(archive)
    # where imports put them (task legacy: only the parts of job.csv that hold it are read), then the
    # same ids anywhere, by their ids while few
    missing = keys - {(r.host, r.job_id) for r in ledger.records_where(task=TASK)}
    if missing:
        ids = sorted({job_id for _, job_id in missing})
        held = (
            ledger.job_keys()
            if len(ids) > HINT_IDS
            else {(r.host, r.job_id) for r in ledger.records_where(mentioning=ids)}
        )
        missing -= held
    if not missing:
        return None
    command = COMMAND if archive == Path("archive") else f"{COMMAND} --archive {shlex.quote(str(archive))}"
    return (
        f"hint: {len(missing)} job(s) of the original tool's {source} are not in {ledger.jobs_file}: "
        f"import them with `{command}`"
    )


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
