"""`finetune.method: lora` in the plan: the frozen base and the adapters mft adds.

mft.finetune.lora puts an adapter on every linear layer (a `_Linear`: the
attention and MLP projections, shared experts, MTP's eh_proj, the LM head)
whose Hugging Face module path matches `finetune.lora.target_modules`
(PEFT's rule), and sets requires_grad=False on every base parameter. So:

- the base tensors stay in the inventory as frozen weights: no gradient, no
  optimizer state, no master copy. mft keeps parameters in fp32 (its layers
  cast on use), so a frozen tensor is 4 bytes per element, plus with
  fp16/bf16 the 2-byte working copy a linear/embedding layer casts and
  backward keeps for the input gradient (matrices only: norms compute from
  the fp32 weight);
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
        return LoraSettings(r=lc.r, alpha=lc.alpha, dropout=lc.dropout, target_modules=lc.target_modules, use_rslora=lc.use_rslora)
    except MftError as e:
        raise MftError(f"finetune.lora: {e}") from None


def lora_inventory(cfg, tensors: list[ParamTensor]) -> tuple[list[ParamTensor], dict]:
    """(base tensors frozen + adapter tensors, summary); the tensors unchanged for full fine-tuning."""
    if cfg.finetune.method != "lora":
        return tensors, {}
    from mft.finetune.lora import matches

    st = _settings(cfg)
    out: list[ParamTensor] = []
    adapters: list[ParamTensor] = []
    act_per_layer: dict = {}
    for t in tensors:
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
        "modules": len(adapters) // 2,
        "adapter_params": sum(t.numel for t in adapters),
        "frozen_params": sum(t.numel for t in tensors if t.trainable),
        "activation_elements_per_token": act_per_layer,  # layer (None: outside the decoder layers) -> p-wide elements
    }
    return out + adapters, summary
