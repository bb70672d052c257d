"""LLaVA family: CLIP vision tower + MLP projector + a text family's decoder (Llama, Qwen2, ...)."""

from mft.models.llava.config import ClipVisionConfig, LlavaConfig
from mft.models.llava.model import LlavaForConditionalGeneration
from mft.models.llava.processor import LlavaProcessor

MODEL_TYPE = "llava"
ARCHITECTURES = ("LlavaForConditionalGeneration",)
CONFIG_CLASS = LlavaConfig
MODEL_CLASS = LlavaForConditionalGeneration
PROCESSOR_CLASS = LlavaProcessor  # prompt + images -> input_ids, pixel_values

__all__ = ["ClipVisionConfig", "LlavaConfig", "LlavaForConditionalGeneration", "LlavaProcessor"]
