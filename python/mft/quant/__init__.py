"""Weight-only quantization: int8 per-channel (w8a16) and int4 group-wise (w4a16).

`mft quantize` (cli/quantize_cmd.py) -> `quantize_folder` (writer.py): RTN
(rtn.py) or GPTQ (gptq.py, Hessians from calibration.py) per linear, written in
the compressed-tensors (int8) or GPTQ (int4) layout (layout.py). Loading such a
folder swaps the model's linears for `QuantLinear` cells (loader.py) that run
the C++ dequantize-matmul kernels (mft.ops.quant_matmul). docs/feature/quantization.md.
"""

from mft.quant.schemes import IMPLEMENTED_SCHEMES, QuantOptions

__all__ = ["IMPLEMENTED_SCHEMES", "QuantOptions"]
