"""`finetune.method: lora` in the plan: the frozen base and the adapters mft adds.

mft.finetune.lora puts an adapter on every linear layer (a `_Linear`: the
attention and MLP projections, shared experts, MTP's eh_proj, the LM head)
whose Hugging Face module path matches `finetune.lora.target_modules`
(PEFT's rule), and sets requires_grad=False on every base parameter. So:

- the base tensors stay in the inventory as frozen weights: no gradient, no
  optimizer state. mft keeps parameters in fp32 (its layers cast on use), so
  a frozen tensor is 4 bytes per element, plus with fp16/bf16 the 2-byte
  working copy a linear layer casts and backward keeps for the input
  gradient (memory.is_cast: not norms, routers or an untied embedding);
- `finetune.lora.modules_to_save` (PEFT's field): the modules whose Hugging
  Face path ends in one of the names stay trainable in full, as any
  parameter of full fine-tuning (fp32 gradient and optimizer state); mft
  trains them in place, so there is no second copy of their weights;
- each adapted linear adds lora_A (r, in) and lora_B (out, r), the only
  trainable tensors (fp32 gradients and optimizer state, as any parameter);
- activations per adapted linear and token: the r-wide low-rank product kept
  for B's gradient, and with lora.dropout > 0 the dropped-out input (the
  un-dropped input is the one the base matmul already keeps).

Routed-expert stacks and MoE routers are not `_Linear`s and take no adapter.
"""

from __future__ import annotations

from dataclasses import replace

from mft.errors import MftError
from mft.plan.shapes import REPLICATED, ParamTensor

NOT_LINEAR = ("embedding", "norms", "router", "experts")


def _settings(cfg):
    from mft.finetune.lora import LoraSettings  # numpy only; no MindSpore

    lc = cfg.finetune.lora
    try:
        return LoraSettings(r=lc.r, alpha=lc.alpha, dropout=lc.dropout, target_modules=lc.target_modules, use_rslora=lc.use_rslora,
                            modules_to_save=lc.modules_to_save)
    except MftError as e:
        raise MftError(f"finetune.lora: {e}") from None


def _saved_modules(cfg, tensors: list[ParamTensor], names: list[str]) -> set:
    """Names of the tensors `modules_to_save` keeps trainable, refused as mft.finetune.lora refuses them."""
    if not names:
        return set()
    saved = {t.name for t in tensors if any(t.name.rsplit(".", 1)[0].endswith(n) for n in names)}
    if not saved:
        tied = " (this model ties lm_head to model.embed_tokens: name embed_tokens to train both)" if (
            "lm_head" in names and cfg.model.tie_word_embeddings) else ""
        raise MftError(f"finetune.lora.modules_to_save {names!r} match no module of this {cfg.model.arch} model{tied}")
    experts = sorted(t.name for t in tensors if t.name in saved and t.component == "experts")
    if experts:
        raise MftError(f"finetune.lora.modules_to_save: {experts[0]} is part of a stacked expert tensor; experts cannot be saved whole yet")
    return saved


def lora_inventory(cfg, tensors: list[ParamTensor]) -> tuple[list[ParamTensor], dict]:
    """(base tensors frozen + adapter tensors, summary); the tensors unchanged for full fine-tuning."""
    if cfg.finetune.method != "lora":
        return tensors, {}
    from mft.finetune.lora import matches

    st = _settings(cfg)
    out: list[ParamTensor] = []
    adapters: list[ParamTensor] = []
    act_per_layer: dict = {}
    saved = _saved_modules(cfg, tensors, st.modules_to_save or [])
    for t in tensors:
        if t.name in saved:
            out.append(t)  # trained in full beside the adapters
            if matches(t.name.rsplit(".", 1)[0], st.target_modules) and t.component not in NOT_LINEAR and len(t.shape) == 2:
                raise MftError(f"finetune.lora: {t.name.rsplit('.', 1)[0]} is in both target_modules and modules_to_save")
            continue
        out.append(replace(t, trainable=False, frozen=t.trainable))
        if t.component in NOT_LINEAR or len(t.shape) != 2 or not t.name.endswith(".weight"):
            continue
        path = t.name[: -len(".weight")]
        if not matches(path, st.target_modules):
            continue
        n_out, n_in = t.shape
        adapters.append(ParamTensor(f"{path}.lora_A.weight", (st.r, n_in), "lora", REPLICATED, t.layer))
        adapters.append(ParamTensor(f"{path}.lora_B.weight", (n_out, st.r), "lora", REPLICATED, t.layer))
        act_per_layer[t.layer] = act_per_layer.get(t.layer, 0) + st.r + (n_in if st.dropout > 0 else 0)
    if not adapters:
        raise MftError(f"finetune.lora.target_modules {st.target_modules!r} match no linear layer of this {cfg.model.arch} model")
    summary = {
        "r": st.r,
        "modules_to_save_params": sum(t.numel for t in tensors if t.name in saved),
        "modules": len(adapters) // 2,
        "adapter_params": sum(t.numel for t in adapters),
        "frozen_params": sum(t.numel for t in tensors if t.trainable and t.name not in saved),
        "activation_elements_per_token": act_per_layer,  # layer (None: outside the decoder layers) -> p-wide elements
    }
    return out + adapters, summary
