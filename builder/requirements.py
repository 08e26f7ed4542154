"""Resolve an author's requirements to pinned pure-Python wheels for the guest, and vendor them.

The guest is CPython 3.14 on wasm32-wasi, not the Python running the builder, so pip's
own resolver (which evaluates environment markers against the host) is never used for
dependencies. Instead this module walks the dependency graph itself:

1. The author's ``requirements.txt`` lines are parsed (:func:`parse_requirement_lines`);
   editable installs, direct URLs, local paths and pip options are rejected clearly.
2. Breadth-first, in rounds: every package that is wanted but not yet chosen (or whose
   chosen version no longer satisfies every active specifier) is picked, one pip call
   per round for the whole batch (``pip install --dry-run --no-deps --report`` with the
   guest's wheel tags, which reads only metadata on indexes that serve it). Offline, with
   a wheelhouse, no pip runs at all: the newest matching pure wheel is picked from the
   directory listing. Each chosen wheel's ``Requires-Dist`` is evaluated with
   :data:`GUEST_ENVIRONMENT` (and the requested extras) to find the next wants.
   Specifiers for the same name from every active requirer are merged; the walk is
   greedy (newest satisfying version, no backtracking) and settles when a round picks
   nothing new. Packages only needed by versions that were later replaced drop out.
3. The chosen wheels are fetched into ``wheel_dir`` (reusing files already there when
   their sha256 matches the one the index or wheelhouse announced) and locked.

:func:`install_wheels` then unpacks the locked wheels into the directory that goes on
the guest's ``sys.path``. Failures raise :class:`RequirementsError` with a message that
says which package and why (not found, no matching version, conflicting specifiers,
native-only, source-only, or no Python 3.14 support).

Nothing is written outside ``wheel_dir`` and ``target``: pip runs with ``--no-cache-dir``
and with its temporary directory inside ``wheel_dir``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol
from pathlib import Path
from urllib.parse import unquote, urlsplit

from packaging.markers import Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from builder.wheels import (
    GUEST_PYTHON_VERSION,
    SANDBOX_DESCRIPTION,
    WheelError,
    WheelName,
    parse_sdist_name,
    parse_wheel_name,
    read_wheel_metadata,
    sha256_of,
    unpack_wheel,
)

# PEP 508 marker environment of the guest. Values are what CPython 3.14 built for WASI
# reports: sys.platform is "wasi", os.name "posix", and os.uname() comes from wasi-libc,
# which fills in sysname "wasi", release/version "0.0.0" and machine "wasm32" - so
# platform.system() (platform_system) is "wasi", not "" and not "Linux". The patch level
# is pinned at 3.14.0 because the embedded interpreter's exact patch release is not
# something authors should depend on.
GUEST_ENVIRONMENT: dict[str, str] = {
    "implementation_name": "cpython",
    "implementation_version": "3.14.0",
    "os_name": "posix",
    "platform_machine": "wasm32",
    "platform_python_implementation": "CPython",
    "platform_release": "0.0.0",
    "platform_system": "wasi",
    "platform_version": "0.0.0",
    "python_full_version": "3.14.0",
    "python_version": "3.14",
    "sys_platform": "wasi",
}

# pip options that select wheels the guest can load: pure Python, any platform.
_GUEST_PIP_TARGET = [
    "--only-binary=:all:",
    "--platform", "any",
    "--implementation", "py",
    "--abi", "none",
    "--python-version", "3.14",
]
_MAX_ROUNDS = 100
# Leave a core for the walk itself; the check is best effort.
_NEWEST_CHECK_WORKERS = max(1, min(4, (os.cpu_count() or 2) - 1))
_TOP_LEVEL = "requirements line"

Log = Callable[[str], None]


@dataclass(frozen=True)
class LockedWheel:
    """One pinned wheel of the lock: canonical name, version, file name, sha256 of the file."""

    name: str
    version: str
    filename: str
    sha256: str


class RequirementsError(Exception):
    """Typed, user-facing: message says what is wrong and why; .details is a JSON-able dict."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


# --------------------------------------------------------------------------------------
# requirements.txt lines
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopLevelRequirement:
    """A named requirement from the author's file, with where it came from."""

    requirement: Requirement
    line_number: int
    hashes: frozenset[str] = frozenset()  # allowed sha256 hex digests (from --hash)

    @property
    def label(self) -> str:
        return f"{_TOP_LEVEL} {self.line_number}"


_HASH_OPTION = re.compile(r"\s--hash[=\s]\s*(\S+)")
_INLINE_COMMENT = re.compile(r"(^|\s)#.*$")
_OPTION_ADVICE = {
    ("-e", "--editable"): "editable installs are not supported: the sandbox needs wheels. "
    "Build a wheel (pip wheel --no-deps PATH) and supply it through a wheelhouse",
    ("-r", "--requirement", "-c", "--constraint"): "nested requirement or constraint files are "
    "not supported: list the requirements directly in this file",
    ("-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--no-index"): "index "
    "options are not supported in the requirements file: use the builder's index URL or "
    "wheelhouse option instead",
}


def _logical_lines(lines: Iterable[str]) -> Iterable[tuple[int, str]]:
    """Join backslash-continued lines; yield (first line number, text)."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not pending:
            start = number
        if line.endswith("\\") and not line.lstrip().startswith("#"):
            pending.append(line[:-1])
            continue
        pending.append(line)
        yield start, " ".join(pending)
        pending = []
    if pending:
        yield start, " ".join(pending)


def _line_error(number: int, text: str, why: str, reason: str) -> RequirementsError:
    return RequirementsError(
        f"requirements line {number} ({text!r}): {why}",
        {"reason": reason, "line": number, "text": text},
    )


def _option_error(number: int, text: str) -> RequirementsError:
    option = re.split(r"[\s=]", text, maxsplit=1)[0]
    for options, advice in _OPTION_ADVICE.items():
        if option in options:
            return _line_error(number, text, advice, "unsupported-option")
    return _line_error(
        number, text, f"the pip option {option} is not supported in the requirements file",
        "unsupported-option",
    )


_NAMED_URL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@")


def _looks_like_url_or_path(text: str) -> bool:
    if _NAMED_URL.match(text):
        return False  # "name @ URL": parsed, then rejected with its own message
    lowered = text.lower()
    return (
        "://" in text
        or text.startswith((".", "/", "~"))
        or lowered.endswith((".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz"))
    )


def _split_hashes(number: int, text: str) -> tuple[str, frozenset[str]]:
    hashes: set[str] = set()
    for value in _HASH_OPTION.findall(" " + text):
        algorithm, _, digest = value.partition(":")
        if algorithm != "sha256" or not re.fullmatch(r"[0-9a-fA-F]{64}", digest):
            raise _line_error(number, text, f"only --hash=sha256:<64 hex digits> is supported, got {value!r}", "bad-hash")
        hashes.add(digest.lower())
    return _HASH_OPTION.sub("", " " + text).strip(), frozenset(hashes)


def parse_requirement_line(number: int, text: str) -> TopLevelRequirement | None:
    """Parse one logical line; ``None`` for blank lines and comments."""
    stripped = _INLINE_COMMENT.sub("", text).strip()
    if not stripped:
        return None
    if stripped.startswith("-"):
        raise _option_error(number, stripped)
    body, hashes = _split_hashes(number, stripped)
    if body.startswith("-"):
        raise _option_error(number, body)
    if re.search(r"\s--?[A-Za-z]", body):
        raise _line_error(number, body, "per-requirement pip options (other than --hash) are not supported", "unsupported-option")
    if _looks_like_url_or_path(body):
        raise _line_error(
            number, body,
            "direct URLs and local paths are not supported; name a package from the index or "
            "the wheelhouse (e.g. 'requests>=2.31'), or build a wheel and supply it through a wheelhouse",
            "unsupported-url",
        )
    try:
        requirement = Requirement(body)
    except InvalidRequirement as error:
        raise _line_error(number, body, f"not a valid requirement: {error}", "invalid-requirement") from error
    if requirement.url:
        raise _line_error(
            number, body,
            "direct URL requirements (name @ URL) are not supported; name a version from the "
            "index, or build a wheel and supply it through a wheelhouse",
            "unsupported-url",
        )
    return TopLevelRequirement(requirement, number, hashes)


def parse_requirement_lines(lines: Iterable[str]) -> list[TopLevelRequirement]:
    """Parse requirements.txt lines, skipping blanks and comments; reject what can't be vendored."""
    parsed = (parse_requirement_line(number, text) for number, text in _logical_lines(lines))
    return [requirement for requirement in parsed if requirement is not None]


def marker_holds(marker: Marker | None, extra: str = "") -> bool:
    """Evaluate a marker for the guest (``extra`` as given; "" for none)."""
    if marker is None:
        return True
    try:
        return marker.evaluate({**GUEST_ENVIRONMENT, "extra": extra})
    except (UndefinedComparison, UndefinedEnvironmentName) as error:
        raise RequirementsError(
            f'cannot evaluate the marker "{marker}" for the sandbox: {error}',
            {"reason": "bad-marker", "marker": str(marker)},
        ) from error


# --------------------------------------------------------------------------------------
# What is wanted, what is available
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    """One wheel that could be locked, with the metadata the walk needs."""

    name: NormalizedName
    version: Version
    filename: str
    requires_dist: tuple[str, ...]
    provides_extra: tuple[str, ...]
    requires_python: str | None
    sha256: str | None  # as announced by the index / computed from the wheelhouse file
    location: str  # wheelhouse path or index URL

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"


@dataclass
class _Demand:
    """Everything currently asked of one package: specifiers (with who asks) and extras."""

    name: NormalizedName
    constraints: list[tuple[SpecifierSet, str]] = field(default_factory=list)
    extras: set[str] = field(default_factory=set)

    @property
    def specifier(self) -> SpecifierSet:
        combined = SpecifierSet()
        for specifier, _ in self.constraints:
            combined &= specifier
        return combined

    @property
    def requirers(self) -> list[str]:
        """Packages (not the author's file) that ask for this one."""
        return sorted({label for _, label in self.constraints if not label.startswith(_TOP_LEVEL)})

    def describe(self) -> list[str]:
        """Each distinct constraint as 'name<spec> (from who)', specific ones only if any."""
        seen = dict.fromkeys(
            f"{self.name}{specifier} (from {label})" for specifier, label in self.constraints if str(specifier)
        )
        if not seen:
            seen = dict.fromkeys(f"{self.name} (from {label})" for _, label in self.constraints)
        return list(seen)

    def details(self, reason: str, **extra: object) -> dict:
        constraints = [{"specifier": str(spec), "required_by": label} for spec, label in self.constraints]
        return {"package": self.name, "reason": reason, "constraints": constraints, **extra}


def _required_by_suffix(demand: _Demand) -> str:
    requirers = demand.requirers
    return f" It is required by {', '.join(requirers)}." if requirers else ""


def _format_versions(versions: Iterable[Version], limit: int = 10) -> str:
    ordered = sorted(set(versions), reverse=True)
    shown = ", ".join(str(version) for version in ordered[:limit])
    return shown + (", ..." if len(ordered) > limit else "") if ordered else "none"


def _not_found_error(demand: _Demand, where: str) -> RequirementsError:
    return RequirementsError(
        f'"{demand.name}" was not found {where}: check the name.{_required_by_suffix(demand)}',
        demand.details("not-found", where=where),
    )


def _no_match_error(demand: _Demand, available: list[Version]) -> RequirementsError:
    described = demand.describe()
    shown = _format_versions(available)
    if len(described) > 1:
        return RequirementsError(
            f'conflicting requirements for "{demand.name}": {"; ".join(described)}; '
            f"no release satisfies all of them (available: {shown})",
            demand.details("conflict", available=[str(v) for v in sorted(set(available), reverse=True)]),
        )
    return RequirementsError(
        f'no release of "{demand.name}" matches {described[0]}; available: {shown}',
        demand.details("no-matching-version", available=[str(v) for v in sorted(set(available), reverse=True)]),
    )


def _native_error(demand: _Demand) -> RequirementsError:
    return RequirementsError(
        f'"{demand.name}" has no pure-Python wheel for the sandbox ({SANDBOX_DESCRIPTION}): it ships '
        "only platform-specific builds, which means it needs a native extension, and native "
        f"extensions cannot run in the sandbox.{_required_by_suffix(demand)}",
        demand.details("native-only"),
    )


def _source_only_error(demand: _Demand) -> RequirementsError:
    wanted = f"{demand.name}{demand.specifier}"
    return RequirementsError(
        f'"{demand.name}" has no pure-Python wheel for the sandbox ({SANDBOX_DESCRIPTION}): its '
        "matching releases ship only a source distribution (or builds for other platforms), and "
        "wasmgate installs wheels only. If it is pure Python, build a wheel "
        f"(pip wheel --no-deps '{wanted}') and supply it through a wheelhouse."
        f"{_required_by_suffix(demand)}",
        demand.details("source-only"),
    )


def _python_version_error(demand: _Demand, filename: str, requires_python: str | None) -> RequirementsError:
    declared = f' (it declares Requires-Python "{requires_python}")' if requires_python else ""
    return RequirementsError(
        f'"{demand.name}" has pure-Python wheels, but none that supports Python 3.14: the newest '
        f"matching one is {filename}{declared}.{_required_by_suffix(demand)}",
        demand.details("unsupported-python", filename=filename, requires_python=requires_python),
    )


def _supports_guest_python(requires_python: str | None) -> bool:
    if not requires_python:
        return True
    try:
        return SpecifierSet(requires_python).contains(GUEST_PYTHON_VERSION, prereleases=True)
    except InvalidSpecifier:
        return True  # pip ignores unparsable Requires-Python too


class _Source(Protocol):
    """Where wheels come from: a wheelhouse directory or the package index (via pip)."""

    def pick(self, demands: dict[str, _Demand]) -> dict[str, _Candidate]:
        """Newest acceptable wheel for each demand, or raise the RequirementsError explaining why not."""

    def fetch(self, candidates: list[_Candidate], staging: Path) -> None:
        """Put each candidate's wheel file into staging (under its file name)."""

    def newest_versions(self, names: list[str]) -> dict[str, Version]:
        """Newest release of each name (best effort; may be empty)."""


# --------------------------------------------------------------------------------------
# Offline source: a directory of wheels
# --------------------------------------------------------------------------------------


class _WheelhouseSource:
    """Picks wheels from a local directory; never runs pip, never touches the network."""

    def __init__(self, wheelhouse: Path):
        if not wheelhouse.is_dir():
            raise RequirementsError(f"wheelhouse {wheelhouse} is not a directory", {"reason": "no-wheelhouse"})
        self.root = wheelhouse
        self.where = f"in the wheelhouse {wheelhouse}"
        self.wheels: dict[str, list[WheelName]] = {}
        self.sdists: dict[str, list[Version]] = {}
        for path in sorted(entry for entry in wheelhouse.iterdir() if entry.is_file()):
            self._index_file(path.name)

    def _index_file(self, filename: str) -> None:
        wheel = parse_wheel_name(filename)
        if wheel is not None:
            self.wheels.setdefault(wheel.name, []).append(wheel)
            return
        sdist = parse_sdist_name(filename)
        if sdist is not None:
            self.sdists.setdefault(sdist[0], []).append(sdist[1])

    def pick(self, demands: dict[str, _Demand]) -> dict[str, _Candidate]:
        return {name: self._pick_one(demand) for name, demand in demands.items()}

    def _pick_one(self, demand: _Demand) -> _Candidate:
        wheels = self.wheels.get(demand.name, [])
        pure = [wheel for wheel in wheels if wheel.is_pure_for_guest]
        allowed = set(demand.specifier.filter({wheel.version for wheel in pure}))
        ranked = sorted((wheel for wheel in pure if wheel.version in allowed), key=lambda w: (w.guest_rank, w.filename))
        ranked.sort(key=lambda wheel: wheel.version, reverse=True)  # stable: newest first, then best tag
        for wheel in ranked:
            candidate = self._candidate(wheel.filename)
            if _supports_guest_python(candidate.requires_python):
                return candidate
        raise self.explain(demand)

    def _candidate(self, filename: str) -> _Candidate:
        path = self.root / filename
        try:
            metadata = read_wheel_metadata(path)
        except WheelError as error:
            raise RequirementsError(str(error), {"reason": "bad-wheel", "filename": filename}) from error
        wheel = parse_wheel_name(filename)
        assert wheel is not None
        return _Candidate(
            name=wheel.name,
            version=wheel.version,
            filename=filename,
            requires_dist=metadata.requires_dist,
            provides_extra=metadata.provides_extra,
            requires_python=metadata.requires_python,
            sha256=sha256_of(path),
            location=str(path),
        )

    def explain(self, demand: _Demand) -> RequirementsError:
        wheels = self.wheels.get(demand.name, [])
        sdists = self.sdists.get(demand.name, [])
        available = [wheel.version for wheel in wheels] + sdists
        if not available:
            return _not_found_error(demand, self.where)
        matching = set(demand.specifier.filter(set(available)))
        if not matching:
            return _no_match_error(demand, available)
        matching_wheels = [wheel for wheel in wheels if wheel.version in matching]
        portable = [wheel for wheel in matching_wheels if not wheel.is_platform_specific]
        if portable:
            newest = max(portable, key=lambda wheel: wheel.version)
            return _python_version_error(demand, newest.filename, self._candidate(newest.filename).requires_python)
        if matching_wheels:
            return _native_error(demand)
        return _source_only_error(demand)

    def fetch(self, candidates: list[_Candidate], staging: Path) -> None:
        for candidate in candidates:
            shutil.copyfile(candidate.location, staging / candidate.filename)

    def newest_versions(self, names: list[str]) -> dict[str, Version]:
        return {}  # offline: no notion of "newest release"


# --------------------------------------------------------------------------------------
# Index source: pip, as a subprocess, with the guest's wheel tags
# --------------------------------------------------------------------------------------


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
        return "\n".join(self.stderr.strip().splitlines()[-lines:])


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
        """Which wheel pip would pick for each requirement (no deps), from a dry-run report."""
        handle, report_path = tempfile.mkstemp(suffix=".json", dir=self.work_dir)
        os.close(handle)
        self.run(
            ["install", "-q", "--dry-run", "--ignore-installed", "--no-deps", "--report", report_path],
            [*target, *requirements],
        )
        with open(report_path, encoding="utf-8") as stream:
            return json.load(stream).get("install", [])

    def versions(self, name: str, options: list[str]) -> list[Version] | None:
        """Release versions listed by ``pip index versions``; ``None`` if there is no such project."""
        try:
            output = self.run(["index", "versions", "--json"], [*options, name])  # no -q: it hides the JSON
        except _PipFailed as failure:
            if failure.nothing_matched:
                return None
            raise
        return [_parse_version(text) for text in json.loads(output).get("versions", []) if _parse_version(text)]


def _parse_version(text: str) -> Version | None:
    try:
        return Version(text)
    except InvalidVersion:
        return None


def _candidate_from_report(entry: dict) -> _Candidate:
    metadata = entry.get("metadata", {})
    download = entry.get("download_info", {})
    url = download.get("url", "")
    archive = download.get("archive_info", {})
    sha256 = archive.get("hashes", {}).get("sha256")
    if sha256 is None and str(archive.get("hash", "")).startswith("sha256="):
        sha256 = archive["hash"].split("=", 1)[1]
    return _Candidate(
        name=canonicalize_name(metadata.get("name", "")),
        version=Version(metadata.get("version", "0")),
        filename=unquote(urlsplit(url).path.rsplit("/", 1)[-1]),
        requires_dist=tuple(metadata.get("requires_dist", ())),
        provides_extra=tuple(metadata.get("provides_extra", ())),
        requires_python=metadata.get("requires_python"),
        sha256=sha256,
        location=url,
    )


class _IndexSource:
    """Picks wheels from the package index through pip (one call per batch of packages)."""

    def __init__(self, pip: _Pip, index_url: str | None):
        self.pip = pip
        self.where = f"on the package index{f' {index_url}' if index_url else ''}"

    def pick(self, demands: dict[str, _Demand]) -> dict[str, _Candidate]:
        wanted = [f"{name}{demand.specifier}" for name, demand in demands.items()]
        try:
            entries = self.pip.report(wanted, _GUEST_PIP_TARGET)
        except _PipFailed as failure:
            raise self._explain_failure(demands, failure) from None
        candidates = {candidate.name: candidate for candidate in map(_candidate_from_report, entries)}
        for name, demand in demands.items():
            candidate = candidates.get(name)
            wheel = parse_wheel_name(candidate.filename) if candidate else None
            if wheel is None or not wheel.is_pure_for_guest:
                raise self.explain(demand)
        return {name: candidates[name] for name in demands}

    def _explain_failure(self, demands: dict[str, _Demand], failure: _PipFailed) -> RequirementsError:
        if not failure.nothing_matched:
            return _pip_error(failure)
        suspect = failure.failed_name()
        if suspect in demands:
            return self.explain(demands[suspect])
        for name, demand in demands.items():  # could not tell which one: try them one by one
            try:
                self.pip.report([f"{name}{demand.specifier}"], _GUEST_PIP_TARGET)
            except _PipFailed:
                return self.explain(demand)
        return _pip_error(failure)

    def explain(self, demand: _Demand) -> RequirementsError:
        """Why no pure wheel matched: missing, no matching version, native-only, sdist-only..."""
        try:
            available = self.pip.versions(demand.name, ["--pre", "--ignore-requires-python"])
            if available is None:
                return _not_found_error(demand, self.where)
            if not list(demand.specifier.filter(available)):
                return _no_match_error(demand, available)
            # Which wheel would the host (any platform tag it supports) take?
            host = self.pip.report(
                [f"{demand.name}{demand.specifier}"], ["--only-binary=:all:", "--ignore-requires-python"]
            )
        except _PipFailed as failure:
            if failure.nothing_matched:
                return _source_only_error(demand)
            return _pip_error(failure)
        chosen = _candidate_from_report(host[0]) if host else None
        wheel = parse_wheel_name(chosen.filename) if chosen else None
        if wheel is None:
            return _source_only_error(demand)
        if wheel.is_platform_specific:
            return _native_error(demand)
        return _python_version_error(demand, wheel.filename, chosen.requires_python if chosen else None)

    def fetch(self, candidates: list[_Candidate], staging: Path) -> None:
        lines = [f"{candidate.name}=={candidate.version}" for candidate in candidates]
        if all(candidate.sha256 for candidate in candidates):  # let pip pick exactly that file
            lines = [f"{line} --hash=sha256:{c.sha256}" for line, c in zip(lines, candidates)]
        requirements_file = staging.parent / "pinned.txt"
        requirements_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            self.pip.run(["download", "-q", "--no-deps", "-d", str(staging)], [*_GUEST_PIP_TARGET, "-r", str(requirements_file)])
        except _PipFailed as failure:
            raise _pip_error(failure, "downloading the locked wheels failed") from None

    def newest_versions(self, names: list[str]) -> dict[str, Version]:
        """Newest release of each project on the index (any file type), for Python 3.14."""
        newest: dict[str, Version] = {}
        for name in names:
            try:
                versions = self.pip.versions(name, ["--python-version", "3.14"])
            except _PipFailed:
                continue  # best effort
            if versions:
                newest[name] = max(versions)
        return newest


def _pip_error(failure: _PipFailed, what: str = "pip could not query the package index") -> RequirementsError:
    return RequirementsError(f"{what}:\n{failure.tail()}", {"reason": "pip-failed", "pip_stderr": failure.tail(40)})


# --------------------------------------------------------------------------------------
# The walk
# --------------------------------------------------------------------------------------


class _Resolver:
    """Greedy breadth-first resolution in rounds; see the module docstring."""

    def __init__(self, top: list[TopLevelRequirement], source: _Source, log: Log):
        self.top = top
        self.source = source
        self.log = log
        self.chosen: dict[str, _Candidate] = {}
        self._warned_extras: set[tuple[str, str]] = set()

    def resolve(self) -> list[_Candidate]:
        """The chosen candidate of every package still wanted, sorted by name."""
        for _ in range(_MAX_ROUNDS):
            demands = self._walk()
            stale = {name: demands[name] for name in sorted(demands) if not self._satisfied(demands[name])}
            if not stale:
                return [self.chosen[name] for name in sorted(demands)]
            self.log(f"looking up {len(stale)} package(s): {', '.join(f'{n}{d.specifier}' for n, d in stale.items())}")
            for name, candidate in self.source.pick(stale).items():
                previous = self.chosen.get(name)
                if previous and previous.version != candidate.version:
                    self.log(f"  re-picked {name}: {previous.version} -> {candidate.version}")
                else:
                    self.log(f"  picked {candidate.label} ({candidate.filename})")
                self.chosen[name] = candidate
        raise RequirementsError(
            f"dependency resolution did not settle after {_MAX_ROUNDS} rounds; pin the packages "
            "whose versions keep changing",
            {"reason": "unsettled", "chosen": {n: str(c.version) for n, c in sorted(self.chosen.items())}},
        )

    def _satisfied(self, demand: _Demand) -> bool:
        chosen = self.chosen.get(demand.name)
        return chosen is not None and demand.specifier.contains(chosen.version, prereleases=True)

    def _walk(self) -> dict[str, _Demand]:
        """Everything currently wanted, reached from the author's lines through chosen wheels."""
        demands: dict[str, _Demand] = {}
        queue: deque[str] = deque()
        for top in self.top:
            self._want(demands, queue, top.requirement, top.label)
        expanded: set[tuple[str, str]] = set()
        while queue:
            name = queue.popleft()
            candidate = self.chosen.get(name)
            if candidate is None:
                continue
            for extra in sorted({""} | demands[name].extras):
                if (name, extra) not in expanded:
                    expanded.add((name, extra))
                    label = f"{candidate.name}[{extra}] {candidate.version}" if extra else candidate.label
                    for dependency in self._dependencies(candidate, extra):
                        self._want(demands, queue, dependency, label)
        return demands

    @staticmethod
    def _want(demands: dict[str, _Demand], queue: deque[str], requirement: Requirement, label: str) -> None:
        name = canonicalize_name(requirement.name)
        demand = demands.get(name)
        is_new = demand is None
        if demand is None:
            demand = demands[name] = _Demand(name)
        demand.constraints.append((requirement.specifier, label))
        extras = {canonicalize_name(extra) for extra in requirement.extras}
        grew = not extras <= demand.extras
        demand.extras |= extras
        if is_new or grew:
            queue.append(name)

    def _dependencies(self, candidate: _Candidate, extra: str) -> list[Requirement]:
        """Requires-Dist entries that apply in the guest: base ones for "", extra-only ones otherwise."""
        if extra and extra not in {canonicalize_name(e) for e in candidate.provides_extra}:
            if (candidate.name, extra) not in self._warned_extras:
                self._warned_extras.add((candidate.name, extra))
                self.log(f'warning: {candidate.label} does not provide the extra "{extra}"')
        selected = []
        for line in candidate.requires_dist:
            requirement = _parse_dependency(candidate, line)
            applies_without_extra = marker_holds(requirement.marker, "")
            if not extra:
                include = applies_without_extra
            else:  # only what this extra adds; the base entries were taken with extra ""
                include = not applies_without_extra and marker_holds(requirement.marker, extra)
            if include:
                selected.append(requirement)
        return selected


def _parse_dependency(candidate: _Candidate, line: str) -> Requirement:
    try:
        requirement = Requirement(line)
    except InvalidRequirement as error:
        raise RequirementsError(
            f"{candidate.label} declares an invalid dependency {line!r}: {error}",
            {"reason": "bad-metadata", "package": candidate.name, "requires_dist": line},
        ) from error
    if requirement.url:
        raise RequirementsError(
            f"{candidate.label} depends on a direct URL ({line!r}), which cannot be resolved from an index",
            {"reason": "unsupported-url", "package": candidate.name, "requires_dist": line},
        )
    return requirement


# --------------------------------------------------------------------------------------
# Fetching, locking, warnings
# --------------------------------------------------------------------------------------


def _fetch(source: _Source, candidates: list[_Candidate], wheel_dir: Path, work_dir: Path, log: Log) -> list[LockedWheel]:
    """Put every chosen wheel in wheel_dir, reusing files whose sha256 checks out."""
    missing = []
    for candidate in candidates:
        existing = wheel_dir / candidate.filename
        if existing.is_file() and candidate.sha256 and sha256_of(existing) == candidate.sha256:
            log(f"reusing {candidate.filename} (sha256 verified)")
            continue
        if existing.exists():
            log(f"replacing {candidate.filename}: the copy in {wheel_dir} does not match the expected sha256")
        missing.append(candidate)
    digests = {candidate.name: candidate.sha256 for candidate in candidates}
    if missing:
        log(f"fetching {len(missing)} wheel(s): {', '.join(c.filename for c in missing)}")
        staging = work_dir / "fetched"
        staging.mkdir()
        source.fetch(missing, staging)
        for candidate in missing:
            digests[candidate.name] = _adopt(candidate, staging, wheel_dir)
    return [
        LockedWheel(name=c.name, version=str(c.version), filename=c.filename, sha256=str(digests[c.name]))
        for c in candidates
    ]


def _adopt(candidate: _Candidate, staging: Path, wheel_dir: Path) -> str:
    fetched = staging / candidate.filename
    if not fetched.is_file():
        raise RequirementsError(
            f"fetching {candidate.label} did not produce {candidate.filename}",
            {"reason": "fetch-failed", "package": candidate.name, "filename": candidate.filename},
        )
    digest = sha256_of(fetched)
    if candidate.sha256 and digest != candidate.sha256:
        raise RequirementsError(
            f"{candidate.filename} has sha256 {digest}, but {candidate.sha256} was announced for it",
            {"reason": "hash-mismatch", "package": candidate.name, "expected": candidate.sha256, "actual": digest},
        )
    os.replace(fetched, wheel_dir / candidate.filename)
    return digest


def _check_pinned_hashes(top: list[TopLevelRequirement], locked: list[LockedWheel]) -> None:
    by_name = {wheel.name: wheel for wheel in locked}
    for requirement in top:
        wheel = by_name.get(canonicalize_name(requirement.requirement.name))
        if requirement.hashes and wheel and wheel.sha256 not in requirement.hashes:
            raise RequirementsError(
                f"{wheel.filename} has sha256 {wheel.sha256}, which is not among the --hash values on "
                f"{requirement.label}",
                {"reason": "hash-mismatch", "package": wheel.name, "actual": wheel.sha256,
                 "allowed": sorted(requirement.hashes)},
            )


def _warn_if_outdated(
    top: list[TopLevelRequirement], locked: list[LockedWheel], newest: dict[str, Version], log: Log
) -> None:
    """Warn when a top-level package resolved to an older release than the newest its specifier allows."""
    chosen = {wheel.name: Version(wheel.version) for wheel in locked}
    for name, latest in sorted(newest.items()):
        specifier = SpecifierSet()
        for requirement in top:
            if canonicalize_name(requirement.requirement.name) == name:
                specifier &= requirement.requirement.specifier
        if name in chosen and latest > chosen[name] and specifier.contains(latest, prereleases=True):
            log(
                f'warning: "{name}" resolved to {chosen[name]}, but the newest release is {latest}; the newer '
                f"releases have no pure-Python wheel for the sandbox ({SANDBOX_DESCRIPTION}) or are excluded "
                "by another package's requirement. Pin the version you want to get a precise error instead."
            )


def _applicable(top: list[TopLevelRequirement], log: Log) -> list[TopLevelRequirement]:
    kept = []
    for requirement in top:
        if marker_holds(requirement.requirement.marker):
            kept.append(requirement)
        else:
            log(f"skipping {requirement.requirement} ({requirement.label}): its marker is false in the sandbox")
    return kept


def resolve_requirements(
    requirements: list[str],
    wheel_dir: Path,
    *,
    wheelhouse: Path | None = None,
    index_url: str | None = None,
    log: Log = lambda line: None,
) -> list[LockedWheel]:
    """Resolve requirements.txt lines to pure-Python wheels for the guest; fetch them into wheel_dir.

    Offline when ``wheelhouse`` is given (only that directory is used, pip never runs);
    otherwise pip's configured sources, with ``index_url`` (when given) replacing the
    primary index as pip's ``--index-url`` does. Returns the lock, sorted by name, and
    logs a warning for a top-level package that resolved to an older release than the
    newest one its specifier allows. Raises :class:`RequirementsError` for anything the
    author must fix.
    """
    top = _applicable(parse_requirement_lines(requirements), log)
    wheel_dir = Path(wheel_dir)
    wheel_dir.mkdir(parents=True, exist_ok=True)
    if not top:
        return []
    log(f"resolving {len(top)} requirement(s) for the sandbox ({SANDBOX_DESCRIPTION})")
    with tempfile.TemporaryDirectory(dir=wheel_dir, prefix=".resolve-") as scratch:
        work_dir = Path(scratch)
        if wheelhouse is not None:
            source = _WheelhouseSource(Path(wheelhouse))
            candidates = _Resolver(top, source, log).resolve()
            locked = _fetch(source, candidates, wheel_dir, work_dir, log)
        else:
            locked = _resolve_from_index(top, wheel_dir, work_dir, index_url, log)
    _check_pinned_hashes(top, locked)
    log(f"locked {len(locked)} wheel(s)")
    return locked


def _resolve_from_index(
    top: list[TopLevelRequirement], wheel_dir: Path, work_dir: Path, index_url: str | None, log: Log
) -> list[LockedWheel]:
    pip = _Pip(work_dir, index_url)
    source = _IndexSource(pip, index_url)
    names = sorted({canonicalize_name(requirement.requirement.name) for requirement in top})
    # The "is this the newest release?" check runs alongside the walk: one pip call per name.
    with ThreadPoolExecutor(max_workers=min(_NEWEST_CHECK_WORKERS, len(names))) as pool:
        checks: list[Future[dict[str, Version]]] = [pool.submit(source.newest_versions, [name]) for name in names]
        try:
            candidates = _Resolver(top, source, log).resolve()
            locked = _fetch(source, candidates, wheel_dir, work_dir, log)
        except BaseException:
            for check in checks:
                check.cancel()  # the ones already running finish before the pool closes
            raise
        newest: dict[str, Version] = {}
        for check in checks:
            newest.update(check.result())
    _warn_if_outdated(top, locked, newest, log)
    return locked


def install_wheels(locked: list[LockedWheel], wheel_dir: Path, target: Path) -> None:
    """Unpack the locked wheels into target (purelib + platlib contents, .data/purelib handled), no scripts needed, no __pycache__ written."""
    wheel_dir, target = Path(wheel_dir), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for wheel in sorted(locked, key=lambda item: item.name):
        path = wheel_dir / wheel.filename
        if not path.is_file():
            raise RequirementsError(
                f"locked wheel {wheel.filename} is missing from {wheel_dir}",
                {"reason": "missing-wheel", "package": wheel.name, "filename": wheel.filename},
            )
        digest = sha256_of(path)
        if digest != wheel.sha256:
            raise RequirementsError(
                f"{path} has sha256 {digest}, but the lock says {wheel.sha256}",
                {"reason": "hash-mismatch", "package": wheel.name, "expected": wheel.sha256, "actual": digest},
            )
        parsed = parse_wheel_name(wheel.filename)
        if parsed is None or not parsed.is_pure_for_guest:
            raise RequirementsError(
                f"{wheel.filename} is not a pure-Python wheel, so it cannot run in the sandbox",
                {"reason": "native-only", "package": wheel.name, "filename": wheel.filename},
            )
        try:
            unpack_wheel(path, target)
        except WheelError as error:
            raise RequirementsError(str(error), {"reason": "install-failed", "package": wheel.name}) from error
