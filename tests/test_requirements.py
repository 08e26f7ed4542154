"""Tests for builder.requirements / builder.wheels: guest-side resolution and vendoring.

Almost everything runs offline against tiny wheels built in a temporary wheelhouse.
The pip code path is exercised against a PEP 503 "simple" index made of local files
(``index_url=file://...``), and one test uses the real configured index for a tiny pure
package. The host is CPython 3.11 on Linux; markers must nevertheless be evaluated for
the guest (CPython 3.14 on WASI).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.utils import canonicalize_name

from builder.requirements import (
    GUEST_ENVIRONMENT,
    LockedWheel,
    Provided,
    RequirementsError,
    install_wheels,
    parse_requirement_lines,
    resolve_requirements,
)
from builder.wheels import parse_wheel_name, sha256_of
from wheel_factory import make_wheel


# --------------------------------------------------------------------------------------
# Helpers: tiny wheels, sdists and a file:// simple index
# --------------------------------------------------------------------------------------


def make_sdist(directory: Path, name: str, version: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{canonicalize_name(name).replace('-', '_')}-{version}.tar.gz"
    path.write_bytes(b"not really a tarball")
    return path


def make_simple_index(files_dir: Path, root: Path) -> str:
    """A PEP 503 index over files_dir, as a file:// URL pip can use as --index-url."""
    projects: dict[str, list[Path]] = {}
    for path in sorted(files_dir.iterdir()):
        wheel = parse_wheel_name(path.name)
        name = wheel.name if wheel else canonicalize_name(path.name.rsplit("-", 1)[0])
        projects.setdefault(name, []).append(path)
    for name, paths in projects.items():
        page = root / "simple" / name
        page.mkdir(parents=True)
        links = "".join(
            f'<a href="{path.as_uri()}#sha256={sha256_of(path)}">{path.name}</a><br>\n' for path in paths
        )
        (page / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    return (root / "simple").as_uri() + "/"


@pytest.fixture
def house(tmp_path: Path) -> Path:
    return tmp_path / "wheelhouse"


def resolve_offline(tmp_path: Path, house: Path, lines: list[str], **kwargs) -> list[LockedWheel]:
    return resolve_requirements(lines, tmp_path / "wheels", wheelhouse=house, **kwargs)


def names(locked: list[LockedWheel]) -> dict[str, str]:
    return {wheel.name: wheel.version for wheel in locked}


# --------------------------------------------------------------------------------------
# Guest environment
# --------------------------------------------------------------------------------------


def test_guest_environment_covers_every_marker_variable() -> None:
    assert set(default_environment()) <= set(GUEST_ENVIRONMENT)
    assert GUEST_ENVIRONMENT["python_version"] == "3.14"
    assert GUEST_ENVIRONMENT["sys_platform"] == "wasi"
    assert GUEST_ENVIRONMENT["platform_machine"] == "wasm32"


# --------------------------------------------------------------------------------------
# Resolution (offline wheelhouse)
# --------------------------------------------------------------------------------------


def test_transitive_dependency_is_locked_and_installed(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "app-lib", "1.0", ["helper>=1"])
    make_wheel(house, "helper", "1.0")
    make_wheel(house, "helper", "2.0")
    locked = resolve_offline(tmp_path, house, ["app-lib"])
    assert names(locked) == {"app-lib": "1.0", "helper": "2.0"}

    target = tmp_path / "site"
    install_wheels(locked, tmp_path / "wheels", target)
    assert (target / "app_lib" / "__init__.py").read_text() == "VERSION = '1.0'\n"
    assert (target / "helper" / "__init__.py").read_text() == "VERSION = '2.0'\n"
    assert (target / "helper-2.0.dist-info" / "METADATA").is_file()
    assert not list(target.rglob("__pycache__"))


def test_markers_are_evaluated_for_the_guest_not_the_host(tmp_path: Path, house: Path) -> None:
    make_wheel(
        house, "top", "1.0",
        [
            'old-only; python_version < "3.12"',  # true on the 3.11 host, false in the guest
            'wasi-only; sys_platform == "wasi"',  # false on the host, true in the guest
            'win-only; platform_system == "Windows"',
            'new-only; python_full_version >= "3.13"',
        ],
    )
    for name in ("old-only", "wasi-only", "win-only", "new-only"):
        make_wheel(house, name, "1.0")
    locked = resolve_offline(tmp_path, house, ["top", 'linux-only; sys_platform == "linux"'])
    assert names(locked) == {"top": "1.0", "wasi-only": "1.0", "new-only": "1.0"}


def test_extras_pull_their_dependencies_only_when_requested(tmp_path: Path, house: Path) -> None:
    make_wheel(
        house, "web", "1.0",
        ["core", 'speedup; extra == "fast"', 'legacy; extra == "fast" and python_version < "3.10"'],
        provides_extra=["fast"],
    )
    for name in ("core", "speedup", "legacy"):
        make_wheel(house, name, "1.0")
    assert names(resolve_offline(tmp_path, house, ["web"])) == {"web": "1.0", "core": "1.0"}
    assert names(resolve_offline(tmp_path, house, ["web[fast]"])) == {"web": "1.0", "core": "1.0", "speedup": "1.0"}


def test_extra_requested_by_a_dependency(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "outer", "1.0", ["web[fast]>=1"])
    make_wheel(house, "web", "1.0", ['speedup; extra == "fast"'], provides_extra=["fast"])
    make_wheel(house, "speedup", "1.0")
    assert names(resolve_offline(tmp_path, house, ["outer", "web"])) == {"outer": "1.0", "web": "1.0", "speedup": "1.0"}


def test_later_specifier_repicks_and_drops_stale_dependencies(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "alpha", "1.0", ["beta<2"])
    make_wheel(house, "beta", "1.0")
    make_wheel(house, "beta", "2.0", ["gamma"])  # only the newer beta needs gamma
    make_wheel(house, "gamma", "1.0")
    logged: list[str] = []
    locked = resolve_offline(tmp_path, house, ["beta", "alpha"], log=logged.append)
    assert names(locked) == {"alpha": "1.0", "beta": "1.0"}
    assert any("re-picked beta" in line for line in logged)


def test_version_conflict_names_package_and_specifiers(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "alpha", "1.0", ["beta>=2"])
    make_wheel(house, "beta", "1.0")
    make_wheel(house, "beta", "2.0")
    with pytest.raises(RequirementsError) as caught:
        resolve_offline(tmp_path, house, ["alpha", "beta<2"])
    message = str(caught.value)
    assert '"beta"' in message and "beta>=2 (from alpha 1.0)" in message and "beta<2 (from requirements line 2)" in message
    assert caught.value.details["reason"] == "conflict"
    assert caught.value.details["package"] == "beta"


def test_backtracks_to_an_older_release_when_the_newest_conflicts_with_a_pin(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "alpha", "2.0", ["beta>=2"])  # the newest alpha wants a beta the author excludes
    make_wheel(house, "alpha", "1.0", ["beta<2"])
    make_wheel(house, "beta", "1.0")
    make_wheel(house, "beta", "2.0")
    locked = resolve_offline(tmp_path, house, ["alpha", "beta<2"])
    assert names(locked) == {"alpha": "1.0", "beta": "1.0"}
    assert sorted(path.name for path in (tmp_path / "wheels").iterdir()) == sorted(w.filename for w in locked)


def test_backtracks_through_a_transitive_dependency(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "alpha", "2.0", ["gamma>=2"])
    make_wheel(house, "alpha", "1.0", ["gamma<2"])
    make_wheel(house, "gamma", "2.0", ["beta>=2"])  # only found to conflict once gamma is picked
    make_wheel(house, "gamma", "1.0", ["beta"])
    make_wheel(house, "beta", "1.0")
    make_wheel(house, "beta", "2.0")
    locked = resolve_offline(tmp_path, house, ["alpha", "beta<2"])
    assert names(locked) == {"alpha": "1.0", "beta": "1.0", "gamma": "1.0"}


def test_backtracks_past_a_release_whose_dependency_is_native_only(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "alpha", "2.0", ["nat"])
    make_wheel(house, "alpha", "1.0")
    make_wheel(house, "nat", "1.0", tag="cp314-cp314-manylinux_2_17_x86_64")
    assert names(resolve_offline(tmp_path, house, ["alpha"])) == {"alpha": "1.0"}


def test_impossible_set_reports_a_conflict_naming_the_requirers(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "alpha", "2.0", ["beta>=3"])
    make_wheel(house, "alpha", "1.0", ["beta>=2"])  # no alpha accepts a beta below 2
    for version in ("1.0", "2.0", "3.0"):
        make_wheel(house, "beta", version)
    with pytest.raises(RequirementsError) as caught:
        resolve_offline(tmp_path, house, ["alpha", "beta<2"])
    message = str(caught.value)
    assert message.startswith('conflicting requirements for "beta"')
    assert "beta<2 (from requirements line 2)" in message
    assert "beta>=3 (from alpha 2.0)" in message and "beta>=2 (from alpha 1.0)" in message
    assert caught.value.details["reason"] == "conflict"
    assert caught.value.details["package"] == "beta"
    assert {c["required_by"] for c in caught.value.details["constraints"]} == {"requirements line 2", "alpha 2.0", "alpha 1.0"}


def test_native_only_package_is_rejected(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "nat", "1.0", tag="cp314-cp314-manylinux_2_17_x86_64")
    with pytest.raises(RequirementsError) as caught:
        resolve_offline(tmp_path, house, ["nat"])
    message = str(caught.value)
    assert '"nat"' in message and "native" in message and "CPython 3.14 on wasm32-wasi" in message
    assert caught.value.details["reason"] == "native-only"


# A project whose extension module is an optional speed-up (builder.wheels.OPTIONAL_NATIVE),
# shaped as MarkupSafe ships it: the same function in C and in Python, the C one preferred.
SPEEDUPS_FILES = {
    "markupsafe/__init__.py": (
        "try:\n    from ._speedups import escape\nexcept ImportError:\n    from ._native import escape\n"
    ),
    "markupsafe/_native.py": "def escape(s):\n    return s.replace('<', '&lt;')\n",
    "markupsafe/_speedups.c": "/* the C source, shipped too */\n",
    "markupsafe/_speedups.cpython-314-x86_64-linux-gnu.so": "\x7fELF not loadable in the guest",
}


def test_a_project_whose_native_code_is_optional_installs_without_it(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "markupsafe", "3.0", tag="cp314-cp314-manylinux_2_17_x86_64", files=SPEEDUPS_FILES)
    make_wheel(house, "markupsafe", "3.1", tag="cp313-cp313-manylinux_2_17_x86_64", files=SPEEDUPS_FILES)
    locked = resolve_offline(tmp_path, house, ["markupsafe"])
    assert [(wheel.name, wheel.version) for wheel in locked] == [("markupsafe", "3.0")]  # no CPython 3.13 build
    target = tmp_path / "site"
    install_wheels(locked, tmp_path / "wheels", target)
    installed = sorted(p.name for p in (target / "markupsafe").iterdir())
    assert installed == ["__init__.py", "_native.py", "_speedups.c"]  # the extension module left out
    record = (target / "markupsafe-3.0.dist-info" / "RECORD").read_text()
    assert "_native.py" in record and ".so" not in record  # the installed files, as installed
    # Imported as the guest would, with nothing but what was installed on the path (-S: not
    # the host's site-packages, which hold the real MarkupSafe).
    escaped = subprocess.run(
        [sys.executable, "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
         "from markupsafe import escape; print(escape('<b>'))", str(target)],
        capture_output=True, text=True, check=True,
    ).stdout
    assert escaped == "&lt;b>\n"  # its Python implementation


def test_a_pure_wheel_is_preferred_to_one_whose_native_code_is_left_out(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "pyyaml", "6.0", tag="cp314-cp314-manylinux_2_17_x86_64", files={"yaml/__init__.py": "C = 1\n"})
    make_wheel(house, "pyyaml", "6.0", tag="py3-none-any", files={"yaml/__init__.py": "PURE = 1\n"})
    assert [wheel.filename for wheel in resolve_offline(tmp_path, house, ["pyyaml"])] == ["pyyaml-6.0-py3-none-any.whl"]


@pytest.mark.usefixtures("only_local_index")
def test_index_mode_takes_a_cpython_314_wheel_of_a_project_whose_native_code_is_optional(tmp_path: Path) -> None:
    files = tmp_path / "files"
    make_wheel(files, "markupsafe", "3.0", tag="cp314-cp314-manylinux2014_x86_64", files=SPEEDUPS_FILES)
    make_wheel(files, "markupsafe", "3.1", tag="cp313-cp313-manylinux2014_x86_64", files=SPEEDUPS_FILES)
    make_wheel(files, "templating", "1.0", ["markupsafe>=2"])
    index_url = make_simple_index(files, tmp_path / "index")
    logged: list[str] = []
    locked = resolve_requirements(["templating"], tmp_path / "wheels", index_url=index_url, log=logged.append)
    assert names(locked) == {"markupsafe": "3.0", "templating": "1.0"}
    for wheel in locked:
        assert sha256_of(tmp_path / "wheels" / wheel.filename) == wheel.sha256  # fetched, each with its own target
    install_wheels(locked, tmp_path / "wheels", tmp_path / "site")
    assert not list((tmp_path / "site").rglob("*.so"))


def test_packages_the_sandbox_provides_are_taken_as_installed_wherever_they_are_required(
    tmp_path: Path, house: Path
) -> None:
    # pydantic's own wheel would need pydantic-core, which has no wheel here: only the
    # sandbox's release can satisfy it.
    make_wheel(house, "settings-lib", "2.0", ["pydantic>=2.7", "dotenv-lib"])
    make_wheel(house, "dotenv-lib", "1.0")
    make_wheel(house, "pydantic", "2.14.4", ["pydantic-core==2.50.5"])
    provided = Provided({"pydantic": "2.14.4", "pydantic-core": "2.50.5"})
    logged: list[str] = []
    locked = resolve_offline(tmp_path, house, ["settings-lib"], provided=provided, log=logged.append)
    assert names(locked) == {"settings-lib": "2.0", "dotenv-lib": "1.0"}  # neither fetched nor locked
    assert provided.used == ["pydantic"] and "  pydantic: provided by the sandbox (pydantic 2.14.4)" in logged
    assert sorted(path.name for path in (tmp_path / "wheels").iterdir()) == sorted(w.filename for w in locked)

    make_wheel(house, "old-settings", "1.0", ["pydantic<2"])
    with pytest.raises(RequirementsError) as caught:
        resolve_offline(tmp_path, house, ["old-settings"], provided=Provided({"pydantic": "2.14.4"}))
    message = str(caught.value)
    assert '"pydantic" is provided by the sandbox at 2.14.4' in message and "pydantic<2 (from old-settings 1.0)" in message
    assert caught.value.details["reason"] == "provided-package"


def test_the_extras_of_a_provided_package_are_resolved_from_what_it_declares(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "email-lib", "2.1")
    extras = {"pydantic": (("email-lib>=2; extra == 'email'",), ("email", "timezone"))}
    provided = Provided({"pydantic": "2.14.4"}, lambda name: extras.get(name, ((), ())))
    locked = resolve_offline(tmp_path, house, ["pydantic[email]>=2"], provided=provided)
    assert names(locked) == {"email-lib": "2.1"} and provided.used == ["pydantic"]


def test_native_dependency_names_who_requires_it(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "wrapper", "1.0", ["nat>=1"])
    make_wheel(house, "nat", "1.0", tag="cp314-cp314-manylinux_2_17_x86_64")
    with pytest.raises(RequirementsError, match=r'"nat" has no pure-Python wheel.*required by wrapper 1\.0'):
        resolve_offline(tmp_path, house, ["wrapper"])


def test_missing_package_is_reported_as_not_found(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "present", "1.0")
    with pytest.raises(RequirementsError, match='"absent" was not found in the wheelhouse') as caught:
        resolve_offline(tmp_path, house, ["absent"])
    assert caught.value.details["reason"] == "not-found"


def test_no_matching_version_lists_what_exists(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "present", "1.0")
    with pytest.raises(RequirementsError, match=r'no release of "present" matches present>=5.*available: 1\.0'):
        resolve_offline(tmp_path, house, ["present>=5"])


def test_sdist_only_package_is_rejected_with_advice(tmp_path: Path, house: Path) -> None:
    make_sdist(house, "sourcey", "1.0")
    with pytest.raises(RequirementsError, match=r'"sourcey" has no pure-Python wheel.*source distribution') as caught:
        resolve_offline(tmp_path, house, ["sourcey"])
    assert caught.value.details["reason"] == "source-only"


def test_requires_python_is_checked_for_314(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "oldpy", "1.0")
    make_wheel(house, "oldpy", "2.0", requires_python="<3.14")
    assert names(resolve_offline(tmp_path, house, ["oldpy"])) == {"oldpy": "1.0"}
    with pytest.raises(RequirementsError, match=r"none that supports Python 3\.14.*<3\.14"):
        resolve_offline(tmp_path, house, ["oldpy>=2"])


def test_prereleases_only_when_asked(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "pre", "1.0")
    make_wheel(house, "pre", "2.0b1")
    assert names(resolve_offline(tmp_path, house, ["pre"])) == {"pre": "1.0"}
    assert names(resolve_offline(tmp_path, house, ["pre>=2.0b1"])) == {"pre": "2.0b1"}


def test_lock_is_deterministic_and_sorted(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "zeta", "1.0", ["mid"])
    make_wheel(house, "alpha", "1.0", ["mid>=1"])
    make_wheel(house, "mid", "1.0")
    first = resolve_offline(tmp_path, house, ["zeta", "alpha"])
    second = resolve_offline(tmp_path, house, ["alpha", "# comment", "", "zeta"])
    assert first == second
    assert [wheel.name for wheel in first] == ["alpha", "mid", "zeta"]


def test_sha256_matches_file_and_tampered_copies_are_replaced(tmp_path: Path, house: Path) -> None:
    source = make_wheel(house, "solo", "1.0")
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    (wheel_dir / source.name).write_bytes(b"tampered")
    logged: list[str] = []
    (locked,) = resolve_requirements(["solo"], wheel_dir, wheelhouse=house, log=logged.append)
    assert locked.sha256 == sha256_of(wheel_dir / locked.filename) == hashlib.sha256(source.read_bytes()).hexdigest()
    assert any("replacing" in line for line in logged)

    logged.clear()
    resolve_requirements(["solo"], wheel_dir, wheelhouse=house, log=logged.append)
    assert any("reusing" in line for line in logged)


def test_hash_pins_are_enforced(tmp_path: Path, house: Path) -> None:
    source = make_wheel(house, "solo", "1.0")
    good = hashlib.sha256(source.read_bytes()).hexdigest()
    assert resolve_offline(tmp_path, house, [f"solo==1.0 --hash=sha256:{good}"])[0].sha256 == good
    with pytest.raises(RequirementsError, match="not among the --hash values") as caught:
        resolve_offline(tmp_path, house, [f"solo==1.0 \\", f"    --hash=sha256:{'0' * 64}"])
    assert caught.value.details["reason"] == "hash-mismatch"


def test_nothing_is_written_outside_wheel_dir_and_target(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "solo", "1.0")
    before = sorted(path.name for path in house.iterdir())
    locked = resolve_offline(tmp_path, house, ["solo"])
    install_wheels(locked, tmp_path / "wheels", tmp_path / "site")
    assert sorted(path.name for path in house.iterdir()) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["site", "wheelhouse", "wheels"]
    assert sorted(path.name for path in (tmp_path / "wheels").iterdir()) == ["solo-1.0-py3-none-any.whl"]


def test_empty_requirements_lock_nothing(tmp_path: Path, house: Path) -> None:
    assert resolve_offline(tmp_path, house, ["", "# only a comment", "   "]) == []


# --------------------------------------------------------------------------------------
# Requirement lines
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("-e .", "editable"),
        ("--editable ./proj", "editable"),
        ("-r other.txt", "nested requirement"),
        ("--index-url https://example.org/simple", "index options"),
        ("--pre", "not supported"),
        ("https://example.org/pkg-1.0-py3-none-any.whl", "direct URLs and local paths"),
        ("./local/project", "direct URLs and local paths"),
        ("pkg @ https://example.org/pkg.whl", "direct URL requirements"),
        ("pkg[x] @ file:///tmp/pkg", "direct URL requirements"),
        ("pkg-1.0-py3-none-any.whl", "direct URLs and local paths"),
        ("pkg==1.0 --config-settings x=y", "per-requirement pip options"),
        ("not a requirement !!", "not a valid requirement"),
    ],
)
def test_unsupported_lines_are_rejected_clearly(line: str, fragment: str) -> None:
    with pytest.raises(RequirementsError, match=fragment) as caught:
        parse_requirement_lines(["six", line])
    assert str(caught.value).startswith("requirements line 2")
    assert caught.value.details["line"] == 2


def test_comments_blanks_and_inline_comments_are_skipped() -> None:
    parsed = parse_requirement_lines(["# header", "", "attrs>=23  # why", "  idna\t", "pkg[extra]==1.0; python_version>='3'"])
    assert [str(item.requirement) for item in parsed] == ["attrs>=23", "idna", 'pkg[extra]==1.0; python_version >= "3"']
    assert [item.line_number for item in parsed] == [3, 4, 5]


# --------------------------------------------------------------------------------------
# Installing
# --------------------------------------------------------------------------------------


def test_install_handles_data_purelib_and_skips_scripts(tmp_path: Path, house: Path) -> None:
    make_wheel(
        house, "datapkg", "1.0",
        files={
            "datapkg/__init__.py": "",
            "datapkg-1.0.data/purelib/datapkg_extra.py": "X = 1\n",
            "datapkg-1.0.data/scripts/tool": "#!python\nprint('hi')\n",
            "datapkg-1.0.data/data/share/doc.txt": "doc\n",
            "datapkg-1.0.dist-info/entry_points.txt": "[console_scripts]\ndp = datapkg:main\n",
        },
    )
    locked = resolve_offline(tmp_path, house, ["datapkg"])
    target = tmp_path / "site"
    install_wheels(locked, tmp_path / "wheels", target)
    installed = sorted(str(path.relative_to(target)) for path in target.rglob("*") if path.is_file())
    assert installed == [
        "datapkg-1.0.dist-info/INSTALLER",
        "datapkg-1.0.dist-info/METADATA",
        "datapkg-1.0.dist-info/RECORD",
        "datapkg-1.0.dist-info/WHEEL",
        "datapkg-1.0.dist-info/entry_points.txt",
        "datapkg/__init__.py",
        "datapkg_extra.py",
    ]


def test_install_rejects_wheel_whose_hash_changed(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "solo", "1.0")
    (locked,) = resolve_offline(tmp_path, house, ["solo"])
    (tmp_path / "wheels" / locked.filename).write_bytes(b"swapped")
    with pytest.raises(RequirementsError, match="sha256"):
        install_wheels([locked], tmp_path / "wheels", tmp_path / "site")


def test_install_refuses_two_wheels_with_the_same_file(tmp_path: Path, house: Path) -> None:
    make_wheel(house, "one", "1.0", files={"shared.py": "A = 1\n"})
    make_wheel(house, "two", "1.0", files={"shared.py": "A = 2\n"})
    locked = resolve_offline(tmp_path, house, ["one", "two"])
    with pytest.raises(RequirementsError, match="same file"):
        install_wheels(locked, tmp_path / "wheels", tmp_path / "site")


# --------------------------------------------------------------------------------------
# The pip path, against a local file:// index (no network)
# --------------------------------------------------------------------------------------


@pytest.fixture
def only_local_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hide pip's configured extra indexes and find-links, so only the test's index is seen."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for variable in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.usefixtures("only_local_index")
def test_index_mode_resolves_with_guest_markers(tmp_path: Path) -> None:
    files = tmp_path / "files"
    make_wheel(files, "app-lib", "1.0", ["helper>=1", 'old-only; python_version < "3.12"', 'wasi-only; sys_platform == "wasi"'])
    make_wheel(files, "helper", "1.0")
    make_wheel(files, "helper", "2.0")
    make_wheel(files, "wasi-only", "1.0")
    make_wheel(files, "old-only", "1.0")
    index_url = make_simple_index(files, tmp_path / "index")
    logged: list[str] = []
    locked = resolve_requirements(["app-lib"], tmp_path / "wheels", index_url=index_url, log=logged.append)
    assert names(locked) == {"app-lib": "1.0", "helper": "2.0", "wasi-only": "1.0"}
    for wheel in locked:
        assert sha256_of(tmp_path / "wheels" / wheel.filename) == wheel.sha256
    assert not any(line.startswith("warning") for line in logged)

    logged.clear()  # second run: same lock, files reused after hash check
    assert resolve_requirements(["app-lib"], tmp_path / "wheels", index_url=index_url, log=logged.append) == locked
    assert sum("reusing" in line for line in logged) == 3
    assert sorted(path.name for path in (tmp_path / "wheels").iterdir()) == sorted(w.filename for w in locked)


@pytest.mark.usefixtures("only_local_index")
def test_index_mode_native_only_and_missing(tmp_path: Path) -> None:
    files = tmp_path / "files"
    make_wheel(files, "nat", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    make_wheel(files, "plain", "1.0")
    index_url = make_simple_index(files, tmp_path / "index")
    with pytest.raises(RequirementsError, match=r'"nat" has no pure-Python wheel.*native') as caught:
        resolve_requirements(["nat"], tmp_path / "wheels", index_url=index_url)
    assert caught.value.details["reason"] == "native-only"
    with pytest.raises(RequirementsError, match='"ghost" was not found on the package index'):
        resolve_requirements(["ghost"], tmp_path / "wheels", index_url=index_url)


@pytest.mark.usefixtures("only_local_index")
def test_index_mode_backtracks_to_an_older_release(tmp_path: Path) -> None:
    files = tmp_path / "files"
    make_wheel(files, "alpha", "2.0", ["beta>=2"])
    make_wheel(files, "alpha", "1.0", ["beta<2"])
    make_wheel(files, "beta", "1.0")
    make_wheel(files, "beta", "2.0")
    index_url = make_simple_index(files, tmp_path / "index")
    logged: list[str] = []
    locked = resolve_requirements(["alpha", "beta<2"], tmp_path / "wheels", index_url=index_url, log=logged.append)
    assert names(locked) == {"alpha": "1.0", "beta": "1.0"}
    assert sorted(path.name for path in (tmp_path / "wheels").iterdir()) == sorted(w.filename for w in locked)
    warnings = [line for line in logged if line.startswith("warning")]
    assert len(warnings) == 1 and '"alpha" resolved to 1.0' in warnings[0] and "2.0" in warnings[0]


@pytest.mark.usefixtures("only_local_index")
def test_index_mode_warns_when_an_older_release_was_picked(tmp_path: Path) -> None:
    files = tmp_path / "files"
    make_wheel(files, "fancy", "1.0")
    make_sdist(files, "fancy", "2.0")  # the newest release has no wheel at all
    index_url = make_simple_index(files, tmp_path / "index")
    logged: list[str] = []
    locked = resolve_requirements(["fancy"], tmp_path / "wheels", index_url=index_url, log=logged.append)
    assert names(locked) == {"fancy": "1.0"}
    warnings = [line for line in logged if line.startswith("warning")]
    assert len(warnings) == 1 and "fancy" in warnings[0] and "2.0" in warnings[0]


# --------------------------------------------------------------------------------------
# The real configured index
# --------------------------------------------------------------------------------------


def test_real_index_tiny_pure_package(tmp_path: Path) -> None:
    locked = resolve_requirements(["six==1.16.0"], tmp_path / "wheels")
    assert [(wheel.name, wheel.version) for wheel in locked] == [("six", "1.16.0")]
    assert parse_wheel_name(locked[0].filename).is_pure_for_guest
    assert sha256_of(tmp_path / "wheels" / locked[0].filename) == locked[0].sha256
    install_wheels(locked, tmp_path / "wheels", tmp_path / "site")
    assert (tmp_path / "site" / "six.py").is_file()
