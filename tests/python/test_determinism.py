"""run.deterministic (default): a resumed run on the demo shape gives the same bits as an uninterrupted one,
even when the resumed part runs while another process keeps the CPU busy (real resumes never see the same load)."""

from __future__ import annotations

import subprocess
import sys

from mft.monitor.metrics import read_metrics
from test_train import corpus, run_train, write_recipe  # noqa: F401  (module fixture)

# configs/tiny/demo.yaml's model (h256, 4 layers, GQA 4/2, tied embeddings) on a short sequence
DEMO_MODEL = ["model.hidden_size=256", "model.intermediate_size=688", "model.num_layers=4", "model.num_heads=4",
              "model.num_kv_heads=2", "model.tie_word_embeddings=true", "model.max_position_embeddings=64"]


def losses(out):
    return {m["step"]: (m["loss"], m["grad_norm"]) for m in read_metrics(str(out / "metrics.jsonl"))}


def test_demo_shape_resume_is_bit_exact_under_cpu_load(tmp_path, corpus):  # noqa: F811
    common = [*DEMO_MODEL, "train.steps=4", "train.micro_batch_size=4", "checkpoint.every_steps=2"]
    straight = tmp_path / "straight"
    run_train(write_recipe(tmp_path, corpus, straight), *common)
    resumed = tmp_path / "resumed"
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        run_train(write_recipe(tmp_path, corpus, resumed), *common,
                  f"checkpoint.resume={straight / 'checkpoints' / 'step_00000002'}")
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    want = losses(straight)
    assert sorted(want) == [1, 2, 3, 4]
    assert losses(resumed) == {3: want[3], 4: want[4]}


def test_every_composed_path_is_pinned(tmp_path, corpus):  # noqa: F811
    """run.deterministic pins MindSpore's CPU runtime to one thread whenever the step takes a composed
    (MindSpore-reduction) path: the composed RMSNorm, and composed attention however it is chosen."""
    from mft.config import load_config
    from mft.training.determinism import composed_reductions

    recipe = write_recipe(tmp_path, corpus, tmp_path / "unused")

    def paths(*overrides):
        return composed_reductions(load_config(recipe, [*DEMO_MODEL, "run.device=CPU", *overrides]))

    assert paths() == []  # the fused kernels (the CPU default) split work by a fixed thread count
    assert paths("model.fused_rmsnorm=false") == ["composed RMSNorm"]
    assert paths("model.fused_attention=false") == ["composed attention (model.fused_attention off)"]
    assert paths("train.precision=fp16") == ["composed attention (model.fused_attention off)"]  # the kernel is fp32
