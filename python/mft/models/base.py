"""What every causal-LM family shares: checked HF state-dict loading, saving, generate.

A family subclasses `CausalLM` and provides `config_class` (with
from_hf_dict/to_hf_dict), `hf_mapping` (expected_shapes, hf_to_param_name,
param_to_hf_name, optional_tensors, IGNORED_SUFFIXES), `construct(input_ids)`
-> fp32 logits and `forward_step(input_ids, start_pos, k_caches, v_caches,
last_only)` for cached decoding.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import mindspore as ms
from mindspore import nn

from mft.errors import MftError

MAX_LISTED = 8
# bf16 parameters are filled from fp32 arrays (numpy has no bf16); MindSpore casts on set_data.
_NUMPY_DTYPES = {ms.float32: np.float32, ms.float16: np.float16, ms.bfloat16: np.float32}


class CausalLM(nn.Cell):
    """Base of every model family: Hugging Face config and weight loading/saving, `generate`.

    A family sets `config_class` and `hf_mapping`; `model(input_ids)` (a MindSpore int tensor
    (batch, seq)) returns logits (batch, seq, vocab)."""
    config_class = None
    hf_mapping = None
    hf_mapping_needs_config = False  # param_to_hf_name(name, config) (names that depend on sizes)

    # ---- construction -------------------------------------------------
    @classmethod
    def from_config(cls, config, dtype=ms.float32, **overrides):
        """A model with fresh weights for `config` (fields replaced by `overrides`), parameters in `dtype`."""
        if overrides:
            config = dataclasses.replace(config, **overrides)
        return cls(config, dtype=dtype)

    @classmethod
    def from_pretrained(cls, folder: str, dtype=ms.float32, **overrides):
        """The model of a Hugging Face / mft folder: config.json, then every weight checked and loaded.

        `overrides` replace config fields (e.g. fused_attention=False). Missing, unexpected or
        mis-shaped tensors are an MftError naming them."""
        from mft.models import checkpoint_io

        raw = checkpoint_io.read_config(folder)
        quantization = raw.pop("quantization_config", None)  # mft quantize output (mft.quant.loader)
        config = cls.config_class.from_hf_dict(raw, source=f"{folder}/config.json")
        # Read the weights before building the model so a folder without them fails fast.
        tensors, source = checkpoint_io.read_weights(folder)
        model = cls.from_config(config, dtype=dtype, **overrides)
        if quantization is not None:
            from mft.quant.loader import apply_quantized

            apply_quantized(model, quantization, tensors, f"{folder}/config.json")
        model.load_hf_state_dict(tensors, source)
        return model

    # ---- weights ----------------------------------------------------
    def hf_layout(self) -> dict:
        """HF tensor name -> (parameter, expert index or None).

        A stacked expert parameter (mft.parallel.GroupedLinear, (E, out, in))
        is E checkpoint tensors named `...experts.<e>....`; everything else is
        one tensor under the family's `param_to_hf_name`.
        """
        from mft.parallel.layers import GroupedLinear

        stacked = {}
        for cell_name, cell in self.cells_and_names():
            if isinstance(cell, GroupedLinear):  # expert parallel: a share of `global_experts`, named globally
                stacked[f"{cell_name}.weight"] = getattr(cell, "global_experts", None)
        layout = {}
        for name, p in self.parameters_and_names():
            if ".lora_A." in name or ".lora_B." in name:  # LoRA adapters live in their own files (mft.finetune.lora)
                continue
            if ".quant_" in name:  # quantized linears load their packed tensors themselves (mft.quant.loader)
                continue
            hf = self.hf_mapping.param_to_hf_name(name, self.config) if self.hf_mapping_needs_config else self.hf_mapping.param_to_hf_name(name)
            if name in stacked:
                for e in range(stacked[name] or p.shape[0]):
                    layout[hf.replace(".experts.", f".experts.{e}.", 1)] = (p, e)
            else:
                layout[hf] = (p, None)
        return layout

    def expected_hf_shapes(self) -> dict:
        """HF tensor name -> the shape this model expects in a checkpoint."""
        return {name: tuple(p.shape[1:]) if e is not None else tuple(p.shape) for name, (p, e) in self.hf_layout().items()}

    def load_hf_state_dict(self, tensors: dict, source: str = "state dict") -> None:
        """Checks every tensor (missing, unexpected, shape) before assigning any.

        A model built for tensor parallelism takes the full tensors and keeps its rank's pieces.
        """
        from mft.parallel.tensor_parallel import full_hf_shapes, shard_hf_tensors

        tensors = shard_hf_tensors(self, tensors, source)
        mapping = self.hf_mapping
        layout = self.hf_layout()
        expected = self.expected_hf_shapes()
        if hasattr(mapping, "expected_shapes"):  # an independent spelling of the layout: must agree
            declared = mapping.expected_shapes(self.config)
            declared = {k: v for k, v in declared.items() if k not in getattr(self, "quantized_weights", ())}  # mft.quant.loader
            if declared != full_hf_shapes(self, expected):  # (tp: the global shapes, before slicing)
                diff = sorted(k for k in set(declared) | set(expected) if declared.get(k) != expected.get(k))
                raise RuntimeError(f"hf_mapping out of sync with model parameters: {diff[:5]}")
        optional = mapping.optional_tensors(self.config)
        problems = []
        absent_ok = mapping.absent_ok(tensors, self.config) if hasattr(mapping, "absent_ok") else set()
        for name in expected:
            if name not in tensors and name not in absent_ok:
                problems.append(f"missing tensor {name} (expected shape {expected[name]})")
        for name, arr in tensors.items():
            if name in expected:
                if tuple(arr.shape) != tuple(expected[name]):
                    problems.append(f"tensor {name} has shape {tuple(arr.shape)} but the model expects {tuple(expected[name])}")
            elif name in optional:
                want = optional[name] if isinstance(optional, dict) else (self.config.vocab_size, self.config.hidden_size)
                if want is not None and tuple(arr.shape) != tuple(want):
                    problems.append(f"tensor {name} has shape {tuple(arr.shape)} but the model expects {tuple(want)}")
            elif name.endswith(tuple(mapping.IGNORED_SUFFIXES)) or (hasattr(mapping, "skipped") and mapping.skipped(name, self.config)):
                continue
            else:
                problems.append(f"unexpected tensor {name} with shape {tuple(arr.shape)}")
        if problems:
            more = f" (and {len(problems) - MAX_LISTED} more)" if len(problems) > MAX_LISTED else ""
            raise MftError(f"{source}: does not match {type(self).__name__}: " + "; ".join(problems[:MAX_LISTED]) + more)
        pieces: dict = {}
        from mft.parallel.expert_parallel import expert_offsets

        offsets = expert_offsets(self)  # expert parallel: keep only this rank's experts
        for name, (p, e) in layout.items():
            if name not in tensors:  # absent_ok: keeps its initial value
                continue
            if e is None:
                pieces[id(p)] = (p, tensors[name])
            elif 0 <= e - offsets.get(id(p), 0) < p.shape[0]:
                pieces.setdefault(id(p), (p, [None] * p.shape[0]))[1][e - offsets.get(id(p), 0)] = tensors[name]
        for p, value in pieces.values():
            arr = np.stack(value) if isinstance(value, list) else value
            p.set_data(ms.Tensor(np.ascontiguousarray(arr).astype(_NUMPY_DTYPES[p.dtype])))

    def hf_state_dict(self, values: dict | None = None) -> dict[str, np.ndarray]:
        """HF name -> numpy array (bf16 parameters come out as fp32: numpy has no bf16).

        `values` (parameter name -> array) replaces parameters' own data, e.g. the full
        tensors gathered from tensor-parallel ranks (mft.parallel.tensor_parallel.gather_full).
        """
        out = {}
        cache = {}
        for name, (p, e) in self.hf_layout().items():
            if id(p) not in cache:
                if values is not None and p.name in values:
                    cache[id(p)] = values[p.name]
                else:
                    cache[id(p)] = (p.astype(ms.float32) if p.dtype == ms.bfloat16 else p).asnumpy()
            if e is not None and e >= cache[id(p)].shape[0]:
                raise MftError(f"{name}: this rank holds a share of the experts (parallel.ep); pass the full stacks "
                               "gathered by mft.parallel.expert_parallel.gather_values")
            out[name] = cache[id(p)] if e is None else np.ascontiguousarray(cache[id(p)][e])
        return out

    def save_pretrained(self, folder: str, values: dict | None = None) -> None:
        """config.json + model.safetensors with HF names and shapes (transformers can read it); `values`: see hf_state_dict."""
        from mft.models import checkpoint_io

        config = self.config.to_hf_dict()
        config["dtype"] = {ms.float32: "float32", ms.float16: "float16", ms.bfloat16: "bfloat16"}[self.param_dtype]
        generation = {"bos_token_id": self.config.bos_token_id, "eos_token_id": self.config.eos_token_id, "pad_token_id": self.config.pad_token_id}
        checkpoint_io.write_pretrained(folder, config, self.hf_state_dict(values), generation)

    # ---- inference ----------------------------------------------------
    def new_kv_cache(self, batch_size: int, max_length: int):
        """An empty KV cache for `batch_size` sequences of up to `max_length` tokens."""
        from mft.inference.kv_cache import KVCache

        cfg = self.config
        dtype = ms.int8 if getattr(self, "kv_cache_int8", False) else self.param_dtype  # mft.quant.loader: kv8
        return KVCache(cfg.num_hidden_layers, batch_size, cfg.num_key_value_heads, max_length, cfg.head_dim, dtype)

    def generate(self, input_ids, max_new_tokens: int = 20, do_sample: bool = False, **kwargs):
        """Prompt followed by up to `max_new_tokens` new ids; see `mft.inference.generate`."""
        from mft.inference.generate import generate

        return generate(self, input_ids, max_new_tokens=max_new_tokens, do_sample=do_sample, **kwargs)
