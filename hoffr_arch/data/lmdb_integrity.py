"""Is an LMDB whole? Its file size against its pages, and each value against the checksum packed with it.

LMDB maps ``data.mdb`` into memory: reading a page past the end of a truncated file kills the
process with SIGBUS, which no ``try`` can catch. ``truncation`` compares the file's size with the
pages its meta page says are in use, before any value is read (``open_lmdb`` and ``verify`` call it).

``datasets_lmdb`` also writes ``checksums.txt`` inside each ``<kind>.lmdb`` folder (``<key> <crc32
hex>`` a line): beside the values, not inside them, so BasicSR's stock ``FileClient`` +
``imfrombytes`` still read every value as an image; ``verify`` compares each value with it.
"""
import zlib
from pathlib import Path

from .frame_io import DatasetError
from .meta_info import numbered_lines

CHECKSUMS = 'checksums.txt'


def checksum(value):
    """CRC-32 of a stored value, as 8 hex digits."""
    return f'{zlib.crc32(value) & 0xFFFFFFFF:08x}'


def truncation(path):
    """None if ``path/data.mdb`` holds every page LMDB says it uses, else a one-line problem."""
    import lmdb
    data = Path(path) / 'data.mdb'
    if not data.is_file():
        return f'{path}: no data.mdb (not a packed LMDB)'
    size = data.stat().st_size
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, max_readers=1)
    except lmdb.Error as err:
        return f'{data}: not a readable LMDB ({size} bytes; {err})'
    try:
        need = (env.info()['last_pgno'] + 1) * env.stat()['psize']
    finally:
        env.close()
    if size < need:
        return f'{data}: truncated: {size} bytes, its pages need {need}; pack it again'
    return None


def check_whole(path):
    """Raise ``DatasetError`` if the LMDB at ``path`` is truncated or unreadable."""
    problem = truncation(path)
    if problem:
        raise DatasetError(problem)


def read_checksums(path):
    """{key: crc32 hex} of ``path/checksums.txt``, or None for an LMDB packed without one."""
    file = Path(path) / CHECKSUMS
    if not file.exists():
        return None
    sums = {}
    for number, line, parts in numbered_lines(file):
        if len(parts) != 2:
            raise DatasetError(f'{file}:{number}: expected "<key> <crc32>", got {line!r}')
        sums[parts[0]] = parts[1]
    return sums
