"""`mft report RUN_DIR`: one self-contained HTML page about a training run.

Reads `metrics.jsonl` (required), `config.yaml` and `logs/rank_0.log` (optional)
from a run folder written by `mft train`, draws PNG plots with matplotlib and
embeds them as base64, so the page opens anywhere with nothing beside it.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
import numbers
import os
import re
import statistics
from dataclasses import dataclass

from mft.errors import MftError
from mft.monitor.plots import Panel, Series, render_png

# Keys drawn when a run logged them; the first four are always written by the trainer.
PLOTTED_KEYS = (
    "loss", "val_loss", "lr", "grad_norm", "tokens_per_s", "peak_memory_mb", "loss_scale",
    "moe_load_max_over_mean", "moe_load_min_over_mean", "moe_aux_loss",
)  # fmt: skip

_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) ")


@dataclass
class RunData:
    run_dir: str
    metrics_path: str
    records: list[dict]  # one per step (a resumed run's re-logged steps replace the earlier ones), by step
    resumes: int  # times the step count went backwards in metrics.jsonl
    config_text: str | None
    config: dict | None
    wall_time_s: float | None  # first to last line of logs/rank_0.log

    @property
    def title(self) -> str:
        name = ((self.config or {}).get("run") or {}).get("name")
        return str(name) if name else os.path.basename(os.path.normpath(self.run_dir))


def read_metrics_file(path: str) -> tuple[list[dict], int]:
    """Parses metrics.jsonl strictly; errors name file:line. Returns (records by step, resumes)."""
    if not os.path.isfile(path):
        raise MftError(f"{path}: no metrics.jsonl here; RUN_DIR must be a run folder written by `mft train` (its run.output_dir)")
    by_step: dict[int, dict] = {}
    resumes = 0
    last_step = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise MftError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(record, dict):
                raise MftError(f"{where}: expected a JSON object per line, got {type(record).__name__}")
            step = record.get("step")
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise MftError(f"{where}: 'step' must be a non-negative integer, got {step!r}")
            for key in PLOTTED_KEYS:
                value = record.get(key)
                if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
                    raise MftError(f"{where}: {key!r} must be a number or null, got {value!r}")
            if last_step is not None and step <= last_step:
                resumes += 1
            last_step = step
            by_step[step] = record
    if not by_step:
        raise MftError(f"{path}: no records (the run logged no step yet)")
    return [by_step[s] for s in sorted(by_step)], resumes


def _read_config(path: str) -> tuple[str | None, dict | None]:
    if not os.path.isfile(path):
        return None, None
    import yaml

    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise MftError(f"{path}: not valid YAML: {e}") from None
    if data is not None and not isinstance(data, dict):
        raise MftError(f"{path}: expected a mapping of config sections, got {type(data).__name__}")
    return text, data


def _log_span_s(path: str) -> float | None:
    """Seconds from the first to the last timestamped line of a trainer log."""
    if not os.path.isfile(path):
        return None
    first = last = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = _LOG_TIME.match(line)
            if m:
                t = dt.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S") + dt.timedelta(milliseconds=int(m.group(2)))
                first = first or t
                last = t
    return (last - first).total_seconds() if first else None


def load_run(run_dir: str) -> RunData:
    if not os.path.isdir(run_dir):
        raise MftError(f"{run_dir}: not a folder; RUN_DIR must be a run folder written by `mft train` (its run.output_dir)")
    metrics_path = os.path.join(run_dir, "metrics.jsonl")
    records, resumes = read_metrics_file(metrics_path)
    config_text, config = _read_config(os.path.join(run_dir, "config.yaml"))
    return RunData(
        run_dir=os.path.abspath(run_dir),
        metrics_path=metrics_path,
        records=records,
        resumes=resumes,
        config_text=config_text,
        config=config,
        wall_time_s=_log_span_s(os.path.join(run_dir, "logs", "rank_0.log")),
    )


# ---------------------------------------------------------------- plots


def _series(records: list[dict], key: str, label: str, sparse: bool = False) -> Series:
    """`sparse`: keep only steps that logged a value (validation every N steps)."""
    rows = [(r["step"], r.get(key)) for r in records if key in r]
    if sparse:
        rows = [(s, v) for s, v in rows if v is not None]
    if all(v is None for _, v in rows):
        rows = []
    return Series(label, [s for s, _ in rows], [v for _, v in rows], markers=sparse)


def build_panels(records: list[dict]) -> list[Panel]:
    """Every panel this run has data for, in reading order."""
    panels = [
        Panel("Loss", "loss", [_series(records, "loss", "train"), _series(records, "val_loss", "validation", sparse=True)]),
        Panel("Learning rate", "lr", [_series(records, "lr", "lr")], log_y=False),
        Panel("Gradient norm (before clipping)", "grad norm", [_series(records, "grad_norm", "grad norm")]),
        Panel("Throughput", "tokens / s", [_series(records, "tokens_per_s", "tokens/s")], log_y=False),
        Panel("Peak memory", "MB", [_series(records, "peak_memory_mb", "peak memory")], log_y=False),
        Panel("Loss scale", "scale", [_series(records, "loss_scale", "loss scale")]),
        Panel(
            "MoE expert load (1 = balanced)",
            "load / mean load",
            [_series(records, "moe_load_max_over_mean", "max / mean"), _series(records, "moe_load_min_over_mean", "min / mean")],
            log_y=False,
        ),
        Panel("MoE auxiliary loss", "aux loss", [_series(records, "moe_aux_loss", "aux loss")]),
    ]
    for p in panels:
        p.series = [s for s in p.series if s.values]
    return [p for p in panels if p.series]


# ---------------------------------------------------------------- summary


def _fmt_num(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:.{digits}g}" if abs(x) < 1e-3 or abs(x) >= 1e5 else f"{x:.{digits}f}"


def _fmt_duration(s: float | None) -> str:
    if s is None:
        return "—"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{sec}s")


def summary_rows(run: RunData) -> list[tuple[str, str]]:
    recs = run.records
    cfg = run.config or {}
    losses = [(r["step"], r["loss"]) for r in recs if r.get("loss") is not None]
    planned = (cfg.get("train") or {}).get("steps")
    last_step = recs[-1]["step"]
    rows = [("run", run.title), ("folder", run.run_dir)]
    model = cfg.get("model") or {}
    if model.get("arch"):
        shape = ", ".join(f"{k} {model[k]}" for k in ("hidden_size", "num_layers", "num_experts") if model.get(k))
        rows.append(("model", f"{model['arch']}" + (f" ({shape})" if shape else "")))
    rows.append(("steps", f"{last_step:,}" + (f" of {planned:,}" if isinstance(planned, int) else "")))
    rows.append(("logged records", f"{len(recs):,}" + (f" (resumed {run.resumes}x)" if run.resumes else "")))
    if losses:
        best = min(losses, key=lambda sv: sv[1])
        rows += [
            ("first loss", f"{_fmt_num(losses[0][1])} (step {losses[0][0]})"),
            ("last loss", f"{_fmt_num(losses[-1][1])} (step {losses[-1][0]})"),
            ("lowest loss", f"{_fmt_num(best[1])} (step {best[0]})"),
        ]
    vals = [(r["step"], r["val_loss"]) for r in recs if r.get("val_loss") is not None]
    if vals:
        rows.append(("last validation loss", f"{_fmt_num(vals[-1][1])} (step {vals[-1][0]}, perplexity {_fmt_num(math.exp(min(vals[-1][1], 700)))})"))
    tokens = [r["tokens_seen"] for r in recs if isinstance(r.get("tokens_seen"), int)]
    if tokens:
        rows.append(("tokens seen", f"{tokens[-1]:,}"))
    tps = [r["tokens_per_s"] for r in recs[1:] if r.get("tokens_per_s")]  # the first step includes compilation
    if tps:
        rows.append(("throughput (median)", f"{statistics.median(tps):,.0f} tokens/s"))
    peak = [r["peak_memory_mb"] for r in recs if r.get("peak_memory_mb") is not None]
    if peak:
        rows.append(("peak memory", f"{max(peak):,.0f} MB"))
    rows.append(("wall time", _fmt_duration(run.wall_time_s) + ("" if run.wall_time_s is None else " (first to last line of logs/rank_0.log)")))
    step_times = [r["step_time_s"] for r in recs if isinstance(r.get("step_time_s"), (int, float))]
    if step_times:
        rows.append(("time in logged steps", _fmt_duration(sum(step_times))))
    return rows


# ---------------------------------------------------------------- page

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1400px; color: #1d1d1f; background: #fff; padding: 0 16px; }
h1 { margin: 0 0 4px; font-size: 26px; }
h2 { font-size: 19px; margin: 28px 0 10px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.sub { color: #666; margin: 0; font-size: 13px; }
table.summary { border-collapse: collapse; font-size: 14px; }
table.summary th { text-align: left; font-weight: 600; padding: 3px 18px 3px 0; color: #444; vertical-align: top; }
table.summary td { padding: 3px 0; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(660px, 1fr)); gap: 12px; }
figure { margin: 0; border: 1px solid #e3e3e3; border-radius: 6px; padding: 4px; }
figure img { display: block; margin: 0 auto; width: 640px; max-width: 100%; height: auto; }  /* natural size on wide screens */
.note { color: #666; font-size: 13px; }
pre { background: #f6f8fa; border: 1px solid #e3e3e3; border-radius: 6px; padding: 12px; font-size: 12.5px; overflow-x: auto; }
"""


def render_html(run: RunData, images: list[tuple[Panel, bytes]], missing: list[str]) -> str:
    esc = html.escape
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    rows = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in summary_rows(run))
    figures = "\n".join(
        f'<figure><img alt="{esc(p.title)}" title="{esc(p.title)}" width="640" height="360" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}"></figure>'
        for p, png in images
    )
    note = f'<p class="note">Not logged in this run: {esc(", ".join(missing))}.</p>' if missing else ""
    config = (
        f"<pre>{esc(run.config_text)}</pre>"
        if run.config_text is not None
        else '<p class="note">No config.yaml in the run folder.</p>'
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{esc(run.title)} · mft run report</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{esc(run.title)}</h1>
<p class="sub">mft run report · {esc(run.run_dir)} · generated {now}</p>
<h2>Summary</h2>
<table class="summary">
{rows}
</table>
<h2>Plots</h2>
<div class="grid">
{figures}
</div>
{note}
<h2>Resolved config</h2>
{config}
</body>
</html>
"""


_OPTIONAL = {
    "val_loss": "validation loss",
    "peak_memory_mb": "peak memory",
    "loss_scale": "loss scale",
    "moe_load_max_over_mean": "MoE load",
}


def build_report(run_dir: str) -> str:
    """The report page for `run_dir` as an HTML string."""
    run = load_run(run_dir)
    panels = build_panels(run.records)
    images = [(p, render_png(p)) for p in panels]
    present = {k for r in run.records for k, v in r.items() if v is not None}
    missing = [label for key, label in _OPTIONAL.items() if key not in present]
    return render_html(run, images, missing)


def write_report(run_dir: str, output: str | None = None) -> str:
    """Writes the report (default RUN_DIR/report.html) atomically; returns its path."""
    page = build_report(run_dir)
    output = output or os.path.join(run_dir, "report.html")
    parent = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(parent):
        raise MftError(f"{output}: folder {parent} does not exist")
    tmp = f"{output}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(page)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return output
