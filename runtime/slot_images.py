"""Maps a pooled memory slot's whole image in before its first reset, so resets copy only dirtied pages.

When wasmtime's pooling allocator gives a slot a component's memory image, it maps the image
copy-on-write and pages come in as the instance touches them. Resetting the slot for its next
instance (the `pagemap_scan` reset, see runtime.engine) restores every page that is not a clean
page of the image file, and on the pinned build that includes the pages never touched at all: it
copies the image into them, which turns them into private pages, which every later reset of the
slot copies again. Measured on an SDK echo (14 MiB image): an instance dirties 321 pages, yet its
first reset left 1,436 private pages in the slot, and each reset after it copied all of them
(closing an instance 0.8 -> 0.37 ms with the image mapped in first).

So when making an instance took page faults (a slot that has just been given its image: ~580
faults, against none on a slot already in use), every slot's image mapping is mapped in,
read-only, with `madvise(MADV_POPULATE_READ)`: its untouched pages become clean pages of the
image file (shared page cache, not private memory), which no reset touches, and pages already
there stay as they are. Mapping in never changes what a page holds, so it is safe on a slot in
use; finding the mappings means reading /proc/self/maps (~1 ms), which is why it is done only
then.
"""

from __future__ import annotations

import ctypes
import resource
import sys
import threading

# Faults taken by making an instance on a slot that already holds its image: 0-4 measured; on a
# slot just given one: ~580.
FRESH_SLOT_FAULTS = 32
_MADV_POPULATE_READ = 22  # Linux >= 5.14
# Private writable mappings of a memory image: wasmtime maps a precompiled file's image as it is,
# or an anonymous memfd's when the image is not page-aligned in the file.
_IMAGE_SUFFIXES = (b".cwasm",)
_IMAGE_PREFIXES = (b"memfd:wasm-memory-image",)


def thread_faults() -> int:
    """Minor page faults the calling thread has taken so far."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


class SlotImages:
    """Maps in the memory slots' image mappings when a slot has just been given its image."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.populations = 0  # times the mappings were mapped in
        self._madvise = _madvise()

    @property
    def enabled(self) -> bool:
        return self._madvise is not None

    def after_make(self, faults: int) -> None:
        """Called with the faults making an instance took; maps in new slot images if many."""
        if faults >= FRESH_SLOT_FAULTS and self._madvise is not None:
            self.populate()

    def populate(self) -> int:
        """Map in every slot's image mapping; returns how many there are."""
        if self._madvise is None:
            return 0
        with self._lock:
            mappings = _image_mappings()
            for start, end in mappings:
                self._madvise(start, end - start, _MADV_POPULATE_READ)  # an error leaves it as it was
            self.populations += 1
            return len(mappings)


def _image_mappings() -> list[tuple[int, int]]:
    """(start, end) of each private writable mapping of a memory image in this process."""
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
            found.append((start, end))
    return found


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
