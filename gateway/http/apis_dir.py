"""Serve every API in a folder and keep them in step with it (`wasmgate dev`, `serve --apis-dir`).

In the folder, each `NAME.py` file is an API named NAME, and so is each sub-folder NAME/ that
holds `app.py` or `main.py` (its entry module, the one `wasmgate build` picks: app.py first),
with its pure-Python requirements in an optional `NAME/requirements.txt`. Skipped: names that
start with `.` or `_`, `test_*.py` and `conftest.py` (tests live beside the apps), and a file
NAME.py when a folder NAME/ is an API too (the folder wins).

At start every API is deployed (created, or a new version of the API of that name), then the
folder is watched (watchfiles); a change rebuilds and hot-swaps only the API it belongs to.
What is built is a snapshot of the source, and its content hash decides: a source whose
content is what was last built (or last failed) is not built again, a touch or a save without
edits included, across restarts too. A build that fails is printed (its message, file and
line, the guest's traceback if any) and the previous version keeps serving. An API whose file
or folder is removed keeps serving its last version: removing it is `wasmgate delete NAME`.

Each API's key is made once and kept, with what was deployed, in DATA_DIR/apis-dir.json (mode
0600), so the key printed stays valid across restarts; a key revoked by hand is replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import watchfiles

from gateway.errors import ApiError
from gateway.http.readiness import holds_readiness
from gateway.services import Services
from gateway.state.specs import NAME_PATTERN, ApiSpec

log = logging.getLogger("wasmgate.gateway")

ENTRY_FILES = ("app.py", "main.py")
STATE_FILE = "apis-dir.json"
# The sandbox's own modules that import the author's (frames of no interest to the author).
IMPORT_GLUE = ('guest_entry.py"', 'wasmgate_target.py"')


@holds_readiness
def serve_apis_dir(svc: Services) -> list[str]:
    """The after-start task of a gateway whose settings name an `apis_dir`: deploy what is
    there, follow the folder from then on (in a thread of its own), and return the ids of the
    folder's APIs that serve: the gateway is not ready before each process serves them."""
    assert svc.settings.apis_dir is not None
    folder = ApisDir(svc, svc.settings.apis_dir)
    names = set(folder.load_all())
    threading.Thread(target=folder.watch, name="apis-dir", daemon=True).start()
    return [api["id"] for api in svc.deployments.list_apis() if api["name"] in names]


def api_name(root: Path, path: Path) -> str | None:
    """The API a path in the folder belongs to (it may be gone already), or None."""
    try:
        parts = path.resolve().relative_to(root.resolve()).parts
    except ValueError:
        return None
    if not parts or _skipped(parts[0]):
        return None
    if len(parts) == 1 and parts[0].endswith(".py"):
        return None if _is_test(parts[0]) else parts[0][:-3]
    top = root / parts[0]
    return parts[0] if len(parts) > 1 or top.is_dir() or not top.exists() else None


def source_of(root: Path, name: str) -> Path | None:
    """The folder or file that is API `name` now, or None."""
    folder = root / name
    if folder.is_dir() and any((folder / entry).is_file() for entry in ENTRY_FILES):
        return folder
    module = root / f"{name}.py"
    return module if module.is_file() and not _is_test(module.name) else None


def scan(root: Path) -> list[str]:
    """The names of the APIs in the folder, sorted."""
    names = {api_name(root, path) for path in root.iterdir()}
    return sorted(name for name in names if name is not None and source_of(root, name) is not None)


def _skipped(name: str) -> bool:
    return name.startswith((".", "_"))


def _is_test(filename: str) -> bool:
    return filename.startswith("test_") or filename == "conftest.py"


class ApisDir:
    def __init__(self, svc: Services, root: Path) -> None:
        self.svc = svc
        self.root = root.resolve()
        self.base_url = f"http://{svc.settings.host}:{svc.settings.port}"
        self.state_file = svc.settings.data_dir / STATE_FILE
        self.state: dict[str, dict[str, Any]] = _read_state(self.state_file)
        self.data_dir = svc.settings.data_dir.resolve()
        self._default_filter = watchfiles.DefaultFilter()
        self.tried: dict[str, str] = {}  # API name -> content hash of the last source built (or that failed)

    def load_all(self) -> list[str]:
        """Deploy (or keep) every API in the folder; their names."""
        names = scan(self.root)
        _say(f"serving {len(names)} API(s) from {self.root}" + ("" if names else ": none there yet"))
        for name in names:
            self._sync_guarded(name)
        return names

    def watch(self) -> None:
        """Follow the folder's changes, for as long as the process runs."""
        for changes in watchfiles.watch(self.root, watch_filter=self._relevant, raise_interrupt=False):
            for name in sorted({api_name(self.root, Path(path)) for _, path in changes} - {None}):
                self._sync_guarded(name)

    def _sync_guarded(self, name: str) -> None:
        """`sync`, where a failure that is not the API's (a bug, a full disk) is logged and the
        folder still followed."""
        try:
            self.sync(name)
        except Exception:
            log.exception("serving %s from %s failed", name, self.root)

    def _relevant(self, change: watchfiles.Change, path: str) -> bool:
        """Not editor droppings, caches or the gateway's own data dir (it may be inside the folder)."""
        return self._default_filter(change, path) and not Path(path).resolve().is_relative_to(self.data_dir)

    def sync(self, name: str) -> None:
        """Bring API `name` in line with its source: build it if its content changed."""
        source = source_of(self.root, name)
        if source is None:
            if self.tried.pop(name, None) is not None:
                _say(f"{name}: its source is gone; the API keeps serving its last version "
                     f"(`wasmgate delete {name}` removes it)")
            return
        if not re.match(NAME_PATTERN, name):
            _say(f"{source.name}: skipped: an API name is letters, digits, '.', '_' and '-' (from a letter or digit)")
            return
        with tempfile.TemporaryDirectory(prefix="apis-dir-", dir=self.svc.settings.sources_dir) as scratch:
            try:
                snapshot = _snapshot(source, Path(scratch))
            except OSError:
                return  # changing under our feet: the watcher reports the change that follows
            digest = _content_hash(Path(scratch))
            if self.tried.get(name) == digest:
                _say(f"{name}: unchanged, not rebuilt")
                return
            self.tried[name] = digest
            self._deploy(name, snapshot, digest)

    def _deploy(self, name: str, snapshot: Path, digest: str) -> None:
        deployments = self.svc.deployments
        existing = next((api for api in deployments.list_apis() if api["name"] == name), None)
        record = self.state.get(name, {})
        requirements = _requirements(snapshot)
        try:
            if existing is None:
                _say(f"{name}: building {_shown(snapshot)}")
                created = deployments.create(ApiSpec(name=name, requirements=requirements), snapshot, _progress(name))
                api_id, key_id, key = created["id"], created["key_id"], created["api_key"]
            else:
                api_id = existing["id"]
                built = (record.get("id"), record.get("source"), record.get("version"))
                if built != (api_id, digest, existing["version"]):  # edited, or rolled back by hand
                    _say(f"{name}: building {_shown(snapshot)} (version {existing['version']} serves meanwhile)")
                    deployments.update(api_id, ApiSpec(requirements=requirements), snapshot, _progress(name))
                key_id, key = self._key(api_id, record)
        except ApiError as error:
            self._failed(name, error, existing)
            return
        version = deployments.describe(api_id)["version"]
        self.state[name] = {"id": api_id, "source": digest, "version": version, "key_id": key_id, "key": key}
        _write_state(self.state_file, self.state)
        self._print(name, api_id, version, key)

    def _key(self, api_id: str, record: dict[str, Any]) -> tuple[str, str]:
        """The key kept for the API (id, key), or a new one when it was revoked or never made."""
        if record.get("id") == api_id and record.get("key_id") in {
            key["id"] for key in self.svc.deployments.list_keys(api_id)
        }:
            return record["key_id"], record["key"]
        fresh = self.svc.deployments.create_key(api_id)
        return fresh["id"], fresh["api_key"]

    def _failed(self, name: str, error: ApiError, existing: dict[str, Any] | None) -> None:
        keeps = f"; version {existing['version']} keeps serving" if existing else ""
        _say(f"{name}: error: {error.code}: {error.message}{keeps}")
        details = error.details or {}
        for detail in ("file", "line", "packages"):
            if details.get(detail) is not None:
                _say(f"  {detail}: {details[detail]}")
        if details.get("guest_traceback"):
            _say("\n".join(f"  | {line}" for line in _author_frames(details["guest_traceback"])))

    def _print(self, name: str, api_id: str, version: int, key: str) -> None:
        url = f"{self.base_url}/run/{api_id}"
        print(f"\n{name} (version {version}): {url}\n  key:  {key}\n  docs: {url}/docs\n", flush=True)


def _snapshot(source: Path, scratch: Path) -> Path:
    """A copy of the API's source to build from, so that edits during a build do not mix."""
    target = scratch / source.name
    if source.is_file():
        shutil.copyfile(source, target)
    else:
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(".*", "__pycache__", "*.py[co]"))
    return target


def _author_frames(traceback: str) -> list[str]:
    """A build's guest traceback as the author needs it: their frames, the code and the error,
    without the traceback header and the sandbox's import glue."""
    lines, glue = [], False
    for line in traceback.splitlines():
        if line.startswith("Traceback (most recent call last)"):
            continue
        if line.startswith("  File "):
            glue = line.split(",", 1)[0].endswith(IMPORT_GLUE)
        elif not line.startswith("    "):
            glue = False
        if not glue:
            lines.append(re.sub(r'File "/\d+/', 'File "', line))  # the sandbox's mount points
    return lines


def _shown(snapshot: Path) -> str:
    return f"{snapshot.name}/" if snapshot.is_dir() else snapshot.name


def _content_hash(scratch: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path for path in scratch.rglob("*") if path.is_file()):
        digest.update(file.relative_to(scratch).as_posix().encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()


def _requirements(snapshot: Path) -> list[str] | None:
    file = snapshot / "requirements.txt"
    return file.read_text().splitlines() if snapshot.is_dir() and file.is_file() else None


def _progress(name: str):  # noqa: ANN202
    return lambda line: _say(f"  {name}: {line}")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _read_state(path: Path) -> dict[str, dict[str, Any]]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_state(path: Path, state: dict[str, dict[str, Any]]) -> None:
    """Written whole by rename, readable by its owner only (it holds API keys)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(state, file, indent=2)
    os.replace(temporary, path)
