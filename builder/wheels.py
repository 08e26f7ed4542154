"""Wheel files as the guest sees them: tags, metadata, hashes and unpacking.

The builder installs *pure-Python* wheels into the sandbox (CPython 3.14 on wasm32-wasi):
a wheel qualifies when one of its tags is ``{py3x,py3,cp314}-none-any``. A few projects
publish only platform wheels although their native code is an optional speed-up beside a
pure-Python implementation that does the same (``OPTIONAL_NATIVE``): a CPython 3.14 wheel
of theirs, for any platform, qualifies too, and is unpacked without its extension modules.
This module knows how to tell whether a wheel file qualifies, how to read its core
metadata (name, version, Requires-Dist, Requires-Python, Provides-Extra) straight from
the archive, how to hash it, and how to unpack it into a directory that goes on the
guest's ``sys.path``. It never resolves anything; :mod:`builder.requirements` does.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from typing import BinaryIO

from installer import install
from installer.destinations import SchemeDictionaryDestination
from installer.records import RecordEntry
from installer.sources import WheelFile
from installer.utils import Scheme
from packaging.tags import Tag, compatible_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

GUEST_PYTHON = (3, 14)
GUEST_PYTHON_VERSION = Version("3.14.0")
SANDBOX_DESCRIPTION = "CPython 3.14 on wasm32-wasi"

# Best first, the way an installer on the guest would rank them. A pure wheel has
# abi "none" and platform "any"; cp314-none-any is pure too (CPython-only Python code).
GUEST_WHEEL_TAGS: tuple[Tag, ...] = tuple(
    dict.fromkeys(
        compatible_tags(python_version=GUEST_PYTHON, interpreter="cp314", platforms=["any"])
    )
)
_TAG_RANK = {tag: rank for rank, tag in enumerate(GUEST_WHEEL_TAGS)}
_SITE_SCHEMES = ("purelib", "platlib")

# Projects whose compiled extension is only a faster copy of Python code they ship too, and
# which fall back to it when the extension does not import: name -> the fallback.
OPTIONAL_NATIVE: dict[str, str] = {
    "markupsafe": "markupsafe._native instead of markupsafe._speedups",
    "pyyaml": "yaml's pure-Python loaders and dumpers instead of yaml._yaml (libyaml)",
    "msgpack": "msgpack.fallback instead of msgpack._cmsgpack",
}
_EXTENSION_SUFFIXES = (".so", ".pyd", ".dylib")


@dataclass(frozen=True)
class WheelName:
    """What a wheel's file name says about it."""

    name: NormalizedName
    version: Version
    tags: frozenset[Tag]
    filename: str

    @property
    def is_pure_for_guest(self) -> bool:
        return any(tag in _TAG_RANK for tag in self.tags)

    @property
    def native_is_optional(self) -> bool:
        """A CPython 3.14 platform wheel of a project whose native code is optional
        (``OPTIONAL_NATIVE``): usable, without its extension modules."""
        return self.name in OPTIONAL_NATIVE and any(
            tag.interpreter == "cp314" and tag.abi in ("cp314", "abi3") for tag in self.tags
        )

    @property
    def is_usable_by_guest(self) -> bool:
        return self.is_pure_for_guest or self.native_is_optional

    @property
    def is_platform_specific(self) -> bool:
        """True when every tag names an ABI or a platform: it carries compiled code."""
        return all(tag.abi != "none" or tag.platform != "any" for tag in self.tags)

    @property
    def guest_rank(self) -> int:
        """Lower is better (a pure wheel before one whose native code is left out); only
        meaningful when :attr:`is_usable_by_guest`."""
        return min((_TAG_RANK[tag] for tag in self.tags if tag in _TAG_RANK), default=len(_TAG_RANK))


@dataclass(frozen=True)
class WheelMetadata:
    """The parts of a wheel's ``METADATA`` that resolution needs."""

    name: str
    version: str
    requires_dist: tuple[str, ...]
    requires_python: str | None
    provides_extra: tuple[str, ...]


class WheelError(Exception):
    """A wheel file is malformed, corrupt, or cannot be unpacked where asked."""


def parse_wheel_name(filename: str) -> WheelName | None:
    """Parse a wheel file name; ``None`` if ``filename`` is not a valid wheel name."""
    try:
        name, version, _build, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    return WheelName(name=name, version=version, tags=frozenset(tags), filename=filename)


def parse_sdist_name(filename: str) -> tuple[NormalizedName, Version] | None:
    """Parse a source distribution file name; ``None`` if it is not one."""
    try:
        return parse_sdist_filename(filename)
    except InvalidSdistFilename:
        return None


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_wheel_metadata(path: Path) -> WheelMetadata:
    """Read core metadata from the ``*.dist-info/METADATA`` inside a wheel file."""
    try:
        with WheelFile.open(path) as wheel:
            text = wheel.read_dist_info("METADATA")
    except Exception as error:  # OSError, zipfile.BadZipFile, KeyError, installer's errors
        raise WheelError(f"cannot read METADATA from {path.name}: {error}") from error
    headers = HeaderParser().parsestr(text)
    return WheelMetadata(
        name=headers.get("Name", ""),
        version=headers.get("Version", ""),
        requires_dist=tuple(headers.get_all("Requires-Dist") or ()),
        requires_python=headers.get("Requires-Python"),
        provides_extra=tuple(headers.get_all("Provides-Extra") or ()),
    )


class _SitePackagesDestination(SchemeDictionaryDestination):
    """Writes only what belongs on ``sys.path``: purelib and platlib files.

    Console scripts, ``.data/scripts``, ``.data/headers`` and ``.data/data`` have no
    use inside the sandbox and are dropped (and left out of the installed RECORD), and so
    are extension modules when ``drop_native`` (they cannot load in the guest).
    No bytecode is compiled, so no ``__pycache__`` is written.
    """

    def __init__(self, *args, drop_native: bool = False, **kwargs) -> None:  # noqa: ANN002,ANN003
        super().__init__(*args, **kwargs)
        self.drop_native = drop_native

    def write_script(self, name: str, module: str, attr: str, section: str) -> RecordEntry:
        return RecordEntry(name, None, None)

    def write_file(
        self, scheme: Scheme, path: str | os.PathLike[str], stream: BinaryIO, is_executable: bool
    ) -> RecordEntry:
        if scheme not in _SITE_SCHEMES or self._dropped(os.fspath(path)):
            return RecordEntry(os.fspath(path), None, None)
        return super().write_file(scheme, path, stream, is_executable)

    def _dropped(self, path: str) -> bool:
        return self.drop_native and path.endswith(_EXTENSION_SUFFIXES)

    def finalize_installation(self, scheme, record_file_path, records) -> None:  # type: ignore[override]
        kept = [(file_scheme, record) for file_scheme, record in records
                if file_scheme in _SITE_SCHEMES and not self._dropped(record.path)]
        super().finalize_installation(scheme, record_file_path, kept)


def unpack_wheel(path: Path, target: Path, drop_native: bool = False) -> None:
    """Unpack one wheel's importable contents into ``target`` (checked against its RECORD),
    without its extension modules if ``drop_native``."""
    target_dir = str(target)
    destination = _SitePackagesDestination(
        scheme_dict={scheme: target_dir for scheme in ("purelib", "platlib", "scripts", "headers", "data")},
        interpreter="python3",
        script_kind="posix",
        drop_native=drop_native,
    )
    try:
        with WheelFile.open(path) as wheel:
            wheel.validate_record(validate_contents=True)
            install(wheel, destination, {"INSTALLER": b"wasmgate\n"})
    except FileExistsError as error:
        raise WheelError(
            f"cannot install {path.name}: {error}; another wheel (or something already in "
            f"{target}) provides the same file"
        ) from error
    except Exception as error:  # zipfile.BadZipFile, installer validation errors, ValueError
        raise WheelError(f"cannot install {path.name}: {error}") from error
