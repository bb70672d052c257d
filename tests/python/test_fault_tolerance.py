"""Fault tolerance on real runs: stop signals, the supervisor after SIGKILL, NaN actions, bad input.

Subprocess tests run the real `mft train` CLI and send real signals; the
tiny recipe of test_train.py is deterministic, so a run that was killed and
restarted must log the same losses as one that never stopped, bit for bit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mft.config import load_config
from mft.errors import ConfigError, MftError
from mft.monitor.metrics import read_metrics
from mft.training.checkpoint import verify_checkpoint
from mft.weights.safetensors import load_file
from test_train import corpus, run_train, write_recipe  # noqa: F401  (corpus is a module fixture)

CLI = [sys.executable, "-m", "mft.cli.main", "train"]


def start(recipe, *overrides, extra=()):
    cmd = CLI + [recipe] + [a for o in overrides for a in ("--set", o)] + list(extra)
    env = dict(os.environ, PYTHONUNBUFFERED="1", GLOG_v="3")
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def metric_lines(path) -> int:
    try:
        with open(path, encoding="utf-8") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0


def wait_for(predicate, proc, timeout=120.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"process exited ({proc.returncode}) before {what}:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def latest_step(out) -> int:
    name = (out / "checkpoints" / "latest").read_text().strip()
    return json.loads((out / "checkpoints" / name / "trainer_state.json").read_text())["step"]


STEPS = 40  # long enough for two kills between checkpoints, short enough for CI
EVERY = ["checkpoint.every_steps=2"]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, corpus):
    """An uninterrupted run: every step logged, a checkpoint every 2 steps, all kept."""
    root = tmp_path_factory.mktemp("baseline")
    out = root / "straight"
    run_train(write_recipe(root, corpus, out, steps=STEPS), *EVERY, "checkpoint.keep=0")
    return {"out": out, "metrics": {m["step"]: m for m in read_metrics(str(out / "metrics.jsonl"))}}


# ---------------------------------------------------------------- signals


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_stop_signal_saves_at_the_next_step_boundary_and_exits(tmp_path, corpus, sig, code):
    out = tmp_path / "run"
    recipe = write_recipe(tmp_path, corpus, out)
    proc = start(recipe, "train.steps=100000", "checkpoint.every_steps=0", "run.name=sigtest")
    try:
        wait_for(lambda: metric_lines(out / "metrics.jsonl") >= 3, proc, what="3 logged steps")
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    log = (out / "logs" / "rank_0.log").read_text()
    seen = sig
    if sig == signal.SIGINT and "received SIGTERM" in log:
        # MindSpore's graph runtime re-raises a SIGINT that lands inside a compiled step as
        # SIGTERM (training/fault.py); the stop is as graceful, only the exit code is SIGTERM's.
        seen, code = signal.SIGTERM, 0
    assert proc.returncode == code, output
    logged = [m["step"] for m in read_metrics(str(out / "metrics.jsonl"))]
    step = latest_step(out)
    assert step == logged[-1] >= 3 and logged == list(range(1, step + 1))  # the step that was running finished
    folder = out / "checkpoints" / f"step_{step:08d}"
    verify_checkpoint(str(folder))
    assert json.loads((folder / "trainer_state.json").read_text())["consumed_samples"] == 2 * step
    assert f"stopped by {seen.name}" in output
    assert f"received {seen.name}: stopping after step {step}" in log
    assert "run sigtest: config:" in log.splitlines()[0]
    from test_monitor import read_events, text_of

    assert text_of(read_events(out / "tensorboard"), "run") == [(0, f"**sigtest**: {out}")]


# ---------------------------------------------------------------- supervisor


def test_supervisor_survives_two_sigkills_with_bit_identical_losses(tmp_path, corpus, baseline):
    steps, expected, straight = STEPS, baseline["metrics"], baseline["out"]
    out = tmp_path / "supervised"
    recipe = write_recipe(tmp_path, corpus, out, steps=steps)
    proc = start(recipe, *EVERY, "checkpoint.keep=2", extra=["--max-restarts", "3", "--restart-backoff", "0.2"])
    import psutil

    sup = psutil.Process(proc.pid)
    killed = []
    try:
        for kill_after in (12, 30):  # logged lines (the second child re-logs what the first did after its checkpoint)
            wait_for(lambda: metric_lines(out / "metrics.jsonl") >= kill_after and latest_step_or_0(out) > 0
                     and sup.children(), proc, what=f"{kill_after} logged steps")
            child = sup.children()[0]
            assert child.pid not in killed
            child.send_signal(signal.SIGKILL)
            killed.append(child.pid)
            wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, proc, what="the kill")
        output, _ = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, output
    records = read_metrics(str(out / "metrics.jsonl"))
    assert {m["step"] for m in records} == set(range(1, steps + 1))
    assert len(records) > steps  # steps after the last checkpoint before each kill were run twice
    for m in records:  # every logged step, including the re-runs, as in the uninterrupted run
        e = expected[m["step"]]
        assert (m["loss"], m["grad_norm"], m["lr"], m["consumed_samples"]) == (e["loss"], e["grad_norm"], e["lr"], e["consumed_samples"])
    final = f"step_{steps:08d}"
    assert (out / "checkpoints" / final / "model.safetensors").read_bytes() == (straight / "checkpoints" / final / "model.safetensors").read_bytes()
    log = (out / "logs" / "supervisor.log").read_text()
    assert log.count("the run killed by SIGKILL; restart") == 2, log
    assert "restart 1/3 in 0.2s, resuming from" in log and "restart 2/3 in 0.4s, resuming from" in log


def latest_step_or_0(out) -> int:
    try:
        return latest_step(out)
    except (FileNotFoundError, ValueError):
        return 0


def test_supervisor_does_not_restart_bad_input(tmp_path, corpus):
    out = tmp_path / "bad"
    recipe = write_recipe(tmp_path, corpus, out)
    proc = start(recipe, f"data.prefix={tmp_path}/missing", extra=["--max-restarts", "2", "--restart-backoff", "0"])
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, output
    assert "bad input (exit 2); not restarting" in output
    assert "restart 1/2" not in output


# ---------------------------------------------------------------- NaN / Inf loss

HUGE_LR = ["train.optimizer.lr=1.0e+30", "train.lr_schedule.name=constant", "train.lr_schedule.warmup_steps=0",
           "checkpoint.every_steps=1", "checkpoint.keep=0"]  # step 1 is finite; from step 2 on every loss is NaN


def test_nan_raise_saves_the_last_good_state_and_stops(tmp_path, corpus):
    out = tmp_path / "raise"
    recipe = write_recipe(tmp_path, corpus, out, steps=4)
    with pytest.raises(MftError, match=r"loss became (nan|inf) at step 2"):
        run_train(recipe, *HUGE_LR, "checkpoint.every_steps=0")
    ckpts = sorted(d for d in os.listdir(out / "checkpoints") if d.startswith("step_"))
    assert ckpts == ["step_00000001"]  # saved from the host copy after the step that raised
    folder = out / "checkpoints" / "step_00000001"
    verify_checkpoint(str(folder))
    w = load_file(str(folder / "model.safetensors"))
    assert all(np.isfinite(v).all() for v in w.values())
    assert json.loads((folder / "trainer_state.json").read_text())["step"] == 1
    assert "saved the last good state" in (out / "logs" / "rank_0.log").read_text()


def test_nan_skip_applies_no_update(tmp_path, corpus):
    out = tmp_path / "skip"
    summary = run_train(write_recipe(tmp_path, corpus, out, steps=4), *HUGE_LR, "train.nan_action=skip")
    assert summary["steps"] == 4
    losses = [m["loss"] for m in read_metrics(str(out / "metrics.jsonl"))]
    assert np.isfinite(losses[0]) and losses[1:] == [None, None, None]  # metrics.jsonl writes NaN as null
    one, four = (out / "checkpoints" / "step_00000001", out / "checkpoints" / "step_00000004")
    for name in ("model.safetensors", "optimizer.safetensors"):  # weights, moments and Adam's step counter
        a, b = load_file(str(one / name)), load_file(str(four / name))
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{name}:{k}")
    assert json.loads((four / "trainer_state.json").read_text())["consumed_samples"] == 8
    assert (out / "logs" / "rank_0.log").read_text().count("update skipped (train.nan_action=skip)") == 3


def test_nan_rollback_reloads_the_last_good_checkpoint_and_gives_up_when_it_repeats(tmp_path, corpus):
    out = tmp_path / "rollback"
    with pytest.raises(MftError, match=r"non-finite at step 2 again after 3 rollbacks to .*step_00000001"):
        run_train(write_recipe(tmp_path, corpus, out, steps=6), *HUGE_LR, "train.nan_action=rollback")
    log = (out / "logs" / "rank_0.log").read_text()
    skips = [line.split("skipping ")[1].split(" samples")[0] for line in log.splitlines() if "rolled back to" in line]
    assert skips == ["2", "4", "6"]  # each rollback skips the batches since the checkpoint, the offending one included
    ckpts = sorted(d for d in os.listdir(out / "checkpoints") if d.startswith("step_"))
    assert ckpts == ["step_00000001"]  # never a NaN checkpoint
    verify_checkpoint(str(out / "checkpoints" / "step_00000001"))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("key, value, users", [
    ("num_experts", 8, "mixtral | qwen3_moe | deepseek_v3"),
    ("capacity_factor", 1.25, "mixtral | qwen3_moe | deepseek_v3"),
    ("aux_loss_coef", 0.01, "mixtral | qwen3_moe | deepseek_v3"),
    ("kv_lora_rank", 256, "deepseek_v3"),
    ("mtp_layers", 1, "deepseek_v3"),
    ("decoder_sparse_step", 2, "qwen3_moe"),
])
def test_a_key_of_another_arch_is_refused_naming_the_arch(tmp_path, corpus, key, value, users):
    recipe = write_recipe(tmp_path, corpus, tmp_path / "x")
    with pytest.raises(ConfigError, match=rf"--set model.{key}: key 'model.{key}' is read only by model.arch={users} \(arch is llama\)"):
        load_config(recipe, [f"model.{key}={value}"])
    arch = users.split(" | ")[-1]  # accepted for an arch that reads it
    cfg = load_config(recipe, [f"model.arch={arch}", "model.num_experts=4", f"model.{key}={value}"])
    assert getattr(cfg.model, key) == value


def test_mtp_layers_on_qwen3_moe_is_refused(tmp_path, corpus):
    recipe = write_recipe(tmp_path, corpus, tmp_path / "x")
    with pytest.raises(ConfigError, match=r"model.mtp_layers' is read only by model.arch=deepseek_v3 \(arch is qwen3_moe\)"):
        load_config(recipe, ["model.arch=qwen3_moe", "model.num_experts=4", "model.mtp_layers=1"])


def test_a_bad_param_group_writes_nothing(tmp_path, corpus):
    out = tmp_path / "never"
    recipe = write_recipe(tmp_path, corpus, out)
    with pytest.raises(MftError, match="no_such_param"):
        run_train(recipe, "train.optimizer.param_groups=[{pattern: no_such_param, lr_scale: 0.5}]")
    assert not out.exists()


def test_resume_skips_a_truncated_newest_checkpoint(tmp_path, corpus, baseline):
    import shutil

    out = tmp_path / "damaged"
    shutil.copytree(baseline["out"], out)
    recipe = write_recipe(tmp_path, corpus, out, steps=STEPS)
    last = out / "checkpoints" / f"step_{STEPS:08d}"
    model = last / "model.safetensors"
    with open(model, "r+b") as f:
        f.truncate(100)
    os.remove(out / "checkpoints" / f"step_{STEPS - 2:08d}" / "manifest.json")  # the one before: no manifest
    messages = []
    from mft.training.trainer import train

    train(load_config(recipe, ["checkpoint.resume=auto", *EVERY, "checkpoint.keep=0"]), echo=messages.append)
    damaged = [m for m in messages if "newer checkpoints" in m]
    assert len(damaged) == 1 and "model.safetensors has 100 bytes" in damaged[0] and "no manifest.json" in damaged[0]
    assert f"falling back to step_{STEPS - 4:08d}" in damaged[0]
    assert any(m.startswith("resuming from") and f"step_{STEPS - 4:08d}" in m for m in messages)
    assert model.read_bytes() == (baseline["out"] / "checkpoints" / f"step_{STEPS:08d}" / "model.safetensors").read_bytes()
    assert f"falling back to step_{STEPS - 4:08d}" in (out / "logs" / "rank_0.log").read_text()
