"""The Python sandbox image: WIT world, guest SDK (`wasmgate`) and the componentize-py entry module.

Host code uses this package only to find these files; nothing here is imported by the host
except these path helpers.
"""

from pathlib import Path

ROOT = Path(__file__).parent
WIT_DIR = ROOT / "wit"
WORLD = "api"
SDK_DIR = ROOT / "wasmgate"
ENTRY_FILE = ROOT / "guest_entry.py"
ENTRY_MODULE = "guest_entry"
# The generated module through which the entry finds the author's code.
TARGET_MODULE = "wasmgate_target"
# The file the entry module lists the snapshot's objects in, beside itself, for the builder
# (`wasmgate._snapshot.LISTING`, the same name).
SNAPSHOT_LISTING = "snapshot-objects.bin"
# The method of the builder's request that loads the app into an instance of a base
# (guest_entry.INIT_METHOD, the same name).
INIT_METHOD = "WASMGATE-INIT"
