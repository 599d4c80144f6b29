"""Tests of pth_reader on checkpoints written here byte by byte in both of torch.save's formats.

PyTorch is not installed, so the pickles refer to stand-in `torch` modules registered in sys.modules only
while writing; the reader must resolve those globals by name, as it does for real files."""

import collections
import io
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from kiln_models import pth_reader


class _FakeStorageRef:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class _Rebuild:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""

    def __init__(self, ref, offset, size, stride):
        self.args = (ref, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (sys.modules["torch._utils"]._rebuild_tensor_v2, self.args)


@pytest.fixture
def fake_torch(monkeypatch):
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called while writing")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage", "HalfStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _FakeStorageRef):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def _dumps(obj):
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def _state(torch):
    # storage "0": 6 floats; "w" is its 2x3 view, "wt" its transpose, "tail" starts at element 4.
    floats = _FakeStorageRef(torch.FloatStorage, "0", 6)
    longs = _FakeStorageRef(torch.LongStorage, "1", 1)
    obj = collections.OrderedDict()
    obj["w"] = _Rebuild(floats, 0, [2, 3], [3, 1])
    obj["wt"] = _Rebuild(floats, 0, [3, 2], [1, 3])
    obj["tail"] = _Rebuild(floats, 4, [2], [1])
    obj["count"] = _Rebuild(longs, 0, [], [])
    data = {"0": np.arange(6, dtype="<f4").tobytes(), "1": np.array([42], dtype="<i8").tobytes()}
    return obj, data


def _check(sd):
    np.testing.assert_array_equal(sd["w"], [[0, 1, 2], [3, 4, 5]])
    np.testing.assert_array_equal(sd["wt"], [[0, 3], [1, 4], [2, 5]])
    np.testing.assert_array_equal(sd["tail"], [4, 5])
    assert sd["w"].dtype == np.float32
    assert sd["count"].shape == () and sd["count"].dtype == np.int64 and int(sd["count"]) == 42


def test_zip_format(fake_torch, tmp_path):
    obj, data = _state(fake_torch)
    path = tmp_path / "zip.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", _dumps(obj))
        for key, raw in data.items():
            zf.writestr(f"archive/data/{key}", raw)
    _check(pth_reader.load_state_dict(str(path)))


def _legacy_bytes(obj, data, numels):
    out = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, out, protocol=2)
    out.write(_dumps(obj))
    pickle.dump(list(data), out, protocol=2)
    for key, raw in data.items():
        out.write(struct.pack("<q", numels[key]) + raw)
    return out.getvalue()


def test_legacy_format(fake_torch, tmp_path):
    obj, data = _state(fake_torch)
    path = tmp_path / "legacy.pth"
    path.write_bytes(_legacy_bytes(obj, data, {"0": 6, "1": 1}))
    _check(pth_reader.load_state_dict(str(path)))


def test_truncated_legacy_file_is_refused(fake_torch, tmp_path):
    obj, data = _state(fake_torch)
    path = tmp_path / "short.pth"
    path.write_bytes(_legacy_bytes(obj, data, {"0": 6, "1": 1})[:-4])
    with pytest.raises(pth_reader.PthError, match="truncated"):
        pth_reader.load_state_dict(str(path))


def test_tensor_past_its_storage_is_refused(fake_torch, tmp_path):
    floats = _FakeStorageRef(fake_torch.FloatStorage, "0", 2)
    obj = {"w": _Rebuild(floats, 1, [4], [1])}
    path = tmp_path / "bad.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", _dumps(obj))
        zf.writestr("archive/data/0", np.zeros(2, dtype="<f4").tobytes())
    with pytest.raises(pth_reader.PthError, match="past its storage"):
        pth_reader.load_state_dict(str(path))


def test_foreign_globals_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": print}, protocol=2))
    with pytest.raises(pth_reader.PthError, match="does not load"):
        pth_reader.load_state_dict(str(path))


def test_garbage_is_refused(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"\x00\x01not a checkpoint")
    with pytest.raises(pth_reader.PthError):
        pth_reader.load_state_dict(str(path))
