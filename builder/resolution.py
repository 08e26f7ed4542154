"""Dependency resolution for the guest, on resolvelib (the backtracking resolver pip uses).

The guest is CPython 3.14 on wasm32-wasi, not the Python running the builder, so pip's
own resolver (which evaluates markers against the host) is not used. Here environment
markers are evaluated with :data:`GUEST_ENVIRONMENT`, and the candidates for a project
are only the wheels a :class:`~builder.package_sources.PackageSource` says the guest can
load (pure Python, Requires-Python admitting 3.14), newest first. Prereleases are
candidates only when a specifier asks for one (or nothing else matches).

A requirement with extras, ``name[extra]``, has an identifier of its own; its candidate
depends on ``name==<same version>`` plus what the extras add (resolvelib's usual
pattern). Before resolvelib starts, the newest releases reachable from the author's
lines are looked up a level at a time (one pip call per level on an index), so that
resolution usually runs from what is already known. When no set of versions satisfies
everything, the packages in the final conflict are examined in turn: the first one
without any fitting wheel gets its source's explanation (not found, no matching
version or conflicting specifiers, native-only, source-only, no Python 3.14 support),
naming who requires it; if each has fitting wheels, the error lists every specifier in
the conflict and who asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from packaging.markers import Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version
from resolvelib import AbstractProvider, BaseReporter, ResolutionImpossible, ResolutionTooDeep, Resolver

from builder.package_sources import PackageSource, Wheel
from builder.requirement_errors import Demand, RequirementsError, combination_error

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
# Each round pins one package; index mode may run pip for a version it has not seen yet.
_MAX_ROUNDS = 5000

Log = Callable[[str], None]


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


def _identifier(name: str, extras: frozenset[str]) -> str:
    return f"{name}[{','.join(sorted(extras))}]" if extras else name


@dataclass(frozen=True)
class _Need:
    """What one requirer asks of ``name`` or ``name[extras]``."""

    name: NormalizedName
    extras: frozenset[NormalizedName]
    specifier: SpecifierSet
    required_by: str  # a candidate's label, or "requirements line N"

    @classmethod
    def of(cls, requirement: Requirement, required_by: str) -> _Need:
        extras = frozenset(canonicalize_name(extra) for extra in requirement.extras)
        return cls(canonicalize_name(requirement.name), extras, requirement.specifier, required_by)

    @property
    def identifier(self) -> str:
        return _identifier(self.name, self.extras)


@dataclass(frozen=True)
class _Candidate:
    """A wheel as the pick for ``name`` (no extras) or for ``name[extras]``."""

    wheel: Wheel
    extras: frozenset[NormalizedName]

    @property
    def identifier(self) -> str:
        return _identifier(self.wheel.name, self.extras)

    @property
    def label(self) -> str:
        return f"{self.identifier} {self.wheel.version}"


def _demands(needs: Iterable[_Need]) -> list[Demand]:
    """Group needs by project (extras or not), keeping first-seen order."""
    by_name: dict[str, Demand] = {}
    for need in needs:
        constraints = by_name.setdefault(need.name, Demand(need.name)).constraints
        if (need.specifier, need.required_by) not in constraints:
            constraints.append((need.specifier, need.required_by))
    return list(by_name.values())


class _Provider(AbstractProvider):
    def __init__(self, source: PackageSource, order: dict[str, int], log: Log):
        self.source = source
        self.order = order  # the author's line order breaks ties, as in pip
        self.log = log
        self._warned_extras: set[tuple[str, str]] = set()

    def identify(self, requirement_or_candidate: _Need | _Candidate) -> str:
        return requirement_or_candidate.identifier

    def get_preference(self, identifier, resolutions, candidates, information, backtrack_causes):
        name = identifier.partition("[")[0]
        specifiers = (spec for info in information[identifier] for spec in info.requirement.specifier)
        pinned = any(spec.operator in ("==", "===") for spec in specifiers)
        in_conflict = any(info.requirement.name == name for info in backtrack_causes)
        return (not in_conflict, not pinned, self.order.get(name, len(self.order)), identifier)

    def find_matches(self, identifier, requirements, incompatibilities) -> Callable[[], Iterator[_Candidate]]:
        name, _, extras = identifier.partition("[")
        extra_names = frozenset(extras.rstrip("]").split(",")) if extras else frozenset()
        specifier = SpecifierSet()
        for need in requirements[identifier]:
            specifier &= need.specifier
        excluded = {candidate.wheel.version for candidate in incompatibilities[identifier]}
        wheels = partial(self.source.candidates, canonicalize_name(name), specifier, excluded)
        return lambda: (_Candidate(wheel, extra_names) for wheel in wheels())

    def is_satisfied_by(self, requirement: _Need, candidate: _Candidate) -> bool:
        return requirement.specifier.contains(candidate.wheel.version, prereleases=True)

    def get_dependencies(self, candidate: _Candidate) -> list[_Need]:
        requires = [_parse_dependency(candidate, line) for line in candidate.wheel.requires_dist]
        if not candidate.extras:
            return [_Need.of(r, candidate.label) for r in requires if marker_holds(r.marker)]
        self._warn_missing_extras(candidate)
        # Only what the extras add: the base entries come with the name==version candidate.
        added = [
            r for r in requires
            if not marker_holds(r.marker) and any(marker_holds(r.marker, e) for e in sorted(candidate.extras))
        ]
        same = _Need(candidate.wheel.name, frozenset(), SpecifierSet(f"=={candidate.wheel.version}"), candidate.label)
        return [same, *(_Need.of(r, candidate.label) for r in added)]

    def warm_up(self, needs: list[_Need]) -> None:
        """Let the source look up, a level at a time, the newest releases resolution will likely pick."""
        seen: set[str] = set()
        while needs := [need for need in needs if need.identifier not in seen]:
            seen.update(need.identifier for need in needs)
            newest = self.source.prefetch({need.name: need.specifier for need in reversed(needs)})
            picks = [
                _Candidate(newest[need.name], need.extras) for need in needs
                if need.name in newest and need.specifier.contains(newest[need.name].version)
            ]
            needs = [dependency for pick in picks for dependency in self.get_dependencies(pick)]

    def _warn_missing_extras(self, candidate: _Candidate) -> None:
        provided = {canonicalize_name(extra) for extra in candidate.wheel.provides_extra}
        for extra in sorted(candidate.extras - provided):
            if (candidate.wheel.name, extra) not in self._warned_extras:
                self._warned_extras.add((candidate.wheel.name, extra))
                self.log(f'warning: {_label(candidate.wheel)} does not provide the extra "{extra}"')


def _label(wheel: Wheel) -> str:
    return f"{wheel.name} {wheel.version}"


def _parse_dependency(candidate: _Candidate, line: str) -> Requirement:
    label = _label(candidate.wheel)
    try:
        requirement = Requirement(line)
    except InvalidRequirement as error:
        raise RequirementsError(
            f"{label} declares an invalid dependency {line!r}: {error}",
            {"reason": "bad-metadata", "package": candidate.wheel.name, "requires_dist": line},
        ) from error
    if requirement.url:
        raise RequirementsError(
            f"{label} depends on a direct URL ({line!r}), which cannot be resolved from an index",
            {"reason": "unsupported-url", "package": candidate.wheel.name, "requires_dist": line},
        )
    return requirement


class _Reporter(BaseReporter):
    """Logs each pick, each re-pick of a package already picked, and each candidate set aside."""

    def __init__(self, log: Log):
        self.log = log
        self.picked: dict[str, Version] = {}

    def pinning(self, candidate: _Candidate) -> None:
        previous = self.picked.get(candidate.identifier)
        if previous is not None and previous != candidate.wheel.version:
            self.log(f"  re-picked {candidate.identifier}: {previous} -> {candidate.wheel.version}")
        else:
            self.log(f"  picked {candidate.label} ({candidate.wheel.filename})")
        self.picked[candidate.identifier] = candidate.wheel.version

    def rejecting_candidate(self, criterion, candidate: _Candidate) -> None:
        described = [line for demand in _demands(criterion.iter_requirement()) for line in demand.describe()]
        self.log(f"  set aside {candidate.label}: nothing fits {'; '.join(described)}")


def resolve(top: list[tuple[Requirement, str]], source: PackageSource, log: Log) -> list[Wheel]:
    """The wheel of every package needed by ``top`` (requirement, label) pairs, sorted by name."""
    needs = [_Need.of(requirement, label) for requirement, label in top]
    order: dict[str, int] = {}
    for need in needs:
        order.setdefault(need.name, len(order))
    provider = _Provider(source, order, log)
    provider.warm_up(needs)
    try:
        result = Resolver(provider, _Reporter(log)).resolve(needs, max_rounds=_MAX_ROUNDS)
    except ResolutionImpossible as impossible:
        raise _impossible_error(impossible.causes, source) from None
    except ResolutionTooDeep:
        raise RequirementsError(
            f"dependency resolution did not finish after {_MAX_ROUNDS} rounds; pin the versions of the "
            "packages whose picks keep changing (see the log)",
            {"reason": "unsettled"},
        ) from None
    return sorted((c.wheel for c in result.mapping.values() if not c.extras), key=lambda wheel: wheel.name)


def _impossible_error(causes, source: PackageSource) -> RequirementsError:
    demands = _demands(cause.requirement for cause in causes)
    for demand in demands:
        if next(source.candidates(demand.name, demand.specifier, set()), None) is None:
            return source.explain(demand)
    return combination_error(demands)
