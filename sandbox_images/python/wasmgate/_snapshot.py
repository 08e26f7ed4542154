"""Lists the objects of the snapshot a build takes, for the builder to make them immortal.

Every request raises and lowers the reference counts of the snapshot's objects (modules,
functions, types, strings), and CPython writes each change to the page the object is on:
that page becomes the instance's own, and resetting the instance's slot copies it back. An
immortal object's count (PEP 683) is never written. CPython offers no way from Python to make
an object immortal, so the build lists the snapshot's objects here, as (address, address of
its type) pairs, and the builder sets each count in the component's memory image
(`builder/immortal_refcounts.py`), checking each pair against the image first.

The listing keeps as little as it can (addresses are written out in chunks; nothing is
collected in a set), so that what it allocates adds little to the snapshot.
"""

from __future__ import annotations

import array
import gc
import sys

# CPython 3.14 on a 32-bit platform: a count from 2**30 up is immortal.
IMMORTAL_FROM = 1 << 30
_CHUNK = 4096
# The listing's file name, beside the guest's entry module (the builder reads and removes it:
# `sandbox_images.python.SNAPSHOT_LISTING`, the same name).
LISTING = "snapshot-objects.bin"


def write_objects(path: str) -> int:
    """Write the snapshot's mortal objects to `path`; how many. Call it after a collection:
    the objects the collector tracks, and the untracked ones they refer to (strings, numbers,
    tuples and dicts of such), each tracked one once (untracked ones may repeat)."""
    tracked = gc.get_objects()
    chunk = array.array("I")
    own = {id(tracked), id(chunk)}
    written = 0
    with open(path, "wb") as out:
        for obj in tracked:
            if id(obj) in own:
                continue
            pending = [obj]
            while pending:  # untracked objects cannot form a cycle: this ends
                current = pending.pop()
                if sys.getrefcount(current) < IMMORTAL_FROM:
                    chunk.append(id(current))
                    chunk.append(id(type(current)))
                    written += 1
                    if len(chunk) >= _CHUNK:
                        chunk.tofile(out)
                        del chunk[:]
                pending.extend(ref for ref in gc.get_referents(current) if not gc.is_tracked(ref))
        chunk.tofile(out)
    return written
