"""Where the guest's wheels come from: an offline wheelhouse directory, or the package index via pip.

A source lists, for one project, the wheels the guest can load (pure Python, see
:mod:`builder.wheels`, with a Requires-Python that admits 3.14) that satisfy a
specifier, newest first, reading each one's core metadata on demand; fetches the
chosen files; and, when no wheel fits a :class:`~builder.requirement_errors.Demand`,
says why.

The index is only ever read through pip (a subprocess, with the guest's wheel tags),
so pip's own configuration decides which indexes and find-links are used; ``index_url``
replaces the primary index exactly as pip's ``--index-url`` does. ``pip install
--dry-run --no-deps --report`` picks files and reads their metadata (only the metadata
file where the index serves one, PEP 658), many projects per call when warming up
(:meth:`IndexSource.prefetch`); ``pip index versions`` lists a project's versions when
the newest one does not fit. pip writes only inside the given work directory.

:class:`ProvidedSource` wraps either for the packages the sandbox provides (the FastAPI
layer): those resolve to their one provided release, which is never fetched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from builder.errors import without_host_details
from builder.requirement_errors import (
    Demand,
    RequirementsError,
    native_error,
    no_match_error,
    not_found_error,
    provided_error,
    python_version_error,
    source_only_error,
)
from builder.wheels import (
    GUEST_PYTHON_VERSION,
    OPTIONAL_NATIVE,
    WheelError,
    WheelName,
    parse_sdist_name,
    parse_wheel_name,
    read_wheel_metadata,
    sha256_of,
)

# pip options that select wheels the guest can load: pure Python, any platform.
_GUEST_PIP_TARGET = [
    "--only-binary=:all:",
    "--platform", "any",
    "--implementation", "py",
    "--abi", "none",
    "--python-version", "3.14",
]
# For a project whose native code is optional (wheels.OPTIONAL_NATIVE): its CPython 3.14 wheel
# for one fixed platform (any would do: the extension modules are left out), or a pure one.
_OPTIONAL_NATIVE_PIP_TARGET = [
    "--only-binary=:all:",
    "--platform", "manylinux2014_x86_64",
    "--platform", "any",
    "--implementation", "cp",
    "--abi", "cp314",
    "--abi", "abi3",
    "--abi", "none",
    "--python-version", "3.14",
]


def _pip_target(name: str) -> list[str]:
    return _OPTIONAL_NATIVE_PIP_TARGET if name in OPTIONAL_NATIVE else _GUEST_PIP_TARGET


@dataclass(frozen=True)
class Wheel:
    """One wheel file that could be locked, with the metadata resolution needs."""

    name: NormalizedName
    version: Version
    filename: str
    requires_dist: tuple[str, ...]
    provides_extra: tuple[str, ...]
    requires_python: str | None
    sha256: str | None  # as announced by the index / computed from the wheelhouse file
    location: str  # wheelhouse path or index URL


class PackageSource(Protocol):
    """What resolution asks of a wheelhouse or an index."""

    def candidates(self, name: NormalizedName, specifier: SpecifierSet, excluded: set[Version]) -> Iterator[Wheel]:
        """The best guest wheel of each version that satisfies specifier (and is not excluded), newest first."""

    def prefetch(self, wanted: dict[NormalizedName, SpecifierSet]) -> dict[NormalizedName, Wheel]:
        """The newest guest wheel of each name that satisfies its specifier, where looking many up at
        once saves time (best effort; the wheelhouse does not bother)."""

    def explain(self, demand: Demand) -> RequirementsError:
        """Why no guest wheel satisfies the demand: not found, no matching version, native-only..."""

    def fetch(self, wheels: list[Wheel], staging: Path) -> None:
        """Put each wheel's file into staging, under its file name."""

    def newest_version(self, name: str) -> Version | None:
        """Newest release of any file type, for the "an older release was picked" warning (best effort)."""


def _supports_guest_python(requires_python: str | None) -> bool:
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(GUEST_PYTHON_VERSION, prereleases=True)
    except InvalidSpecifier:
        return True  # pip ignores unparsable Requires-Python too


def _newest_first(
    versions: list[Version], pick: Callable[[Version], Wheel | None], specifier: SpecifierSet, excluded: set[Version]
) -> Iterator[Wheel]:
    """Walk a newest-first version listing; prereleases only if the specifier asks (or nothing else fits)."""
    allowed = set(specifier.filter(versions))
    for version in versions:
        if version in allowed and version not in excluded and (wheel := pick(version)) is not None:
            yield wheel


class WheelhouseSource:
    """Wheels from a local directory; never runs pip, never touches the network."""

    def __init__(self, wheelhouse: Path):
        if not wheelhouse.is_dir():
            raise RequirementsError(f"wheelhouse {wheelhouse} is not a directory", {"reason": "no-wheelhouse"})
        self.root = wheelhouse
        self.where = f"in the wheelhouse {wheelhouse}"
        self.wheels: dict[str, list[WheelName]] = {}
        self.sdists: dict[str, list[Version]] = {}
        self._picked: dict[tuple[str, Version], Wheel | None] = {}
        for path in sorted(entry for entry in wheelhouse.iterdir() if entry.is_file()):
            if (wheel := parse_wheel_name(path.name)) is not None:
                self.wheels.setdefault(wheel.name, []).append(wheel)
            elif (sdist := parse_sdist_name(path.name)) is not None:
                self.sdists.setdefault(sdist[0], []).append(sdist[1])

    def candidates(self, name: NormalizedName, specifier: SpecifierSet, excluded: set[Version]) -> Iterator[Wheel]:
        usable = {wheel.version for wheel in self.wheels.get(name, []) if wheel.is_usable_by_guest}
        versions = sorted(usable, reverse=True)
        return _newest_first(versions, partial(self._pick, name), specifier, excluded)

    def prefetch(self, wanted: dict[NormalizedName, SpecifierSet]) -> dict[NormalizedName, Wheel]:
        return {}  # reading a local wheel is cheap: nothing to gain

    def _pick(self, name: NormalizedName, version: Version) -> Wheel | None:
        if (name, version) not in self._picked:
            ranked = sorted(
                (w for w in self.wheels.get(name, []) if w.is_usable_by_guest and w.version == version),
                key=lambda w: (w.guest_rank, w.filename),
            )
            supported = (wheel for wheel in map(self._read, ranked) if _supports_guest_python(wheel.requires_python))
            self._picked[name, version] = next(supported, None)
        return self._picked[name, version]

    def _read(self, wheel: WheelName) -> Wheel:
        path = self.root / wheel.filename
        try:
            metadata = read_wheel_metadata(path)
        except WheelError as error:
            raise RequirementsError(str(error), {"reason": "bad-wheel", "filename": wheel.filename}) from error
        return Wheel(
            name=wheel.name,
            version=wheel.version,
            filename=wheel.filename,
            requires_dist=metadata.requires_dist,
            provides_extra=metadata.provides_extra,
            requires_python=metadata.requires_python,
            sha256=sha256_of(path),
            location=str(path),
        )

    def explain(self, demand: Demand) -> RequirementsError:
        wheels = self.wheels.get(demand.name, [])
        available = [wheel.version for wheel in wheels] + self.sdists.get(demand.name, [])
        if not available:
            return not_found_error(demand, self.where)
        matching = set(demand.specifier.filter(set(available)))
        if not matching:
            return no_match_error(demand, available)
        matching_wheels = [wheel for wheel in wheels if wheel.version in matching]
        portable = [wheel for wheel in matching_wheels if not wheel.is_platform_specific]
        if portable:
            newest = max(portable, key=lambda wheel: wheel.version)
            return python_version_error(demand, newest.filename, self._read(newest).requires_python)
        if matching_wheels:
            return native_error(demand)
        return source_only_error(demand)

    def fetch(self, wheels: list[Wheel], staging: Path) -> None:
        for wheel in wheels:
            shutil.copyfile(wheel.location, staging / wheel.filename)

    def newest_version(self, name: str) -> Version | None:
        return None  # offline: no notion of "newest release"


class _PipFailed(Exception):
    def __init__(self, stderr: str):
        super().__init__(stderr)
        self.stderr = stderr

    @property
    def nothing_matched(self) -> bool:
        return "No matching distribution found" in self.stderr or "Could not find a version" in self.stderr

    def failed_name(self) -> str | None:
        found = re.search(r"No matching distribution found for ([A-Za-z0-9][A-Za-z0-9._-]*)", self.stderr)
        return canonicalize_name(found.group(1)) if found else None

    def tail(self, lines: int = 12) -> str:
        return without_host_details("\n".join(self.stderr.strip().splitlines()[-lines:]))


def _pip_error(failure: _PipFailed, what: str = "pip could not query the package index") -> RequirementsError:
    return RequirementsError(f"{what}:\n{failure.tail()}", {"reason": "pip-failed", "pip_stderr": failure.tail(40)})


class _Pip:
    """Runs ``python -m pip`` with settings that keep every write inside ``work_dir``."""

    def __init__(self, work_dir: Path, index_url: str | None):
        self.work_dir = work_dir
        (work_dir / "tmp").mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "TMPDIR": str(work_dir / "tmp"), "PIP_REQUIRE_VIRTUALENV": "0", "PIP_USER": "0"}
        self.common = ["--disable-pip-version-check", "--no-input", "--no-cache-dir"]
        if index_url:
            # Same meaning as pip's own --index-url: it replaces the primary index; extra
            # indexes and find-links from pip's configuration still apply.
            self.common += ["--index-url", index_url]

    def run(self, command: list[str], arguments: list[str]) -> str:
        completed = subprocess.run(
            [sys.executable, "-m", "pip", *command, *self.common, *arguments],
            env=self.env, cwd=self.work_dir, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        )
        if completed.returncode != 0:
            raise _PipFailed(completed.stderr)
        return completed.stdout

    def report(self, requirements: list[str], target: list[str]) -> list[dict]:
        """The file pip would pick for each requirement (no deps), from a dry-run report."""
        handle, report_path = tempfile.mkstemp(suffix=".json", dir=self.work_dir)
        os.close(handle)
        self.run(
            ["install", "-q", "--dry-run", "--ignore-installed", "--no-deps", "--report", report_path],
            [*target, *requirements],
        )
        with open(report_path, encoding="utf-8") as stream:
            return json.load(stream).get("install", [])

    def versions(self, name: str, options: list[str]) -> list[Version] | None:
        """Release versions listed by ``pip index versions``; ``None`` if nothing matched."""
        try:
            output = self.run(["index", "versions", "--json"], [*options, name])  # no -q: it hides the JSON
        except _PipFailed as failure:
            if failure.nothing_matched:
                return None
            raise
        return [version for text in json.loads(output).get("versions", []) if (version := _parse_version(text))]


def _parse_version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _wheel_from_report(entry: dict) -> Wheel:
    metadata = entry.get("metadata", {})
    download = entry.get("download_info", {})
    url = download.get("url", "")
    archive = download.get("archive_info", {})
    sha256 = archive.get("hashes", {}).get("sha256")
    if sha256 is None and str(archive.get("hash", "")).startswith("sha256="):
        sha256 = archive["hash"].split("=", 1)[1]
    return Wheel(
        name=canonicalize_name(metadata.get("name", "")),
        version=Version(metadata.get("version", "0")),
        filename=unquote(urlsplit(url).path.rsplit("/", 1)[-1]),
        requires_dist=tuple(metadata.get("requires_dist", ())),
        provides_extra=tuple(metadata.get("provides_extra", ())),
        requires_python=metadata.get("requires_python"),
        sha256=sha256,
        location=url,
    )


def _comes_first(picked: Version, asked: SpecifierSet, specifier: SpecifierSet) -> bool:
    """Whether pip's pick for ``asked`` (the newest final release that fits it) is also the first
    candidate for ``specifier``: it fits, and ``specifier`` is at least as strict and wants no prerelease."""
    return (
        set(asked) <= set(specifier) and not picked.is_prerelease
        and not specifier.prereleases and specifier.contains(picked)
    )


class IndexSource:
    """Wheels from the package index through pip; every answer is kept for the rest of the run."""

    def __init__(self, work_dir: Path, index_url: str | None):
        self.pip = _Pip(work_dir, index_url)
        self.where = f"on the package index{f' {index_url}' if index_url else ''}"
        self._prefetched: dict[str, tuple[SpecifierSet, Wheel | None]] = {}
        self._listed: dict[str, list[Version]] = {}
        self._picked: dict[tuple[str, Version], Wheel | None] = {}

    def candidates(self, name: NormalizedName, specifier: SpecifierSet, excluded: set[Version]) -> Iterator[Wheel]:
        asked, first = self._prefetched.get(name, (SpecifierSet(), None))
        if first and first.version not in excluded and _comes_first(first.version, asked, specifier):
            yield first  # often the only one resolution looks at: then the project is never listed
            excluded = excluded | {first.version}
        yield from _newest_first(self._listing(name), partial(self._pick, name), specifier, excluded)

    def prefetch(self, wanted: dict[NormalizedName, SpecifierSet]) -> dict[NormalizedName, Wheel]:
        pending = {name: specifier for name, specifier in sorted(wanted.items())
                   if name not in self._prefetched and name not in OPTIONAL_NATIVE}  # looked up on their own
        while pending:
            try:
                entries = self.pip.report([f"{name}{spec}" for name, spec in pending.items()], _GUEST_PIP_TARGET)
            except _PipFailed as failure:  # a project without a fitting guest wheel fails the call: retry without it
                if not failure.nothing_matched or failure.failed_name() not in pending:
                    break  # best effort: candidates() will look the rest up one by one
                self._prefetched[failure.failed_name()] = (pending.pop(failure.failed_name()), None)
                continue
            for wheel in map(_wheel_from_report, entries):
                if wheel.name in pending:
                    self._prefetched[wheel.name] = (pending[wheel.name], self._adopt(wheel))
            break
        picks = {name: self._prefetched[name][1] for name in wanted if name in self._prefetched}
        return {name: wheel for name, wheel in picks.items() if wheel is not None}

    def _listing(self, name: NormalizedName) -> list[Version]:
        if name not in self._listed:
            try:
                listed = self.pip.versions(name, ["--pre", *_pip_target(name)])
            except _PipFailed as failure:
                raise _pip_error(failure) from None
            self._listed[name] = sorted(listed or [], reverse=True)
        return self._listed[name]

    def _pick(self, name: NormalizedName, version: Version) -> Wheel | None:
        if (name, version) not in self._picked:
            try:  # Requires-Python is checked by _adopt, against the metadata
                entries = self.pip.report([f"{name}=={version}"], [*_pip_target(name), "--ignore-requires-python"])
            except _PipFailed as failure:
                if not failure.nothing_matched:
                    raise _pip_error(failure) from None
                entries = []
            self._picked[name, version] = self._adopt(_wheel_from_report(entries[0])) if entries else None
        return self._picked[name, version]

    def _adopt(self, wheel: Wheel) -> Wheel | None:
        """The wheel if the guest can use it (and remembered as that version's pick), else None."""
        parsed = parse_wheel_name(wheel.filename)
        if parsed is None or not parsed.is_usable_by_guest or not _supports_guest_python(wheel.requires_python):
            return None
        self._picked.setdefault((wheel.name, wheel.version), wheel)
        return wheel

    def explain(self, demand: Demand) -> RequirementsError:
        try:
            available = self.pip.versions(demand.name, ["--pre", "--ignore-requires-python"])
            if available is None:
                return not_found_error(demand, self.where)
            if not list(demand.specifier.filter(available)):
                return no_match_error(demand, available)
            # Which wheel would the host (any platform tag it supports) take?
            host = self.pip.report(
                [f"{demand.name}{demand.specifier}"], ["--only-binary=:all:", "--ignore-requires-python"]
            )
        except _PipFailed as failure:
            if failure.nothing_matched:
                return source_only_error(demand)
            return _pip_error(failure)
        chosen = _wheel_from_report(host[0]) if host else None
        wheel = parse_wheel_name(chosen.filename) if chosen else None
        if chosen is None or wheel is None:
            return source_only_error(demand)
        if wheel.is_platform_specific:
            return native_error(demand)
        return python_version_error(demand, wheel.filename, chosen.requires_python)

    def fetch(self, wheels: list[Wheel], staging: Path) -> None:
        groups: dict[tuple[str, ...], list[Wheel]] = {}
        for wheel in wheels:
            groups.setdefault(tuple(_pip_target(wheel.name)), []).append(wheel)
        for target, group in groups.items():
            self._download(group, list(target), staging)

    def _download(self, wheels: list[Wheel], target: list[str], staging: Path) -> None:
        lines = [f"{wheel.name}=={wheel.version}" for wheel in wheels]
        if all(wheel.sha256 for wheel in wheels):  # let pip pick exactly that file
            lines = [f"{line} --hash=sha256:{wheel.sha256}" for line, wheel in zip(lines, wheels)]
        requirements_file = staging.parent / "pinned.txt"
        requirements_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            self.pip.run(["download", "-q", "--no-deps", "-d", str(staging)], [*target, "-r", str(requirements_file)])
        except _PipFailed as failure:
            raise _pip_error(failure, "downloading the locked wheels failed") from None

    def newest_version(self, name: str) -> Version | None:
        try:
            versions = self.pip.versions(name, ["--python-version", "3.14"])
        except _PipFailed:
            return None  # best effort
        return max(versions or [], default=None)


PROVIDED = "provided by the sandbox"  # a provided package's Wheel.location: nothing to fetch


# What a provided package adds through its extras: (Requires-Dist lines with an `extra`
# marker, Provides-Extra), by name; its other dependencies are provided with it.
ExtrasOf = Callable[[str], tuple[tuple[str, ...], tuple[str, ...]]]


class ProvidedSource:
    """Another source, except for the packages the sandbox provides (name -> version): each
    of those has one candidate, its provided release, which is never fetched; its own
    dependencies are provided with it, and what its extras add (`extras_of`) is resolved."""

    def __init__(self, source: PackageSource, provided: dict[str, str], extras_of: ExtrasOf | None = None):
        self.source = source
        self.provided = {canonicalize_name(name): Version(version) for name, version in provided.items()}
        self.extras_of = extras_of or (lambda name: ((), ()))

    def candidates(self, name: NormalizedName, specifier: SpecifierSet, excluded: set[Version]) -> Iterator[Wheel]:
        version = self.provided.get(name)
        if version is None:
            yield from self.source.candidates(name, specifier, excluded)
        elif version not in excluded and specifier.contains(version, prereleases=True):
            requires, extras = self.extras_of(name)
            yield Wheel(name, version, PROVIDED, requires, extras, None, None, PROVIDED)

    def prefetch(self, wanted: dict[NormalizedName, SpecifierSet]) -> dict[NormalizedName, Wheel]:
        return self.source.prefetch({name: spec for name, spec in wanted.items() if name not in self.provided})

    def explain(self, demand: Demand) -> RequirementsError:
        if demand.name in self.provided:
            return provided_error(demand, str(self.provided[demand.name]))
        return self.source.explain(demand)

    def fetch(self, wheels: list[Wheel], staging: Path) -> None:
        self.source.fetch([wheel for wheel in wheels if wheel.location != PROVIDED], staging)

    def newest_version(self, name: str) -> Version | None:
        return None if canonicalize_name(name) in self.provided else self.source.newest_version(name)
