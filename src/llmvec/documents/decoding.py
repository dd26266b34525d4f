"""A text file's characters: strict decoding, the byte order mark removed, binary files refused."""

from __future__ import annotations

from llmvec.documents.records import Unreadable

#: A NUL byte in this many first bytes makes a file binary.
BINARY_SNIFF_BYTES = 8192


def read_text(path: str, encoding: str = "utf-8") -> str:
    """The file decoded strictly with ``encoding`` (a leading BOM removed). :class:`Unreadable`
    for a binary file (a NUL byte in its first 8 KiB, unless ``encoding`` writes NUL bytes
    itself, as UTF-16 and UTF-32 do) or one that does not decode; ``OSError`` if it cannot be
    read; ``LookupError`` for an unknown encoding."""
    nul_means_binary = b"\0" not in "\n".encode(encoding)
    with open(path, "rb") as file:
        data = file.read(BINARY_SNIFF_BYTES)
        if nul_means_binary and b"\0" in data:
            raise Unreadable(f"binary file: NUL byte at offset {data.index(0)}")
        data += file.read()
    try:
        return data.decode(encoding).removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        bad = f"invalid byte 0x{data[error.start]:02x} at offset {error.start}"
        raise Unreadable(f"not {encoding} text: {bad}; pass encoding= to read it") from None
