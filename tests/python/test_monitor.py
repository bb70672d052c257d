"""TensorBoard event encoding and metrics.jsonl."""

import struct

from mft.monitor.metrics import MetricsWriter, read_metrics
from mft.monitor.tensorboard import TensorBoardWriter, crc32c, masked_crc32c


def test_crc32c_known_vectors():
    # RFC 3720 (iSCSI) check value and an all-zero block.
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(bytes(32)) == 0x8A9136AA


def read_records(path):
    data = open(path, "rb").read()
    pos, out = 0, []
    while pos < len(data):
        (n,) = struct.unpack_from("<Q", data, pos)
        (len_crc,) = struct.unpack_from("<I", data, pos + 8)
        assert len_crc == masked_crc32c(data[pos : pos + 8])
        body = data[pos + 12 : pos + 12 + n]
        (body_crc,) = struct.unpack_from("<I", data, pos + 12 + n)
        assert body_crc == masked_crc32c(body)
        out.append(body)
        pos += 12 + n + 4
    assert pos == len(data)
    return out


def test_event_file_records_are_framed_and_hold_scalars(tmp_path):
    w = TensorBoardWriter(str(tmp_path))
    w.add_scalars(5, {"train/loss": 2.5})
    w.close()
    records = read_records(w.path)
    assert len(records) == 2
    assert b"brain.Event:2" in records[0]
    scalar = records[1]
    assert scalar[0] == 0x09  # wall_time (double)
    assert scalar[9] == 0x10 and scalar[10] == 5  # step varint
    assert b"train/loss" in scalar
    assert scalar.endswith(b"\x15" + struct.pack("<f", 2.5))


def test_metrics_jsonl_appends_and_nans_become_null(tmp_path):
    path = str(tmp_path / "m.jsonl")
    w = MetricsWriter(path)
    w.write({"step": 1, "loss": 2.0})
    w.close()
    w = MetricsWriter(path)
    w.write({"step": 2, "loss": float("nan")})
    w.close()
    assert read_metrics(path) == [{"step": 1, "loss": 2.0}, {"step": 2, "loss": None}]
