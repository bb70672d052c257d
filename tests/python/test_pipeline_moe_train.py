"""Pipeline parallel with MoE: `mft train --nproc 2` at pp=2 against one process.

One msrun launch covers a tiny DeepSeek-V3-shaped model (MLA, a dense first layer, then shared + 4 routed
experts, sigmoid group-limited routing with the auxiliary-loss-free bias update, a sequence balance loss, one
MTP module on the last stage, untied head) split [2, 1]: stage 0 holds the embedding, the dense layer and one
MoE layer (its router bias moves in its forward and is put back to the forward's value for the recomputing
backward), stage 1 the other MoE layer, the head and the MTP module (with a copy of the embedding whose two
gradients are summed over the pipeline); dropless sorted dispatch. Over 6 steps of 4 micro-batches the losses, gradient
norms, aux losses and expert loads equal the single-process run within 1e-5 relative; the checkpoints are the
full Hugging Face folder (router biases included), and the step-3 one resumes in one process (pp=1, ep=1)
with the same continued losses. pp=2 x dp=2 x ep=2 (experts split over each stage's ranks) runs the same
recipe on 4 workers with the same result; it is checked by hand (docs/feature/parallel_training.md), not here:
4 workers on the 2-core CI machine cost about twice this test.

The DeepSeek-V3 recipe (pp 16 x dp 32, ep 32) passes every layout check and asks for its 512 devices.
"""

from __future__ import annotations

import os

import pytest

from msrun_runs import (assert_same_steps, assert_same_tensors, build_corpus, ckpt, metrics, run_ok, train_args,
                        train_in_process, write_recipe)  # fmt: skip

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
STEPS = 6
MODEL = {"arch": "deepseek_v3", "num_layers": 3, "num_heads": 4, "num_kv_heads": 4, "tie_word_embeddings": False,
         "num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16, "num_shared_experts": 1,
         "first_k_dense_replace": 1, "n_group": 2, "topk_group": 1, "routed_scaling_factor": 2.5, "q_lora_rank": 16,
         "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 8, "capacity_factor": 0.0,
         "aux_loss_type": "sequence", "aux_loss_coef": 0.001, "expert_bias_update_rate": 0.01, "mtp_layers": 1,
         "mtp_loss_coef": 0.3, "fused_moe": True}  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = build_corpus(tmp_path_factory.mktemp("pp_moe_train"))
    path = write_recipe(root / "recipe.yaml", root, root / "single", seed=7, model=MODEL,
                        train={"steps": STEPS, "micro_batch_size": 4, "grad_accum_steps": 4},
                        checkpoint={"every_steps": 3, "keep": 0}, monitor={"log_every": 1})  # fmt: skip
    return root, path


def test_pp2_moe_on_msrun_matches_single_process_and_resumes_at_pp1(setup):
    root, recipe = setup
    single = str(root / "single")
    train_in_process(recipe)
    reference = metrics(single)

    pp = str(root / "pp2")
    run_ok(train_args(recipe, ["parallel.pp=2", "parallel.pp_layers=[2, 1]", f"run.output_dir={pp}"], nproc=2),
           cwd=root, timeout=400)  # fmt: skip
    got = metrics(pp)
    keys = ("loss", "grad_norm", "moe_aux_loss", "moe_load_max_over_mean", "moe_load_min_over_mean")
    assert_same_steps(got, reference, range(1, STEPS + 1), keys=keys, complete=True)
    with open(os.path.join(pp, "logs", "rank_1.log"), encoding="utf-8") as f:
        assert "pipeline stage 1 of 2: layers 2..2, norm, head, loss, MTP, embedding copy (MTP), 1 MoE layers; split [2, 1]" in f.read()

    # Full HF folders equal to the single-process ones (every stage's experts, the moved router biases, Adam moments) ...
    for step in (3, STEPS):
        assert_same_tensors(ckpt(pp, step), ckpt(single, step), label=f"step {step} ")
    # ... so the step-3 checkpoint resumes in one process with the single-process losses.
    back = str(root / "back_to_pp1")
    train_in_process(recipe, [f"run.output_dir={back}", f"checkpoint.resume={ckpt(pp, 3)}"])
    assert_same_steps(metrics(back), reference, range(4, STEPS + 1), keys=keys)


def test_deepseek_v3_recipe_passes_the_layout_checks_and_asks_for_its_devices(monkeypatch):
    from mft.config import load_config
    from mft.errors import MftError
    from mft.training.run_setup import check_supported

    cfg = load_config(os.path.join(REPO, "configs", "deepseek_v3", "deepseek_v3_671b_pretrain.yaml"))
    assert (cfg.parallel.pp, cfg.parallel.dp, cfg.parallel.ep) == (16, 32, 32)
    monkeypatch.delenv("MS_ROLE", raising=False)
    with pytest.raises(MftError, match=r"dp\*tp\*pp\*cp = 32\*1\*16\*1 needs 512 devices .* --nproc 512"):
        check_supported(cfg)
    monkeypatch.setenv("MS_ROLE", "MS_WORKER")  # as inside msrun: every layout check passes
    check_supported(cfg)
