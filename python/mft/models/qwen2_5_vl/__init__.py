"""Qwen2.5-VL family: windowed vision transformer with 2-D rotary + patch merger, Qwen2 decoder with M-RoPE."""

from mft.models.qwen2_5_vl.config import Qwen2_5_VLConfig, Qwen2_5_VLTextConfig, VisionConfig
from mft.models.qwen2_5_vl.model import Qwen2_5_VLForConditionalGeneration
from mft.models.qwen2_5_vl.processor import Qwen2_5_VLProcessor

MODEL_TYPE = "qwen2_5_vl"
ARCHITECTURES = ("Qwen2_5_VLForConditionalGeneration",)
CONFIG_CLASS = Qwen2_5_VLConfig
MODEL_CLASS = Qwen2_5_VLForConditionalGeneration
PROCESSOR_CLASS = Qwen2_5_VLProcessor  # prompt + images -> input_ids, pixel_values, image_grid_thw

__all__ = ["Qwen2_5_VLConfig", "Qwen2_5_VLTextConfig", "VisionConfig", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"]
