"""The page headers of a Parquet column chunk, read without decoding any page.

A checkpoint's footer says how its columns are stored, but each page repeats that in a
header of its own, and Arrow decodes a page by its header. A crafted file could declare
plain, uncompressed pages in its footer and then hold a dictionary page or compressed
pages. :func:`check_pages` reads every page header of a column chunk (Thrift's compact
encoding, as the Parquet format specifies: https://github.com/apache/parquet-format,
``src/main/thrift/parquet.thrift``) and refuses anything the checkpoint writer never
produces, before Arrow decodes the chunk.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PageError", "check_pages", "read_struct"]

#: PageType values (parquet.thrift).
DATA_PAGE, DICTIONARY_PAGE, DATA_PAGE_V2 = 0, 2, 3
#: Encoding values: PLAIN for values, RLE for levels.
PLAIN, RLE = 0, 3
#: A page header is a few dozen bytes plus its statistics (short strings in checkpoints):
#: this much is read first, and up to ``MAX_HEADER_BYTES`` when it does not hold the header.
HEADER_BYTES = 256
MAX_HEADER_BYTES = 64 << 10
_MAX_DEPTH = 8


class PageError(ValueError):
    """A page header that the checkpoint writer does not produce, or that cannot be read."""


class _Truncated(PageError):
    """The bytes read end inside the header."""


class _Reader:
    """Thrift compact protocol, enough of it to read (and skip through) a struct."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        try:
            b = self.data[self.pos]
        except IndexError:
            raise _Truncated("page header runs past its bytes") from None
        self.pos += 1
        return b

    def varint(self) -> int:
        data, pos, shift, result = self.data, self.pos, 0, 0
        while shift <= 63:
            try:
                b = data[pos]
            except IndexError:
                raise _Truncated("page header runs past its bytes") from None
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                self.pos = pos
                return result
            shift += 7
        raise PageError("varint too long in a page header")

    def skip(self, n: int) -> None:
        self.pos += n
        if self.pos > len(self.data):
            raise _Truncated("page header runs past its bytes")

    def size(self, n: int) -> int:
        """A collection's size: every element takes a byte or more, so never more than the bytes left."""
        if n > len(self.data) - self.pos:
            raise _Truncated("a collection in a page header runs past its bytes")
        return n

    def element(self, kind: int, depth: int) -> Any:
        """One element of a list, set or map (there a boolean is a byte of its own)."""
        return self.byte() == 1 if kind in (1, 2) else self.value(kind, depth + 1)

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int, depth: int) -> Any:
        if kind in (1, 2):  # a field's boolean is in its header
            return kind == 1
        if kind == 3:
            return self.byte()
        if kind in (4, 5, 6):
            return self.zigzag()
        if kind in (7, 8):  # a double, or a length and that many bytes: skipped
            self.skip(8 if kind == 7 else self.varint())
            return None
        if kind in (9, 10):
            head = self.byte()
            size = self.size(head >> 4 if head >> 4 != 15 else self.varint())
            return [self.element(head & 0x0F, depth) for _ in range(size)]
        if kind == 11:
            size = self.size(self.varint())
            types = self.byte() if size else 0
            for _ in range(size):
                self.element(types >> 4, depth)
                self.element(types & 0x0F, depth)
            return None
        if kind == 12:
            return self.struct(depth + 1)
        raise PageError(f"unknown Thrift type {kind} in a page header")

    def struct(self, depth: int = 0) -> dict[int, Any]:
        if depth > _MAX_DEPTH:
            raise PageError("page header nested too deep")
        fields: dict[int, Any] = {}
        last = 0
        while True:
            head = self.byte()
            kind = head & 0x0F
            if kind == 0:
                return fields
            delta = head >> 4
            last = last + delta if delta else self.zigzag()
            fields[last] = self.value(kind, depth)


def read_struct(data: bytes) -> tuple[dict[int, Any], int]:
    """A Thrift compact struct at the start of ``data`` as ``{field id: value}``, and its length."""
    reader = _Reader(data)
    return reader.struct(), reader.pos


def check_pages(read_at: Any, start: int, length: int, num_values: int) -> None:
    """Check every page header of the column chunk at ``start`` (``length`` bytes, ``num_values`` values).

    ``read_at(nbytes, offset)`` returns the file's bytes there. Each page must be a
    version-1 data page, uncompressed (its two sizes equal), its values ``PLAIN`` and its
    levels ``RLE``; the pages must fill the chunk exactly and hold ``num_values`` values
    in all. Raises :class:`PageError` naming what is wrong.
    """
    position, end, values = start, start + length, 0
    while position < end:
        try:
            header, size = read_struct(read_at(min(HEADER_BYTES, end - position), position))
        except _Truncated:
            header, size = read_struct(read_at(min(MAX_HEADER_BYTES, end - position), position))
        page_type, uncompressed, compressed = header.get(1), header.get(2), header.get(3)
        if page_type != DATA_PAGE:
            raise PageError(f"page at byte {position} is of type {page_type}; checkpoints hold plain data pages only")
        if not isinstance(compressed, int) or compressed < 0 or compressed != uncompressed:
            raise PageError(f"page at byte {position} is compressed ({compressed} stored, {uncompressed} uncompressed bytes)")
        data = header.get(5)
        if not isinstance(data, dict) or data.get(2) != PLAIN or data.get(3) != RLE or data.get(4) != RLE:
            raise PageError(f"page at byte {position} is not PLAIN with RLE levels")
        count = data.get(1)
        if not isinstance(count, int) or count < 0:
            raise PageError(f"page at byte {position} declares {count!r} values")
        values += count
        position += size + compressed
    if position != end or values != num_values:
        raise PageError(f"the pages hold {values} values in {position - start} bytes; the footer says {num_values} in {length}")
