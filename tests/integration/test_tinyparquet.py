"""The small-commit Parquet writer: its files read back exactly, in pyarrow and DuckDB alike."""

from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cqrs_lab import segments as fmt
from cqrs_lab import tinyparquet

EPOCH_MICROS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)


@st.composite
def segments(draw: st.DrawFn) -> dict[str, list]:
    rows = draw(st.integers(1, 70))
    first = draw(st.integers(1, 2**40))
    column = lambda values: draw(st.lists(values, min_size=rows, max_size=rows))  # noqa: E731
    return {
        "position": list(range(first, first + rows)),
        "stream_id": column(text),
        "stream_type": column(text),
        "version": column(st.integers(1, 2**62)),
        "event_type": column(text),
        "schema_version": column(st.integers(1, 32767)),
        "payload": column(text),
        "recorded_at": column(st.integers(0, 2**55)),
        "event_id": column(text),
        "command_id": column(text),
        "correlation_id": column(text),
        "causation_id": column(text),
        "actor": column(text),
        "hash": column(st.binary(min_size=32, max_size=32)),
    }


def as_table(columns: dict[str, list]) -> pa.Table:
    arrays = dict(columns)
    arrays["recorded_at"] = pa.array(columns["recorded_at"], pa.int64()).view(
        fmt.SCHEMA.field("recorded_at").type
    )
    return pa.table([pa.array(arrays[f.name], f.type) for f in fmt.SCHEMA], schema=fmt.SCHEMA)


@settings(max_examples=150, deadline=None)
@given(segments())
def test_a_tiny_segment_decodes_to_exactly_its_rows_with_page_checksums(columns: dict) -> None:
    decoded = fmt.decode_segment(tinyparquet.encode(columns))  # verifies page checksums
    assert decoded.equals(as_table(columns))


@settings(max_examples=25, deadline=None)
@given(columns=segments())
def test_duckdb_reads_a_tiny_segment_like_pyarrow_and_prunes_by_its_statistics(
    columns: dict, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("tiny") / "segment.parquet"
    path.write_bytes(tinyparquet.encode(columns))
    con = duckdb.connect()
    got = con.execute(
        "SELECT position, stream_id, version, recorded_at, schema_version, hash "
        "FROM read_parquet($file) ORDER BY position",
        {"file": str(path)},
    ).fetchall()
    table = as_table(columns)
    assert [row[:3] for row in got] == list(
        zip(columns["position"], columns["stream_id"], columns["version"], strict=True)
    )
    assert [row[3] for row in got] == table["recorded_at"].to_pylist()
    assert [row[4:] for row in got] == list(
        zip(columns["schema_version"], columns["hash"], strict=True)
    )
    middle = columns["position"][len(got) // 2]
    (count,) = con.execute(
        "SELECT count(*) FROM read_parquet($file) WHERE position > $p",
        {"file": str(path), "p": middle},
    ).fetchall()[0]
    assert count == columns["position"][-1] - middle


def test_the_statistics_are_those_pyarrow_would_write(tmp_path: Path) -> None:
    columns = {
        name: values * 3
        for name, values in {
            "position": [7],
            "stream_id": ["b"],
            "stream_type": ["T"],
            "version": [2],
            "event_type": ["E"],
            "schema_version": [1],
            "payload": ["{}"],
            "recorded_at": [EPOCH_MICROS],
            "event_id": ["i"],
            "command_id": [""],
            "correlation_id": [""],
            "causation_id": [""],
            "actor": [""],
            "hash": [b"h" * 32],
        }.items()
    }
    columns["position"], columns["stream_id"] = [7, 8, 9], ["b", "a", "é"]
    (tmp_path / "tiny.parquet").write_bytes(tinyparquet.encode(columns))
    metadata = pq.ParquetFile(tmp_path / "tiny.parquet").metadata.row_group(0)
    stats = {metadata.column(i).path_in_schema: metadata.column(i).statistics for i in range(14)}
    assert (stats["position"].min, stats["position"].max) == (7, 9)
    assert (stats["stream_id"].min, stats["stream_id"].max) == ("a", "é")
    assert stats["recorded_at"].null_count == 0
    assert stats["payload"] is None


def test_a_flipped_byte_in_a_tiny_segments_page_is_caught_by_its_checksum() -> None:
    columns = {
        "position": [1],
        "stream_id": ["a"],
        "stream_type": ["T"],
        "version": [1],
        "event_type": ["E"],
        "schema_version": [1],
        "payload": ['{"name":"Ada"}'],
        "recorded_at": [EPOCH_MICROS],
        "event_id": ["i"],
        "command_id": [""],
        "correlation_id": [""],
        "causation_id": [""],
        "actor": [""],
        "hash": [b"h" * 32],
    }
    data = bytearray(tinyparquet.encode(columns))
    at = data.index(b"Ada")
    data[at] ^= 0x01
    with pytest.raises(OSError, match=r"CRC|checksum"):
        fmt.decode_segment(bytes(data))


@given(st.integers(0, 2**64))
def test_the_varint_tables_encode_like_the_loop(value: int) -> None:
    assert tinyparquet._varint(value) == tinyparquet._varint_long(value)


def test_the_varint_tables_at_their_edges() -> None:
    for value in (0, 127, 128, 16383, 16384, 2**21 - 1, 2**21, 2**28, 2**32 - 1, 2**35):
        assert tinyparquet._varint(value) == tinyparquet._varint_long(value), value
    assert (
        tinyparquet._zigzag(-1) == b"\x01"
        and tinyparquet._zigzag(-(2**31)) == b"\xff\xff\xff\xff\x0f"
    )
