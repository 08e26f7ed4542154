"""The FastAPI layer: real FastAPI, Starlette and pydantic 2 for apps that import them.

An app whose source imports `fastapi`, `starlette` or `pydantic` (or whose requirements name
one of the packages below) gets this layer on its python path, beside its own dependencies.
The versions are pinned, with the sha256 of each wheel: the guest's behaviour is exactly that
of these releases, and the bundle hash covers them. All are pure Python but pydantic-core,
which comes from its Pyodide wheel, repaired (`builder.pydantic_core_wasi`).

The layer is built once per bundle store, into `<store>/layers/fastapi-<digest>/`, from the
package index through pip (pip's configuration decides which index), and reused by every
build after.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from email.parser import HeaderParser
from pathlib import Path
from typing import Callable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from builder import pydantic_core_wasi
from builder.errors import BuildError, without_host_details
from builder.requirements import parse_requirement_line
from builder.wheels import sha256_of, unpack_wheel

RECIPE = 1  # bump when the way the layer is made changes
# name: (version, wheel file, sha256 of the wheel)
PACKAGES: dict[str, tuple[str, str, str]] = {
    "fastapi": ("0.165.0", "fastapi-0.165.0-py3-none-any.whl",
                "896f48462042bb4f162147eb8fac7e858753dc1f486765709baf105d70e4fc5b"),
    "starlette": ("1.10.0", "starlette-1.10.0-py3-none-any.whl",
                  "478c0ab3b4ced6e82719849c118fa406f0278a3499c1a898cd15cd31bdc38ce4"),
    "pydantic": ("2.14.4", "pydantic-2.14.4-py3-none-any.whl",
                 "653a2ad9f6d8858529c77c72717d0ea991d6c6837fe683246b2f4b2bbfc3fadc"),
    "pydantic-core": ("2.50.5", "pydantic_core-2.50.5-cp314-cp314-pyemscripten_2026_0_wasm32.whl",
                      "b2910ec0fa5aeb9bef70156f2b79f4783978fdcfaa7b2f1b5d1814458d2e79a1"),
    "anyio": ("4.16.0", "anyio-4.16.0-py3-none-any.whl",
              "c66ae634e0b8228396b801741beb3294326d4b6102f7bba4041c0dfb58c29026"),
    "idna": ("3.20", "idna-3.20-py3-none-any.whl",
             "ab7ae7122974553370f0bdb919e1a960b2cd1bc1ef0276416d896db81c14582c"),
    "typing-extensions": ("4.16.0", "typing_extensions-4.16.0-py3-none-any.whl",
                          "481caa481374e813c1b176ada14e97f1f67a4539ce9cfeb3f350d78d6370c2e8"),
    "typing-inspection": ("0.4.5", "typing_inspection-0.4.5-py3-none-any.whl",
                          "bc210535442b39e1bf2805e0c7a17dfd6a4ace760c84c7f7d16245d23a6b1c39"),
    "annotated-types": ("0.8.0", "annotated_types-0.8.0-py3-none-any.whl",
                        "f072f4d804ea359e4eaf198b1af7a8b0943881a87f31bb764f8bf219bb9419e0"),
    "annotated-doc": ("0.0.7", "annotated_doc-0.0.7-py3-none-any.whl",
                      "6bc31bbbec6dfaaedc1676dbc11dbda96fe22a2b5c400e9ebad113fec44a9dc6"),
    "opentelemetry-api": ("1.45.2", "opentelemetry_api-1.45.2-py3-none-any.whl",
                          "2cbd737377e710ee740d261c94e93fa0f08e6d037c18f17513cc0a2d94479a34"),
    "python-multipart": ("0.0.34", "python_multipart-0.0.34-py3-none-any.whl",
                         "ebacd224bd686eee2f9aa1066a657affe07435a185834e05e5235e2e59173e91"),
}
# What only the layer can give an app (pydantic-core is native): a requirement of any of them,
# direct or through another package, brings the whole layer; the layer's other packages
# (anyio, idna...) are its own dependencies, which an app without it vendors as usual.
FRAMEWORK = ("fastapi", "starlette", "pydantic", "pydantic-core")
# Their extras are not installed (see `split_requirements`).
_EXTRAS_NOT_INSTALLED = frozenset({"fastapi"})
# Importing any of these top-level modules asks for the layer.
TRIGGER_MODULES = frozenset({"fastapi", "starlette", "pydantic", "pydantic_core"})
_PYODIDE_PLATFORM = ["--platform", "pyemscripten_2026_0_wasm32", "--implementation", "cp", "--abi", "cp314"]
_MARKER = ".complete"
# CPython 3.11 keeps the AST constructor's recursion depth in state shared by all threads:
# two builds parsing at once fail with "SystemError: AST constructor recursion depth
# mismatch" (python/cpython#106905).
_AST_LOCK = threading.Lock()
Log = Callable[[str], None]


def digest() -> str:
    """What the layer is made of: enters the hash of every bundle that uses it."""
    recipe = {"recipe": RECIPE, "packages": PACKAGES, "binaryen": pydantic_core_wasi.BINARYEN_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def wanted(sources: dict[str, bytes]) -> bool:
    """Whether any Python file of the app imports FastAPI, Starlette or pydantic."""
    for name, data in sources.items():
        if not name.endswith(".py"):
            continue
        try:
            with _AST_LOCK:
                tree = ast.parse(data)
        except (SyntaxError, ValueError):
            continue  # the build reports it, with its line, when the module is imported
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            if any(name.split(".", 1)[0] in TRIGGER_MODULES for name in names):
                return True
    return False


def split_requirements(lines: list[str], log: Log) -> tuple[list[str], bool]:
    """The requirement lines the resolver still has to satisfy, and whether any named a
    package the layer provides (those lines are dropped: the sandbox's release is used, except
    that one with extras, such as `pydantic[email]`, stays for what its extras add). A
    specifier the provided release does not satisfy is a BuildError naming both. FastAPI's
    own extras (`fastapi[standard]`) are not installed: they bring the server and command-line
    tools the sandbox replaces (uvicorn with native uvloop, fastapi-cli)."""
    kept, provided = [], False
    for number, line in enumerate(lines, 1):
        try:
            parsed = parse_requirement_line(number, line)
        except Exception:
            parsed = None  # the resolver reports it, with its line
        name = canonicalize_name(parsed.requirement.name) if parsed is not None else None
        if name not in PACKAGES:
            kept.append(line)
            continue
        version = PACKAGES[name][0]
        if not parsed.requirement.specifier.contains(version, prereleases=True):
            raise BuildError(
                f"requirements line {number}: {line.strip()!r} cannot be met: the sandbox provides "
                f"{name} {version} (the only release of it an app can use)",
                {"reason": "provided-package", "package": name, "provided": version, "line": number},
            )
        log(f"  {name}: provided by the sandbox ({name} {version})")
        provided = True
        extras = sorted(parsed.requirement.extras)
        if extras and name in _EXTRAS_NOT_INSTALLED:
            log(f"  {name}[{','.join(extras)}]: not installed: its extras bring the server and tools the sandbox "
                "replaces; name a library you use from them (jinja2, email-validator...) on a line of its own")
        elif extras:
            kept.append(line)  # the resolver takes the release as provided and adds what the extras need
    return kept, provided


def provided(whole_layer: bool) -> dict[str, str]:
    """The packages a resolution takes as installed, name -> release: the whole layer when
    the app uses it, else only the framework (whose use brings the layer)."""
    return {name: version for name, (version, _f, _s) in PACKAGES.items() if whole_layer or name in FRAMEWORK}


def extras_of(root: Path, log: Log) -> Callable[[str], tuple[tuple[str, ...], tuple[str, ...]]]:
    """What each provided package's extras add (its Requires-Dist lines with an `extra` marker)
    and the extras it declares, read from the layer's metadata (the layer is made on first
    use): for `builder.requirements.Provided`."""
    known: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def of(name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        if name not in known:
            known[name] = _extras_in(ensure(root, log), name)
        return known[name]

    return of


def _extras_in(layer: Path, name: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    for info in layer.glob("*.dist-info"):
        if canonicalize_name(info.name.split("-", 1)[0]) != name:  # {name}-{version}.dist-info
            continue
        headers = HeaderParser().parsestr((info / "METADATA").read_text(encoding="utf-8"))
        declared = tuple(headers.get_all("Provides-Extra") or ())
        if name in _EXTRAS_NOT_INSTALLED:
            return (), declared
        added = tuple(line for line in headers.get_all("Requires-Dist") or () if _names_an_extra(line))
        return added, declared
    return (), ()


def _names_an_extra(line: str) -> bool:
    try:
        marker = Requirement(line).marker
    except InvalidRequirement:
        return False
    return marker is not None and "extra" in str(marker)


def ensure(root: Path, log: Log) -> Path:
    """The layer's directory under `root` (a bundle store), built the first time."""
    target = root / "layers" / f"fastapi-{digest()[:16]}"
    if (target / _MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:  # one build prepares it; the others wait
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / _MARKER).is_file():
            log("preparing the sandbox's FastAPI layer (once per store: FastAPI, Starlette, pydantic 2)")
            _prepare(root, target)
    return target


def _prepare(root: Path, target: Path) -> None:
    staging = Path(tempfile.mkdtemp(prefix=".fastapi-", dir=target.parent))
    try:
        wheels = staging / "wheels"
        site = staging / "site"
        _download(wheels)
        for name, (_version, filename, _sha) in sorted(PACKAGES.items()):
            if name == "pydantic-core":
                pydantic_core_wasi.install(wheels / filename, site, root / "tools")
            else:
                unpack_wheel(wheels / filename, site)
        shutil.rmtree(wheels)
        (site / _MARKER).write_text(digest() + "\n")
        shutil.rmtree(target, ignore_errors=True)  # a half-made one, from a build that was killed
        os.rename(site, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download(into: Path) -> None:
    pure = [f"{name}=={version}" for name, (version, _f, _s) in PACKAGES.items() if name != "pydantic-core"]
    base = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
            "--python-version", "3.14", "--dest", str(into)]
    _pip(base + pure)
    _pip(base + _PYODIDE_PLATFORM + [f"pydantic-core=={PACKAGES['pydantic-core'][0]}"])
    for name, (version, filename, sha256) in PACKAGES.items():
        path = into / filename
        if not path.is_file():
            raise BuildError(f"preparing the FastAPI layer: pip did not fetch {filename}")
        if sha256_of(path) != sha256:
            raise BuildError(
                f"preparing the FastAPI layer: {filename} from the index does not match its pinned sha256",
                {"reason": "hash-mismatch", "package": name, "version": version},
            )


def _pip(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PIP_REQUIRE_VIRTUALENV"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    except subprocess.TimeoutExpired:
        raise BuildError("preparing the FastAPI layer: pip download took longer than 600 s") from None
    if done.returncode != 0:
        raise BuildError(
            "preparing the FastAPI layer: pip could not download its wheels",
            {"log": without_host_details(done.stdout + done.stderr)[-4000:]},
        )
