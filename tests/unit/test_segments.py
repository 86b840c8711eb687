"""The on-disk format as pure functions: segment names, the cover, the HEAD ledger, row hashes."""

import hashlib
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cqrs_lab import segments as fmt
from cqrs_lab.segments import LedgerEntry, Segment

DIGEST = "ab" * 32
LAST_HASH = "cd" * 32


def seg(first: int, last: int) -> Segment:
    return Segment(first, last, fmt.segment_name(first, last))


def firsts_and_lasts(segments: list[Segment]) -> list[tuple[int, int]]:
    return [(s.first, s.last) for s in segments]


def ledger_line(first: int, last: int, digest: str = DIGEST, last_hash: str = LAST_HASH) -> str:
    return f"{fmt.segment_name(first, last)} {digest} {last_hash}\n"


# --- segment names -------------------------------------------------------------------------------


def test_a_segment_name_spells_its_positions_with_twelve_digits() -> None:
    assert fmt.segment_name(1, 42) == "000000000001-000000000042.parquet"


def test_parsing_a_segment_name_gives_back_its_positions() -> None:
    assert fmt.parse_segment("000000000007-000000000009.parquet") == seg(7, 9)


def test_positions_wider_than_twelve_digits_still_parse() -> None:
    name = fmt.segment_name(10**12, 10**13)
    assert fmt.parse_segment(name) == Segment(10**12, 10**13, name)


@pytest.mark.parametrize(
    "name",
    [
        "000000000002-000000000001.parquet",  # first after last
        "000000000000-000000000001.parquet",  # positions start at 1
        "1-2.parquet",  # too few digits
        "000000000001-000000000002.parquet.tmp",
        ".000000000001-000000000002.parquet.tmp",
        "000000000001-000000000002.csv",
        "000000000001_000000000002.parquet",
        "x000000000001-000000000002.parquet",
        "notes.txt",
        "",
    ],
)
def test_names_that_are_not_segments_parse_as_none(name: str) -> None:
    assert fmt.parse_segment(name) is None


def test_a_segment_name_followed_by_a_newline_is_not_a_segment_name() -> None:
    # A file name is the whole name: "...parquet\n" is a different (foreign) file.
    assert fmt.parse_segment("000000000001-000000000002.parquet\n") is None


# --- the cover -----------------------------------------------------------------------------------


def test_the_cover_of_no_segments_is_empty() -> None:
    assert fmt.cover([]) == ([], [])


def test_consecutive_segments_all_belong_to_the_cover_in_position_order() -> None:
    chosen, left_out = fmt.cover([seg(4, 9), seg(1, 1), seg(2, 3)])
    assert firsts_and_lasts(chosen) == [(1, 1), (2, 3), (4, 9)]
    assert left_out == []


def test_the_cover_stops_at_a_gap_and_leaves_out_everything_after_it() -> None:
    chosen, left_out = fmt.cover([seg(1, 2), seg(3, 3), seg(5, 6), seg(7, 7)])
    assert firsts_and_lasts(chosen) == [(1, 2), (3, 3)]
    assert firsts_and_lasts(left_out) == [(5, 6), (7, 7)]


def test_a_log_without_position_one_has_an_empty_cover() -> None:
    chosen, left_out = fmt.cover([seg(2, 3), seg(4, 4)])
    assert chosen == []
    assert firsts_and_lasts(left_out) == [(2, 3), (4, 4)]


def test_compaction_leftovers_inside_a_wider_segment_are_left_out() -> None:
    narrow = [seg(1, 1), seg(2, 2), seg(3, 5), seg(6, 6)]
    chosen, left_out = fmt.cover([*narrow, seg(1, 5), seg(7, 7)])
    assert firsts_and_lasts(chosen) == [(1, 5), (6, 6), (7, 7)]
    assert firsts_and_lasts(left_out) == [(1, 1), (2, 2), (3, 5)]


def test_the_widest_segment_starting_at_a_position_wins_whatever_the_listing_order() -> None:
    segments = [seg(1, 2), seg(1, 8), seg(1, 4), seg(3, 8), seg(9, 9)]
    for ordering in (segments, segments[::-1]):
        chosen, left_out = fmt.cover(ordering)
        assert firsts_and_lasts(chosen) == [(1, 8), (9, 9)]
        assert firsts_and_lasts(left_out) == [(1, 2), (1, 4), (3, 8)]


def test_an_overlapping_segment_that_does_not_start_at_a_boundary_is_left_out() -> None:
    chosen, left_out = fmt.cover([seg(1, 3), seg(2, 4), seg(4, 4)])
    assert firsts_and_lasts(chosen) == [(1, 3), (4, 4)]
    assert firsts_and_lasts(left_out) == [(2, 4)]


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(1, 30), st.integers(0, 6)), max_size=25))
def test_the_cover_is_gap_free_from_one_and_every_segment_is_either_in_or_out(
    spans: list[tuple[int, int]],
) -> None:
    segments = list({seg(first, first + width) for first, width in spans})
    chosen, left_out = fmt.cover(segments)
    position = 1
    for segment in chosen:
        assert segment.first == position
        position = segment.last + 1
    assert sorted(chosen + left_out) == sorted(segments)
    assert left_out == sorted(left_out)


# --- the HEAD ledger -----------------------------------------------------------------------------


def test_a_ledger_line_round_trips() -> None:
    entry = LedgerEntry(seg(3, 5), DIGEST, LAST_HASH)
    line = fmt.format_ledger_line(entry)
    assert line == ledger_line(3, 5).encode()
    assert fmt.parse_ledger(line) == ([entry], [], False)


def test_an_empty_ledger_has_no_entries_and_is_not_torn() -> None:
    assert fmt.parse_ledger(b"") == ([], [], False)


def test_a_torn_last_line_is_reported_and_not_read_as_an_entry() -> None:
    data = (ledger_line(1, 1) + ledger_line(2, 4)[:-20]).encode()
    entries, bad, torn = fmt.parse_ledger(data)
    assert [e.segment for e in entries] == [seg(1, 1)]
    assert bad == []
    assert torn is True


def test_a_complete_last_line_without_its_newline_still_counts_as_torn() -> None:
    data = (ledger_line(1, 1) + ledger_line(2, 2).rstrip("\n")).encode()
    entries, _, torn = fmt.parse_ledger(data)
    assert [e.segment for e in entries] == [seg(1, 1)]
    assert torn is True


@pytest.mark.parametrize(
    "line",
    [
        f"000000000001-000000000001.parquet {DIGEST}",  # a field missing
        f"000000000001-000000000001.parquet {DIGEST} {LAST_HASH} extra",
        f"000000000001-000000000001.parquet {DIGEST[:-1]} {LAST_HASH}",  # short digest
        f"000000000001-000000000001.parquet {DIGEST.upper()} {LAST_HASH}",
        f"000000000002-000000000001.parquet {DIGEST} {LAST_HASH}",  # not a segment
        f"notes.parquet {DIGEST} {LAST_HASH}",
        f"000000000001-000000000001.parquet  {DIGEST} {LAST_HASH}",  # two spaces
        f"000000000001-000000000001.parquet {DIGEST} {LAST_HASH}\r",
        "",
        "garbage \xff",
    ],
)
def test_malformed_lines_are_reported_verbatim_and_skipped(line: str) -> None:
    data = ledger_line(1, 1) + line + "\n" + ledger_line(2, 2)
    entries, bad, torn = fmt.parse_ledger(data.encode())
    assert [e.segment for e in entries] == [seg(1, 1), seg(2, 2)]
    assert bad == [line]
    assert torn is False


def test_undecodable_bytes_in_the_ledger_are_a_malformed_line_not_a_crash() -> None:
    data = ledger_line(1, 1).encode() + b"\xff\xfe garbage\n"
    entries, bad, torn = fmt.parse_ledger(data)
    assert [e.segment for e in entries] == [seg(1, 1)]
    assert len(bad) == 1
    assert not torn


def test_the_anchor_is_the_entry_reaching_the_highest_position() -> None:
    entries = [
        LedgerEntry(seg(1, 1), DIGEST, "01" * 32),
        LedgerEntry(seg(2, 7), DIGEST, "07" * 32),
        LedgerEntry(seg(1, 2), DIGEST, "02" * 32),  # a compaction recorded later
    ]
    top = fmt.anchor(entries)
    assert top is not None
    assert top.segment.last == 7
    assert top.last_hash == "07" * 32


def test_an_empty_ledger_has_no_anchor() -> None:
    assert fmt.anchor([]) is None


# --- canonical rows and the hash chain -----------------------------------------------------------

T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def example_row(**overrides: object) -> dict[str, object]:
    row: dict[str, object] = {
        "position": 7,
        "stream_id": "customer-7",
        "stream_type": "Customer",
        "version": 2,
        "event_type": "CustomerRenamed",
        "schema_version": 1,
        "payload": '{"name":"Ada"}',
        "recorded_at": T0,
        "event_id": "e-1",
        "command_id": "c-1",
        "correlation_id": "r-1",
        "causation_id": "",
        "actor": "ada@example.org",
        "hash": bytes(32),
    }
    row.update(overrides)
    return row


def values(row: dict[str, object]) -> list[object]:
    return [row[name] for name in fmt.HASHED_COLUMNS]


def as_table(rows: list[dict[str, object]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=fmt.SCHEMA)


def test_the_hash_covers_every_column_but_itself_in_schema_order() -> None:
    assert [*fmt.HASHED_COLUMNS, "hash"] == fmt.SCHEMA.names


def test_a_canonical_row_is_its_columns_as_text_joined_by_the_unit_separator() -> None:
    micros = (T0 - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    assert (
        fmt.canonical_row(values(example_row()))
        == (
            f"7\x1fcustomer-7\x1fCustomer\x1f2\x1fCustomerRenamed\x1f1\x1f"
            f'{{"name":"Ada"}}\x1f{micros}\x1fe-1\x1fc-1\x1fr-1\x1f\x1fada@example.org'
        ).encode()
    )


@pytest.mark.parametrize(
    "change",
    [
        {"position": 8},
        {"stream_id": "customer-8"},
        {"version": 3},
        {"schema_version": 2},
        {"payload": '{"name":"Eve"}'},
        {"recorded_at": T0 + timedelta(microseconds=1)},
        {"event_id": "e-2"},
        {"actor": "eve@example.org"},
    ],
)
def test_changing_any_hashed_column_changes_the_canonical_row(change: dict[str, object]) -> None:
    assert fmt.canonical_row(values(example_row(**change))) != fmt.canonical_row(
        values(example_row())
    )


def test_a_row_with_the_wrong_number_of_columns_is_refused() -> None:
    with pytest.raises(ValueError):
        fmt.canonical_row(values(example_row())[:-1])


def test_the_chain_hashes_each_row_with_the_hash_before_it() -> None:
    rows = [b"first", b"second", b"third"]
    h1 = hashlib.sha256(fmt.GENESIS + b"first").digest()
    h2 = hashlib.sha256(h1 + b"second").digest()
    h3 = hashlib.sha256(h2 + b"third").digest()
    assert list(fmt.chain(rows, fmt.GENESIS)) == [h1, h2, h3]
    assert list(fmt.chain(rows[1:], h1)) == [h2, h3]


def test_the_chain_of_nothing_is_empty_and_genesis_is_32_zero_bytes() -> None:
    assert list(fmt.chain([], fmt.GENESIS)) == []
    assert fmt.GENESIS == b"\x00" * 32


def test_the_chain_depends_on_row_order() -> None:
    rows = [b"a", b"b"]
    assert list(fmt.chain(rows, fmt.GENESIS))[-1] != list(fmt.chain(rows[::-1], fmt.GENESIS))[-1]


@pytest.mark.parametrize("count", [1, 4, 5, 9, 12])
def test_chaining_columns_in_slices_equals_the_chain_of_canonical_rows(count: int) -> None:
    rows = [
        example_row(position=i + 1, payload=f'{{"i":{i},"s":"é\\u001f"}}', actor=f"a{i % 2}")
        for i in range(count)
    ]
    table = as_table(rows)
    texts: list[object] = []
    for name in fmt.HASHED_COLUMNS:
        column = table[name].combine_chunks()
        if name == "recorded_at":
            column = column.cast(pa.int64())
        texts.append(column.cast(pa.string()))
    texts[fmt.HASHED_COLUMNS.index("stream_type")] = "Customer"  # one value for all rows
    texts[fmt.HASHED_COLUMNS.index("causation_id")] = pa.scalar("")
    expected = list(fmt.chain(map(fmt.canonical_row, map(values, rows)), b"\x09" * 32))
    assert fmt.chain_columns(texts, count, b"\x09" * 32, step=4).to_pylist() == expected
    assert fmt.chain_columns(texts, count, b"\x09" * 32).to_pylist() == expected
    assert fmt.chain_columns(texts, count, fmt.GENESIS).type == pa.binary(32)


def test_runs_of_shared_values_chain_like_the_rows_they_stand_for() -> None:
    rows = [example_row(position=i + 1, actor="", payload=f'{{"i":{i}}}') for i in range(6)]
    texts: list[object] = []
    for name in fmt.HASHED_COLUMNS:
        column = rows[0][name] if name in ("command_id", "correlation_id") else None
        if name == "recorded_at":
            texts.append(str((T0 - fmt.EPOCH) // timedelta(microseconds=1)))
        elif column is not None:
            texts.append(pa.scalar(column))  # a run: scalar, scalar, str, str (the last column)
        elif name in ("causation_id", "actor"):
            texts.append("")
        else:
            texts.append(pa.array([str(row[name]) for row in rows]))
    expected = list(fmt.chain(map(fmt.canonical_row, map(values, rows)), fmt.GENESIS))
    assert fmt.chain_columns(texts, 6, fmt.GENESIS, step=4).to_pylist() == expected


# Text a log accepts: any Unicode without control characters (and no surrogates, which are not
# encodable). The separator \x1f is a control character, so it never occurs in these strings.
TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=12)
ROWS = st.fixed_dictionaries(
    {
        "position": st.integers(1, 2**62),
        "stream_id": TEXT,
        "stream_type": TEXT,
        "version": st.integers(1, 2**62),
        "event_type": TEXT,
        "schema_version": st.integers(-(2**15), 2**15 - 1),
        "payload": TEXT,
        "recorded_at": st.datetimes(
            min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
        ),
        "event_id": TEXT,
        "command_id": TEXT,
        "correlation_id": TEXT,
        "causation_id": TEXT,
        "actor": TEXT,
        "hash": st.binary(min_size=32, max_size=32),
    }
)


def assert_vectorised_equals_row_by_row(rows: list[dict[str, object]]) -> None:
    table = as_table(rows)
    assert fmt.canonical_rows(table) == [fmt.canonical_row(values(row)) for row in rows]


@settings(max_examples=60, deadline=None)
@given(st.lists(ROWS, max_size=63))
def test_canonical_rows_of_a_small_table_equal_canonical_row_of_each(rows: list[dict]) -> None:
    assert_vectorised_equals_row_by_row(rows)


@settings(max_examples=40, deadline=None)
@given(st.lists(ROWS, min_size=1, max_size=12), st.integers(64, 150))
def test_canonical_rows_of_a_large_table_equal_canonical_row_of_each(
    distinct: list[dict], size: int
) -> None:
    # Cycling a few generated rows reaches the vectorised path (64 rows or more) cheaply.
    assert_vectorised_equals_row_by_row([distinct[i % len(distinct)] for i in range(size)])


def test_both_code_paths_of_canonical_rows_agree_at_the_threshold() -> None:
    rows = [example_row(position=i, stream_id=f"s-{i}", payload=f'{{"i":{i}}}') for i in range(64)]
    large = fmt.canonical_rows(as_table(rows))
    small = fmt.canonical_rows(as_table(rows[:63]))
    assert large[:63] == small
    assert large[63] == fmt.canonical_row(values(rows[63]))


def test_pre_1970_times_are_negative_microseconds_in_both_code_paths() -> None:
    before = datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)
    row = example_row(recorded_at=before)
    assert b"\x1f-1\x1f" in fmt.canonical_row(values(row))
    assert fmt.canonical_rows(as_table([row] * 64))[0] == fmt.canonical_row(values(row))
