"""Durable storage: an append-only file of checksummed JSON records, made durable by fsync.

Where it sits: the one storage mechanism of both runtimes.  ``impl.runtime.free``
hands it to nodes as it is; ``impl.runtime.controlled`` wraps it so that appends
and syncs are yield points, and on a simulated crash calls ``discard_unsynced`` so
that exactly what a power cut would lose is lost, and recovery code runs for real.

On disk each record is a frame: 4-byte big-endian length, 4-byte CRC-32 of the
payload, then the payload (compact UTF-8 JSON).  A real crash can leave a torn last
frame; ``records`` stops at the first frame that is short or fails its checksum,
and the file is cut back to the last whole frame before anything is appended, so
a torn tail never hides records written after it.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distcheck.impl.runtime.api import Storage

_HEADER = struct.Struct(">II")


def encode_record(record: Mapping[str, Any]) -> bytes:
    payload = json.dumps(record, separators=(",", ":")).encode()
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def decode_records(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The whole records at the start of ``data`` and the length they occupy."""
    records: list[dict[str, Any]] = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        start = pos + _HEADER.size
        payload = data[start : start + length]
        if len(payload) < length or zlib.crc32(payload) != crc:
            break
        try:
            record = json.loads(payload)
        except ValueError:
            break
        if not isinstance(record, dict):
            break
        records.append(record)
        pos = start + length
    return records, pos


class DurableLog(Storage):
    """One append-only log file.  Not thread-safe by itself: the controlled runtime
    runs one thread at a time, and the free runtime wraps it in a lock.

    It keeps no records in memory, only where the file ends and where it ended at
    the last sync: a server appending for days holds as much memory as one that
    just started, and ``records`` (called at start, and by checks) reads the file."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path = path
        #: False: ``sync`` does not fsync (what a power cut would keep is then up to
        #: the kernel; a killed process still loses nothing it wrote)
        self.fsync = fsync
        path.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes() if path.exists() else b""
        records, whole = decode_records(data)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if whole < len(data):
            os.ftruncate(self._fd, whole)  # drop a torn tail before appending after it
            os.fsync(self._fd)
        os.lseek(self._fd, whole, os.SEEK_SET)
        self._size = self._synced_size = whole
        self._count = self._synced_count = len(records)
        self._closed_with: list[dict[str, Any]] = []

    def append(self, record: Mapping[str, Any]) -> None:
        frame = encode_record(record)
        written = os.write(self._fd, frame)
        if written != len(frame):
            raise OSError(f"short write to {self.path}: {written} of {len(frame)} bytes")
        self._size += len(frame)
        self._count += 1

    def sync(self) -> None:
        if self.fsync:
            os.fsync(self._fd)
        self._synced_size = self._size
        self._synced_count = self._count

    def records(self) -> list[dict[str, Any]]:
        """Every record appended, synced or not (what this process would read back)."""
        return self._read(self._size)

    def synced_records(self) -> list[dict[str, Any]]:
        """The records a crash now would keep."""
        return self._read(self._synced_size)

    def _read(self, size: int) -> list[dict[str, Any]]:
        if self._fd < 0:  # closed: what it held then (its file may be gone since)
            count = self._count if size == self._size else self._synced_count
            return [dict(r) for r in self._closed_with[:count]]
        data = os.pread(self._fd, size, 0)
        records, whole = decode_records(data)
        if whole != size:
            raise OSError(f"{self.path} changed under this process: {whole} of {size} bytes read back whole")
        return records

    @property
    def synced_size(self) -> int:
        """Bytes a crash now would keep: equal sizes, equal synced records."""
        return self._synced_size

    @property
    def unsynced(self) -> int:
        """How many appended records a crash now would lose."""
        return self._count - self._synced_count

    def discard_unsynced(self) -> None:
        """What a crash does to the file: everything written since the last sync is
        gone.  (A real disk may keep some of it, torn or whole; losing all of it is
        the case recovery code must survive, and the torn case is covered by the
        checksums.)"""
        os.ftruncate(self._fd, self._synced_size)
        os.lseek(self._fd, self._synced_size, os.SEEK_SET)
        self._size = self._synced_size
        self._count = self._synced_count
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            self._closed_with = self._read(self._size)
            os.close(self._fd)
            self._fd = -1


def read_log(path: Path) -> list[dict[str, Any]]:
    """The whole records of a log file, without opening it for writing."""
    if not path.exists():
        return []
    return decode_records(path.read_bytes())[0]
