"""A minimal Parquet writer for the segments of small commits (one to a few dozen events).

pyarrow's writer costs ~13 µs per column whatever the row count: ~190 µs for the 14 columns of a
one-event commit, a fifth of issue 2's whole 1 ms budget for a durable commit. A small segment
needs little of it: one row group, one uncompressed PLAIN page per column, page checksums, the
min/max statistics DuckDB prunes with. That file is a few byte strings in the Thrift compact
protocol, which this module writes directly; everything constant (the schema) is built once.

The files are ordinary Parquet: pyarrow and DuckDB read them with the same 14-column types as
pyarrow-written ones (tests/integration/test_tinyparquet.py checks both, and the page checksums).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any

from cqrs_lab import segments as fmt

MAGIC = b"PAR1"
# Thrift compact protocol field types.
_TRUE, _BYTE, _I32, _I64, _BINARY, _LIST, _STRUCT = 1, 3, 5, 6, 8, 9, 12
# Parquet physical types, and the encodings and page type used here.
_INT32, _INT64, _BYTE_ARRAY, _FIXED = 1, 2, 6, 7
_PLAIN, _RLE, _DATA_PAGE = 0, 3, 0
_WITH_STATISTICS = ("position", "version", "recorded_at", "stream_id")


def _varint_long(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Every value a one-event file's lengths and offsets take, encoded once: a lookup is ~4x faster
# than the loop, and an encode needs ~60 of them.
_SMALL = [_varint_long(value) for value in range(1 << 14)]


# The low 14 bits of a longer value, both bytes marked "more follows" (page checksums are 32-bit).
_LOW = [bytes([value & 0x7F | 0x80, value >> 7 | 0x80]) for value in range(1 << 14)]


def _varint(value: int) -> bytes:
    if value < 16384:
        return _SMALL[value]
    return _LOW[value & 0x3FFF] + _varint(value >> 14)


def _zigzag(value: int) -> bytes:
    value = value << 1 if value >= 0 else (-value << 1) - 1
    return _SMALL[value] if value < 16384 else _varint(value)


class _Struct:
    """One Thrift struct in the compact protocol, fields added in increasing id order."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.last = 0

    def field(self, fid: int, kind: int) -> _Struct:
        self.data.append((fid - self.last) << 4 | kind)  # ids here are always 1..15 apart
        self.last = fid
        return self

    def i32(self, fid: int, value: int) -> _Struct:
        self.field(fid, _I32).data += _zigzag(value)
        return self

    def i64(self, fid: int, value: int) -> _Struct:
        self.field(fid, _I64).data += _zigzag(value)
        return self

    def binary(self, fid: int, value: bytes) -> _Struct:
        self.field(fid, _BINARY).data += _varint(len(value)) + value
        return self

    def struct(self, fid: int, value: bytes) -> _Struct:
        self.field(fid, _STRUCT).data += value
        return self

    def list(self, fid: int, kind: int, items: Sequence[bytes]) -> _Struct:
        size = len(items)
        head = bytes([size << 4 | kind]) if size < 15 else bytes([0xF0 | kind]) + _varint(size)
        self.field(fid, _LIST).data += head + b"".join(items)
        return self

    def end(self) -> bytes:
        return bytes(self.data) + b"\x00"


_EMPTY = b"\x00"  # an empty struct


def _logical(name: str) -> bytes | None:
    """The LogicalType union (and converted type) that makes each column read back as SCHEMA."""
    kind = fmt.SCHEMA.field(name).type
    if kind == fmt.SCHEMA.field("stream_id").type:
        return _Struct().struct(1, _EMPTY).end()  # STRING
    if name == "schema_version":  # INTEGER(16, signed): bitWidth is an i8, isSigned a bool
        integer = _Struct().field(1, _BYTE)
        integer.data.append(16)
        return _Struct().struct(10, integer.field(2, _TRUE).end()).end()
    if name == "recorded_at":  # TIMESTAMP(isAdjustedToUTC=true, MICROS)
        micros = _Struct().struct(2, _EMPTY).end()
        return _Struct().struct(8, _Struct().field(1, _TRUE).struct(2, micros).end()).end()
    return None


_PHYSICAL = {"int64": _INT64, "int16": _INT32, "string": _BYTE_ARRAY}
# Converted types (for older readers): UTF8, TIMESTAMP_MICROS, INT_16.
_CONVERTED = {"string": 0, "timestamp[us, tz=UTC]": 10, "int16": 16}


def _schema_element(name: str) -> bytes:
    kind = str(fmt.SCHEMA.field(name).type)
    element = _Struct().i32(1, _SCHEMA_TYPES[name])
    if name == "hash":
        element.i32(2, 32)
    element.i32(3, 0).binary(4, name.encode())  # REQUIRED
    if kind in _CONVERTED:
        element.i32(6, _CONVERTED[kind])
    logical = _logical(name)
    if logical is not None:
        element.struct(10, logical)
    return element.end()


_SCHEMA_TYPES = {
    name: _PHYSICAL.get(
        str(fmt.SCHEMA.field(name).type),
        _INT64 if "timestamp" in str(fmt.SCHEMA.field(name).type) else _FIXED,
    )
    for name in fmt.COLUMNS
}
_ROOT = _Struct().binary(4, b"schema").i32(5, len(fmt.COLUMNS)).end()
_SCHEMA = [_ROOT, *map(_schema_element, fmt.COLUMNS)]
_TYPE_ORDER = _Struct().struct(1, _EMPTY).end()  # min/max compare as the type defines


def _plain(kind: int, values: Sequence[Any]) -> bytes:
    """A column's values in PLAIN encoding (required columns: no definition levels)."""
    if kind == _INT64:
        return struct.pack(f"<{len(values)}q", *values)
    if kind == _INT32:
        return struct.pack(f"<{len(values)}i", *values)
    if kind == _FIXED:
        return b"".join(values)
    texts = [value.encode() for value in values]
    return b"".join([len(text).to_bytes(4, "little") + text for text in texts])


# The per-file parts are byte strings glued around the few numbers that vary; the constant
# parts were built above with _Struct. Hex bytes are Thrift compact field headers:
# (id delta << 4) | type, e.g. 0x15 = next field, i32; 0x16 = next field, i64; 0x1c = struct.
_PAGE_TYPE = _Struct().i32(1, _DATA_PAGE).end()[:-1]  # PageHeader up to its field 1
# DataPageHeader fields 2-4 and its end, after field 1 (num_values)
_PAGE_LEVELS = _Struct().i32(1, 0).i32(2, _PLAIN).i32(3, _RLE).i32(4, _RLE).end()[2:]
_COLUMN_START = {  # ColumnMetaData fields 1-4: type, encodings, path, codec
    name: _Struct()
    .i32(1, _SCHEMA_TYPES[name])
    .list(2, _I32, [_zigzag(_PLAIN), _zigzag(_RLE)])
    .list(3, _BINARY, [_varint(len(name)) + name.encode()])
    .i32(4, 0)  # UNCOMPRESSED
    .end()[:-1]
    for name in fmt.COLUMNS
}
_FOOTER_START = _Struct().i32(1, 1).list(2, _STRUCT, _SCHEMA).end()[:-1]  # version, schema
_FOOTER_END = (
    _Struct()
    .field(4, _LIST)  # sets the id base: fields 6 and 7 follow field 4 (row groups)
    .binary(6, b"cqrs_lab tinyparquet")
    .list(7, _STRUCT, [_TYPE_ORDER] * len(fmt.COLUMNS))
    .end()[1:]
)


def _statistics(name: str, values: Sequence[Any]) -> bytes:
    """Statistics: null_count 0, max_value, min_value (as the type orders them)."""
    if name == "stream_id":
        texts: list[bytes] = [value.encode() for value in values]
        low, high = min(texts), max(texts)
    else:
        low, high = struct.pack("<q", min(values)), struct.pack("<q", max(values))
    return b"\x36\x00\x28" + _varint(len(high)) + high + b"\x18" + _varint(len(low)) + low + b"\x00"


# Per column, what every file repeats: name, physical type, the ColumnMetaData fields 1-4 with
# the Thrift bytes around them, and whether it carries statistics.
_PLAN = [
    (name, _SCHEMA_TYPES[name], b"\x1c" + _COLUMN_START[name] + b"\x16", name in _WITH_STATISTICS)
    for name in fmt.COLUMNS
]


def encode(columns: dict[str, Sequence[Any]]) -> bytes:
    """A one-row-group Parquet file of the event row columns (times as int microseconds)."""
    rows = _zigzag(len(columns["position"]))
    levels = b"\x1c\x15" + rows + _PAGE_LEVELS + b"\x00"  # DataPageHeader, end of header
    parts, chunks, offset = [MAGIC], [], len(MAGIC)
    for name, kind, meta_start, with_statistics in _PLAN:
        values = columns[name]
        page = _plain(kind, values)
        crc, length = zlib.crc32(page), _zigzag(len(page))
        header = b"".join(
            [
                _PAGE_TYPE,
                b"\x15",  # uncompressed and compressed size
                length,
                b"\x15",
                length,
                b"\x15",  # the checksum, an i32
                _zigzag(crc - (1 << 32) if crc >= 1 << 31 else crc),
                levels,
            ]
        )
        size = _zigzag(len(header) + len(page))
        at = _zigzag(offset)
        chunks.append(
            b"".join(
                [
                    b"\x26",
                    at,
                    meta_start,
                    rows,
                    b"\x16",
                    size,
                    b"\x16",
                    size,
                    b"\x26",
                    at,
                    b"\x3c" + _statistics(name, values) if with_statistics else b"",
                    b"\x00\x00",
                ]
            )
        )
        parts += [header, page]
        offset += len(header) + len(page)
    data = _zigzag(offset - len(MAGIC))
    row_group = b"".join(
        [
            b"\x19" + bytes([len(chunks) << 4 | _STRUCT]),
            *chunks,
            b"\x16" + data + b"\x16" + rows + b"\x26" + _zigzag(len(MAGIC)),
            b"\x16" + data + b"\x14\x00\x00",  # total compressed size, ordinal 0, end
        ]
    )
    footer = _FOOTER_START + b"\x16" + rows + b"\x19\x1c" + row_group + _FOOTER_END
    parts += [footer, len(footer).to_bytes(4, "little"), MAGIC]
    return b"".join(parts)
