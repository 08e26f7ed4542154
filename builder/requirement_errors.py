"""The builder's requirements errors, and the messages that say why a package cannot be had.

:class:`RequirementsError` is what every requirements step raises for something the
author must fix. A :class:`Demand` gathers what is asked of one package (each specifier
with who asks for it); the ``*_error`` functions turn a demand that nothing satisfies
into a message naming the package, the reason and the requirers, with a ``details``
dict whose ``reason`` is one of: not-found, no-matching-version, conflict, native-only,
source-only, unsupported-python.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from packaging.specifiers import SpecifierSet
from packaging.utils import NormalizedName
from packaging.version import Version

from builder.wheels import SANDBOX_DESCRIPTION

# Label prefix of a requirement that comes from the author's file rather than a package.
TOP_LEVEL_LABEL = "requirements line"


class RequirementsError(Exception):
    """Typed, user-facing: message says what is wrong and why; .details is a JSON-able dict."""

    def __init__(self, message: str, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}


@dataclass
class Demand:
    """Everything asked of one package: each specifier with the label of who asks."""

    name: NormalizedName
    constraints: list[tuple[SpecifierSet, str]] = field(default_factory=list)

    @property
    def specifier(self) -> SpecifierSet:
        combined = SpecifierSet()
        for specifier, _ in self.constraints:
            combined &= specifier
        return combined

    @property
    def requirers(self) -> list[str]:
        """Packages (not the author's file) that ask for this one."""
        return sorted({label for _, label in self.constraints if not label.startswith(TOP_LEVEL_LABEL)})

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


def _required_by_suffix(demand: Demand) -> str:
    requirers = demand.requirers
    return f" It is required by {', '.join(requirers)}." if requirers else ""


def _format_versions(versions: Iterable[Version], limit: int = 10) -> str:
    ordered = sorted(set(versions), reverse=True)
    shown = ", ".join(str(version) for version in ordered[:limit])
    return shown + (", ..." if len(ordered) > limit else "") if ordered else "none"


def not_found_error(demand: Demand, where: str) -> RequirementsError:
    return RequirementsError(
        f'"{demand.name}" was not found {where}: check the name.{_required_by_suffix(demand)}',
        demand.details("not-found", where=where),
    )


def no_match_error(demand: Demand, available: list[Version]) -> RequirementsError:
    described = demand.describe()
    shown = _format_versions(available)
    listed = [str(v) for v in sorted(set(available), reverse=True)]
    if len(described) > 1:
        return RequirementsError(
            f'conflicting requirements for "{demand.name}": {"; ".join(described)}; '
            f"no release satisfies all of them (available: {shown})",
            demand.details("conflict", available=listed),
        )
    return RequirementsError(
        f'no release of "{demand.name}" matches {described[0]}; available: {shown}',
        demand.details("no-matching-version", available=listed),
    )


def combination_error(demands: list[Demand]) -> RequirementsError:
    """Each package has releases that fit, but no combination of them satisfies every requirer."""
    described = [line for demand in demands for line in demand.describe()]
    return RequirementsError(
        f"conflicting requirements: {'; '.join(described)}; no combination of releases satisfies all of them",
        {**demands[0].details("conflict"), "constraints": [
            {"package": d.name, "specifier": str(spec), "required_by": label}
            for d in demands for spec, label in d.constraints
        ]},
    )


def native_error(demand: Demand) -> RequirementsError:
    return RequirementsError(
        f'"{demand.name}" has no pure-Python wheel for the sandbox ({SANDBOX_DESCRIPTION}): it ships '
        "only platform-specific builds, which means it needs a native extension, and native "
        f"extensions cannot run in the sandbox.{_required_by_suffix(demand)}",
        demand.details("native-only"),
    )


def source_only_error(demand: Demand) -> RequirementsError:
    wanted = f"{demand.name}{demand.specifier}"
    return RequirementsError(
        f'"{demand.name}" has no pure-Python wheel for the sandbox ({SANDBOX_DESCRIPTION}): its '
        "matching releases ship only a source distribution (or builds for other platforms), and "
        "wasmgate installs wheels only. If it is pure Python, build a wheel "
        f"(pip wheel --no-deps '{wanted}') and supply it through a wheelhouse."
        f"{_required_by_suffix(demand)}",
        demand.details("source-only"),
    )


def python_version_error(demand: Demand, filename: str, requires_python: str | None) -> RequirementsError:
    declared = f' (it declares Requires-Python "{requires_python}")' if requires_python else ""
    return RequirementsError(
        f'"{demand.name}" has pure-Python wheels, but none that supports Python 3.14: the newest '
        f"matching one is {filename}{declared}.{_required_by_suffix(demand)}",
        demand.details("unsupported-python", filename=filename, requires_python=requires_python),
    )


def provided_error(demand: Demand, version: str) -> RequirementsError:
    """A package the sandbox provides (the FastAPI layer), asked for at a release it is not."""
    return RequirementsError(
        f'"{demand.name}" is provided by the sandbox at {version}, the only release of it an app can use, '
        f"and {'; '.join(demand.describe())} does not accept it.",
        demand.details("provided-package", provided=version),
    )
