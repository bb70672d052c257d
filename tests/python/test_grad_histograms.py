"""Gradient histograms in TensorBoard (monitor.grad_histograms), read back with TensorBoard's reader.

The histograms' squared sums must add up to the step's logged pre-clip grad_norm: they are that
step's gradients, not some other pass's."""

from __future__ import annotations

import math

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mft.errors import MftError
from mft.monitor.metrics import read_metrics
from test_train import corpus, run_train, write_recipe  # noqa: F401  (module fixture)


def test_gradient_histograms_are_the_steps_gradients(tmp_path, corpus):  # noqa: F811
    out = tmp_path / "run"
    run_train(write_recipe(tmp_path, corpus, out, steps=4), "monitor.histograms_every=2", "monitor.grad_histograms=true")
    acc = EventAccumulator(str(out / "tensorboard"), size_guidance={"histograms": 0})
    acc.Reload()
    tags = acc.Tags()["histograms"]
    grads = sorted(t for t in tags if t.startswith("gradients/"))
    weights = sorted(t for t in tags if t.startswith("weights/"))
    assert grads and [g.removeprefix("gradients/") for g in grads] == [w.removeprefix("weights/") for w in weights]
    norms = {m["step"]: m["grad_norm"] for m in read_metrics(str(out / "metrics.jsonl"))}
    for step in (2, 4):
        sq = 0.0
        for tag in grads:
            (h,) = [e for e in acc.Histograms(tag) if e.step == step]
            sq += h.histogram_value.sum_squares
        assert math.sqrt(sq) == pytest.approx(norms[step], rel=1e-4), step
    assert all(h.step in (2, 4) for tag in grads for h in acc.Histograms(tag))


def test_grad_histograms_need_histograms_every(tmp_path, corpus):  # noqa: F811
    out = tmp_path / "run"
    with pytest.raises(MftError, match="monitor.grad_histograms.*histograms_every"):
        run_train(write_recipe(tmp_path, corpus, out), "monitor.grad_histograms=true")
    assert not out.exists()
