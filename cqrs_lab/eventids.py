"""Which event ids a log holds: a compact in-memory index the writer checks new ids against.

Each id is kept as a 64-bit key, 8 bytes per id. Most ids are 32 bytes of text (what
`random_ids`, `seeded_ids` and bulk appends make: 32 hex digits); their key mixes the four
64-bit words of those bytes, which numpy does for a whole Arrow column at once, so a bulk append
of 10^4 fresh ids needs no Python string and no Python hash per id (and reading a log's ids back
on open costs a fraction of what it did). Any other id's key is its Python hash. A key is a
function of the id's text alone, so it does not matter which way an id comes in.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cqrs_lab import segments as fmt

Ids: TypeAlias = Sequence[str] | pa.Array
_MASK = (1 << 64) - 1
_ODD = 0x9E3779B97F4A7C15  # odd: multiplying by it mod 2^64 loses nothing
_BULK = 64  # from this many ids, keys are computed by numpy
_WORDS = struct.Struct("<4Q")  # 32 bytes as four little-endian 64-bit words


def id_key(event_id: str) -> int:
    """The index key of one id (`id_keys` gives the same, vectorised)."""
    try:
        data = event_id.encode()
    except UnicodeEncodeError:  # a lone surrogate: never stored, but may be looked up
        return hash(event_id)
    if len(data) != 32:
        return hash(event_id)
    key = 0
    for word in _WORDS.unpack(data):  # each step is one-to-one in the word it takes in
        key = ((key * _ODD) & _MASK) ^ word
    return key - (1 << 64) if key >> 63 else key  # as a signed 64-bit integer


def id_keys(event_ids: Ids) -> np.ndarray:
    """The index keys of ids (int64, in order)."""
    if len(event_ids) < _BULK:
        ids = event_ids.to_pylist() if isinstance(event_ids, pa.Array) else event_ids
        return np.fromiter(map(id_key, ids), np.int64, len(ids))
    array = event_ids if isinstance(event_ids, pa.Array) else pa.array(event_ids, pa.string())
    keys, worded = _word_keys(array)
    others = np.flatnonzero(~worded)
    if len(others):  # the original values: a str subclass keeps its own hash
        values = array.to_pylist() if isinstance(event_ids, pa.Array) else event_ids
        keys[others] = np.fromiter(map(hash, map(values.__getitem__, others.tolist())), np.int64)
    return keys


def _word_keys(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """`id_key` of the ids of 32 bytes, and which those are (the others' keys are 0)."""
    count = len(array)
    offsets = np.frombuffer(array.buffers()[1], np.int32)[array.offset : array.offset + count + 1]
    data = np.frombuffer(array.buffers()[2] or b"", np.uint8)
    keys = np.zeros(count, np.int64)
    worded = np.diff(offsets) == 32
    if not worded.any():
        return keys, worded
    first = int(offsets[0])
    if worded.all() and offsets[-1] - first == 32 * count:  # back to back: a view, no gather
        rows = data[first : first + 32 * count].reshape(count, 32)
    else:
        rows = data[offsets[:-1][worded, None] + np.arange(32)]
    words = rows.view("<u8")  # (n, 4): the four little-endian words of each id
    mixed = np.zeros(len(words), np.uint64)
    for column in range(4):  # uint64 arithmetic wraps: the `& _MASK` of id_key
        mixed = (mixed * np.uint64(_ODD)) ^ words[:, column]
    keys[worded] = mixed.view(np.int64)
    return keys, worded


class EventIdIndex:
    """Which event ids a log holds, in 8 bytes per id.

    Ids are kept as their keys (stable within a process, all an in-memory index needs): recent
    ones in a set, older ones in sorted arrays merged by size like an LSM tree, so adding is
    amortised O(log n) and a lookup is a few binary searches. A key hit is confirmed against
    the files, so two ids sharing a key can never reject a genuinely new id.
    """

    def __init__(self, events_dir: Path) -> None:
        self.events_dir = events_dir
        self._chunks: list[np.ndarray] = []
        self._recent: set[int] = set()
        self._looked_up: tuple[Ids, np.ndarray, np.ndarray] | None = None  # ids, keys, sorted

    def add(self, event_ids: Ids) -> None:
        """Remember these ids."""
        if len(event_ids) < 1000:
            keys = self._keys(event_ids)[0]
            self._recent.update(keys.tolist())
            if len(self._recent) >= 100_000:
                self._push(np.sort(np.fromiter(self._recent, np.int64, len(self._recent))))
                self._recent = set()
            return
        self._push(self._keys(event_ids)[1])

    def _keys(self, event_ids: Ids) -> tuple[np.ndarray, np.ndarray]:
        """The ids' keys, in order and sorted; those of the ids just looked up are reused (an
        append looks its batch up, then adds the same ids: keyed and sorted once, not twice)."""
        if self._looked_up is not None and self._looked_up[0] is event_ids:
            keys, ordered = self._looked_up[1:]
        else:
            keys = id_keys(event_ids)
            ordered = np.sort(keys)
        self._looked_up = None
        return keys, ordered

    def _push(self, keys: np.ndarray) -> None:
        self._chunks.append(keys)
        while len(self._chunks) > 1 and len(self._chunks[-1]) * 2 >= len(self._chunks[-2]):
            last = self._chunks.pop()
            # two sorted runs: the stable sort (timsort for int64) merges them in linear time
            self._chunks[-1] = np.sort(np.concatenate([self._chunks[-1], last]), kind="stable")

    def first_known(self, event_ids: Ids) -> str | None:
        """The first of these ids the log already holds, or None."""
        keys, ordered = self._keys(event_ids)  # sorted: the binary searches walk forward
        self._looked_up = (event_ids, keys, ordered)
        hits = self._recent.intersection(ordered.tolist()) if self._recent else set()
        for chunk in self._chunks:
            found = chunk[np.minimum(np.searchsorted(chunk, ordered), len(chunk) - 1)] == ordered
            if found.any():
                hits.update(ordered[found].tolist())
        if hits:  # rare: a genuine repeat, or two ids sharing a key the files will tell apart
            for at in np.flatnonzero(np.isin(keys, list(hits))).tolist():
                event_id = event_ids[at]
                event_id = event_id.as_py() if isinstance(event_id, pa.Scalar) else event_id
                if self._in_files(event_id):
                    return event_id
        return None

    def _in_files(self, event_id: str) -> bool:
        segments, _, _ = fmt.list_folder(self.events_dir)
        for seg in fmt.cover(segments)[0]:
            ids = fmt.decode_segment(
                (self.events_dir / seg.name).read_bytes(), columns=["event_id"]
            )
            if pc.any(pc.equal(ids["event_id"], event_id)).as_py():
                return True
        return False
