"""TensorBoard event files for a training run, written with tensorboardX.

The trainer logs its metrics as scalars, the resolved config as text and,
when `monitor.histograms_every` is set, weight histograms. Files land in one
folder (`<output_dir>/tensorboard`); a resumed run adds a new event file there.
"""

from __future__ import annotations

import itertools
import numbers
import os

import numpy as np

_writer_ids = itertools.count()


class TensorBoardWriter:
    def __init__(self, log_dir: str):
        from tensorboardX import SummaryWriter

        os.makedirs(log_dir, exist_ok=True)
        self.log_dir = log_dir
        # tensorboardX names files by the second and host only; a resumed run starting within
        # the same second would overwrite the earlier file, so pid + a counter make it unique.
        # flush_secs: a crashed run still leaves recent points on disk; close() flushes the rest.
        suffix = f".{os.getpid()}.{next(_writer_ids)}"
        self._w = SummaryWriter(logdir=log_dir, flush_secs=10, filename_suffix=suffix)

    def add_scalars(self, step: int, scalars: dict) -> None:
        """One point per tag at `step`. Values that are not real numbers (None from a
        metrics record, strings) are skipped; NaN/Inf are kept, TensorBoard shows them."""
        for tag, value in scalars.items():
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            self._w.add_scalar(tag, float(value), global_step=int(step))

    def add_histograms(self, step: int, arrays: dict[str, np.ndarray]) -> None:
        """One histogram per tag at `step`, over the finite values of each array."""
        for tag, arr in arrays.items():
            values = np.asarray(arr, dtype=np.float64).ravel()
            values = values[np.isfinite(values)]
            if values.size == 0:
                continue
            self._w.add_histogram(tag, values, global_step=int(step))

    def add_text(self, tag: str, text: str, step: int = 0) -> None:
        """Text shown in TensorBoard's Text tab (rendered as Markdown there)."""
        self._w.add_text(tag, text, global_step=int(step))

    def flush(self) -> None:
        self._w.flush()

    def close(self) -> None:
        self._w.close()


def markdown_code_block(text: str, lang: str = "") -> str:
    """Wraps `text` so TensorBoard's Markdown shows it verbatim (YAML keeps its indentation)."""
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"
