"""`mft plan`: parameter inventory against built models, published sizes, and memory against real runs."""

from __future__ import annotations

import glob
import json
import math
import os
import re
import subprocess
import sys

import pytest

from mft.config import load_config
from mft.errors import MftError
from mft.plan import make_plan
from mft.plan.shapes import inventory, model_sizes

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORPUS = os.path.join(REPO, "data", "kjv", "kjv.jsonl")
TINY = sorted(glob.glob(os.path.join(REPO, "configs", "*", "tiny_pretrain.yaml"))) + [os.path.join(REPO, "configs", "tiny", "demo.yaml")]
BIG = sorted(p for p in glob.glob(os.path.join(REPO, "configs", "*", "*_pretrain.yaml")) if "tiny" not in p)


def _id(path: str) -> str:
    return os.path.relpath(path, os.path.join(REPO, "configs"))


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory):
    """What `make demo` makes for the tiny recipes (a 4096-token BPE and an indexed dataset), from 60 KJV chapters."""
    from mft.data.preprocess import preprocess
    from mft.tokenizer import Tokenizer

    root = tmp_path_factory.mktemp("plan_demo")
    src = root / "slice.jsonl"
    with open(CORPUS, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
        for _, line in zip(range(60), f):
            out.write(line)
    tok = Tokenizer.train([str(src)], vocab_size=4096)
    tok.save(str(root / "tokenizer.json"))
    preprocess([str(src)], tok, str(root / "kjv"))
    return {"tokenizer": str(root / "tokenizer.json"), "prefix": str(root / "kjv"), "root": root}


# ---- parameters ---------------------------------------------------------------


@pytest.mark.parametrize("path", TINY, ids=_id)
def test_inventory_is_the_built_models_parameter_list(path, demo_files):
    """Same names, shapes, order and trainability as the model the trainer builds, so the counts are equal."""
    import numpy as np

    from mft.tokenizer import Tokenizer
    from mft.training.model_factory import build_model

    cfg = load_config(path, [f"tokenizer.path={demo_files['tokenizer']}"])
    model, _ = build_model(cfg, Tokenizer.from_file(cfg.tokenizer.path))
    built = [(p.name, tuple(p.shape), bool(p.requires_grad)) for p in model.get_parameters()]
    planned = [(t.name, t.shape, t.trainable) for t in inventory(model_sizes(cfg))]
    assert planned == built
    trained = sum(int(np.prod(p.shape)) for p in model.trainable_params())  # what the trainer counts and optimises
    assert make_plan(cfg)["params"]["total"] == trained


# Published totals (and active per token for MoE) from the model cards / papers.
PUBLISHED = {
    "llama/llama3_8b_pretrain.yaml": {"model": 8.03e9},
    "llama/llama3_70b_pretrain.yaml": {"model": 70.55e9},
    "qwen2/qwen2_7b_pretrain.yaml": {"model": 7.62e9},
    "qwen3/qwen3_8b_pretrain.yaml": {"model": 8.2e9, "non_embedding": 6.95e9},
    "qwen3/qwen3_32b_pretrain.yaml": {"model": 32.8e9, "non_embedding": 31.2e9},
    "mixtral/mixtral_8x7b_pretrain.yaml": {"model": 46.7e9, "active": 12.9e9},
    "qwen3_moe/qwen3_30b_a3b_pretrain.yaml": {"model": 30.5e9, "active": 3.3e9, "non_embedding": 29.9e9},
    # DeepSeek-V3's 671B / 37B exclude the MTP module (the paper's count).
    "deepseek_v3/deepseek_v3_671b_pretrain.yaml": {"model": 671e9, "active": 37e9},
}


def test_every_published_size_recipe_is_checked():
    assert {_id(p) for p in BIG} == set(PUBLISHED)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_parameter_counts_within_2_percent(name):
    plan = make_plan(load_config(os.path.join(REPO, "configs", name)))
    for key, want in PUBLISHED[name].items():
        got = plan["params"][key]
        assert abs(got - want) / want < 0.02, f"{name} {key}: {got / 1e9:.3f}B vs published {want / 1e9:.3f}B"


def test_deepseek_v3_mtp_matches_the_published_685b_checkpoint():
    """The Hugging Face checkpoint (685B) holds the 671B model plus the MTP module, which stores its own
    copy of the embedding and the output head; mft's MTP module shares both with the model."""
    plan = make_plan(load_config(os.path.join(REPO, "configs", "deepseek_v3", "deepseek_v3_671b_pretrain.yaml")))
    p = plan["params"]
    assert p["total"] == p["model"] + p["by_component"]["mtp"]
    vocab_matrix = p["by_component"]["embedding"]
    assert abs(p["total"] + 2 * vocab_matrix - 685e9) / 685e9 < 0.02


def test_flops_per_token_follow_the_palm_formula_for_llama3_8b():
    """6N + 12 L H Q T (Chowdhery et al. 2022), N = parameters minus the input embedding, from Llama-3-8B's card sizes."""
    plan = make_plan(load_config(os.path.join(REPO, "configs", "llama", "llama3_8b_pretrain.yaml")))
    n = 8_030_261_248 - 128256 * 4096
    want = 6 * n + 12 * 32 * 32 * 128 * 8192
    assert plan["flops_per_token"]["train"] == pytest.approx(want, rel=1e-3)


def test_moe_flops_count_only_routed_experts():
    plan = make_plan(load_config(os.path.join(REPO, "configs", "mixtral", "mixtral_8x7b_pretrain.yaml")))
    f = plan["flops_per_token"]
    attention = 6 * 32 * 32 * 4096 * 256
    matmul = plan["params"]["active"] - plan["params"]["by_component"]["embedding"] - plan["params"]["by_component"]["norms"]
    assert f["train"] - attention == pytest.approx(6 * matmul, rel=1e-6)


# ---- layout and memory arithmetic -------------------------------------------------


def _plan(name, *overrides):
    return make_plan(load_config(os.path.join(REPO, "configs", name), list(overrides)))


def test_tensor_and_pipeline_parallel_divide_weights():
    one = _plan("llama/llama3_8b_pretrain.yaml", "parallel.tp=1", "parallel.sp=false")["memory"]["per_device"]
    tp8 = _plan("llama/llama3_8b_pretrain.yaml", "parallel.tp=8")["memory"]["per_device"]  # the recipe's own layout
    assert tp8["weights"] == pytest.approx(one["weights"] / 8, rel=0.01)  # norms are replicated, a rounding error here
    pp4 = _plan("llama/llama3_8b_pretrain.yaml", "parallel.tp=1", "parallel.sp=false", "parallel.pp=4")
    assert pp4["layout"]["devices"] == 4
    stages = pp4["memory"]["stages"]
    assert [s["layers"] for s in stages] == [8, 8, 8, 8]
    assert sum(s["weights"] - s["weight_casts"] for s in stages) == pytest.approx(one["weights"] - one["weight_casts"], abs=4)  # each tensor on one stage
    assert stages[0]["weights"] > stages[1]["weights"] == stages[2]["weights"] < stages[3]["weights"]  # embedding / head


def test_zero_stages_shard_optimizer_then_gradients_across_dp():
    base = _plan("qwen3/qwen3_8b_pretrain.yaml", "parallel.dp=8")["memory"]["per_device"]
    z1 = _plan("qwen3/qwen3_8b_pretrain.yaml", "parallel.dp=8", "parallel.zero=1")["memory"]["per_device"]
    z2 = _plan("qwen3/qwen3_8b_pretrain.yaml", "parallel.dp=8", "parallel.zero=2")["memory"]["per_device"]
    assert z1["optimizer"] == pytest.approx(base["optimizer"] / 8, rel=1e-6)
    assert z1["gradients"] == base["gradients"] and z2["gradients"] == pytest.approx(base["gradients"] / 8, rel=1e-6)
    assert z2["weights"] == base["weights"] == z1["weights"]


def test_precision_and_optimizer_bytes_per_parameter():
    """fp32 AdamW is 16 bytes/parameter. fp16/bf16 adds 2-byte working copies of the matrices the layers cast
    (not the untied embedding, which gathers rows, nor norms) and nothing else: the fp32 parameters are the
    master weights, gradients and states stay fp32, as mft.training.precision keeps them. ZeRO-1 shards only
    the states: mft's ZeRO keeps the whole fp32 model on every rank."""
    tiny = ("llama/llama3_8b_pretrain.yaml", ["train.grad_accum_steps=1", "parallel.tp=1", "parallel.sp=false", "train.recompute=none"])  # one device
    n = 8_030_261_248
    embed = 128256 * 4096
    norms = (2 * 32 + 1) * 4096
    for precision, casts in (("fp32", 0), ("fp16", 2 * (n - embed - norms)), ("bf16", 2 * (n - embed - norms))):
        d = make_plan(load_config(os.path.join(REPO, "configs", tiny[0]), [*tiny[1], f"train.precision={precision}"]))["memory"]["per_device"]
        assert d["weight_casts"] == casts and d["weights"] - casts == 4 * n
        assert d["gradients"] == 4 * n and d["optimizer"] == 8 * n
        z1 = make_plan(load_config(os.path.join(REPO, "configs", tiny[0]),
                                   [*tiny[1], f"train.precision={precision}", "parallel.dp=8", "parallel.zero=1"]))["memory"]["per_device"]
        assert z1["weights"] == d["weights"] and z1["optimizer"] == d["optimizer"] / 8
    # full recompute casts a layer's weights again in its backward: one layer's copies at a time, plus the head's
    full = make_plan(load_config(os.path.join(REPO, "configs", tiny[0]), [*tiny[1], "train.precision=bf16", "train.recompute=full"]))
    layer = (n - 2 * embed - norms) // 32
    assert full["memory"]["per_device"]["weight_casts"] == 2 * (layer + embed)
    cfg = load_config(os.path.join(REPO, "configs", tiny[0]), [*tiny[1], "train.precision=fp32", "train.optimizer.name=muon"])
    d = make_plan(cfg)["memory"]["per_device"]
    embed_head = 2 * 128256 * 4096
    assert d["optimizer"] == pytest.approx(4 * (n - embed_head) + 8 * embed_head, rel=1e-3)


def test_context_parallel_and_recompute_reduce_activations():
    composed = "model.fused_attention=false"  # the attention scores dominate what recompute saves
    base = _plan("qwen3/qwen3_8b_pretrain.yaml", composed)["memory"]["per_device"]["activations"]
    cp2 = _plan("qwen3/qwen3_8b_pretrain.yaml", composed, "parallel.cp=2")["memory"]["per_device"]["activations"]
    full = _plan("qwen3/qwen3_8b_pretrain.yaml", composed, "train.recompute=full")["memory"]["per_device"]["activations"]
    assert cp2 == pytest.approx(base / 2, rel=0.01)
    assert full < base / 10


def test_expert_parallel_rule_and_device_count():
    ok = _plan("mixtral/mixtral_8x7b_pretrain.yaml", "parallel.dp=8")
    assert ok["layout"]["devices"] == 8 and ok["layout"]["problems"] == [] and ok["layout"]["expert_dp"] == 1
    folded = _plan("mixtral/mixtral_8x7b_pretrain.yaml", "parallel.dp=4", "parallel.tp=2")  # ep spans dp x tp
    assert folded["layout"]["problems"] == [] and folded["layout"]["devices"] == 8
    bad = _plan("mixtral/mixtral_8x7b_pretrain.yaml", "parallel.dp=2")
    assert any("parallel.ep=8 must divide dp*cp*tp=2" in p and "parallel.dp=8" in p for p in bad["layout"]["problems"])
    one = _plan("mixtral/mixtral_8x7b_pretrain.yaml", "parallel.ep=1")["memory"]["per_device"]["weights"]
    assert ok["memory"]["per_device"]["weights"] < one / 4  # experts are 97% of Mixtral


def test_expert_parallel_sorted_dispatch_buffers_count_the_padding_rows():
    """parallel.ep on the sorted dropless dispatch: each rank receives ep x min(top_k, E/ep) rows per token
    (fixed all-to-all buffers, padding included), kept as the send buffer and the grouped matmul's input (h each)
    and run through the expert SwiGLU (4 x moe_intermediate); the capacity dispatch's blocks do not grow."""
    common = ["model.capacity_factor=0", "train.precision=fp32", "run.device=CPU", "train.recompute=none",
              "parallel.dp=4", "parallel.tp=1", "parallel.pp=1", "parallel.cp=1", "parallel.sp=false", "parallel.zero=0"]
    cfg = load_config(os.path.join(REPO, "configs", "qwen3_moe", "qwen3_30b_a3b_pretrain.yaml"), common)
    s = model_sizes(cfg)
    h, k, e, mi = s["hidden_size"], s["num_experts_per_tok"], s.num_experts, s.moe_inter
    tokens = -(-cfg.train.micro_batch_size // 4) * cfg.data.seq_len
    moe_layers = sum(s.is_sparse(i) for i in range(s["num_hidden_layers"]))
    act = {ep: _plan("qwen3_moe/qwen3_30b_a3b_pretrain.yaml", *common, f"parallel.ep={ep}")["memory"]["per_device"]["activations"]
           for ep in (1, 4)}
    rows = 4 * min(k, e // 4)
    assert act[4] - act[1] == pytest.approx(moe_layers * tokens * 4 * (rows - k) * (2 * h + 4 * mi), rel=1e-9)
    capacity = [_plan("qwen3_moe/qwen3_30b_a3b_pretrain.yaml", *common, "model.capacity_factor=1.25", f"parallel.ep={ep}")
                for ep in (1, 4)]
    assert capacity[0]["memory"]["per_device"]["activations"] == capacity[1]["memory"]["per_device"]["activations"]


@pytest.mark.parametrize("path", BIG, ids=_id)
def test_cli_prints_every_published_recipe(path):
    out = subprocess.run([sys.executable, "-m", "mft.cli.main", "plan", path], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.search(r"parameters: \d+\.\d+B trained", out.stdout)
    assert re.search(r"total +\d+\.\d+ GiB", out.stdout)
    js = subprocess.run([sys.executable, "-m", "mft.cli.main", "plan", path, "--json"], capture_output=True, text=True, cwd=REPO, timeout=120)
    plan = json.loads(js.stdout)
    assert plan["memory"]["per_device"]["total"] > 0 and plan["flops_per_token"]["train"] > 0


def test_cli_errors_name_the_key(tmp_path):
    path = os.path.join(REPO, "configs", "tiny", "demo.yaml")
    out = subprocess.run([sys.executable, "-m", "mft.cli.main", "plan", path, "--set", f"tokenizer.path={tmp_path}/none.json"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "model.vocab_size" in out.stderr and "tokenizer.path" in out.stderr
    out = subprocess.run([sys.executable, "-m", "mft.cli.main", "plan", path, "--set", "model.vocab_size=4096", "--set", "parallel.zero=5"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "parallel.zero" in out.stderr


# ---- estimate against measurement ------------------------------------------------

MEASURE = r"""
import json, os, resource, sys

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

import mindspore
from mft.config import load_config
from mft.errors import MftError
from mft.training.trainer import train
import mft.models.auto
base = rss()
cfg = load_config(sys.argv[1], sys.argv[2:])
summary = train(cfg, echo=lambda *_: None)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print("MEASURED " + json.dumps({"rss_after_imports": base, "peak_rss": peak, "checkpoint": summary["checkpoint"]}), flush=True)
"""
POOL_LINE = re.compile(r"dynamic memory pool total allocated mem:\d+M,.*?peak used mem:(\d+)M")


def _tensor_bytes(path: str, skip=()) -> int:
    """Sum of a safetensors file's tensor sizes, from its header."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__" and k not in skip)


MEASURED_RUNS = [(p, ()) for p in TINY] + [(os.path.join(REPO, "configs", "tiny", "demo.yaml"), ("train.recompute=full",))]


@pytest.mark.parametrize("path,extra", MEASURED_RUNS, ids=lambda v: _id(v) if isinstance(v, str) else ",".join(v) or "as-is")
def test_memory_estimate_against_two_real_training_steps(path, extra, demo_files, tmp_path):
    """The estimate's parts against what they really take, for two real training steps (`train()` in a subprocess).

    - activations: MindSpore's CPU memory pool reports its peak use at exit
      (MS_DEV_RUNTIME_CONF=memory_statistics:True). Parameters and optimizer
      state live outside the pool ("Weight used size: 0M"), so the pool's peak
      is the step's activations and transient gradients: it scales with the
      micro-batch with no intercept (llama tiny: 40/81/162 MiB at 4/8/16).
      The estimate must be within 25% of it.
    - weights and optimizer state: within 1% of the tensors the checkpoint
      holds (model.safetensors, optimizer.safetensors minus the step count).
    - peak RSS growth after imports is also measured, but on CPU it is not
      what the estimate models: compiling the step costs 200-300 MiB that
      do not depend on the batch (llama tiny: 333/441/657 MiB growth at
      micro-batch 4/8/16 while the pool peak is 40/81/162). It is checked
      only as a bound: the process really held at least the estimated total.
    """
    out_dir = tmp_path / "run"
    overrides = [
        f"tokenizer.path={demo_files['tokenizer']}", f"data.prefix={demo_files['prefix']}", f"run.output_dir={out_dir}",
        "train.steps=2", "train.lr_schedule.warmup_steps=1", "checkpoint.every_steps=0", "checkpoint.keep=1", "monitor.progress_bar=false", "monitor.tensorboard=false", *extra,
    ]
    env = {**os.environ, "MS_DEV_RUNTIME_CONF": "memory_statistics:True"}
    run = subprocess.run([sys.executable, "-c", MEASURE, path, *overrides], capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout + run.stderr
    measured = json.loads(text.split("MEASURED ", 1)[1].splitlines()[0])
    pools = POOL_LINE.findall(text)
    assert pools, f"MindSpore printed no memory-pool statistics:\n{text[-2000:]}"
    pool_peak = int(pools[-1]) * 2**20

    plan = make_plan(load_config(path, overrides))
    d = plan["memory"]["per_device"]
    ckpt = measured["checkpoint"]
    real_weights = _tensor_bytes(os.path.join(ckpt, "model.safetensors"))
    real_optimizer = _tensor_bytes(os.path.join(ckpt, "optimizer.safetensors"), skip=("optimizer_step",))
    growth = measured["peak_rss"] - measured["rss_after_imports"]
    report = (f"{_id(path)} {' '.join(extra)}: activations est {d['activations'] / 2**20:.1f} MiB vs pool peak {pool_peak / 2**20:.0f} MiB; "
              f"weights {d['weights']} vs {real_weights} B; optimizer {d['optimizer']} vs {real_optimizer} B; "
              f"estimated total {d['total'] / 2**20:.1f} MiB, RSS growth {growth / 2**20:.0f} MiB")
    print(report)
    assert d["weights"] == pytest.approx(real_weights, rel=0.01), report
    assert d["optimizer"] == pytest.approx(real_optimizer, rel=0.01), report
    assert math.isclose(d["activations"], pool_peak, rel_tol=0.25), report
    assert growth >= d["total"], report


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3", "mixtral", "qwen3_moe", "deepseek_v3"])
def test_pretrained_folder_counts_equal_its_checkpoint(family, tmp_path):
    """model.pretrained: sizes come from the folder's config.json; the count equals the tensors of its
    model.safetensors (Hugging Face layout, experts stored one by one; MTP layers beyond num_hidden_layers
    are not part of the model mft trains unless model.mtp_layers asks for them)."""
    import yaml

    folder = os.path.join(REPO, "tests", "fixtures", "hf", family)
    with open(os.path.join(folder, "config.json"), encoding="utf-8") as f:
        layers = json.load(f)["num_hidden_layers"]
    recipe = {
        "run": {"output_dir": str(tmp_path / "run")}, "tokenizer": {"path": str(tmp_path / "unused.json")},
        "data": {"prefix": str(tmp_path / "unused"), "seq_len": 16}, "model": {"arch": family, "pretrained": folder},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with open(os.path.join(folder, "model.safetensors"), "rb") as f:
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    layer_of = re.compile(r"^model\.layers\.(\d+)\.")
    stored = sum(math.prod(v["shape"]) for k, v in header.items()
                 if k != "__metadata__" and not (layer_of.match(k) and int(layer_of.match(k).group(1)) >= layers))
    p = make_plan(load_config(str(path)))["params"]
    assert p["model"] + p["buffers"] == stored


def test_plan_imports_no_mindspore():
    """Pure arithmetic: planning the largest recipe neither builds a model nor imports MindSpore."""
    code = ("import sys; from mft.config import load_config; from mft.plan import make_plan; "
            "make_plan(load_config(sys.argv[1])); print('mindspore' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, os.path.join(REPO, "configs", "deepseek_v3", "deepseek_v3_671b_pretrain.yaml")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_lora_memory_estimate_against_a_real_lora_run(demo_files, tmp_path):
    """finetune.method=lora: the frozen base counts as weights only; gradients and optimizer state are the
    adapters'. Checked against two real LoRA steps of the tiny Llama (the one measured LoRA run):
    weights = base (model.safetensors) + adapters (adapter_model.safetensors), optimizer = the checkpoint's
    optimizer state (adapters only), activations within 25% of the pool peak."""
    path = os.path.join(REPO, "configs", "llama", "tiny_pretrain.yaml")
    out_dir = tmp_path / "run"
    overrides = [
        f"tokenizer.path={demo_files['tokenizer']}", f"data.prefix={demo_files['prefix']}", f"run.output_dir={out_dir}",
        "train.steps=2", "train.lr_schedule.warmup_steps=1", "checkpoint.every_steps=0", "checkpoint.keep=1",
        "monitor.progress_bar=false", "monitor.tensorboard=false", "finetune.method=lora", "finetune.lora.r=8",
    ]
    full = make_plan(load_config(path, overrides[:-2]))["memory"]["per_device"]
    plan = make_plan(load_config(path, overrides))
    d = plan["memory"]["per_device"]
    ft = plan["finetune"]
    assert ft["method"] == "lora" and ft["modules"] == 2 * 7 and ft["frozen_params"] == plan["params"]["total"]
    assert d["gradients"] == 4 * ft["adapter_params"] and d["optimizer"] == 8 * ft["adapter_params"]
    assert d["weights"] == full["weights"] + 4 * ft["adapter_params"]
    env = {**os.environ, "MS_DEV_RUNTIME_CONF": "memory_statistics:True"}
    run = subprocess.run([sys.executable, "-c", MEASURE, path, *overrides], capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    text = run.stdout + run.stderr
    ckpt = json.loads(text.split("MEASURED ", 1)[1].splitlines()[0])["checkpoint"]
    pools = POOL_LINE.findall(text)
    assert pools, f"MindSpore printed no memory-pool statistics:\n{text[-2000:]}"
    pool_peak = int(pools[-1]) * 2**20
    real_weights = _tensor_bytes(os.path.join(ckpt, "model.safetensors")) + _tensor_bytes(os.path.join(ckpt, "adapter_model.safetensors"))
    real_optimizer = _tensor_bytes(os.path.join(ckpt, "optimizer.safetensors"), skip=("optimizer_step",))
    report = (f"lora: activations est {d['activations'] / 2**20:.1f} MiB vs pool peak {pool_peak / 2**20:.0f} MiB; "
              f"weights {d['weights']} vs {real_weights} B; optimizer {d['optimizer']} vs {real_optimizer} B; "
              f"total {d['total'] / 2**20:.1f} MiB vs full fine-tuning's {full['total'] / 2**20:.1f}")
    print(report)
    assert d["weights"] == pytest.approx(real_weights, rel=0.01), report
    assert d["optimizer"] == pytest.approx(real_optimizer, rel=0.01), report
    assert math.isclose(d["activations"], pool_peak, rel_tol=0.25), report


def test_lora_modules_to_save_are_trained_in_full():
    """finetune.lora.modules_to_save: those tensors keep fp32 gradients and optimizer state beside the adapters,
    as mft.finetune.lora trains them in place; a name matching nothing, or also adapted, is refused as there."""
    base = _plan("llama/llama3_8b_lora.yaml", "train.grad_accum_steps=1")
    saved = _plan("llama/llama3_8b_lora.yaml", "train.grad_accum_steps=1", "finetune.lora.modules_to_save=[lm_head]")
    head = 128256 * 4096
    ft, d, d0 = saved["finetune"], saved["memory"]["per_device"], base["memory"]["per_device"]
    assert ft["modules_to_save_params"] == head and ft["frozen_params"] == base["finetune"]["frozen_params"] - head
    assert d["gradients"] - d0["gradients"] == 4 * head and d["optimizer"] - d0["optimizer"] == 8 * head
    assert d["weights"] == d0["weights"]  # trained in place: no second copy
    with pytest.raises(MftError, match=r"finetune\.lora\.modules_to_save \['nope'\] match no module"):
        _plan("llama/llama3_8b_lora.yaml", "finetune.lora.modules_to_save=[nope]")
    with pytest.raises(MftError, match="in both target_modules and modules_to_save"):
        _plan("llama/llama3_8b_lora.yaml", "finetune.lora.modules_to_save=[q_proj]")
