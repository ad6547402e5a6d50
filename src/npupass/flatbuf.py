"""Fast flatbuffer encoding and bounds-checked decoding for the TFLite schema.

The generated object API is correct but slow: its Pack runs the flatbuffers Builder (several
Python calls per byte of structure) and its unpack reads every field through generic accessors.
Here the generated Pack methods still decide *what* is written (so every table of the schema is
covered), but they run against a `Recorder` that only notes the calls; `encode` then lays the
recorded tree out front to back in one pass. `Reader` reads tables with explicit bounds checks,
using slot numbers taken from the generated code, so no table layout is written by hand.
"""

from __future__ import annotations

import contextlib
import gc
import mmap
import struct
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import numpy as np


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a codec creates or walks hundreds of thousands of objects
    (the collector's repeated passes over them otherwise cost a third of the time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- recording -----------------------------------------------------------------------------------
_SCALARS = {
    "Bool": "?",
    "Byte": "b",
    "Uint8": "B",
    "Uint16": "H",
    "Uint32": "I",
    "Uint64": "Q",
    "Int8": "b",
    "Int16": "h",
    "Int32": "i",
    "Int64": "q",
    "Float32": "f",
    "Float64": "d",
}
_OFFSET = "o"


class _Table:
    __slots__ = ("fields",)

    def __init__(self) -> None:
        self.fields: list[tuple[int, str, Any]] = []


class _Vector:
    """A vector: `items` are scalars of `fmt`, child handles (fmt "o"), or the raw bytes of `count`
    little-endian elements (fmt "raw")."""

    __slots__ = ("alignment", "count", "fmt", "items")

    def __init__(self, fmt: str, items: Any, alignment: int, count: int = 0) -> None:
        self.fmt, self.items, self.alignment, self.count = fmt, items, alignment, count


class Recorder:
    """Stands in for flatbuffers.Builder while generated Pack methods run; returns integer handles."""

    def __init__(self) -> None:
        self.nodes: list[Any] = [None]  # handle 0 means "absent", as offset 0 does for the Builder
        self._table: _Table | None = None
        self._vector: list[Any] = []
        self._vector_fmt = ""
        self._vector_alignment = 4

    def _add(self, node: Any) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def StartObject(self, numfields: int) -> None:  # noqa: N802 - flatbuffers.Builder's API
        self._table = _Table()

    def EndObject(self) -> int:  # noqa: N802
        table, self._table = self._table, None
        return self._add(table)

    def PrependUOffsetTRelativeSlot(self, slot: int, handle: int, default: int) -> None:  # noqa: N802
        if handle:
            self._table.fields.append((slot, _OFFSET, handle))  # type: ignore[union-attr]

    def StartVector(self, elem_size: int, num_elems: int, alignment: int) -> None:  # noqa: N802
        self._vector, self._vector_fmt, self._vector_alignment = [], "", alignment

    def PrependUOffsetTRelative(self, handle: int) -> None:  # noqa: N802
        self._vector_fmt = _OFFSET
        self._vector.append(handle)

    def EndVector(self, num_elems: int | None = None) -> int:  # noqa: N802
        items = self._vector[::-1]  # the Builder is filled back to front
        return self._add(_Vector(self._vector_fmt or "B", items, self._vector_alignment))

    def CreateString(self, s: str | bytes, encoding: str = "utf-8", errors: str = "strict") -> int:  # noqa: N802
        return self._add(s.encode(encoding, errors) if isinstance(s, str) else bytes(s))

    def CreateNumpyVector(self, x: np.ndarray) -> int:  # noqa: N802
        x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("<"))
        return self._add(_Vector("raw", x.data.cast("B"), x.dtype.alignment, x.size))

    def CreateAlignedBytes(self, data: memoryview, alignment: int) -> int:  # noqa: N802
        return self._add(_Vector("raw", data, alignment, len(data)))


def _scalar_slot(fmt: str) -> Callable[[Recorder, int, Any, Any], None]:
    def prepend_slot(self: Recorder, slot: int, value: Any, default: Any) -> None:
        if value != default:
            self._table.fields.append((slot, fmt, value))  # type: ignore[union-attr]

    return prepend_slot


def _scalar(fmt: str) -> Callable[[Recorder, Any], None]:
    def prepend(self: Recorder, value: Any) -> None:
        self._vector_fmt = fmt
        self._vector.append(value)

    return prepend


for _name, _fmt in _SCALARS.items():
    setattr(Recorder, f"Prepend{_name}Slot", _scalar_slot(_fmt))
    setattr(Recorder, f"Prepend{_name}", _scalar(_fmt))


# --- encoding ------------------------------------------------------------------------------------
class _Encoder:
    """Lays recorded nodes out front to back into a preallocated buffer (growing it by doubling),
    so that 100 MB of weights are copied once rather than on every reallocation."""

    def __init__(self, nodes: list[Any], size_hint: int) -> None:
        self.nodes = nodes
        self.buf = bytearray(max(size_hint, 1024))
        self.end = 0
        self.vtables: dict[bytes, int] = {}

    def reserve(self, n: int) -> int:
        """Claim `n` bytes at the end; returns their position."""
        pos = self.end
        self.end += n
        if self.end > len(self.buf):
            self.buf.extend(bytes(max(len(self.buf), self.end - len(self.buf))))
        return pos

    def append(self, data: bytes | memoryview) -> int:
        pos = self.reserve(len(data))
        self.buf[pos : pos + len(data)] = data
        return pos

    def pad_to(self, alignment: int, extra: int = 0) -> int:
        """Pad (with the buffer's zeros) so that end + extra is a multiple of alignment; returns the new end."""
        self.reserve(-(self.end + extra) % alignment)
        return self.end

    def write(self, handle: int) -> int:
        node = self.nodes[handle]
        if isinstance(node, _Table):
            return self._table(node)
        if isinstance(node, _Vector):
            return self._vector(node)
        return self._string(node)

    def _string(self, data: bytes) -> int:
        self.pad_to(4)
        return self.append(struct.pack("<I", len(data)) + data + b"\0")

    def _vector(self, v: _Vector) -> int:
        if v.fmt == "raw":
            self.pad_to(max(v.alignment, 4), 4)
            pos = self.append(struct.pack("<I", v.count))
            self.append(v.items)
            return pos
        if v.fmt == _OFFSET:
            self.pad_to(4)
            pos = self.append(struct.pack("<I", len(v.items)))
            self.reserve(4 * len(v.items))
            for i, handle in enumerate(v.items):
                slot = pos + 4 + 4 * i
                struct.pack_into("<I", self.buf, slot, self.write(handle) - slot)
            return pos
        size = struct.calcsize(v.fmt)
        self.pad_to(max(size, 4), 4)
        return self.append(struct.pack(f"<I{len(v.items)}{v.fmt}", len(v.items), *v.items))

    def _table(self, t: _Table) -> int:
        # Inline layout: the vtable offset, then fields by decreasing size (each naturally aligned).
        fields = sorted(t.fields, key=lambda f: -_size(f[1]))
        offsets, at = {}, 4
        for slot, fmt, _ in fields:
            offsets[slot] = at
            at += _size(fmt)
        n_slots = max(offsets, default=-1) + 1
        vtable = struct.pack(f"<{2 + n_slots}H", 4 + 2 * n_slots, at, *(offsets.get(s, 0) for s in range(n_slots)))
        alignment = max((_size(f[1]) for f in fields), default=4)
        vt_pos = self.vtables.get(vtable)
        if vt_pos is None:
            self.pad_to(2)
            vt_pos = self.vtables[vtable] = self.append(vtable)
        self.pad_to(max(alignment, 4), 4 if alignment == 8 else 0)
        pos = self.reserve(at)
        struct.pack_into("<i", self.buf, pos, pos - vt_pos)
        children = []
        for slot, fmt, value in fields:
            if fmt == _OFFSET:
                children.append((pos + offsets[slot], value))
            else:
                struct.pack_into("<" + fmt, self.buf, pos + offsets[slot], value)
        for at_pos, handle in children:
            struct.pack_into("<I", self.buf, at_pos, self.write(handle) - at_pos)
        return pos


@cache
def _size(fmt: str) -> int:
    return 4 if fmt == _OFFSET else struct.calcsize(fmt)


def encode(root: Any, identifier: bytes, size_hint: int = 0) -> memoryview:
    """The flatbuffer bytes of a generated `<Table>T` object, with a 4-byte file identifier.

    `size_hint` (the expected size) avoids growing the buffer while writing.
    """
    recorder = Recorder()
    handle = root.Pack(recorder)
    encoder = _Encoder(recorder.nodes, size_hint)
    encoder.append(b"\0\0\0\0" + identifier)
    struct.pack_into("<I", encoder.buf, 0, encoder.write(handle))
    return memoryview(encoder.buf)[: encoder.end]


# --- decoding ------------------------------------------------------------------------------------
class DecodeError(Exception):
    """The bytes are not a well-formed flatbuffer at the position read."""


_U16, _U32, _I32 = struct.Struct("<H"), struct.Struct("<I"), struct.Struct("<i")


class Reader:
    """Bounds-checked access to the tables of a flatbuffer in `buf`.

    Flatbuffer offsets may point many times at one table or vector, so a small file can describe
    an enormous tree. Every table and vector read is charged to a budget of twice the file size
    (a file that shares nothing reads each byte once), so decoding stays linear in the file size.
    """

    __slots__ = ("budget", "buf", "end", "size")

    def __init__(self, buf: bytes | mmap.mmap) -> None:
        self.buf, self.size = buf, len(buf)
        self.budget = 2 * self.size + 4096
        self.end = 0
        """The end of the furthest table, vtable or vector read so far (where the flatbuffer ends,
        once everything has been read: bytes after it were appended to the file)."""

    def charge(self, n: int) -> None:
        """Account for decoding `n` more bytes of structure."""
        self.budget -= n
        if self.budget < 0:
            raise DecodeError("the file refers to the same tables or vectors over and over (shared or looping offsets)")

    def root(self) -> Table:
        return self.table(self._u32(0))

    def _u32(self, pos: int) -> int:
        if not 0 <= pos <= self.size - 4:
            raise DecodeError(f"offset {pos} is outside the {self.size}-byte buffer")
        return int(_U32.unpack_from(self.buf, pos)[0])

    def table(self, pos: int) -> Table:
        if not 0 <= pos <= self.size - 4:
            raise DecodeError(f"table at {pos} is outside the {self.size}-byte buffer")
        vt = pos - _I32.unpack_from(self.buf, pos)[0]
        if not 0 <= vt <= self.size - 4:
            raise DecodeError(f"vtable of the table at {pos} is outside the buffer")
        vt_len, inline = _U16.unpack_from(self.buf, vt)[0], _U16.unpack_from(self.buf, vt + 2)[0]
        if vt + vt_len > self.size or pos + inline > self.size or vt_len < 4:
            raise DecodeError(f"table at {pos} overruns the buffer")
        self.charge(max(inline, 4))
        self.end = max(self.end, vt + vt_len, pos + inline)
        return Table(self, pos, vt, vt_len)

    def deref(self, pos: int) -> int:
        return pos + self._u32(pos)

    def vector(self, pos: int, elem_size: int) -> tuple[int, int]:
        """(start of the elements, count) of the vector whose length word is at `pos`."""
        count = self._u32(pos)
        if pos + 4 + count * elem_size > self.size:
            raise DecodeError(f"vector at {pos} claims {count} elements past the end of the buffer")
        self.charge(4 + count * elem_size)
        self.end = max(self.end, pos + 4 + count * elem_size)
        return pos + 4, count


class Table:
    __slots__ = ("pos", "reader", "vt", "vt_len")

    def __init__(self, reader: Reader, pos: int, vt: int, vt_len: int) -> None:
        self.reader, self.pos, self.vt, self.vt_len = reader, pos, vt, vt_len

    def _field(self, slot: int) -> int:
        entry = 4 + 2 * slot
        if entry >= self.vt_len:
            return 0
        offset: int = _U16.unpack_from(self.reader.buf, self.vt + entry)[0]
        return self.pos + offset if offset else 0

    def scalar(self, slot: int, fmt: struct.Struct, default: Any) -> Any:
        at = self._field(slot)
        if not at:
            return default
        if at + fmt.size > self.reader.size:
            raise DecodeError(f"field at {at} overruns the buffer")
        return fmt.unpack_from(self.reader.buf, at)[0]

    def content_key(self, field_sizes: tuple[int, ...]) -> bytes:
        """The table's vtable and the bytes its fields occupy (`field_sizes[slot]`; 8 for slots the schema
        does not know): equal keys mean equal content when no field is an offset. A field may lie past the
        declared inline size, so the vtable's entries, not that size, bound the bytes."""
        buf = self.reader.buf
        vtable = bytes(buf[self.vt : self.vt + self.vt_len])
        entries = struct.unpack_from(f"<{(self.vt_len - 4) // 2}H", vtable, 4)
        end = self.pos + 4
        for slot, offset in enumerate(entries):
            if offset:
                end = max(end, self.pos + offset + (field_sizes[slot] if slot < len(field_sizes) else 8))
        return vtable + b"|" + bytes(buf[self.pos + 4 : min(end, self.reader.size)])

    def has(self, slot: int) -> bool:
        return bool(self._field(slot))

    def table(self, slot: int) -> Table | None:
        at = self._field(slot)
        return self.reader.table(self.reader.deref(at)) if at else None

    def tables(self, slot: int) -> list[Table]:
        at = self._field(slot)
        if not at:
            return []
        start, count = self.reader.vector(self.reader.deref(at), 4)
        return [self.reader.table(self.reader.deref(start + 4 * i)) for i in range(count)]

    def string(self, slot: int) -> bytes | None:
        at = self._field(slot)
        if not at:
            return None
        start, count = self.reader.vector(self.reader.deref(at), 1)
        self.reader.end = max(self.reader.end, min(start + count + 1, self.reader.size))  # and its NUL
        return bytes(self.reader.buf[start : start + count])

    def array(self, slot: int, dtype: np.dtype[Any]) -> np.ndarray | None:
        """A read-only numpy view of a scalar vector (None when the field is absent)."""
        at = self._field(slot)
        if not at:
            return None
        start, count = self.reader.vector(self.reader.deref(at), dtype.itemsize)
        return np.frombuffer(self.reader.buf, dtype, count=count, offset=start)


# --- slot numbers from the generated code ----------------------------------------------------------
class _SlotProbe:
    """Catches the slot, type and default that a generated `<Table>Add<Field>` function writes."""

    slot: int
    kind: str
    default: Any

    def __getattr__(self, name: str) -> Callable[..., None]:
        def catch(slot: int, value: Any, default: Any) -> None:
            self.slot, self.kind, self.default = slot, name.removeprefix("Prepend").removesuffix("Slot"), default

        return catch


@cache
def fields_of(schema: Any, table: str) -> dict[str, tuple[int, str, Any]]:
    """Field name (as in the generated API, e.g. "ShapeSignature") -> (slot, kind, default) for a table."""
    prefix = f"{table}Add"
    result = {}
    for name, fn in vars(schema).items():
        if name.startswith(prefix) and callable(fn):
            probe = _SlotProbe()
            fn(probe, 1)
            result[name[len(prefix) :]] = (probe.slot, probe.kind, probe.default)
    return result


STRUCTS = {kind: struct.Struct("<" + fmt) for kind, fmt in _SCALARS.items()}
