"""pydantic-core for the guest, made from its official Pyodide wheel.

pydantic-core is Rust; PyPI has no WASI wheel of it and this machine cannot compile one. Its
Pyodide (`pyemscripten`) wheel's extension imports only CPython's C API and a few libc
functions, so componentize-py's wasi-libc CPython can load it after four repairs, each a
mechanical edit of the published binary (README, "FastAPI apps"):

1. named `*.cpython-314-wasm32-wasi.so`, the suffix componentize-py links as an extension;
2. wasm exception handling stripped with binaryen's `wasm-opt --strip-eh` (componentize-py's
   linker does not enable the proposal): a Rust panic then traps the instance, which the
   runtime reports as a sandbox error, instead of raising `PanicException`;
3. `_Unwind_RaiseException` (still imported after the strip, never reached) and
4. the clock functions, whose ids Emscripten passes as integers where wasi-libc's
   `clockid_t` is a pointer, provided by a small shim library (`SHIM_FILE`) written here in
   WebAssembly text: it maps ids 0 and 1 to wasi-libc's realtime and monotonic clocks.

binaryen comes from the npm registry (`binaryen@BINARYEN_VERSION`, run with Node.js), installed
once into a tools directory.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import wasmtime

from builder import wasm_binary
from builder.errors import BuildError, without_host_details
from builder.wheels import unpack_wheel

BINARYEN_VERSION = "132.0.0"
EXTENSION_SUFFIX = ".cpython-314-wasm32-wasi.so"
SHIM_FILE = "wasmgate_emscripten_shim.abi3.so"
_EMSCRIPTEN_SUFFIX = ".cpython-314-wasm32-emscripten.so"
# The features the extension uses, named (binaryen's --all-features writes an encoding that
# componentize-py's pre-initialization cannot read).
_FEATURES = [
    "--enable-exception-handling", "--enable-bulk-memory", "--enable-bulk-memory-opt", "--enable-mutable-globals",
    "--enable-sign-ext", "--enable-nontrapping-float-to-int", "--enable-multivalue", "--enable-reference-types",
]
_RENAMES = {
    ("env", "clock_gettime"): "wasmgate_emscripten_clock_gettime",
    ("env", "pthread_condattr_setclock"): "wasmgate_emscripten_condattr_setclock",
}
_SHIM_WAT = """
(module
  (import "env" "clock_gettime" (func $clock_gettime (param i32 i32) (result i32)))
  (import "env" "pthread_condattr_setclock" (func $setclock (param i32 i32) (result i32)))
  (import "GOT.mem" "_CLOCK_REALTIME" (global $realtime (mut i32)))
  (import "GOT.mem" "_CLOCK_MONOTONIC" (global $monotonic (mut i32)))
  ;; Emscripten's CLOCK_MONOTONIC is 1, CLOCK_REALTIME 0; wasi-libc's are addresses.
  (func $clock (param $id i32) (result i32)
    (if (result i32) (i32.eq (local.get $id) (i32.const 1))
      (then (global.get $monotonic)) (else (global.get $realtime))))
  (func (export "wasmgate_emscripten_clock_gettime") (param $id i32) (param $ts i32) (result i32)
    (call $clock_gettime (call $clock (local.get $id)) (local.get $ts)))
  (func (export "wasmgate_emscripten_condattr_setclock") (param $attr i32) (param $id i32) (result i32)
    (call $setclock (local.get $attr) (call $clock (local.get $id))))
  ;; Only a panic unwinds, and with exception handling stripped it traps before getting here.
  (func (export "_Unwind_RaiseException") (param i32) (result i32) unreachable)
)
"""


def install(wheel: Path, target: Path, tools_dir: Path) -> None:
    """Unpack the Pyodide wheel of pydantic-core into `target`, its extension repaired, with
    the shim library beside it."""
    unpack_wheel(wheel, target)
    [extension] = list((target / "pydantic_core").glob(f"*{_EMSCRIPTEN_SUFFIX}"))
    stripped = extension.with_suffix(".stripped")
    _run([*_wasm_opt(tools_dir), str(extension), *_FEATURES, "--strip-eh", "--remove-unused-module-elements",
          "-o", str(stripped)], "wasm-opt --strip-eh")
    data = wasm_binary.rename_imports(stripped.read_bytes(), _RENAMES)
    if any(module == "env" and name == "__cpp_exception" for module, name in wasm_binary.imports(data)):
        raise BuildError("repairing pydantic-core: exception handling is still imported after wasm-opt --strip-eh")
    extension.with_name(extension.name.replace(_EMSCRIPTEN_SUFFIX, EXTENSION_SUFFIX)).write_bytes(data)
    extension.unlink()
    stripped.unlink()
    (target / SHIM_FILE).write_bytes(wasm_binary.as_shared_library(wasmtime.wat2wasm(_SHIM_WAT)))


def _wasm_opt(tools_dir: Path) -> list[str]:
    """The command that runs binaryen's wasm-opt, installing binaryen from npm the first time."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise BuildError(
            "building an app that uses FastAPI or pydantic needs Node.js and npm on the builder, once, to "
            f"install binaryen {BINARYEN_VERSION} (wasm-opt) from the npm registry: install them "
            "(on Debian: apt-get install nodejs npm)",
            {"reason": "missing-tool"},
        )
    home = tools_dir / f"binaryen-{BINARYEN_VERSION}"
    script = home / "node_modules" / "binaryen" / "bin" / "wasm-opt"
    if not script.is_file():
        tools_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".binaryen-{BINARYEN_VERSION}-", dir=tools_dir))
        _run([npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--no-save",
              f"binaryen@{BINARYEN_VERSION}"], "npm install binaryen")
        shutil.rmtree(home, ignore_errors=True)
        staging.rename(home)
    return [node, str(script)]


def _run(command: list[str], what: str) -> None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} took longer than 600 s") from None
    if done.returncode != 0:
        raise BuildError(f"{what} failed", {"log": without_host_details(done.stdout + done.stderr)[-4000:]})
