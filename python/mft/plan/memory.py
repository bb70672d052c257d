"""Per-device training memory: weights, gradients, optimizer state, activations.

Model states (bytes per parameter held by the device), as mft keeps them
(mft.training.precision: parameters, gradients and optimizer state stay fp32;
fp16/bf16 layers cast their weights on use):
- weights: the fp32 parameters (4), which are also the master weights: mft
  keeps no other copy (non-trainable buffers included). With fp16/bf16, plus
  the p-byte working copy each linear layer casts its weight (and bias) to
  and backward keeps for the input gradient: attention, MLP, expert, LM-head
  and LoRA matrices, the embedding matrix only when the head is tied to it
  (the embedding itself gathers rows, then casts); norms and routers compute
  from the fp32 weight. ZeRO-1/2 do not shard the weights (mft's ZeRO keeps
  the whole fp32 model on every rank, parallel/zero.py); zero=3 would shard
  the fp32 parameters, not the working copies made from them. Under
  train.recompute=full a recomputed layer's working copies are made again
  in backward, one layer at a time, so only the largest layer's count;
- gradients: fp32 (4); with train.grad_accum_steps > 1 mft keeps an
  accumulation buffer beside each micro-step's gradients (x2);
- optimizer (fp32 state only): adamw 2 states (8); muon 1 state (4) for
  hidden matrices, AdamW's 2 for embeddings, LM head, norms and biases;
  adafactor a row and a column vector per matrix (a full vector for 1-D
  tensors) plus a first moment when betas[0] > 0.
So fp32 AdamW is 16 bytes/parameter and fp16/bf16 AdamW 18 for a cast matrix
(4 + 2 + 4 + 8), 16 for a norm weight or an untied embedding.

Activations (bytes kept from forward to backward for one micro-batch, per
device) are counted tensor by tensor for mft's layers, with T = micro_batch_size
x seq_len / cp tokens and p the compute width (activations.py).
"""

from __future__ import annotations

from math import prod

from mft.errors import MftError
from mft.plan.activations import activation_bytes
from mft.plan.layout import Layout, stage_layers
from mft.plan.shapes import COLUMN, EXPERT, ROW, VOCAB, ModelSizes, ParamTensor

PRECISION_BYTES = {"fp32": 4, "fp16": 2, "bf16": 2}
OPTIMIZERS = ("adamw", "muon", "adafactor")


def _local_fraction(t: ParamTensor, s: ModelSizes, lay: Layout) -> float:
    """Share of tensor `t` one device of its stage holds."""
    tp, shape = lay.tp, t.shape
    if t.split == EXPERT:
        return -(-shape[0] // lay.ep) / shape[0]
    if t.split == VOCAB:
        return -(-shape[0] // tp) / shape[0]
    if t.split == COLUMN:
        name = t.name.rsplit(".", 2)[-2]
        if name in ("k_proj", "v_proj"):  # whole key/value heads; replicated when tp > kv heads
            kv = s.kv_heads
            return -(-kv // tp) / kv
        return -(-shape[0] // tp) / shape[0]
    if t.split == ROW:
        return -(-shape[1] // tp) / shape[1] if len(shape) > 1 else 1.0
    return 1.0


def _optimizer_elements(t: ParamTensor, name: str, beta1: float) -> int:
    """fp32 optimizer-state elements of tensor `t` (whole tensor)."""
    n = t.numel
    matrix = len(t.shape) >= 2
    if name == "adamw":
        return 2 * n
    if name == "muon":
        return n if matrix and t.component not in ("embedding", "head") else 2 * n
    if name == "adafactor":
        second = prod(t.shape[:-1]) + prod(t.shape[:-2]) * t.shape[-1] if matrix else n
        return second + (n if beta1 > 0 else 0)
    raise MftError(f"train.optimizer.name={name!r}: mft plan knows {', '.join(OPTIMIZERS)}")


def _stage_of(t: ParamTensor, layer_stage: dict, pp: int, tied: bool) -> list[int]:
    if t.layer is not None:
        return [layer_stage.get(t.layer, pp - 1)]  # MTP modules (layer >= L) go on the last stage
    if t.component == "embedding":
        return sorted({0, pp - 1}) if tied else [0]
    return [pp - 1]  # final norm, LM head


def is_cast(t: ParamTensor, tied_head: bool) -> bool:
    """Whether a layer casts tensor `t` whole to the compute dtype on use (fp16/bf16): linear/expert weights
    and biases; not norms, routers (fp32 logits) or the embedding, unless the tied LM head multiplies by it."""
    if t.component == "embedding":
        return tied_head
    if t.component in ("norms", "router") or "norm" in t.name.rsplit(".", 2)[-2]:
        return False
    return not t.name.endswith((".gate.weight", ".gate.e_score_correction_bias"))  # MTP's routers


def recompute_mode(cfg) -> str:
    value = cfg.train.recompute
    if value in ("none", "full", "selective"):
        return value
    raise MftError(f"train.recompute={value!r}: mft plan models none, full and selective recompute")


def per_device_memory(cfg, s: ModelSizes, tensors: list[ParamTensor], lay: Layout, lora_act: dict | None = None) -> dict:
    """Memory of every pipeline stage's devices, and the largest."""
    precision = cfg.train.precision
    if precision not in PRECISION_BYTES:
        raise MftError(f"train.precision={precision!r}: mft plan knows {', '.join(PRECISION_BYTES)}")
    p = PRECISION_BYTES[precision]
    opt = cfg.train.optimizer
    accum = cfg.train.grad_accum_steps
    stages = stage_layers(s["num_hidden_layers"], lay.pp, cfg.parallel.pp_layers)
    layer_stage = {i: k for k, layers in enumerate(stages) for i in layers}
    tied_head = bool(s.get("tie_word_embeddings", False))
    # train.recompute=full: a recomputed decoder layer keeps only its input, so its working copies too are
    # made again in backward, one layer at a time (MTP modules are never recomputed)
    recomputed = set(range(s["num_hidden_layers"])[: cfg.train.recompute_layers or None]) if recompute_mode(cfg) == "full" else set()
    tied = tied_head and lay.pp > 1
    zero = lay.zero
    out = []
    for k in range(lay.pp):
        weights = casts = grads = optim = 0.0
        recast: dict = {}
        for t in tensors:
            if k not in _stage_of(t, layer_stage, lay.pp, tied):
                continue
            local = _local_fraction(t, s, lay)
            shard = lay.expert_dp if t.split == EXPERT else lay.dense_dp
            w = t.numel * local * 4  # fp32 parameters (the master weights), frozen LoRA bases too
            weights += w / shard if zero >= 3 else w
            if p != 4 and is_cast(t, tied_head and k == lay.pp - 1):
                c = t.numel * local * p  # the working copy, made whole from the (gathered) parameter
                if t.layer is not None and t.layer in recomputed:  # cast again in backward, one layer at a time
                    recast[t.layer] = recast.get(t.layer, 0.0) + c
                else:
                    casts += c
            if not t.trainable:
                continue
            g = t.numel * local * 4 * (2 if accum > 1 else 1)
            grads += g / shard if zero >= 2 else g
            o = _optimizer_elements(t, opt.name, opt.betas[0]) * local * 4
            optim += o / shard if zero >= 1 else o
        casts += max(recast.values(), default=0.0)
        weights += casts
        act = activation_bytes(cfg, s, lay, stages, k, p, recompute_mode(cfg), cfg.train.recompute_layers, lora_act)
        out.append({
            "stage": k,
            "layers": len(stages[k]),
            "weights": round(weights),
            "weight_casts": round(casts),
            "gradients": round(grads),
            "optimizer": round(optim),
            "activations": round(act),
            "total": round(weights + grads + optim + act),
        })
    worst = max(out, key=lambda st: st["total"])
    return {
        "precision": precision,
        "optimizer": opt.name,
        "recompute": (f"first {cfg.train.recompute_layers} layers" if recompute_mode(cfg) == "full" and cfg.train.recompute_layers
                      else recompute_mode(cfg)),
        "micro_batch_size": cfg.train.micro_batch_size,
        "grad_accum_steps": accum,
        "per_device": {key: worst[key] for key in ("stage", "weights", "weight_casts", "gradients", "optimizer", "activations", "total")},
        "stages": out,
    }
