"""The pages, as HTML text: pure, from report/pages.py's models. `compute report` writes one; `compute ui`
serves them live. A page is self-contained: its style, its script and its plots (SVG) are inline, it
loads nothing, so it opens from a file, offline, years later.

Every value from the ledger goes through `escape`: a job's command or a task's name is text, never markup.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Sequence
from html import escape
from urllib.parse import quote

from compute_platform.jobs.query import point_text, state_text, time_text
from compute_platform.jobs.results import Point, number, usage_cells
from compute_platform.jobs.views import NO_JOB, TAGS, Cell, SweepGrid
from compute_platform.report import svg
from compute_platform.report.pages import IndexPage, TaskPage

STATE_COLOURS = {
    "PENDING": "#b58900",
    "RUNNING": "#268bd2",
    "COMPLETED": "#2e8540",
    "FAILED": "#c0392b",
    "CANCELLED": "#8e44ad",
    "TIMEOUT": "#d35400",
    "UNKNOWN": "#7f8c8d",
}
# a sequential scale (viridis' stops), best to worst: the grid's cells by their metric
SCALE = ("#fde725", "#5ec962", "#21918c", "#3b528b", "#440154")

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d2733;background:#f6f7f9}
header{background:#1d2733;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}header p{margin:4px 0 0;color:#c7d0da}
header a{color:#9fd3ff}main{padding:12px 24px 40px}section{background:#fff;border:1px solid #dde2e8;border-radius:6px;margin:14px 0;padding:12px 16px}
h2{font-size:16px;margin:0 0 10px}table{border-collapse:collapse;font-variant-numeric:tabular-nums}
th,td{padding:3px 9px;border-bottom:1px solid #eceff3;text-align:left;white-space:nowrap;vertical-align:top}
th{background:#f0f3f6;position:sticky;top:0}table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right}tr.best td{background:#fff4d6;font-weight:600}.state{font-weight:600}
.grid td.cell{text-align:center;min-width:70px;border:1px solid #fff}.grid td.cell.best{outline:3px solid #d55e00;outline-offset:-3px}
.plots{display:flex;flex-wrap:wrap;gap:14px}.plots figure{margin:0}.plot text{font-size:11px;fill:#334}.plot .title{font-size:13px;font-weight:600}
.plot .box{fill:none;stroke:#aab4bf}.plot .grid{stroke:#e4e8ec}.plot .axis{font-size:12px}.legend{list-style:none;padding:0;margin:4px 0 0;font-size:12px}
.swatch{display:inline-block;width:12px;height:12px;margin-right:6px;border-radius:2px;vertical-align:-1px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;margin:0}dt{color:#5a6a7a}dd{margin:0}
pre{background:#f0f3f6;padding:8px;overflow:auto;max-height:360px;margin:6px 0}.note{color:#5a6a7a}.warn{color:#c0392b}
details summary{cursor:pointer;color:#0b62a4}.scroll{overflow:auto;max-height:560px}
"""

# Sorting: a click on a header sorts by that column, a second click the other way; numbers by their
# value (data-v), text as text, empty cells last. The live pages (compute ui) fetch their <main> again
# every few seconds and keep the sort.
SCRIPT = """
(function(){
function key(td){if(!td)return null;var v=td.getAttribute('data-v');if(v!==null&&v!=='')return parseFloat(v);var t=td.textContent.trim();return t===''||t==='-'?null:t;}
function sortBy(table,col,dir){var body=table.tBodies[0];var rows=Array.prototype.slice.call(body.rows);
rows.sort(function(a,b){var x=key(a.cells[col]),y=key(b.cells[col]);if(x===null&&y===null)return 0;if(x===null)return 1;if(y===null)return -1;
var c=(typeof x==='number'&&typeof y==='number')?x-y:String(x).localeCompare(String(y),undefined,{numeric:true});return dir==='ascending'?c:-c;});
rows.forEach(function(r){body.appendChild(r);});
Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){if(i===col)th.setAttribute('aria-sort',dir);else th.removeAttribute('aria-sort');});
table.setAttribute('data-sorted',col+':'+dir);}
function wire(root){Array.prototype.forEach.call(root.querySelectorAll('table.sortable'),function(table){
Array.prototype.forEach.call(table.tHead.rows[0].cells,function(th,i){th.addEventListener('click',function(){
var now=th.getAttribute('aria-sort');sortBy(table,i,now==='ascending'?'descending':'ascending');});});});}
function sorts(){var s={};Array.prototype.forEach.call(document.querySelectorAll('table.sortable[id]'),function(t){var d=t.getAttribute('data-sorted');if(d)s[t.id]=d;});return s;}
function resort(s){Object.keys(s).forEach(function(id){var t=document.getElementById(id);if(t){var p=s[id].split(':');sortBy(t,parseInt(p[0],10),p[1]);}});}
wire(document);
var live=document.body.getAttribute('data-refresh');
function opened(){return Array.prototype.map.call(document.querySelectorAll('main details'),function(d){return d.open;});}
function scrolls(){return Array.prototype.map.call(document.querySelectorAll('main .scroll'),function(d){return d.scrollTop;});}
function restore(o,sc){Array.prototype.forEach.call(document.querySelectorAll('main details'),function(d,i){if(o[i])d.open=true;});
Array.prototype.forEach.call(document.querySelectorAll('main .scroll'),function(d,i){if(sc[i])d.scrollTop=sc[i];});}
if(live){var every=parseFloat(live)*1000;var note=document.getElementById('live');var said=note?note.textContent:'';var tag=null;var tick=function(){
var url=new URL(location.href);url.searchParams.set('part','main');
fetch(url.toString(),{cache:'no-store',headers:tag?{'If-None-Match':tag}:{}}).then(function(r){
if(r.status===304){var at=document.getElementById('as-of'),was=r.headers.get('X-As-Of');if(at&&was)at.textContent=decodeURIComponent(was);return null;}
if(!r.ok)throw new Error('HTTP '+r.status);tag=r.headers.get('ETag');return r.text();}).then(function(t){
if(note)note.textContent=said;
if(t===null)return;
var s=sorts(),o=opened(),sc=scrolls();var main=document.querySelector('main');main.innerHTML=t;wire(main);resort(s);restore(o,sc);
document.body.setAttribute('data-updates',String(parseInt(document.body.getAttribute('data-updates')||'0',10)+1));
}).catch(function(e){if(note)note.textContent='cannot refresh ('+e.message+'), trying again';}).finally(function(){setTimeout(tick,every);});};
setTimeout(tick,every);}
})();
"""


# The page's one script, allowed by its hash: were a value ever to slip through unescaped, no script of
# its making would run.
SCRIPT_HASH = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
# Nothing is loaded from anywhere; the live pages fetch their own address only.
POLICY = (
    f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{SCRIPT_HASH}'; img-src data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'"
)


def document(
    title: str, heading_html: str, sub_html: str, main_html: str, refresh: float | None = None
) -> str:
    """`title` is text; the others are HTML, their values escaped by the caller."""
    live = f' data-refresh="{refresh:g}"' if refresh else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>\n"
        f"<body{live}><header><h1>{heading_html}</h1><p>{sub_html}</p></header>\n"
        f"<main>{main_html}</main>\n<script>{SCRIPT}</script></body></html>\n"
    )


def task_page(page: TaskPage, refresh: float | None = None, home: str = "") -> str:
    back = f' · <a href="{escape(home)}">every task</a>' if home else ""
    live = f'<span id="live">live, every {refresh:g} s</span>' if refresh else "compute report"
    heading = f"Task {escape(page.found.task)}"
    return document(f"{page.found.task}: compute report", heading, live + back, task_main(page), refresh)


def _as_of(summary: str, generated: str) -> str:
    """In <main>, so that a live page's refresh brings it too."""
    return f'<p class="note" id="as-of">{escape(summary)} · as of {escape(generated)}</p>'


def task_main(page: TaskPage) -> str:
    """The part a live page fetches again."""
    parts = [
        _as_of(page.summary, page.generated),
        _problems(page.found.problems),
        _results(page),
        _grid(page),
        _plots(page),
        _sweep(page),
        _jobs(page),
    ]
    return "\n".join(p for p in parts if p)


def _problems(problems: Sequence[str]) -> str:
    if not problems:
        return ""
    return '<section class="warn">' + "<br>".join(escape(p) for p in problems) + "</section>"


def _results(page: TaskPage) -> str:
    found = page.found
    metrics = page.metrics
    params = page.params
    used = any(p.usage for p in found.points)
    head = ["", *params, "host", "state", "seeds", *[c for m in metrics for c in (m, f"± {m}", f"best {m}")]]
    head += ["elapsed", "memory used/asked", "CPU"] if used else []
    best = page.best
    rows = []
    for p in found.points:
        point = _sweep_values(p)
        cells = [f'<td data-v="{0 if p is best else 1}">{"★" if p is best else ""}</td>']
        cells += [_cell(point.get(name)) for name in params]
        cells += [
            f"<td>{escape(p.record.host)}</td>",
            _state(p.state),
            _seeds_cell(p),
        ]
        for m in metrics:
            final, top = p.final.get(m), p.best.get(m)
            cells += [
                _num_cell(final.mean if final else None),
                _num_cell(final.std if final and final.n > 1 else None),
                _num_cell(top.mean if top else None),
            ]
        if used:
            elapsed, memory, cpu = usage_cells(p.usage)
            cells += [
                _num_cell(p.usage.elapsed if p.usage else None, elapsed),
                _num_cell(p.usage.max_rss_mb if p.usage else None, memory),
                _num_cell(p.usage.cpu_efficiency if p.usage else None, cpu),
            ]
        rows.append(
            f'<tr{" class=best" if p is best else ""} data-job="{escape(p.record.job_id)}">{"".join(cells)}</tr>'
        )
    sort = (
        f", ranked by {escape(found.metric)}"
        + (" (higher is better)" if found.metric in found.higher else "")
        if found.metric
        else ""
    )
    note = (
        ""
        if metrics
        else '<p class="note">No job has written a metric yet (COMPUTE_METRICS, or <code>metrics:</code> in the task).</p>'
    )
    return (
        f'<section id="results"><h2>Results: {len(found.points)} point(s){sort}</h2>{note}'
        '<div class="scroll"><table class="sortable" id="results-table"><thead><tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "\n".join(rows)
        + "</tbody></table></div></section>"
    )


GRID_CELLS = 5_000  # past this, or mostly empty, a grid is no picture (a random search has no grid)


def _grid(page: TaskPage) -> str:
    if not page.grids:
        return ""
    metric = page.grid_metric
    size = sum(len(g.rows) * len(g.columns) for g in page.grids)
    filled = sum(len(g.cells) for g in page.grids)
    if size > GRID_CELLS or (size > 100 and filled < 0.3 * size):
        return (
            f'<section id="grid"><h2>Sweep grid</h2><p class="note">Left out: {size:,} cells for {filled:,} '
            "point(s), too many or too sparse to read (the table and the plots have every point).</p></section>"
        )
    scale = _colours(page.grid_values, metric in page.found.higher)
    best = (page.best.record.host, page.best.record.job_id) if page.best else None
    blocks = [_one_grid(grid, metric, page.grid_values, scale, best) for grid in page.grids]
    if not metric:
        what = " (no metric yet: by state)"
    elif page.best:
        what = f" coloured by {escape(metric)} (yellow: best)"
    else:
        what = f" coloured by {escape(metric)} (yellow: {'greatest' if metric in page.found.higher else 'least'})"
    return f'<section id="grid"><h2>Sweep grid{what}</h2>{"".join(blocks)}</section>'


Key = tuple[str, str]  # (host, job id)


def _one_grid(
    grid: SweepGrid, metric: str, values: dict[Key, float], scale: dict[Key, str], best: Key | None
) -> str:
    head = "".join(f"<th>{escape(a)}</th>" for a in grid.row_axes)
    head += "".join(
        f"<th>{escape(c).replace(chr(10), '<br>') or escape(metric or 'state')}</th>" for c in grid.columns
    )
    body = []
    for r, label in enumerate(grid.rows):
        cells = "".join(f"<th>{escape(v)}</th>" for v in label)
        for c in range(len(grid.columns)):
            cell = grid.cells.get((r, c))
            cells += (
                f'<td class="cell note">{NO_JOB}</td>'
                if cell is None
                else _grid_cell(cell, values, scale, best)
            )
        body.append(f"<tr>{cells}</tr>")
    hosts = ", ".join(grid.hosts)
    return (
        f'<p class="note">on {escape(hosts)}</p><table class="grid"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _grid_cell(cell: Cell, values: dict[Key, float], scale: dict[Key, str], best: Key | None) -> str:
    value = values.get(cell.key)
    colour = scale.get(cell.key)
    text = number(value) if value is not None else TAGS[cell.state]
    style = f"background:{colour};color:{_ink(colour)}" if colour else f"color:{STATE_COLOURS[cell.state]}"
    mark = " best" if cell.key == best and value is not None else ""
    tip = f"{cell.state} · job {cell.job_id}" + (f" · seeds {cell.seeds}" if cell.seeds else "")
    return (
        f'<td class="cell{mark}" style="{style}" title="{escape(tip)}" data-job="{escape(cell.job_id)}">'
        f"{escape(text)}</td>"
    )


def _colours(values: dict[Key, float], higher: bool) -> dict[Key, str]:
    """(host, job id) -> its colour on SCALE, the best value first."""
    if not values:
        return {}
    low, high = min(values.values()), max(values.values())
    found = {}
    for key, value in values.items():
        share = (value - low) / (high - low) if high > low else 0.0
        found[key] = _blend(1 - share if higher else share)
    return found


def _blend(share: float) -> str:
    at = share * (len(SCALE) - 1)
    i = min(int(at), len(SCALE) - 2)
    t = at - i
    a, b = SCALE[i], SCALE[i + 1]
    mixed = [round(int(a[k : k + 2], 16) * (1 - t) + int(b[k : k + 2], 16) * t) for k in (1, 3, 5)]
    return "#" + "".join(f"{v:02x}" for v in mixed)


def _ink(background: str) -> str:
    r, g, b = (int(background[k : k + 2], 16) for k in (1, 3, 5))
    return "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"


def _plots(page: TaskPage) -> str:
    figures = []
    for drawn in page.figures:
        for figure in drawn.params:
            figures.append(f"<figure>{svg.against_param(figure)}</figure>")
        if drawn.curves is not None:
            figures.append(f"<figure>{svg.learning_curves(drawn.curves)}{svg.legend(drawn.curves)}</figure>")
    if not figures:
        return ""
    return f'<section id="plots"><h2>Plots (mean ± std over seeds)</h2><div class="plots">{"".join(figures)}</div></section>'


def _sweep(page: TaskPage) -> str:
    facts = page.facts
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts.items)
    script = (
        f"<details><summary>the job script ({escape(facts.script_name)})</summary><pre>{escape(facts.script)}</pre></details>"
        if facts.script
        else ""
    )
    commands = (
        f"<details><summary>the commands ({len(facts.commands)})</summary><pre>{escape(chr(10).join(facts.commands))}</pre></details>"
        if facts.commands
        else ""
    )
    return f'<section id="sweep"><h2>Sweep</h2><dl>{items}</dl>{commands}{script}</section>'


def _jobs(page: TaskPage) -> str:
    rows = []
    for row in page.found.rows:
        r = row.record
        rows.append(
            f'<tr data-job="{escape(r.job_id)}"><td>{escape(r.job_id)}</td><td>{escape(r.host)}</td>'
            f"{_state(row.state.state, state_text(row))}"
            f"<td>{escape(time_text(r.submitted_at))}</td>"
            f"<td>{escape(point_text(r))}</td><td>{escape(r.run_id)}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("job", "host", "state", "submitted", "point", "run"))
    return (
        f'<section id="jobs"><h2>Jobs: {len(page.found.rows)} ({escape(page.summary)})</h2><div class="scroll">'
        f'<table class="sortable" id="jobs-table"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div></section>'
    )


def index_page(page: IndexPage, token: str, refresh: float) -> str:
    sub = f'{escape(page.archive)} · <span id="live">live, every {refresh:g} s</span>'
    return document("compute ui", "compute: every task of the ledger", sub, index_main(page, token), refresh)


def index_main(page: IndexPage, token: str) -> str:
    """The part a live index fetches again."""
    rows = []
    for task in page.tasks:
        link = f"task?name={_url(task.task)}&amp;token={_url(token)}"
        counts = ", ".join(f"{n} {s.lower()}" for s, n in task.states.items() if n)
        rows.append(
            f'<tr data-task="{escape(task.task)}"><td><a href="{link}">{escape(task.task)}</a></td>'
            f'<td>{escape(", ".join(task.hosts))}</td><td class="num" data-v="{task.jobs}">{task.jobs}</td>'
            f"<td>{escape(counts)}</td><td>{escape(task.latest)}</td></tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("task", "hosts", "jobs", "states", "latest submission"))
    return (
        _as_of(f"{sum(t.jobs for t in page.tasks)} job(s)", page.generated)
        + _problems(page.problems)
        + f'<section id="tasks"><h2>{len(page.tasks)} task(s)</h2><table class="sortable" id="tasks-table">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></section>"
    )


def _url(text: str) -> str:
    return escape(quote(text, safe=""))


def _sweep_values(point: Point) -> dict[str, object]:
    values = point.record.point
    return {"args": point.record.args, **values} if point.record.args else values


def _cell(value: object) -> str:
    """A swept value: numbers sort by value (finite ones: NaN would break the sort), others as text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return f'<td class="num" data-v="{value!r}">{escape(str(value))}</td>'
    return f"<td>{escape('' if value is None else str(value))}</td>"


def _num_cell(value: float | None, text: str | None = None) -> str:
    if value is None or not math.isfinite(value):
        return f'<td class="num">{escape(text or "-")}</td>'
    return f'<td class="num" data-v="{value!r}">{escape(text or number(value))}</td>'


def _state(state: str, text: str = "") -> str:
    colour = STATE_COLOURS.get(state, "#333")
    return f'<td class="state" style="color:{colour}">{escape(text or state)}</td>'


def _seeds_cell(p: Point) -> str:
    if p.seeds == ("",):
        return "<td></td>"
    have = len(p.seeds) - len(p.missing)
    missing = f" (no {' '.join(p.missing)})" if p.missing else ""
    return f'<td class="num" data-v="{have}">{have}/{len(p.seeds)}{escape(missing)}</td>'
