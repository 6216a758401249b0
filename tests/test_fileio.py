"""Atomic writes: the new contents replace the old in one step; a failure leaves the old file and no temp file."""
import json

import pytest

from prefill_router import fileio


def test_writes_replace_the_file(tmp_path):
    path = tmp_path / "a.json"
    fileio.atomic_write_text(path, "old")
    fileio.atomic_write_json(path, {"b": 1, "a": [1.5, None]}, sort_keys=True)
    assert path.read_text() == json.dumps({"a": [1.5, None], "b": 1}, indent=1)
    fileio.atomic_write_bytes(path, b"\x00\xff")
    assert path.read_bytes() == b"\x00\xff"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failure_keeps_the_old_file_and_removes_the_temp_file(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with fileio.atomic_writer(path) as f:
            f.write(b"partial")
            raise RuntimeError("writer failed")
    with pytest.raises(TypeError):
        fileio.atomic_write_json(path, {"x": object()})  # not serialisable: nothing is opened
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    with pytest.raises(FileNotFoundError):
        fileio.atomic_write_bytes(tmp_path / "missing" / "a.bin", b"x")  # the parent must exist


def test_write_json_converts_numpy_and_sorts_keys(tmp_path):
    import numpy as np
    path = tmp_path / "m.json"
    fileio.write_json(path, {"b": np.float32(0.5), "a": (np.int64(3), np.nan), 2: np.array([[1.0, np.inf]]),
                             "c": np.bool_(True)})
    assert path.read_text() == ('{\n "2": [\n  [\n   1.0,\n   null\n  ]\n ],\n "a": [\n  3,\n  null\n ],\n'
                                ' "b": 0.5,\n "c": true\n}')
    assert fileio.to_jsonable({"x": [np.float64(-np.inf), "s"]}) == {"x": [None, "s"]}
