"""BPE tokenizer (byte-level or SentencePiece-style) over `mft._native`, exact to Hugging Face `tokenizers`.

`Tokenizer.from_file("tokenizer.json")` reads HF files; `Tokenizer.train(...)`
learns a new one (same merges as HF's trainer).
"""

from mft.tokenizer.tokenizer import PaddedBatch, Tokenizer
from mft.tokenizer.results import OverflowingBatch
from mft.tokenizer.corpus import iter_texts

__all__ = ["OverflowingBatch", "PaddedBatch", "Tokenizer", "iter_texts"]
