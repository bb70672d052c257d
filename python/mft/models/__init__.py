"""Models: shared blocks in common/, one folder per family, AutoModelForCausalLM."""

from mft.models.auto import AutoModelForCausalLM

__all__ = ["AutoModelForCausalLM"]
