"""DeepSeek-V3 family: MLA attention, shared + routed experts with sigmoid group-limited routing, MTP."""

from mft.models.deepseek_v3.config import DeepseekV3Config
from mft.models.deepseek_v3.model import DeepseekV3ForCausalLM

MODEL_TYPE = "deepseek_v3"
ARCHITECTURES = ("DeepseekV3ForCausalLM",)
CONFIG_CLASS = DeepseekV3Config
MODEL_CLASS = DeepseekV3ForCausalLM

__all__ = ["DeepseekV3Config", "DeepseekV3ForCausalLM"]
