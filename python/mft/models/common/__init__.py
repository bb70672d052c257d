"""Building blocks shared by the model families: RoPE, attention, MLP.

RMSNorm lives in mft.ops.rms_norm (reference + fused kernel).
"""
