"""Reads PyTorch checkpoint files (torch.save output) into NumPy arrays, without PyTorch.

Two on-disk formats exist:
  * the zip format (torch >= 1.6): `<archive>/data.pkl` is a pickle whose tensors refer to storages through
    persistent ids; each storage's bytes are the zip member `<archive>/data/<key>`;
  * the legacy format: five pickles back to back (magic number, protocol version, system info, the object,
    the list of storage keys), then every storage as an int64 element count followed by its raw bytes.

Only the classes a state dict needs are resolved; any other global in the pickle is refused, so loading an
untrusted file never runs its code.
"""

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# Storage class name -> NumPy dtype (little-endian, as torch writes on every platform it supports).
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # NumPy has no bfloat16: widened to float32 below
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}


class PthError(Exception):
    """A checkpoint file that cannot be read (malformed, or using something this reader does not know)."""


class _StorageType:
    def __init__(self, name):
        if name not in _STORAGE_DTYPES:
            raise PthError(f"unsupported storage type torch.{name}")
        self.name = name

    @property
    def itemsize(self):
        return 2 if self.name == "BFloat16Storage" else np.dtype(_STORAGE_DTYPES[self.name]).itemsize

    def to_array(self, raw):
        """Turns raw little-endian bytes into a flat array of this storage's element type."""
        if len(raw) % self.itemsize:
            raise PthError(f"storage of {len(raw)} bytes is not a whole number of {self.name} elements")
        if self.name == "BFloat16Storage":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            return bits.view(np.float32)
        return np.frombuffer(raw, dtype=np.dtype(_STORAGE_DTYPES[self.name]).newbyteorder("<"))


class _Storage:
    """A storage whose bytes may arrive later (legacy format): tensors keep a reference and resolve lazily."""

    def __init__(self, storage_type, numel):
        self.storage_type = storage_type
        self.numel = numel
        self._array = None
        self._view_of = None  # (root storage, element offset) for legacy storage views

    @property
    def array(self):
        if self._view_of is None:
            return self._array
        root, offset = self._view_of
        if root.array is None:
            return None
        if offset < 0 or offset + self.numel > root.array.size:
            raise PthError("a storage view lies outside its storage")
        return root.array[offset:offset + self.numel]

    @array.setter
    def array(self, value):
        self._array = value


class _LazyTensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialize(self):
        flat = self.storage.array
        if flat is None:
            raise PthError("a tensor refers to a storage whose data is missing from the file")
        if any(s < 0 for s in self.size) or any(s < 0 for s in self.stride) or self.offset < 0:
            raise PthError(f"negative size or stride in tensor {self.size} / {self.stride}")
        if any(s == 0 for s in self.size):
            return np.zeros(self.size, dtype=flat.dtype)
        last = self.offset + sum((n - 1) * st for n, st in zip(self.size, self.stride))
        if last >= flat.size:
            raise PthError(f"tensor of size {self.size} and stride {self.stride} at offset {self.offset} "
                           f"reads past its storage of {flat.size} elements")
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], shape=self.size,
                                               strides=[s * itemsize for s in self.stride], writeable=False)
        return np.array(view)  # an own, contiguous copy


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    if not isinstance(storage, _Storage):
        raise PthError("tensor rebuilt from something that is not a storage")
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, storages, load_zip_record=None):
        super().__init__(file)
        self._storages = storages
        self._load_zip_record = load_zip_record
        self._views = {}

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module == "torch" and name in ("float32", "float16", "float64", "int64", "int32", "uint8", "bool"):
            return name
        raise PthError(f"checkpoint uses {module}.{name}, which this reader does not load")

    def persistent_load(self, pid):
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise PthError(f"unknown persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise PthError(f"storage id {pid!r} does not name a storage type")
        numel = pid[4]
        view = pid[5] if len(pid) > 5 else None
        if key not in self._storages:
            storage = _Storage(storage_type, numel)
            if self._load_zip_record is not None:
                storage.array = storage_type.to_array(self._load_zip_record(key))
            self._storages[key] = storage
        if view is None:
            return self._storages[key]
        if not isinstance(view, tuple) or len(view) != 3:
            raise PthError(f"malformed storage view {view!r}")
        view_key, offset, view_size = view
        view_key = str(view_key)
        if view_key not in self._views:
            storage = _Storage(storage_type, view_size)
            storage._view_of = (self._storages[key], offset)
            self._views[view_key] = storage
        return self._views[view_key]


def _resolve(obj):
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v) for v in obj)
    return obj


def _load_zip(path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise PthError(f"{path}: zip checkpoint without data.pkl")
        prefix = pkl[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() != b"little":
            raise PthError(f"{path}: big-endian checkpoints are not supported")

        def record(key):
            member = f"{prefix}data/{key}"
            if member not in names:
                raise PthError(f"{path}: storage {key} is missing ({member})")
            return zf.read(member)

        obj = _Unpickler(io.BytesIO(zf.read(pkl[0])), {}, record).load()
    return obj


def _load_legacy(path):
    with open(path, "rb") as f:
        try:
            magic = pickle.load(f)
        except Exception as e:  # the stdlib raises many kinds on garbage
            raise PthError(f"{path}: not a PyTorch checkpoint ({e})") from None
        if magic != _LEGACY_MAGIC:
            raise PthError(f"{path}: not a PyTorch checkpoint (bad magic number)")
        protocol = pickle.load(f)
        if protocol != _LEGACY_PROTOCOL:
            raise PthError(f"{path}: unsupported legacy protocol version {protocol}")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise PthError(f"{path}: big-endian checkpoints are not supported")
        storages = {}
        obj = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            key = str(key)
            if key not in storages:
                raise PthError(f"{path}: storage {key} listed but never referenced")
            storage = storages[key]
            header = f.read(8)
            if len(header) != 8:
                raise PthError(f"{path}: truncated before storage {key}")
            (numel,) = struct.unpack("<q", header)
            nbytes = numel * storage.storage_type.itemsize
            raw = f.read(nbytes)
            if numel < 0 or len(raw) != nbytes:
                raise PthError(f"{path}: storage {key} truncated ({len(raw)} of {nbytes} bytes)")
            storage.array = storage.storage_type.to_array(raw)
    return obj


def load(path):
    """Loads a checkpoint; tensors become NumPy arrays (nested dicts/lists kept). Raises PthError."""
    try:
        if zipfile.is_zipfile(path):
            obj = _load_zip(path)
        else:
            obj = _load_legacy(path)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, TypeError, IndexError, KeyError,
            AttributeError, struct.error) as e:
        raise PthError(f"{path}: malformed checkpoint ({e})") from None
    return _resolve(obj)


def load_state_dict(path):
    """Loads a state dict: name -> NumPy array. Accepts {'state_dict': {...}} wrappers too."""
    obj = load(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise PthError(f"{path}: holds a {type(obj).__name__}, not a state dict")
    return collections.OrderedDict((k, v) for k, v in obj.items() if isinstance(v, np.ndarray))
