"""Parallelism: process groups, collectives, and the data- and tensor-parallel layers.

Data parallelism: `data_parallel.py`; tensor parallelism (Megatron-style, dense families):
`layers.py`, `tensor_parallel.py`, `cross_entropy.py`, over the conjugate mappings in
`mappings.py` and the collectives in `comm.py`. Context parallelism (`parallel.cp`):
`context_parallel.py`. Sequence, pipeline and expert parallelism are not implemented yet
(refused by the trainer). ZeRO-1/2 (`parallel.zero`):
`zero.py` over `zero_layout.py`; bytes per collective for benchmarks: `comm_stats.py`.
"""
