"""Type stubs for `mft._native`, the Rust extension (rust/mft-py, built by maturin).

Checked against the built module by tests/python/test_stubs.py: the names and
parameters here must equal the runtime's. Errors are raised as Python
exceptions (ValueError / OSError / mft's MftError subclasses) naming the file.
"""

from typing import Callable, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

_Ints = Union[npt.NDArray[np.uint32], npt.NDArray[np.int32], npt.NDArray[np.int64]]

class BpeTokenizer:
    """A Hugging Face `tokenizer.json` (BPE, WordPiece, Unigram or WordLevel), exact to HF `tokenizers`."""

    @staticmethod
    def from_file(path: str) -> BpeTokenizer: ...
    @staticmethod
    def from_str(json: str) -> BpeTokenizer: ...
    @staticmethod
    def pre_tokenize(text: str) -> list[str]:
        """The GPT-2 pre-tokenizer pieces of `text` (no added tokens, no prefix space)."""
    def to_str(self) -> str: ...
    def save(self, path: str) -> None: ...
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]: ...
    def encode_array(self, text: str, add_special_tokens: bool = True) -> npt.NDArray[np.uint32]: ...
    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]: ...
    def encode_batch_flat(
        self, texts: Sequence[str], add_special_tokens: bool = True
    ) -> Tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
        """All ids concatenated and `len(texts) + 1` offsets: text i is ids[off[i]:off[i+1]]."""
    def encode_with_offsets(
        self, text: str, add_special_tokens: bool = True
    ) -> Tuple[list[int], list[Tuple[int, int]]]: ...
    def encode_batch_with_offsets(
        self, texts: Sequence[str], add_special_tokens: bool = True
    ) -> list[Tuple[list[int], list[Tuple[int, int]]]]: ...
    def encode_batch_padded(
        self,
        texts: Sequence[str],
        add_special_tokens: bool,
        max_length: Optional[int],
        pad_to: Optional[int],
        pad_id: int,
        pad_left: bool,
    ) -> Tuple[npt.NDArray[np.int32], npt.NDArray[np.int8], npt.NDArray[np.int64]]:
        """(ids [B, L], attention_mask [B, L], lengths [B])."""
    def encode_pair(
        self, a: str, b: Optional[str] = None, add_special_tokens: bool = True, with_offsets: bool = False
    ) -> Tuple[list[int], list[int], Optional[list[Tuple[int, int]]]]:
        """`a` (with pair `b`) laid out by the template: (ids, type_ids, offsets or None)."""
    def encode_pair_batch(
        self,
        items: Sequence[Tuple[str, Optional[str]]],
        add_special_tokens: bool = True,
        with_offsets: bool = False,
    ) -> list[Tuple[list[int], list[int], Optional[list[Tuple[int, int]]]]]:
        """`encode_pair` over [(a, b or None)] on all cores, in order."""
    def encode_overflowing(
        self,
        items: Sequence[Tuple[str, Optional[str]]],
        add_special_tokens: bool = True,
        with_offsets: bool = False,
    ) -> list[list[Tuple[list[int], list[int], Optional[list[Tuple[int, int]]]]]]:
        """Per item: the main encoding, then HF's overflowing windows (file truncation and stride)."""
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str: ...
    def decode_batch(self, batch: Sequence[Sequence[int]], skip_special_tokens: bool = True) -> list[str]: ...
    def token_to_id(self, token: str) -> Optional[int]: ...
    def id_to_token(self, id: int) -> Optional[str]: ...
    def added_tokens(self) -> list[Tuple[int, str, bool]]:
        """[(id, content, special)] in file order."""
    def template_ids(self) -> Tuple[list[int], list[int]]:
        """Ids the post-processor adds (before the text, after the text)."""
    @property
    def vocab_size(self) -> int: ...
    @property
    def id_upper_bound(self) -> int: ...
    @property
    def file_limits(self) -> bool: ...
    @property
    def model_type(self) -> str: ...
    @property
    def is_byte_level(self) -> bool: ...

class BpeTrainer:
    """Byte-level BPE trainer (the same merges as HF's trainer)."""

    def __init__(
        self,
        vocab_size: int,
        min_frequency: int = 2,
        special_tokens: Sequence[str] = ...,
        add_prefix_space: bool = False,
    ) -> None: ...
    def feed(self, texts: Sequence[str]) -> None: ...
    def train(self) -> BpeTokenizer: ...
    @property
    def distinct_words(self) -> int: ...

class IndexedWriter:
    """Writes PREFIX.bin / PREFIX.idx (Megatron MMIDIDX) under temporary names until `finish`."""

    def __init__(self, prefix: str, vocab_size: int) -> None: ...
    def add_document(self, tokens: npt.NDArray[np.int64]) -> None: ...
    def add_documents(self, flat: _Ints, lengths: npt.NDArray[np.int64]) -> None: ...
    def finish(self) -> Tuple[int, int]:
        """Writes the index, renames both files into place -> (documents, tokens)."""
    def abort(self) -> None: ...
    @property
    def dtype(self) -> str: ...
    @property
    def documents(self) -> int: ...
    @property
    def tokens(self) -> int: ...

def build_sample_idx(
    sizes: npt.NDArray[np.int32], doc_idx: npt.NDArray[np.int32], seq_len: int, num_samples: int
) -> npt.NDArray[np.int64]: ...
def best_fit_decreasing(lengths: npt.NDArray[np.int64], seq_len: int) -> Tuple[list[list[int]], list[list[int]]]: ...
def pack_rows(
    flat: _Ints, lengths: npt.NDArray[np.int64], seq_len: int, pad_id: int
) -> Tuple[
    npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.int32], list[list[int]], list[list[int]]
]:
    """(input_ids, position_ids, segment_ids) [rows, seq_len], bins, actual_seq_len."""
def build_blending_indices(
    weights: npt.NDArray[np.float64], size: int
) -> Tuple[npt.NDArray[np.uint16], npt.NDArray[np.int64]]: ...
def encode_lines_into(
    tokenizer: BpeTokenizer,
    data: Union[bytes, bytearray, memoryview],
    writer: IndexedWriter,
    field: Optional[str],
    add_special_tokens: bool,
    eod: Optional[int],
    max_doc_bytes: int,
    block_bytes: int,
    skip_bad: bool,
    threads: int = 0,
    progress: Optional[Callable[[int], None]] = None,
) -> Tuple[int, int, list[Tuple[int, str]], int, int, Optional[Tuple[int, str]]]: ...
def encode_rows_into(
    tokenizer: BpeTokenizer,
    data: npt.NDArray[np.uint8],
    offsets: _Ints,
    valid: Optional[npt.NDArray[np.bool_]],
    writer: IndexedWriter,
    add_special_tokens: bool,
    eod: Optional[int],
    max_doc_bytes: int,
    threads: int,
) -> Tuple[int, list[Tuple[int, str]], int, int]: ...
def safetensors_read_header(
    path: str,
) -> Tuple[list[Tuple[str, str, list[int], Tuple[int, int]]], list[Tuple[str, str]], int]: ...
def safetensors_load(path: str, widen_bf16: bool) -> list[Tuple[str, str, list[int], npt.NDArray[np.uint8]]]: ...
def safetensors_save(
    path: str,
    tensors: Sequence[Tuple[str, str, Sequence[int], npt.NDArray[np.uint8]]],
    metadata: Sequence[Tuple[str, str]],
) -> None: ...
def float_convert(data: npt.NDArray[np.uint8], from_: str, to: str, /) -> npt.NDArray[np.uint8]:
    """`from` is a Python keyword: pass the arguments by position."""
def reshard_execute(
    src_dir: str, src_layout: str, dst_dir: str, dst_layout: str, metadata: Sequence[Tuple[str, str]]
) -> Tuple[int, int, int]: ...
def reshard_read(
    src_dir: str, src_layout: str, requests: Sequence[Tuple[str, str, Sequence[int], Sequence[int]]]
) -> list[npt.NDArray[np.uint8]]: ...
