"""Activation memory of one pipeline stage's device, counted tensor by tensor.

What is counted is what mft's layers keep from forward for backward, as
MindSpore's autodiff keeps it for the composed ops (an elementwise product
keeps both inputs, a matmul its activation input, a cast makes a copy), plus
the logits' gradient: peak memory is reached at the start of backward, when
that gradient exists beside everything forward kept. Per token:

- each RMSNorm: its input cast to fp32, the fp32 normalised input (kept for
  the weight's gradient) and its output (3 tensors of its width); two per layer, h wide,
  replicated across tp and divided by tp only with parallel.sp;
- attention (divided by tp): q and k before RoPE, their rotated halves and
  the rotated result (3 each; 2 with model.fused_rope: no rotated half), v, the keys and values repeated to every
  query head (GQA) and the o_proj input; Qwen3's q/k norms add 3 tensors each;
- the attention scores and the fp32 softmax probabilities, heads x seq_len
  each (mft's composed attention materialises them; model.fused_attention
  keeps neither, and MLA always takes the composed path);
- MLA (DeepSeek-V3): the q/kv down-projections and their norms (replicated:
  mft does not split them), then q, k and v per head, RoPE on the rotary
  part, the o_proj input;
- SwiGLU MLP (divided by tp): gate, silu(gate), up and their product, 4 x
  intermediate (3 with model.fused_swiglu, which keeps no silu(gate));
- MoE: router logits and probabilities (2E, fp32); per routed slot the
  gathered input, the expert output and its weighted copy (3h) and the
  expert's SwiGLU (4 x moe_intermediate); capacity_factor x top_k slots per
  token (top_k when dropless, as a routed kernel computes it: today's dense
  dropless dispatch holds num_experts / top_k times more); shared experts
  like a dense MLP; with parallel.ep on the sorted (dropless) dispatch, the
  fixed all-to-all buffers: ep x min(top_k, E/ep) rows per token reach each
  rank, padding included, and the send buffer, the grouped matmul's input
  and the expert SwiGLU are that many rows;
- outside the layers: the embedding output (first stage); the final norm
  (3h), the fp32 logits, their log-softmax and the logits' gradient, 3 x
  vocab / tp (last stage; 2 x with model.fused_cross_entropy, which keeps one
  logsumexp per token instead of the log-softmax); each MTP module adds its norms and concatenation
  (8h), one layer and its log-softmax, 1 x vocab (backward handles one
  head's logits gradient at a time).

Widths: p bytes (4 fp32, 2 fp16/bf16) for the compute dtype, 4 for what mft
computes in fp32 (norm internals, softmax, router, logits and loss).
Tokens per device and micro-batch: T = micro_batch_size / dp x seq_len / cp
(train.micro_batch_size is the global micro-batch, split over the dp ranks)
(attention rows still see all seq_len keys).

Selective recompute (attention core and SwiGLU activation) drops the
repeated keys/values and silu(gate) of each layer; one layer's worth of them
is recreated at a time in backward. On the composed attention path the
scores and probabilities stay counted: measured with benches/memory.py
(demo shape, MindSpore 2.10 CPU), selective saves 29 MB on the fused path and
21 MB on the composed one, where dropping the scores would save 32 MB more;
the composed core's forward scores stay alive beside the recreated ones.

Full recompute keeps only each decoder layer's input (h) and recomputes one
layer at a time in backward, after the head's backward has freed the logits:
the peak adds the larger of one layer's full set and the head (final norm,
logits, MTP modules, which the trainer does not recompute). With pipeline
parallelism, 1F1B keeps min(pp - stage, micro-batches) micro-batches in
flight on a stage (micro-batches per step = train.grad_accum_steps); the
logits of the last stage are for one micro-batch at a time. Without
train.recompute, a stage before the last keeps only its input per in-flight
micro-batch and holds its whole forward's activations for one micro-batch
during a backward, as mft train's pipeline does (it recomputes the stage).
"""

from __future__ import annotations

from dataclasses import dataclass

from mft.plan.layout import Layout
from mft.plan.shapes import ModelSizes


@dataclass(frozen=True)
class Fused:
    """Which of mft's kernels a run uses, resolved as model_factory.runtime_overrides does (null = auto)."""

    attention: bool = False
    rope: bool = False
    swiglu: bool = False
    cross_entropy: bool = False

    @classmethod
    def of(cls, cfg) -> "Fused":
        from mft.config.schema import NO_FUSED_ATTENTION

        m = cfg.model
        cpu = cfg.run.device == "CPU"  # where the kernels are built (mft plan imports no MindSpore)
        fp32 = cpu and cfg.train.precision == "fp32"

        def pick(value, auto):
            return auto if value is None else bool(value)

        return cls(attention=pick(m.fused_attention, fp32 and m.arch not in NO_FUSED_ATTENTION),
                   rope=pick(m.fused_rope, fp32), swiglu=pick(m.fused_swiglu, fp32),
                   cross_entropy=pick(m.fused_cross_entropy, cpu) and cfg.parallel.tp == 1)


@dataclass
class PerToken:
    """Elements per token: replicated across tp (norm regions) or divided by tp; p-wide or fp32."""

    rep_p: float = 0.0
    rep_f: float = 0.0
    split_p: float = 0.0
    split_f: float = 0.0
    routed_p: float = 0.0  # expert slots: experts are not tensor-parallel

    def norm(self, width: int, replicated: bool = True) -> None:
        """RMSNorm: its fp32 input (a copy unless the input is fp32), fp32 normalised input, output."""
        if replicated:
            self.rep_p += width
            self.rep_f += 2 * width
        else:
            self.split_p += width
            self.split_f += 2 * width


def _attention(e: PerToken, s: ModelSizes, seq: int, fused: Fused, selective: bool = False) -> None:
    heads = s["num_attention_heads"]
    if s.arch == "deepseek_v3":
        nope, rope, v = s["qk_nope_head_dim"], s["qk_rope_head_dim"], s["v_head_dim"]
        qk = nope + rope
        q_rank, kv_rank = s.get("q_lora_rank") or 0, s["kv_lora_rank"]
        if q_rank:
            e.norm(q_rank)  # q_a_proj output = the norm's input
        e.rep_p += kv_rank + rope  # kv_a_proj_with_mqa output
        e.norm(kv_rank)
        e.rep_p += 2 * rope  # the shared rotary key: rotated half and result
        # q (b_proj output), q rope (rotated half, result), q and k concatenated, kv_b output, v, o_proj input
        e.split_p += heads * (qk + 2 * rope + 2 * qk + (nope + v) + 2 * v)
        e.split_f += 2 * heads * seq  # scores and probabilities
        return
    d, kv = s.head_dim, s.kv_heads
    rope = 2 if fused.rope else 3  # q, k: input, (rotated half,) result
    e.split_p += rope * heads * d + rope * kv * d + kv * d  # and v
    if kv != heads and not selective:
        e.split_p += 2 * heads * d  # keys and values repeated to every query head (inside the attention core)
    e.split_p += heads * d  # o_proj input
    if s.arch in ("qwen3", "qwen3_moe"):
        e.norm(heads * d, replicated=False)
        e.norm(kv * d, replicated=False)
    if not fused.attention:  # kept under selective too: measured, see the module docstring
        e.split_f += 2 * heads * seq


def layer_elements(s: ModelSizes, index: int, seq: int, fused: Fused, capacity_factor: float,
                   selective: bool = False, ep_rows: int = 0) -> PerToken:
    """`selective`: what a layer keeps under train.recompute=selective (attention core and SwiGLU recomputed);
    `ep_rows`: expert rows per token a rank receives on the sorted dispatch under parallel.ep (0: no ep)."""
    h = s["hidden_size"]
    e = PerToken()
    e.norm(h)
    e.norm(h)
    _attention(e, s, seq, fused, selective)
    if s.is_sparse(index):
        experts, k = s.num_experts, s["num_experts_per_tok"]
        e.rep_f += 2 * experts
        slots = capacity_factor * k if capacity_factor > 0 else k
        if ep_rows and capacity_factor <= 0:
            # parallel.ep on the sorted dispatch: each rank sends every other a fixed buffer of T x min(k, E/ep)
            # rows (mft.parallel.expert_dispatch), so ep_rows = ep x min(k, E/ep) rows per token arrive, padding
            # included; the masked send buffer and the grouped matmul's input keep them (h each), the expert
            # SwiGLU runs on all of them; the returned rows (k per token, h) stay for the gate weights
            e.routed_p += k * h + ep_rows * (2 * h + 4 * s.moe_inter)
        else:
            e.routed_p += slots * (3 * h + 4 * s.moe_inter)
        shared = s.get("n_shared_experts", 0) if s.arch == "deepseek_v3" else 0
        e.split_p += 4 * s.moe_inter * shared
    else:  # gate, up and their product stay (the SwiGLU cell's inputs and output); silu(gate) is recomputed
        e.split_p += (3 if selective or fused.swiglu else 4) * s["intermediate_size"]
    return e


def activation_bytes(cfg, s: ModelSizes, lay: Layout, stages: list, stage: int, p: int, recompute: str,
                     recompute_layers: int = 0, lora_act: dict | None = None) -> float:
    """Bytes of activations on one device of pipeline stage `stage` at its peak.
    `lora_act`: LoRA's extra p-wide elements per token by layer index (None: the LM head), plan/lora.py."""
    lora_act = lora_act or {}
    tokens = -(-cfg.train.micro_batch_size // lay.dp) * -(-cfg.data.seq_len // lay.cp)  # micro_batch_size is split over dp
    seq = cfg.data.seq_len
    rep_div = lay.tp if lay.sp else 1
    cf = cfg.model.capacity_factor
    fused = Fused.of(cfg)

    ep_rows = 0
    fused_moe = cfg.model.fused_moe
    if fused_moe is None:  # auto, as model_factory.runtime_overrides resolves it
        fused_moe = cfg.run.device == "CPU" and cf <= 0 and cfg.train.precision == "fp32"
    if lay.ep > 1 and s.num_experts and fused_moe:
        ep_rows = lay.ep * min(s["num_experts_per_tok"], s.num_experts // lay.ep)

    def layer_bytes(e: PerToken) -> float:
        return tokens * ((p * e.rep_p + 4 * e.rep_f) / rep_div + (p * e.split_p + 4 * e.split_f) / lay.tp + p * e.routed_p)

    h, vocab = s["hidden_size"], s["vocab_size"]
    layers = [layer_bytes(layer_elements(s, i, seq, fused, cf, ep_rows=ep_rows)) + tokens * p * lora_act.get(i, 0) for i in stages[stage]]
    kept_input = tokens * p * h / rep_div
    # train.recompute_layers: only the model's first N layers are recomputed (0 = all)
    recomputed = [recompute != "none" and (recompute_layers == 0 or i < recompute_layers) for i in stages[stage]]
    if recompute == "selective":  # a layer keeps all but the core's and activation's insides, recreated one layer at a time
        kept = [layer_bytes(layer_elements(s, i, seq, fused, cf, selective=True, ep_rows=ep_rows)) + tokens * p * lora_act.get(i, 0)
                for i in stages[stage]]
        per_micro = sum(k if r else b for r, k, b in zip(recomputed, kept, layers))
        once = max((b - k for r, k, b in zip(recomputed, kept, layers) if r), default=0.0)
    else:
        per_micro = sum(kept_input if r else b for r, b in zip(recomputed, layers))
        once = max((b for r, b in zip(recomputed, layers) if r), default=0.0)
    if stage == 0:
        per_micro += kept_input  # embedding output
    in_flight = min(lay.pp - stage, cfg.train.grad_accum_steps) if lay.pp > 1 else 1
    if lay.pp > 1 and stage < lay.pp - 1 and recompute == "none":
        # mft train's pipeline (mft.parallel.pipeline): a stage before the last keeps only its input per
        # in-flight micro-batch and runs its whole forward again in the backward of one micro-batch
        return kept_input * in_flight + sum(layers) + (kept_input if stage == 0 else 0.0)
    head = 0.0
    if stage == lay.pp - 1:
        final_norm = PerToken()
        final_norm.norm(h)
        logits = tokens * 4 * (2 if fused.cross_entropy else 3) * -(-vocab // lay.tp)
        head = layer_bytes(final_norm) + logits + tokens * p * lora_act.get(None, 0)
        for k in range(s.mtp_layers):  # the trainer recomputes model.layers only, never the MTP modules
            head += layer_bytes(layer_elements(s, s["num_hidden_layers"] + k, seq, fused, cf, ep_rows=ep_rows)) + 8 * kept_input + tokens * 4 * -(-vocab // lay.tp)
    # Without recompute everything saved is alive at the start of backward, logits' gradient included;
    # with it, a layer is recomputed only after the head's backward has freed the logits.
    return per_micro * in_flight + (max(once, head) if once else head)
