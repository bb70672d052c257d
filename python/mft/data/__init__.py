"""Training data: indexed .bin/.idx datasets, pretraining samples, packing, loaders.

- `indexed`: Megatron-compatible `IndexedDataset` reader and `IndexedDatasetBuilder` writer.
- `gpt_dataset`: `GPTDataset`, fixed-length pretraining samples cut across documents.
- `packing`: best-fit-decreasing packing of fine-tuning samples.
- `mindspore_dataset`: `make_train_dataset`, resumable per-rank batches.
- `preprocess`: text/JSONL corpus -> indexed dataset (behind `mft data preprocess`).
"""
