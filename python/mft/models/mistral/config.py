"""MistralConfig: a Llama config without biases, plus `sliding_window`, which must be null.

transformers' Mistral is Llama's decoder (no q/k/v/o or MLP bias) whose
attention sees only the last `sliding_window` keys. mft has no sliding-window
attention, so a config with a window (Mistral-7B v0.1 and its fine-tunes:
4096; also transformers' value when the key is absent) is refused by name;
v0.2 / v0.3, Nemo and Small ship `"sliding_window": null` and load exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mft.models.llama.config import LlamaConfig

WINDOW_DEFAULT = 4096  # transformers' MistralConfig when config.json has no sliding_window key


@dataclass
class MistralConfig(LlamaConfig):
    """config.json of a Mistral model (model_type mistral)."""
    sliding_window: int | None = None

    model_type = "mistral"
    architecture = "MistralForCausalLM"
    NOT_IN_HF: ClassVar[tuple] = ("attention_bias", "mlp_bias")
    HF_DEFAULTS: ClassVar[dict] = {"max_position_embeddings": 131072, "num_key_value_heads": 8}

    @classmethod
    def check_hf_keys(cls, d, bad):
        """The base checks, then: no sliding window (an absent key means transformers' 4096)."""
        super().check_hf_keys(d, bad)
        if "sliding_window" not in d:
            bad("sliding_window", None, f"the key is absent, so transformers uses a {WINDOW_DEFAULT}-token sliding "
                "window, which mft does not implement (Mistral v0.2+ configs say null)")

    def validate_family(self, bad) -> None:
        super().validate_family(bad)
        if self.sliding_window is not None:
            bad("sliding_window", self.sliding_window, "sliding-window attention is not implemented (Mistral v0.2+ "
                "configs say null; a v0.1-based model would differ from transformers beyond the window)")
