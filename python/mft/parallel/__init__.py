"""Parallelism: process groups, collectives, and the data- and tensor-parallel layers.

Data parallelism: `data_parallel.py`; tensor parallelism (Megatron-style, dense families):
`layers.py`, `tensor_parallel.py`, `cross_entropy.py`, over the conjugate mappings in
`mappings.py` and the collectives in `comm.py`. Sequence, pipeline, expert and context
parallelism and ZeRO are not implemented yet (refused by the trainer).
"""
