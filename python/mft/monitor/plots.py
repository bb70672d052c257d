"""PNG line plots of run metrics, drawn with matplotlib's Agg canvas (no display, no pyplot state)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field

from mft.errors import MftError


@dataclass
class Series:
    label: str
    steps: list[int]
    values: list[float]
    markers: bool = False  # sparse series (validation every N steps) get dots


@dataclass
class Panel:
    title: str
    ylabel: str
    series: list[Series] = field(default_factory=list)
    log_y: bool | None = None  # None: log when the positive values span more than 100x

    @property
    def empty(self) -> bool:
        return not any(s.values for s in self.series)


def _figure():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MftError("mft report draws its plots with matplotlib: pip install 'mft[report]' (or matplotlib)") from e
    fig = Figure(figsize=(6.4, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _wants_log(panel: Panel) -> bool:
    if panel.log_y is not None:
        return panel.log_y
    values = [v for s in panel.series for v in s.values if v is not None and math.isfinite(v)]
    if not values or min(values) <= 0:
        return False
    return max(values) / min(values) > 100


def render_png(panel: Panel) -> bytes:
    """One panel as PNG bytes: step on x, each series a line (None values leave gaps)."""
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for s in panel.series:
        ys = [math.nan if v is None else v for v in s.values]
        ax.plot(s.steps, ys, label=s.label, marker="o" if s.markers else None, markersize=4, linewidth=1.6)
    if _wants_log(panel):
        ax.set_yscale("log")
    ax.set_title(panel.title)
    ax.set_xlabel("step")
    ax.set_ylabel(panel.ylabel)
    ax.grid(True, alpha=0.3)
    if len(panel.series) > 1:
        ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
