"""Tiny, valid wheels written on the fly, for offline builder tests."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    requires_dist: list[str] | None = None,
    tag: str = "py3-none-any",
    files: dict[str, str] | None = None,
    provides_extra: list[str] | None = None,
    requires_python: str | None = None,
) -> Path:
    """Write a minimal valid wheel (METADATA, WHEEL, RECORD) and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = canonicalize_name(name).replace("-", "_")
    dist_info = f"{stem}-{version}.dist-info"
    metadata = [f"Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    metadata += [f"Requires-Python: {requires_python}"] if requires_python else []
    metadata += [f"Provides-Extra: {extra}" for extra in provides_extra or []]
    metadata += [f"Requires-Dist: {line}" for line in requires_dist or []]
    contents = dict(files if files is not None else {f"{stem}/__init__.py": f"VERSION = {version!r}\n"})
    contents[f"{dist_info}/METADATA"] = "\n".join(metadata) + "\n"
    contents[f"{dist_info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: {'true' if tag.endswith('any') else 'false'}\n"
        f"Tag: {tag}\n"
    )
    record_lines = [
        f"{path},{record_hash(text.encode())},{len(text.encode())}" for path, text in contents.items()
    ]
    record_lines.append(f"{dist_info}/RECORD,,")
    contents[f"{dist_info}/RECORD"] = "\n".join(record_lines) + "\n"
    path = directory / f"{stem}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in contents.items():
            archive.writestr(member, text)
    return path
