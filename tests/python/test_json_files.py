"""mft.json_files: the atomic JSON writer and the JSON-object reader with errors naming the file."""

import json
import os

import pytest

from mft.errors import MftError
from mft.json_files import read_json_object, write_json_atomic


def test_write_is_atomic_and_reads_back(tmp_path):
    path = str(tmp_path / "state.json")
    write_json_atomic(path, {"b": 1, "a": [1, 2]})
    write_json_atomic(path, {"b": 2, "a": []}, sort_keys=True)  # replaces the old file
    assert os.listdir(tmp_path) == ["state.json"]  # no .tmp left behind
    text = open(path, encoding="utf-8").read()
    assert text.endswith("}\n") and text.index('"a"') < text.index('"b"')
    assert read_json_object(path) == {"a": [], "b": 2} == json.loads(text)


@pytest.mark.parametrize("content, needle", [
    (None, "cannot read: No such file or directory"),
    ("{bad", "invalid JSON: Expecting property name"),
    (b"\xff\xfe{}", "invalid JSON"),
    ("[1, 2]", "expected a JSON object"),
])
def test_read_errors_name_the_file(tmp_path, content, needle):
    path = tmp_path / "config.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(MftError) as err:
        read_json_object(str(path))
    assert str(err.value).startswith(f"{path}: ") and needle in str(err.value)
