"""Maps a pooled memory slot's whole image in before its first reset, so resets copy only dirtied pages.

When wasmtime's pooling allocator gives a slot a component's memory image, it maps the image
copy-on-write and pages come in as the instance touches them. Resetting the slot for its next
instance (the `pagemap_scan` reset, see runtime.engine) restores every page that is not a clean
page of the image file, and on the pinned build that includes the pages never touched at all: it
copies the image into them, which turns them into private pages, which every later reset of the
slot copies again. Measured on an SDK echo (14 MiB image): an instance dirties 321 pages, yet its
first reset left 1,436 private pages in the slot, and each reset after it copied all of them
(closing an instance 1.27 -> 0.47 ms CPU with the image mapped in first, a FastAPI echo's 2.38
-> 1.02 ms: benchmarks/bench_slot_reset.py).

So when making an instance took many page faults (a slot that has just been given its image:
150-580, against 0-80 on a slot already in use), the image mappings that are new since the last
look are mapped in, read-only, with `madvise(MADV_POPULATE_READ)` before that instance's slot is
reset: the untouched pages become clean pages of the image file (shared page cache, not private
memory), which no reset touches; pages already there stay as they are. It is done at close,
which the instance pool does off the request path, so a request that makes its own instance on a
new slot (the first request of an API) does not wait for it. Mapping in never changes what a
page holds, so it is safe on a slot in use; finding the mappings means reading /proc/self/maps
(~1 ms), which is why it is done only then, and not again for a second after a look that found
nothing new. A mapping is known by its address range, file offset and inode: a slot given
another image shows as a new mapping.
"""

from __future__ import annotations

import ctypes
import resource
import struct
import sys
import threading
import time

# Faults taken by making an instance on a slot just given its image: 144-255 in a process with
# several engines, ~580 alone; on a slot already holding it: 0-4, and in some runs 48-79 (pages
# of the instance's own structures, not of the image).
FRESH_SLOT_FAULTS = 128
# After a look that found no new image mapping, the next waits this long: a look reads
# /proc/self/maps (~1-6 ms), and makes that fault for other reasons must not pay it every time.
QUIET_AFTER_EMPTY_LOOK_S = 1.0
_MADV_POPULATE_READ = 22  # Linux >= 5.14
PAGE = 4096
# Private writable mappings of a memory image: wasmtime maps a precompiled file's image as it is,
# or an anonymous memfd's when the image is not page-aligned in the file.
_IMAGE_SUFFIXES = (b".cwasm",)
_IMAGE_PREFIXES = (b"memfd:wasm-memory-image",)


def thread_faults() -> int:
    """Minor page faults the calling thread has taken so far."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


class SlotImages:
    """Maps in the image mappings of memory slots that were given their image since the last look."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[tuple[int, int, bytes]] = set()
        self._quiet_until = 0.0
        self.mapped_in = 0  # image mappings mapped in so far
        self._madvise = _madvise()

    def before_reset(self, make_faults: int) -> None:
        """Called before an instance is closed, with the page faults making it took."""
        if make_faults >= FRESH_SLOT_FAULTS and self._madvise is not None and time.monotonic() >= self._quiet_until:
            if not self.map_in_new():
                self._quiet_until = time.monotonic() + QUIET_AFTER_EMPTY_LOOK_S

    def map_in_new(self) -> int:
        """Map in every image mapping not seen at the last look; returns how many."""
        if self._madvise is None:
            return 0
        with self._lock:
            mappings = image_mappings()
            new = [mapping for mapping in mappings if mapping not in self._seen]
            for start, end, _key in new:
                self._madvise(start, end - start, _MADV_POPULATE_READ)  # an error leaves it as it was
            self._seen = set(mappings)
            self.mapped_in += len(new)
            return len(new)


def image_mappings() -> list[tuple[int, int, bytes]]:
    """(start, end, offset and inode) of each private writable mapping of a memory image here."""
    with open("/proc/self/maps", "rb") as maps:
        lines = maps.read().split(b"\n")
    found = []
    for line in lines:
        if b" rw-p " not in line:
            continue
        fields = line.split(None, 5)
        if len(fields) < 6:
            continue
        path = fields[5]
        if path.endswith(_IMAGE_SUFFIXES) or path.startswith(_IMAGE_PREFIXES):
            start, end = (int(x, 16) for x in fields[0].split(b"-"))
            found.append((start, end, fields[2] + b" " + fields[4]))
    return found


def private_pages(mappings: list[tuple[int, int, bytes]]) -> int:
    """Present pages of `mappings` that are no longer the image file's own: what each reset of
    their slots copies (read off /proc/self/pagemap: present, and not file-backed)."""
    total = 0
    with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
        for start, end, _key in mappings:
            pagemap.seek(start // PAGE * 8)
            entries = pagemap.read((end - start) // PAGE * 8)
            total += sum(1 for (e,) in struct.iter_unpack("<Q", entries) if e >> 63 & 1 and not e >> 61 & 1)
    return total


def _madvise():  # noqa: ANN202
    """libc's madvise, or None where MADV_POPULATE_READ cannot be asked for (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    madvise.restype = ctypes.c_int
    return madvise
