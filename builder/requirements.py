"""Resolve an author's requirements to pinned pure-Python wheels for the guest, and vendor them.

The guest is CPython 3.14 on wasm32-wasi, not the Python running the builder:

1. The author's ``requirements.txt`` lines are parsed (:func:`parse_requirement_lines`);
   editable installs, direct URLs, local paths and pip options are rejected clearly,
   ``--hash=sha256:`` pins are kept, and lines whose marker is false in the guest dropped.
2. :func:`builder.resolution.resolve` finds a consistent set of versions (backtracking,
   markers and Requires-Python evaluated for the guest) among the pure wheels of a
   wheelhouse directory (offline) or of the package index (through pip); see
   :mod:`builder.package_sources`.
3. The chosen wheels are fetched into ``wheel_dir`` (reusing files already there when
   their sha256 matches the one the index or wheelhouse announced), checked against the
   author's hash pins and locked, sorted by name. In index mode a warning is logged when
   a top-level package resolved to an older release than the newest its specifier allows.

:func:`install_wheels` then unpacks the locked wheels into the directory that goes on
the guest's ``sys.path``. Failures raise :class:`RequirementsError` with a message that
says which package and why (see :mod:`builder.requirement_errors`).

Nothing is written outside ``wheel_dir`` and ``target``: scratch files, pip's included,
live in a temporary directory inside ``wheel_dir``.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from builder.package_sources import (
    PROVIDED, ExtrasOf, IndexSource, PackageSource, ProvidedSource, Wheel, WheelhouseSource,
)
from builder.requirement_errors import TOP_LEVEL_LABEL, RequirementsError
from builder.resolution import GUEST_ENVIRONMENT, marker_holds, resolve
from builder.wheels import SANDBOX_DESCRIPTION, WheelError, parse_wheel_name, sha256_of, unpack_wheel

__all__ = [
    "GUEST_ENVIRONMENT",
    "LockedWheel",
    "Provided",
    "RequirementsError",
    "TopLevelRequirement",
    "install_wheels",
    "parse_requirement_line",
    "parse_requirement_lines",
    "resolve_requirements",
]

# Leave a core for the resolution itself; the "newest release" check is best effort.
_NEWEST_CHECK_WORKERS = max(1, min(4, (os.cpu_count() or 2) - 1))

Log = Callable[[str], None]


@dataclass(frozen=True)
class LockedWheel:
    """One pinned wheel of the lock: canonical name, version, file name, sha256 of the file."""

    name: str
    version: str
    filename: str
    sha256: str


@dataclass
class Provided:
    """Packages the sandbox provides, name -> their one release (the FastAPI layer's), and
    what their extras add (see `package_sources.ProvidedSource`); `used`: the ones a
    resolution needed."""

    versions: dict[str, str]
    extras_of: ExtrasOf | None = None
    used: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TopLevelRequirement:
    """A named requirement from the author's file, with where it came from."""

    requirement: Requirement
    line_number: int
    hashes: frozenset[str] = frozenset()  # allowed sha256 hex digests (from --hash)

    @property
    def label(self) -> str:
        return f"{TOP_LEVEL_LABEL} {self.line_number}"


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


def resolve_requirements(
    requirements: list[str],
    wheel_dir: Path,
    *,
    wheelhouse: Path | None = None,
    index_url: str | None = None,
    provided: Provided | None = None,
    log: Log = lambda line: None,
) -> list[LockedWheel]:
    """Resolve requirements.txt lines to pure-Python wheels for the guest; fetch them into wheel_dir.

    Packages in ``provided`` (what the sandbox's FastAPI layer holds) are taken as installed
    at their one release, wherever they are required: they are neither fetched nor locked,
    and the ones needed are added to ``provided.used``.

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
        source: PackageSource = WheelhouseSource(Path(wheelhouse)) if wheelhouse is not None else IndexSource(work_dir, index_url)
        if provided is not None:
            source = ProvidedSource(source, provided.versions, provided.extras_of)
        names = sorted({canonicalize_name(requirement.requirement.name) for requirement in top})
        # The "is this the newest release?" check (index only) runs alongside resolution.
        with ThreadPoolExecutor(max_workers=min(_NEWEST_CHECK_WORKERS, len(names))) as pool:
            checks = {name: pool.submit(source.newest_version, name) for name in names}
            try:
                wheels = resolve([(t.requirement, t.label) for t in top], source, log)
                for wheel in wheels:
                    if wheel.location == PROVIDED and provided is not None:
                        log(f"  {wheel.name}: provided by the sandbox ({wheel.name} {wheel.version})")
                        provided.used.append(wheel.name)
                wheels = [wheel for wheel in wheels if wheel.location != PROVIDED]
                locked = _fetch(source, wheels, wheel_dir, work_dir, log)
            except BaseException:
                for check in checks.values():
                    check.cancel()  # the ones already running finish before the pool closes
                raise
            newest = {name: version for name, check in checks.items() if (version := check.result())}
    _warn_if_outdated(top, locked, newest, log)
    _check_pinned_hashes(top, locked)
    log(f"locked {len(locked)} wheel(s)")
    return locked


def _applicable(top: list[TopLevelRequirement], log: Log) -> list[TopLevelRequirement]:
    kept = []
    for requirement in top:
        if marker_holds(requirement.requirement.marker):
            kept.append(requirement)
        else:
            log(f"skipping {requirement.requirement} ({requirement.label}): its marker is false in the sandbox")
    return kept


def _fetch(source: PackageSource, wheels: list[Wheel], wheel_dir: Path, work_dir: Path, log: Log) -> list[LockedWheel]:
    """Put every chosen wheel in wheel_dir, reusing files whose sha256 checks out."""
    missing = []
    for wheel in wheels:
        existing = wheel_dir / wheel.filename
        if existing.is_file() and wheel.sha256 and sha256_of(existing) == wheel.sha256:
            log(f"reusing {wheel.filename} (sha256 verified)")
            continue
        if existing.exists():
            log(f"replacing {wheel.filename}: the cached copy does not match the expected sha256")
        missing.append(wheel)
    digests = {wheel.name: wheel.sha256 for wheel in wheels}
    if missing:
        log(f"fetching {len(missing)} wheel(s): {', '.join(wheel.filename for wheel in missing)}")
        staging = work_dir / "fetched"
        staging.mkdir()
        source.fetch(missing, staging)
        for wheel in missing:
            digests[wheel.name] = _adopt(wheel, staging, wheel_dir)
    return [
        LockedWheel(name=w.name, version=str(w.version), filename=w.filename, sha256=str(digests[w.name]))
        for w in wheels
    ]


def _adopt(wheel: Wheel, staging: Path, wheel_dir: Path) -> str:
    fetched = staging / wheel.filename
    if not fetched.is_file():
        raise RequirementsError(
            f"fetching {wheel.name} {wheel.version} did not produce {wheel.filename}",
            {"reason": "fetch-failed", "package": wheel.name, "filename": wheel.filename},
        )
    digest = sha256_of(fetched)
    if wheel.sha256 and digest != wheel.sha256:
        raise RequirementsError(
            f"{wheel.filename} has sha256 {digest}, but {wheel.sha256} was announced for it",
            {"reason": "hash-mismatch", "package": wheel.name, "expected": wheel.sha256, "actual": digest},
        )
    os.replace(fetched, wheel_dir / wheel.filename)
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


def install_wheels(locked: list[LockedWheel], wheel_dir: Path, target: Path) -> None:
    """Unpack the locked wheels into target (purelib + platlib contents, .data/purelib handled), no scripts needed, no __pycache__ written;
    a wheel whose native code is optional (wheels.OPTIONAL_NATIVE) without its extension modules."""
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
        if parsed is None or not parsed.is_usable_by_guest:
            raise RequirementsError(
                f"{wheel.filename} is not a pure-Python wheel, so it cannot run in the sandbox",
                {"reason": "native-only", "package": wheel.name, "filename": wheel.filename},
            )
        try:
            unpack_wheel(path, target, drop_native=not parsed.is_pure_for_guest)
        except WheelError as error:
            raise RequirementsError(str(error), {"reason": "install-failed", "package": wheel.name}) from error
