"""`mft.data.preprocess` inputs and bad input: Parquet, globs, non-UTF-8,
oversized and empty documents, interruption - on real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mft.data.indexed import IndexedDataset
from mft.data.preprocess import preprocess
from mft.errors import MftError
from mft.tokenizer import Tokenizer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER = os.path.join(REPO, "tests", "fixtures", "tokenizers", "gpt2_style.json")
TEXTS = ["In the beginning God created the heaven and the earth.", "中文测试：你好，世界！", "def f(x):\n    return x", "emoji 😀 ok"]


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_file(TOKENIZER)


def docs_of(prefix):
    ds = IndexedDataset(prefix)
    return [ds[i].tolist() for i in range(len(ds))]


def expected(tok, texts):
    return [tok.encode(t) + [tok.eos_id] for t in texts]


def write_jsonl(path, lines):
    with open(path, "wb") as f:
        for line in lines:
            f.write(line if isinstance(line, bytes) else json.dumps({"text": line}, ensure_ascii=False).encode())
            f.write(b"\n")
    return str(path)


def test_globs_expand_sorted_in_given_order(tmp_path, tok):
    for i, t in enumerate(TEXTS):
        write_jsonl(tmp_path / f"part{i}.jsonl", [t])
    stats = preprocess([str(tmp_path / "part[23].jsonl"), str(tmp_path / "part[01].jsonl")], tok, str(tmp_path / "out"))
    assert stats.files == 4 and stats.documents == 4
    assert docs_of(str(tmp_path / "out")) == expected(tok, TEXTS[2:] + TEXTS[:2])
    with pytest.raises(MftError, match="matches no files"):
        preprocess([str(tmp_path / "nothing*.jsonl")], tok, str(tmp_path / "none"))


def test_parquet_input(tmp_path, tok):
    pa = pytest.importorskip("pyarrow")  # requirements-dev.txt installs it, so CI runs this
    import pyarrow.parquet as pq

    path = str(tmp_path / "d.parquet")
    pq.write_table(pa.table({"content": TEXTS + [None, ""], "n": list(range(6))}), path, row_group_size=2)
    with pytest.raises(MftError, match=r"d.parquet:row 5: 'content' is null"):
        preprocess([path], tok, str(tmp_path / "p"), text_field="content")
    stats = preprocess([path], tok, str(tmp_path / "p"), text_field="content", skip_bad=True)
    assert (stats.documents, stats.skipped_bad, stats.skipped_empty) == (4, 1, 1)
    assert docs_of(str(tmp_path / "p")) == expected(tok, TEXTS)
    with pytest.raises(MftError, match=r"no column 'text' \(columns: content, n"):
        preprocess([path], tok, str(tmp_path / "q"))
    # A non-string column goes through the Python path, which names each row's type.
    with pytest.raises(MftError, match=r"d.parquet:row 1: 'n' is int, not a string"):
        preprocess([path], tok, str(tmp_path / "q"), text_field="n")


def test_parquet_native_and_python_paths_agree(tmp_path, tok, monkeypatch):
    """string and large_string columns, several batches, a null, a too-long value
    and a blank one: the Arrow-buffer path writes what the Python path writes."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    import mft.data.preprocess_native as native_paths

    monkeypatch.setattr(native_paths, "PARQUET_BATCH_ROWS", 7)
    values = [f"{TEXTS[i % 4]} {i}" for i in range(50)]
    values[9], values[20], values[33] = None, "z" * 400, "   "
    for arrow_type in (pa.string(), pa.large_string()):
        path = str(tmp_path / "t.parquet")
        pq.write_table(pa.table({"text": pa.array(values, type=arrow_type)}), path, row_group_size=16)
        results = []
        for t in (tok, PythonPathTokenizer(tok)):
            with pytest.raises(MftError, match=r"t.parquet:row 10: 'text' is null"):
                preprocess([path], t, str(tmp_path / "o"), max_doc_bytes=300)
            stats = preprocess([path], t, str(tmp_path / "o"), max_doc_bytes=300, skip_bad=True)
            results.append((stats.documents, stats.skipped_bad, stats.skipped_empty, stats.input_bytes,
                            stats.bad_examples, docs_of(str(tmp_path / "o"))))
        assert results[0] == results[1]
        assert results[0][:3] == (47, 2, 1) and "row 21: document of 400 bytes" in results[0][4][1]


def test_parquet_without_pyarrow_says_install(tmp_path):
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1")
    code = (
        "import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None\n"
        "from mft.cli.main import main\n"
        f"sys.exit(main(['data', 'preprocess', '--input', {str(path)!r}, '--tokenizer', {TOKENIZER!r}, '--output-prefix', {str(tmp_path / 'o')!r}]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 2 and "install pyarrow" in run.stderr


def test_bad_documents_reported_with_file_line_and_counted(tmp_path, tok):
    path = write_jsonl(tmp_path / "mixed.jsonl", [
        TEXTS[0],
        b'{"text": "broken',
        b'{"text": "caf\xe9 latin-1"}',
        "",
        "x" * 500,
        b'{"other": "field"}',
        TEXTS[1],
    ])
    with pytest.raises(MftError, match=r"mixed.jsonl:2: malformed JSON"):
        preprocess([path], tok, str(tmp_path / "o"), max_doc_bytes=200)
    assert not os.path.exists(tmp_path / "o.bin") and not os.path.exists(tmp_path / "o.idx")
    stats = preprocess([path], tok, str(tmp_path / "o"), max_doc_bytes=200, skip_bad=True)
    assert (stats.documents, stats.skipped_bad, stats.skipped_empty) == (2, 4, 1)
    assert stats.bad_examples[1].startswith(f"{path}:3: not UTF-8")
    assert stats.bad_examples[2].startswith(f"{path}:5: document of") and "max-doc-bytes 200" in stats.bad_examples[2]
    assert "missing field 'text'" in stats.bad_examples[3]
    assert docs_of(str(tmp_path / "o")) == expected(tok, [TEXTS[0], TEXTS[1]])


def test_interrupted_preprocess_leaves_no_pair(tmp_path, tok):
    class Interrupting:
        eos_id = tok.eos_id
        vocab_size = tok.vocab_size
        calls = 0

        def encode_batch(self, texts):
            Interrupting.calls += 1
            if Interrupting.calls == 3:
                raise KeyboardInterrupt
            return tok.encode_batch(texts)

    path = write_jsonl(tmp_path / "c.jsonl", TEXTS * 10)
    with pytest.raises(KeyboardInterrupt):
        preprocess([path], Interrupting(), str(tmp_path / "out"), chunk_docs=4)
    assert sorted(os.listdir(tmp_path)) == ["c.jsonl"]


def test_progress_bar_reports_bytes(tmp_path, tok, capfd):
    path = write_jsonl(tmp_path / "c.jsonl", TEXTS * 5)
    stats = preprocess([path], tok, str(tmp_path / "out"), progress=True)
    err = capfd.readouterr().err
    assert "preprocess" in err and "B/s" in err and stats.documents == 20
    assert np.asarray(IndexedDataset(str(tmp_path / "out")).sequence_lengths).sum() == stats.tokens


def test_huge_line_is_never_held_whole(tmp_path, tok, monkeypatch):
    import mft.data.preprocess as pp

    monkeypatch.setattr(pp, "BLOCK_BYTES", 64)  # small blocks: the long line spans many reads
    path = write_jsonl(tmp_path / "big.jsonl", [TEXTS[0], "y" * 1000, TEXTS[1], TEXTS[2]])
    with pytest.raises(MftError, match=r"big.jsonl:2: document of 1013 bytes exceeds --max-doc-bytes 300"):
        preprocess([path], tok, str(tmp_path / "o"), max_doc_bytes=300)
    stats = preprocess([path], tok, str(tmp_path / "o"), max_doc_bytes=300, skip_bad=True)
    assert (stats.documents, stats.skipped_bad) == (3, 1)
    assert docs_of(str(tmp_path / "o")) == expected(tok, [TEXTS[0], TEXTS[1], TEXTS[2]])


def test_line_numbers_stay_right_across_many_blocks(tmp_path, tok, monkeypatch):
    import mft.data.preprocess as pp

    monkeypatch.setattr(pp, "BLOCK_BYTES", 100)  # many blocks, lines numbered from each block's line count
    texts = [TEXTS[i % 4] for i in range(40)]
    lines = [json.dumps({"text": t}, ensure_ascii=False).encode() for t in texts]
    lines[29] = b'{"text": "cut'
    lines[33] = b'{"body": "x", "text": 7}'
    path = write_jsonl(tmp_path / "many.jsonl", lines)
    with pytest.raises(MftError, match=r"many.jsonl:30: malformed JSON"):
        preprocess([path], tok, str(tmp_path / "o"))
    stats = preprocess([path], tok, str(tmp_path / "o"), skip_bad=True)
    assert stats.bad_examples[0].startswith(f"{path}:30: malformed JSON")
    assert stats.bad_examples[1] == f"{path}:34: field 'text' is int, not a string"
    good = [t for i, t in enumerate(texts) if i not in (29, 33)]
    assert (stats.documents, stats.skipped_bad) == (38, 2)
    assert docs_of(str(tmp_path / "o")) == expected(tok, good)


class PythonPathTokenizer:
    """mft's tokenizer without its native line reader: preprocess takes the Python path."""

    def __init__(self, tok):
        self.eos_id, self.vocab_size, self._inner = tok.eos_id, tok.vocab_size, tok

    def encode_batch(self, texts):
        return self._inner.encode_batch(texts)


def test_text_files_native_and_python_paths_agree(tmp_path, tok, monkeypatch):
    import mft.data.preprocess as pp

    monkeypatch.setattr(pp, "BLOCK_BYTES", 16)  # several blocks
    path = tmp_path / "t.txt"
    path.write_bytes(b"first doc\r\n\n   \n" + "中文 second\n".encode() + b"bad \xff byte\n" + b"last without newline")
    for t in (tok, PythonPathTokenizer(tok)):
        with pytest.raises(MftError, match=r"t.txt:5: not UTF-8"):
            preprocess([str(path)], t, str(tmp_path / "o"))
        stats = preprocess([str(path)], t, str(tmp_path / "o"), skip_bad=True)
        assert (stats.documents, stats.skipped_bad, stats.skipped_empty) == (3, 1, 0)
        assert docs_of(str(tmp_path / "o")) == expected(tok, ["first doc", "中文 second", "last without newline"])


def test_ctrl_c_inside_the_native_run_stops_it_and_leaves_nothing(tmp_path, tok, monkeypatch):
    """A SIGINT while Rust is encoding: the main thread sees it within its
    50 ms poll, the run stops at the next block with KeyboardInterrupt, and
    no .bin/.idx (or temp file) is left behind."""
    import signal
    import time

    import mft.data.preprocess as pp

    class InterruptingBar:
        calls = 0

        def update(self, n):  # called from the encoding thread, once per block
            InterruptingBar.calls += 1
            if InterruptingBar.calls == 2:
                os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)  # a slow run: ~2 s if nothing stopped it

        def close(self):
            """Nothing to close (tqdm's interface)."""

    # Python's own Ctrl-C handler, even where the runner inherited SIGINT ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.setattr(pp, "BLOCK_BYTES", 256)
    monkeypatch.setattr(pp, "_progress_bar", lambda paths: InterruptingBar())
    path = write_jsonl(tmp_path / "c.jsonl", TEXTS * 200)
    try:
        with pytest.raises(KeyboardInterrupt):
            preprocess([path], tok, str(tmp_path / "out"), progress=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert 2 <= InterruptingBar.calls < 60  # stopped within the main thread's poll, not at the end
    assert sorted(os.listdir(tmp_path)) == ["c.jsonl"]


def test_worker_count_changes_nothing_in_the_output(tmp_path, tok, monkeypatch):
    """--workers picks the native pool's size (1, the shared pool's, or a
    dedicated one of 3); the files are byte-identical."""
    import mft.data.preprocess as pp

    monkeypatch.setattr(pp, "BLOCK_BYTES", 512)
    path = write_jsonl(tmp_path / "c.jsonl", [f"{TEXTS[i % 4]} {i}" for i in range(300)])
    outputs = []
    for workers in (1, 2, 3):
        prefix = str(tmp_path / f"w{workers}")
        stats = preprocess([path], tok, prefix, workers=workers)
        assert stats.documents == 300
        outputs.append((open(prefix + ".bin", "rb").read(), open(prefix + ".idx", "rb").read()))
    assert outputs[0] == outputs[1] == outputs[2]
