"""mft: a full-process LLM suite on MindSpore."""

__version__ = "0.1.0"
