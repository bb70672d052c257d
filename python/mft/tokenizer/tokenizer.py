"""`Tokenizer`: the Python face of the Rust tokenizer (`mft._native.BpeTokenizer`):
any HF `tokenizer.json` (BPE, WordPiece, Unigram or WordLevel model and the
normalizers, pre-tokenizers, post-processors and decoders HF defines).

Defaults follow HF `tokenizers`: `encode` applies the file's post-processor
(HF's `add_special_tokens=True`), `decode` drops special tokens unless
`skip_special_tokens=False`. Native errors (OSError/ValueError naming the
file) surface as `MftError`. Argument checks live in `inputs.py`, result
shapes in `results.py`, tokenizer_config.json in `side_config.py`.
"""

from __future__ import annotations

import os
from itertools import islice
from typing import Iterable, Sequence

from mft import _native
from mft.errors import MftError
from mft.tokenizer import inputs, side_config
from mft.tokenizer.results import PaddedBatch, flat_overflowing, overflow_result, padded_batch, pair_result

# Names used when neither the post-processor nor tokenizer_config.json says.
_BOS_NAMES = ("<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "<|bos|>")
_EOS_NAMES = ("<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>", "<|eos|>")
_PAD_NAMES = ("<pad>", "<|pad|>", "[PAD]", "<|padding|>")

DEFAULT_SPECIAL_TOKENS = ("<|endoftext|>",)

__all__ = ["DEFAULT_SPECIAL_TOKENS", "PaddedBatch", "Tokenizer"]


def _call(fn, *args):
    try:
        return fn(*args)
    except (OSError, ValueError) as e:
        raise MftError(str(e)) from None


class Tokenizer:
    """A loaded or trained BPE tokenizer (immutable, thread-safe, fork-safe)."""

    def __init__(self, native: "_native.BpeTokenizer", source: str = "<memory>", config: dict | None = None):
        self._tok = native
        self.source = source
        self._config = config or {}

    # ---- construction -------------------------------------------------
    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Tokenizer":
        """Reads a Hugging Face tokenizer.json (a directory means its tokenizer.json).

        A tokenizer_config.json beside it is read as transformers (>= 5) reads
        it next to a tokenizer.json: bos/eos/pad names, `model_max_length`,
        `chat_template` (a chat_template.jinja file beside it wins), and
        `add_bos_token`/`add_eos_token`, which are reported but do not change
        encoding: the file's post-processor decides which special tokens are
        added (transformers drops those two flags when tokenizer.json exists)."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        if not os.path.isfile(path):
            raise MftError(f"{path}: no such tokenizer file")
        native = _call(_native.BpeTokenizer.from_file, path)
        return cls(native, path, side_config.read_side_config(path))

    @classmethod
    def from_str(cls, json_text: str) -> "Tokenizer":
        """A tokenizer from the text of a `tokenizer.json` (no tokenizer_config.json is read)."""
        return cls(_call(_native.BpeTokenizer.from_str, json_text))

    @classmethod
    def train(
        cls,
        files_or_iterator: str | os.PathLike | Iterable[str | os.PathLike] | Iterable[str],
        vocab_size: int = 32000,
        special_tokens: Sequence[str] = DEFAULT_SPECIAL_TOKENS,
        min_frequency: int = 2,
        add_prefix_space: bool = False,
        field: str = "text",
        batch_size: int = 8192,
    ) -> "Tokenizer":
        """Trains byte-level BPE (GPT-2 pre-tokenizer, all 256 bytes in the
        alphabet, special tokens first) exactly as HF's BpeTrainer would.

        `files_or_iterator`: a path or a list of paths (.jsonl: `field` of each
        line; anything else: each line), or any iterable of text strings.
        """
        if vocab_size < 1:
            raise MftError(f"vocab_size must be positive, got {vocab_size}")
        if min_frequency < 0:
            raise MftError(f"min_frequency must be >= 0, got {min_frequency}")
        trainer = _call(_native.BpeTrainer, int(vocab_size), int(min_frequency), list(special_tokens), bool(add_prefix_space))
        texts = inputs.texts_of(files_or_iterator, field)
        while batch := list(islice(texts, batch_size)):
            bad = next((t for t in batch if not isinstance(t, str)), None)
            if bad is not None:
                raise MftError(f"training texts must be strings, got {type(bad).__name__}")
            trainer.feed(batch)
        return cls(_call(trainer.train), "<trained>")

    # ---- encoding -----------------------------------------------------
    def encode(
        self,
        text: str,
        add_special_tokens: bool = True,
        *,
        pair: str | None = None,
        return_offsets: bool = False,
        return_type_ids: bool = False,
        return_overflowing: bool = False,
        as_numpy: bool = False,
    ):
        """Ids of `text` (a list, or a uint32 numpy array with `as_numpy`).

        `pair`: a second text, laid out with `text` by the post-processor's
        pair template as HF's `encode(text, pair)` does (BERT's
        `[CLS] A [SEP] B [SEP]`, RoBERTa's `<s> A </s></s> B </s>`, ...).
        With `return_offsets`: (ids, offsets), offsets[i] = (start, end) char
        indices of token i into its own text, as HF's `Encoding.offsets`.
        With `return_type_ids`: type ids (HF's `Encoding.type_ids`) come
        last: (ids, type_ids) or (ids, offsets, type_ids).
        With `return_overflowing`: a list, the encoding first and then every
        window the file's `truncation` cut off (each `stride` tokens into the
        one before), each shaped as above: HF's `[enc, *enc.overflowing]`,
        transformers' `return_overflowing_tokens=True` rows."""
        if not isinstance(text, str):
            raise MftError(f"encode expects a str, got {type(text).__name__}")
        if pair is not None and not isinstance(pair, str):
            raise MftError(f"encode: pair must be a str, got {type(pair).__name__}")
        if return_overflowing:
            rows = self._native(self._tok.encode_overflowing, [(text, pair)], add_special_tokens, return_offsets)[0]
            return overflow_result(rows, return_offsets, return_type_ids, as_numpy)
        if pair is not None or return_type_ids:
            row = self._native(self._tok.encode_pair, text, pair, add_special_tokens, return_offsets)
            return pair_result(row, return_offsets, return_type_ids, as_numpy)
        if return_offsets:
            return self._native(self._tok.encode_with_offsets, text, add_special_tokens)
        if as_numpy:
            return self._native(self._tok.encode_array, text, add_special_tokens)
        return self._native(self._tok.encode, text, add_special_tokens)

    def encode_batch(
        self,
        texts: Sequence[str | tuple[str, str]],
        add_special_tokens: bool = True,
        *,
        return_offsets: bool = False,
        return_type_ids: bool = False,
        return_overflowing: bool = False,
        return_overflow_to_sample_mapping: bool = False,
        max_length: int | None = None,
        padding: bool | str = False,
        pad_id: int | None = None,
        padding_side: str = "right",
    ):
        """Encodes many texts on all cores without the GIL, in order.

        An item may be a (text, pair) tuple, encoded as `encode(text,
        pair=pair)` is (HF's `encode_batch` of tuples).

        A tokenizer.json with `truncation`/`padding` set is applied as HF
        applies it (each text cut and padded; "BatchLongest" pads the batch
        to its longest text).

        Plain: one id list per text. With `return_offsets` / `return_type_ids`
        / `return_overflowing`: per text what `encode` returns with them.
        With `return_overflowing` and `return_overflow_to_sample_mapping`:
        an `OverflowingBatch` - every text's rows (encoding, then its
        overflowing windows) flattened in order, and per row the index of
        its text, as transformers' `overflow_to_sample_mapping`.
        With `max_length` and/or `padding` ("longest" / True, or
        "max_length"): a `PaddedBatch` of numpy arrays, each text truncated
        so that it plus the template's special tokens fits `max_length`
        (single texts only)."""
        items = inputs.batch_items(texts)
        if return_overflow_to_sample_mapping and not return_overflowing:
            raise MftError("encode_batch: return_overflow_to_sample_mapping needs return_overflowing=True")
        shaped = return_type_ids or return_overflowing or any(isinstance(t, tuple) for t in items)
        if (shaped or return_offsets) and (max_length is not None or padding):
            raise MftError(
                "encode_batch: text pairs, return_offsets, return_type_ids and return_overflowing "
                "cannot be combined with max_length/padding (set them in the tokenizer.json)"
            )
        if shaped:
            pairs = [t if isinstance(t, tuple) else (t, None) for t in items]
            if return_overflowing:
                all_rows = self._native(self._tok.encode_overflowing, pairs, add_special_tokens, return_offsets)
                per_text = [overflow_result(rows, return_offsets, return_type_ids, False) for rows in all_rows]
                return flat_overflowing(per_text) if return_overflow_to_sample_mapping else per_text
            rows = self._native(self._tok.encode_pair_batch, pairs, add_special_tokens, return_offsets)
            return [pair_result(r, return_offsets, return_type_ids, False) for r in rows]
        if return_offsets:
            return self._native(self._tok.encode_batch_with_offsets, items, add_special_tokens)
        if max_length is None and not padding:
            return self._native(self._tok.encode_batch, items, add_special_tokens)
        return padded_batch(self._tok, self.source, items, add_special_tokens, max_length, padding, pad_id,
                            padding_side, self.pad_id)

    def _native(self, fn, *args):
        """A native encode; its errors (the file's truncation refusing a text,
        as HF refuses it) as MftError naming the tokenizer file."""
        try:
            return fn(*args)
        except (OSError, ValueError) as e:
            raise MftError(f"{self.source}: {e}") from None

    def encode_batch_flat(self, texts: Sequence[str], add_special_tokens: bool = True):
        """(ids uint32 array, offsets int64 array of len(texts)+1): text i is ids[off[i]:off[i+1]]."""
        return self._tok.encode_batch_flat(inputs.str_list(texts), add_special_tokens)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """The text of `ids`; special tokens are dropped unless `skip_special_tokens=False` (HF's default)."""
        return self._tok.decode(inputs.id_list(ids), skip_special_tokens)

    def decode_batch(self, batch: Iterable[Iterable[int]], skip_special_tokens: bool = True) -> list[str]:
        """Decodes many id sequences on all cores, in order."""
        return self._tok.decode_batch([inputs.id_list(ids) for ids in batch], skip_special_tokens)

    def pre_tokenize(self, text: str) -> list[str]:
        """GPT-2 regex pieces of `text` (without added tokens or prefix space)."""
        return _native.BpeTokenizer.pre_tokenize(text)

    # ---- vocabulary ---------------------------------------------------
    @property
    def model_type(self) -> str:
        """The file's model: "BPE", "WordPiece", "Unigram" or "WordLevel"."""
        return self._tok.model_type

    @property
    def vocab_size(self) -> int:
        """Number of ids: one more than the largest id (HF's get_vocab_size()
        for the usual contiguous vocabularies)."""
        return max(self._tok.vocab_size, self._tok.id_upper_bound)

    def token_to_id(self, token: str) -> int | None:
        """The id of a vocabulary entry or added token, or None."""
        return self._tok.token_to_id(token)

    def id_to_token(self, id: int) -> str | None:
        """The vocabulary entry (or added token) of `id`, or None when there is none."""
        if not 0 <= int(id) < 2**32:
            return None
        return self._tok.id_to_token(int(id))

    @property
    def special_tokens(self) -> dict[str, int]:
        """Added tokens marked special: {content: id}."""
        return {content: id for id, content, special in self._tok.added_tokens() if special}

    @property
    def bos_id(self) -> int | None:
        """The id the post-processor puts before a text, else the named bos_token, else None."""
        before, _ = self._tok.template_ids()
        if before:
            return before[0]
        return self._named_id("bos_token", _BOS_NAMES)

    @property
    def eos_id(self) -> int | None:
        """The id the post-processor puts after a text, else the named eos_token, else None."""
        _, after = self._tok.template_ids()
        if after:
            return after[-1]
        return self._named_id("eos_token", _EOS_NAMES)

    @property
    def pad_id(self) -> int | None:
        """The pad token if one is named, else eos (as GPT-2 style models do)."""
        pad = self._named_id("pad_token", _PAD_NAMES)
        return pad if pad is not None else self.eos_id

    def _named_id(self, config_key: str, names: Sequence[str]) -> int | None:
        return side_config.named_token(self._config, config_key, self.special_tokens, names, self.token_to_id)

    # ---- tokenizer_config.json ---------------------------------------
    @property
    def add_bos_token(self) -> bool | None:
        """tokenizer_config.json's `add_bos_token` (None when absent); informational."""
        return side_config.config_flag(self._config, "add_bos_token")

    @property
    def add_eos_token(self) -> bool | None:
        """tokenizer_config.json's `add_eos_token` (None when absent); informational."""
        return side_config.config_flag(self._config, "add_eos_token")

    @property
    def model_max_length(self) -> int | None:
        """tokenizer_config.json's `model_max_length`; None when absent or
        transformers' "no limit" placeholder (1e30)."""
        return side_config.config_max_length(self._config)

    @property
    def chat_template(self) -> str | dict[str, str] | None:
        """The chat template: chat_template.jinja beside the file, else
        tokenizer_config.json's `chat_template` (a string, or named templates
        as a {name: template} dict)."""
        return self._config.get("chat_template")

    # ---- saving -------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Writes tokenizer.json atomically (temp file + rename); HF loads it."""
        path = os.fspath(path)
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise MftError(f"{path}: directory {parent} does not exist")
        _call(self._tok.save, path)

    def to_str(self) -> str:
        """The tokenizer as `tokenizer.json` text (what `save` writes)."""
        return self._tok.to_str()

    def __reduce__(self):
        # Picklable (for worker processes): rebuilt from its JSON text.
        return (_rebuild, (self.to_str(), self.source, self._config))

    def __repr__(self) -> str:
        return f"Tokenizer(source={self.source!r}, vocab_size={self.vocab_size})"


def _rebuild(json_text: str, source: str, config: dict) -> Tokenizer:
    return Tokenizer(_call(_native.BpeTokenizer.from_str, json_text), source, config)
