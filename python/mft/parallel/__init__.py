"""Parallelism: tensor/sequence/pipeline/expert-parallel layers and collectives.

Only the single-process (tp=1) layers exist so far; see `layers.py`.
"""
