"""TensorBoard event files (read back with TensorBoard's own reader) and metrics.jsonl."""

from __future__ import annotations

import os

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from mft.errors import MftError
from mft.monitor.metrics import MetricsWriter, read_metrics
from mft.monitor.tensorboard import TensorBoardWriter, markdown_code_block
from test_train import corpus, run_train, write_recipe  # noqa: F401  (module fixture)

# 0 = keep every event (the default keeps a sample of scalars/histograms).
KEEP_ALL = {"scalars": 0, "histograms": 0, "tensors": 0}


def read_events(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance=KEEP_ALL)
    acc.Reload()
    return acc


def text_of(acc: EventAccumulator, tag: str) -> list[tuple[int, str]]:
    """TensorBoard stores text as a string tensor under `<tag>/text_summary`."""
    return [(e.step, e.tensor_proto.string_val[0].decode()) for e in acc.Tensors(f"{tag}/text_summary")]


def test_writer_scalars_text_and_histograms_read_back(tmp_path):
    rng = np.random.default_rng(0)
    w = TensorBoardWriter(str(tmp_path))
    w.add_text("config", markdown_code_block("run:\n  name: t\n", "yaml"))
    w.add_scalars(1, {"train/loss": 2.5, "train/lr": 1e-3, "train/skip": None, "train/label": "x", "train/flag": True})
    w.add_scalars(2, {"train/loss": 2.25, "train/lr": 2e-3})
    weights = rng.standard_normal((8, 16)).astype(np.float32)
    w.add_histograms(2, {"weights/w": weights, "weights/empty": np.zeros(0)})
    w.close()

    acc = read_events(tmp_path)
    tags = acc.Tags()
    assert sorted(tags["scalars"]) == ["train/loss", "train/lr"]  # None, str and bool were skipped
    assert [(e.step, e.value) for e in acc.Scalars("train/loss")] == [(1, 2.5), (2, 2.25)]
    np.testing.assert_allclose([e.value for e in acc.Scalars("train/lr")], [1e-3, 2e-3], rtol=1e-6)
    assert text_of(acc, "config") == [(0, "```yaml\nrun:\n  name: t\n```")]
    assert tags["histograms"] == ["weights/w"]  # an empty array has no histogram
    (h,) = acc.Histograms("weights/w")
    assert h.step == 2
    assert h.histogram_value.num == weights.size
    np.testing.assert_allclose(h.histogram_value.sum, weights.astype(np.float64).sum(), rtol=1e-6)
    assert h.histogram_value.min == pytest.approx(float(weights.min()))
    assert h.histogram_value.max == pytest.approx(float(weights.max()))


def test_two_writers_in_one_second_keep_both_files(tmp_path):
    a = TensorBoardWriter(str(tmp_path))
    a.add_scalars(1, {"loss": 1.0})
    a.close()
    b = TensorBoardWriter(str(tmp_path))
    b.add_scalars(2, {"loss": 0.5})
    b.close()
    assert len([f for f in os.listdir(tmp_path) if "tfevents" in f]) == 2
    assert [(e.step, e.value) for e in read_events(tmp_path).Scalars("loss")] == [(1, 1.0), (2, 0.5)]


def test_markdown_code_block_survives_backticks():
    block = markdown_code_block("a: ```x```", "yaml")
    assert block == "````yaml\na: ```x```\n````"


def test_training_run_tensorboard_has_every_metric_the_config_and_weight_histograms(tmp_path, corpus):  # noqa: F811
    out = tmp_path / "run"
    run_train(write_recipe(tmp_path, corpus, out), "monitor.histograms_every=2")
    acc = read_events(out / "tensorboard")
    metrics = read_metrics(str(out / "metrics.jsonl"))
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    for key in metrics[0]:
        if key == "step":
            continue
        events = acc.Scalars(f"train/{key}")
        assert [e.step for e in events] == [m["step"] for m in metrics], key
        np.testing.assert_allclose([e.value for e in events], [m[key] for m in metrics], rtol=1e-6, err_msg=key)
    (config_text,) = text_of(acc, "config")
    assert config_text[1] == markdown_code_block((out / "config.yaml").read_text(), "yaml")
    assert "histograms_every: 2" in config_text[1]

    from mft.models import AutoModelForCausalLM

    final = AutoModelForCausalLM.from_pretrained(str(out / "checkpoints" / "step_00000006"))
    names = sorted(acc.Tags()["histograms"])
    assert names == sorted(f"weights/{p.name}" for p in final.trainable_params())
    for name in names:
        assert [h.step for h in acc.Histograms(name)] == [2, 4, 6]
    # the step-6 histogram is of the weights that were saved at step 6
    final_weights = {f"weights/{p.name}": p.asnumpy() for p in final.trainable_params()}
    for name in names:
        h = acc.Histograms(name)[-1].histogram_value
        w = final_weights[name].astype(np.float64)
        assert h.num == w.size
        np.testing.assert_allclose(h.sum, w.sum(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "overrides, key",
    [(["monitor.histograms_every=-1"], "monitor.histograms_every"), (["monitor.histograms_every=2", "monitor.tensorboard=false"], "monitor.histograms_every")],
)
def test_bad_histogram_settings_are_refused_before_writing(tmp_path, corpus, overrides, key):  # noqa: F811
    out = tmp_path / "run"
    with pytest.raises(MftError, match=key):
        run_train(write_recipe(tmp_path, corpus, out), *overrides)
    assert not out.exists()


def test_metrics_jsonl_appends_and_nans_become_null(tmp_path):
    path = str(tmp_path / "m.jsonl")
    w = MetricsWriter(path)
    w.write({"step": 1, "loss": 2.0})
    w.close()
    w = MetricsWriter(path)
    w.write({"step": 2, "loss": float("nan")})
    w.close()
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": None}]
