"""Monitoring in the train loop: held-out validation, peak memory / MFU, layer and
optimizer-state norms, and loss/grad-norm spikes from a manipulated batch."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import yaml

from mft.config import load_config
from mft.data.indexed import IndexedDataset, write_indexed_dataset
from mft.data.preprocess import preprocess
from mft.errors import ConfigError, MftError
from mft.monitor.metrics import read_metrics
from mft.tokenizer import Tokenizer
from mft.training.spikes import SpikeDetector

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(REPO, "data", "kjv", "kjv.jsonl")
MODEL = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2, "max_position_embeddings": 64}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A 512-token BPE and an indexed dataset of the first 60 KJV chapters (60 documents)."""
    root = tmp_path_factory.mktemp("corpus")
    src = root / "slice.jsonl"
    with open(CORPUS, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
        for _, line in zip(range(60), f):
            out.write(line)
    tok = Tokenizer.train([str(src)], vocab_size=512)
    tok.save(str(root / "tokenizer.json"))
    preprocess([str(src)], tok, str(root / "data"))
    return {"tokenizer": str(root / "tokenizer.json"), "prefix": str(root / "data"), "root": root}


def write_recipe(path, corpus, output_dir, prefix=None, **sections):
    recipe = {
        "run": {"output_dir": str(output_dir), "seed": 7},
        "tokenizer": {"path": corpus["tokenizer"]},
        "data": {"prefix": prefix or corpus["prefix"], "seq_len": 32},
        "model": dict(MODEL),
        "train": {"steps": 6, "micro_batch_size": 2, "optimizer": {"lr": 3e-3}, "lr_schedule": {"warmup_steps": 2}},
        "checkpoint": {"every_steps": 0, "keep": 0},
        "monitor": {"progress_bar": False, "tensorboard": False},
    }
    for section, values in sections.items():
        recipe[section].update(values)
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def run_train(recipe, *overrides):
    from mft.training.trainer import train

    return train(load_config(recipe, list(overrides)), echo=lambda *_: None)


# ---------------------------------------------------------------- data.split


def test_split_holds_out_contiguous_documents_and_train_never_sees_them(tmp_path, corpus):
    from mft.data.epoch_samples import EpochSamples
    from mft.training.evaluate import split_streams

    indexed = IndexedDataset(corpus["prefix"])
    assert len(indexed) == 60
    recipe = write_recipe(tmp_path / "r.yaml", corpus, tmp_path / "out", data={"split": "80,15,5"}, monitor={"eval_every": 2})
    train, valid = split_streams(indexed, load_config(recipe))
    # Megatron ranges: train [0, 48), valid [48, 57), test [57, 60)
    for epoch in range(3):  # every epoch of the endless stream
        train_docs = set(np.asarray(train._epoch_dataset(epoch).document_index).tolist())
        assert train_docs == set(range(48))
    assert set(np.asarray(valid._epoch_dataset(0).document_index).tolist()) == set(range(48, 57))
    # the tokens the train stream yields come from train documents only: no sample equals held-out text
    held_out = np.concatenate([indexed[i] for i in range(48, 60)])
    train_tokens = np.concatenate([indexed[i] for i in range(48)])
    assert train.samples_per_epoch == (len(train_tokens) - 1) // 32 < (len(train_tokens) + len(held_out) - 1) // 32
    # no split: the stream is exactly the one over every document (unchanged behaviour, resume-compatible)
    plain, none = split_streams(indexed, load_config(write_recipe(tmp_path / "p.yaml", corpus, tmp_path / "o2")))
    ref = EpochSamples(indexed, 32, seed=7)
    assert none is None
    np.testing.assert_array_equal(plain.rank_batch(0, 2, 4), ref.rank_batch(0, 2, 4))


@pytest.mark.parametrize(
    "override, key",
    [
        ("monitor.eval_every=5", "monitor.eval_every"),  # no data.split -> nothing held out
        ("data.split=100,0,0", None),  # valid weight 0 with eval_every set: same key
        ("data.split=a,b", "data.split"),
        ("data.split=0,1,0", "data.split"),
        ("monitor.eval_batches=0", "monitor.eval_batches"),
        ("monitor.peak_tflops=-1", "monitor.peak_tflops"),
        ("monitor.spike.loss_factor=0.5", "monitor.spike.loss_factor"),
        ("monitor.spike.action=rollback", "monitor.spike.action"),
        ("monitor.spike.min_history=100", "monitor.spike.min_history"),
        ("monitor.spike.consecutive=0", "monitor.spike.consecutive"),
    ],
)
def test_bad_monitor_keys_are_config_errors_naming_the_key(tmp_path, corpus, override, key):
    recipe = write_recipe(tmp_path / "r.yaml", corpus, tmp_path / "out")
    extra = ["monitor.eval_every=5"] if override.startswith("data.split=100") else []
    with pytest.raises(ConfigError) as e:
        load_config(recipe, [override, *extra])
    assert f"'{key or 'monitor.eval_every'}'" in str(e.value) or (key or "monitor.eval_every") in str(e.value)
    assert not os.path.exists(tmp_path / "out")


# ---------------------------------------------------------------- spike detector (pure Python)


def test_spike_detector_median_threshold_consecutive_and_nan():
    d = SpikeDetector(window=5, min_history=3, loss_factor=1.5, grad_norm_factor=0, consecutive=2, action="warn")
    assert d.limits() == (math.inf, math.inf)  # not enough history yet
    for loss in (4.0, 3.0, 5.0):
        assert not d.observe(loss, 1.0).spike
    assert d.limits() == (6.0, math.inf)  # 1.5 x median(3, 4, 5); grad norm not checked
    assert not d.observe(6.0, 100.0).spike  # equal to the threshold is not a spike
    v = d.observe(9.5, 1.0)
    assert v.spike and "loss 9.5 > 1.5 x median" in v.reasons[0] and d.total == 1
    assert d.limits() == (1.5 * 4.5, math.inf)  # the spike did not enter the history (median of 3, 4, 5, 6)
    assert not d.observe(4.0, 1.0).spike  # a normal step ends the run of spikes
    assert d.observe(float("nan"), 1.0).spike  # non-finite is always a spike
    v = d.observe(20.0, 1.0)  # second in a row = consecutive: a new level, history restarts from the run
    assert v.spike and v.new_level and list(d.history["loss"]) == [20.0]
    # skip: the same run of spikes stops the run instead
    s = SpikeDetector(window=4, min_history=2, loss_factor=2.0, grad_norm_factor=3.0, consecutive=2, action="skip")
    for x in (1.0, 1.0, 1.0):
        s.observe(x, 1.0)
    assert s.limits() == (2.0, 3.0)
    assert s.observe(1.0, 3.5).spike  # grad norm over 3 x median
    with pytest.raises(MftError, match="monitor.spike.consecutive=2"):
        s.observe(2.5, 1.0)


# ---------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory, corpus):
    """6 steps, 2 micro-batches accumulated, data.split 90/10, validation every 3 steps, MFU against a fixed ceiling."""
    root = tmp_path_factory.mktemp("plain")
    recipe = write_recipe(
        root / "r.yaml", corpus, root / "run", data={"split": "90,10,0"},
        train={"steps": 6, "micro_batch_size": 2, "grad_accum_steps": 2, "optimizer": {"lr": 3e-3}, "lr_schedule": {"warmup_steps": 2}},
        monitor={"eval_every": 3, "eval_batches": 3, "peak_tflops": 0.001},
    )  # fmt: skip
    run_train(recipe)
    return {"recipe": recipe, "out": root / "run", "metrics": read_metrics(str(root / "run" / "metrics.jsonl"))}


def _numpy_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    logits -= logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp, labels[..., None].astype(np.int64), -1).mean())


def test_validation_loss_is_the_held_out_loss_of_the_weights(plain_run):
    import mindspore as ms

    from mft.models import AutoModelForCausalLM
    from mft.monitor.system_metrics import train_flops_per_token
    from mft.training.evaluate import split_streams

    metrics = plain_run["metrics"]
    assert [m["step"] for m in metrics] == [1, 2, 3, 4, 5, 6]
    assert [m["step"] for m in metrics if "val_loss" in m] == [3, 6]
    for m in metrics:
        if "val_loss" in m:
            assert m["val_ppl"] == pytest.approx(math.exp(m["val_loss"]), rel=1e-12)
        assert m["peak_memory_mb"] > 50
        cfg = load_config(plain_run["recipe"])
        assert m["mfu"] == pytest.approx(train_flops_per_token(cfg) * m["tokens_per_s"] / 1e9, rel=1e-9)
    # recompute the last validation independently: the saved weights, PyNative forward, numpy cross-entropy,
    # on the valid range's first eval_batches x micro_batch samples
    cfg = load_config(plain_run["recipe"])
    _, valid = split_streams(IndexedDataset(cfg.data.prefix), cfg)
    batches = valid.rank_batch(0, 3, 2)
    model = AutoModelForCausalLM.from_pretrained(str(plain_run["out"] / "checkpoints" / "step_00000006"))
    losses = [_numpy_loss(model(ms.Tensor(b[:, :-1])).asnumpy(), b[:, 1:]) for b in batches]
    assert metrics[-1]["val_loss"] == pytest.approx(np.mean(losses), rel=2e-5)
    assert metrics[-1]["val_loss"] != pytest.approx(metrics[2]["val_loss"], rel=1e-6)  # the weights changed, the batches did not


def test_layer_norms_and_gated_step_leave_training_unchanged(tmp_path, plain_run):
    """monitor.layer_norms + spike.action=skip build the gated step (accumulation path): same losses bit for bit,
    and the per-layer grad norms add up to the global one; weight / optimizer-state norms match the checkpoint."""
    from mft.training.monitoring import grouped_norms
    from mft.weights.safetensors import load_file

    out = tmp_path / "gated"
    run_train(plain_run["recipe"], f"run.output_dir={out}", "monitor.layer_norms=true", "monitor.optimizer_state_norm=true",
              "monitor.spike.action=skip")
    gated = read_metrics(str(out / "metrics.jsonl"))
    for a, b in zip(plain_run["metrics"], gated):
        assert (a["loss"], a["grad_norm"]) == (b["loss"], b["grad_norm"])
        assert a.get("val_loss") == b.get("val_loss")
        assert b["update_skipped"] == 0
    last = gated[-1]
    groups = ["embedding", "layer_0", "layer_1", "final_norm", "head"]
    assert sorted(k for k in last if k.startswith("grad_norm/")) == sorted(f"grad_norm/{g}" for g in groups)
    total = math.sqrt(sum(last[f"grad_norm/{g}"] ** 2 for g in groups))
    assert total == pytest.approx(last["grad_norm"], rel=1e-4)
    folder = out / "checkpoints" / "step_00000006"
    weights = load_file(str(folder / "model.safetensors"))
    expect = grouped_norms(list(weights), [float(np.square(w.astype(np.float64)).sum()) for w in weights.values()])
    for g in groups:
        assert last[f"weight_norm/{g}"] == pytest.approx(expect[g], rel=1e-9)
    opt = load_file(str(folder / "optimizer.safetensors"))
    m_sq = sum(float(np.square(v.astype(np.float64)).sum()) for k, v in opt.items() if k.startswith("exp_avg."))
    assert last["optimizer_state_norm/exp_avg"] == pytest.approx(math.sqrt(m_sq), rel=1e-9)


def _spiky_dataset(corpus, root):
    """The 60 chapters plus one document of 320 copies of a single token."""
    normal = IndexedDataset(corpus["prefix"])
    rep_id = 58
    docs = [normal[i] for i in range(len(normal))] + [np.full(320, rep_id, np.int32)]
    prefix = str(root / "spiky")
    write_indexed_dataset(prefix, docs, 512)
    return prefix, rep_id


def _first_repeated_step(cfg, rep_id, steps):
    """(step whose micro-batch is all the repeated token, steps with any of it) for this seed."""
    from mft.training.evaluate import split_streams

    stream, _ = split_streams(IndexedDataset(cfg.data.prefix), cfg)
    full, touched = None, []
    for s in range(steps):
        frac = float((stream.rank_batch(s, 1, 1)[0] == rep_id).mean())
        if frac > 0:
            touched.append(s + 1)
        if frac == 1.0 and full is None:
            full = s + 1
    return full, touched


def _seed_with_lone_repeat(recipe, rep_id):
    """(seed, step): the first seed whose data order puts the repeated batch alone in steps 18..26,
    after the spike detector's median has history."""
    for seed in range(100):
        full, touched = _first_repeated_step(load_config(recipe, [f"run.seed={seed}"]), rep_id, 30)
        if full is not None and 18 <= full <= 26 and touched == [full]:
            return seed, full
    pytest.fail("no seed puts the repeated batch alone in steps 18..26")


def test_a_batch_of_one_repeated_token_is_a_spike_and_skip_discards_its_update(tmp_path, corpus):
    prefix, rep_id = _spiky_dataset(corpus, tmp_path)
    out = tmp_path / "spike"
    recipe = write_recipe(
        tmp_path / "r.yaml", corpus, out, prefix=prefix,
        train={"steps": 30, "micro_batch_size": 1, "optimizer": {"lr": 1e-2}, "lr_schedule": {"name": "constant", "warmup_steps": 2}},
        checkpoint={"every_steps": 1, "keep": 0},
        monitor={"spike": {"action": "skip"}, "mfu": False},
    )  # fmt: skip
    seed, full = _seed_with_lone_repeat(recipe, rep_id)
    run_train(recipe, f"run.seed={seed}", f"train.steps={full + 2}")
    metrics = read_metrics(str(out / "metrics.jsonl"))
    normal = [m["loss"] for m in metrics[full - 11:full - 1]]
    spike = metrics[full - 1]
    assert [m["step"] for m in metrics if m["spike"]] == [full]  # only the manipulated batch
    assert spike["update_skipped"] == 1 and spike["spikes"] == 1
    assert spike["grad_norm"] > 4 * np.median([m["grad_norm"] for m in metrics[full - 11:full - 1]])
    assert spike["loss"] > max(normal)  # a single token the model rarely saw
    ckpt = out / "checkpoints"

    def weights(step):
        return (ckpt / f"step_{step:08d}" / "model.safetensors").read_bytes()

    assert weights(full) == weights(full - 1)  # the spiking step changed nothing
    assert weights(full - 1) != weights(full - 2) and weights(full + 1) != weights(full)
    state = json.loads((ckpt / f"step_{full:08d}" / "trainer_state.json").read_text())
    assert state["step"] == full and state["consumed_samples"] == full  # the batch was consumed, not replayed
    from mft.weights.safetensors import load_file

    opt_before = load_file(str(ckpt / f"step_{full - 1:08d}" / "optimizer.safetensors"))
    opt_at = load_file(str(ckpt / f"step_{full:08d}" / "optimizer.safetensors"))
    for k in opt_before:
        np.testing.assert_array_equal(opt_before[k], opt_at[k])  # AdamW's moments and step count untouched
    assert "update discarded" in (out / "logs" / "rank_0.log").read_text()


def test_spike_action_rollback_reloads_the_last_checkpoint_and_skips_the_spiking_batch(tmp_path, corpus):
    prefix, rep_id = _spiky_dataset(corpus, tmp_path)
    out = tmp_path / "rollback"
    recipe = write_recipe(
        tmp_path / "r.yaml", corpus, out, prefix=prefix,
        train={"steps": 30, "micro_batch_size": 1, "optimizer": {"lr": 1e-2}, "lr_schedule": {"name": "constant", "warmup_steps": 2}},
        checkpoint={"every_steps": 1, "keep": 0},
        monitor={"spike": {"action": "rollback"}, "mfu": False},
    )  # fmt: skip
    seed, full = _seed_with_lone_repeat(recipe, rep_id)
    run_train(recipe, f"run.seed={seed}", f"train.steps={full + 1}")
    ckpt = out / "checkpoints"
    state = json.loads((ckpt / f"step_{full:08d}" / "trainer_state.json").read_text())
    assert state["consumed_samples"] == full + 1  # step `full` trained on the batch after the spiking one
    log = (out / "logs" / "rank_0.log").read_text()
    assert f"step {full}: loss / grad-norm spike; rolled back to" in log and f"(step {full - 1}), skipping 1 samples" in log
    metrics = read_metrics(str(out / "metrics.jsonl"))
    assert [m["step"] for m in metrics] == list(range(1, full + 2))  # the spiking step was not logged as done
    assert not any(m["spike"] for m in metrics)


def test_spike_rollback_needs_checkpoints(tmp_path, corpus):
    recipe = write_recipe(tmp_path / "r.yaml", corpus, tmp_path / "o", monitor={"spike": {"action": "rollback"}},
                          checkpoint={"every_steps": 0})
    with pytest.raises(Exception, match=r"monitor.spike.action.*checkpoint.every_steps"):
        load_config(recipe)
