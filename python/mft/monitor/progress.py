"""Terminal progress bar: step, loss, tokens/s and ETA (tqdm)."""

from __future__ import annotations

import sys


class Progress:
    def __init__(self, total: int, start: int = 0, enabled: bool = True):
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=start, desc="train", unit="step", dynamic_ncols=True, file=sys.stderr)

    def update(self, step: int, loss: float, tokens_per_s: float) -> None:
        if self._bar is None:
            return
        self._bar.n = step
        self._bar.set_postfix_str(f"loss={loss:.4f} tok/s={tokens_per_s:,.0f}", refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
