"""Hostile API: every way out of the sandbox it can think of (host files, mounts and `..`,
writes, environment, sockets, processes, threads, native code, host-only modules), and
state or data that should not be there. Each `/try/{name}` reports whether it was blocked."""

import errno
import os
import sys

from wasmgate import App, Request

app = App()
CALLS = {"n": 0}


def _read(path):
    with open(path, "rb") as file:
        return file.read(200)


def _write(path):
    with open(path, "wb") as file:
        file.write(b"owned")
    return "written"


def _tcp():
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    code = s.connect_ex(("127.0.0.1", 6379))
    if code not in (0, errno.EINPROGRESS):
        raise ConnectionRefusedError(code)
    return "connecting"


def _udp():
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return s.sendto(b"x", ("127.0.0.1", 53))


def _dns():
    import socket

    return socket.getaddrinfo("localhost", 80)


def _listen():
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("0.0.0.0", 8080))
    s.listen()
    return "listening"


def _subprocess():
    import subprocess

    return subprocess.run(["/bin/sh", "-c", "id"], capture_output=True)


def _thread():
    import threading

    thread = threading.Thread(target=lambda: None)
    thread.start()
    return "started"


def _ctypes():
    import ctypes

    return ctypes.CDLL(None)


def _symlink():
    os.symlink("/etc/passwd", "/request/passwd")
    return _read("/request/passwd")


def _chmod():
    """WASI has no permission bits: a chmod must change nothing."""
    path = "/0/hostile_system.py"
    before = os.stat(path).st_mode
    os.chmod(path, 0o777)
    if os.stat(path).st_mode == before:
        raise PermissionError("chmod had no effect")
    return oct(os.stat(path).st_mode)


def _pwd():
    import pwd

    return pwd.getpwall()


def _rlimit():
    import resource

    return resource.setrlimit(resource.RLIMIT_CPU, (1000, 1000))


def _signal():
    import signal

    return signal.alarm(1)


ATTEMPTS = {
    "etc-passwd": lambda: _read("/etc/passwd"),
    "proc-environ": lambda: _read("/proc/self/environ"),
    "proc-maps": lambda: _read("/proc/self/maps"),
    "dotdot-from-app": lambda: _read("/0/../../../../etc/passwd"),
    "dotdot-from-stdlib": lambda: _read("/python/../../../../etc/hostname"),
    "dotdot-from-request": lambda: _read("/request/../../../../etc/hostname"),
    "dotdot-to-the-store": lambda: os.listdir("/0/../.."),
    "list-host-root-dirs": lambda: [os.listdir(p) for p in ("/etc", "/tmp", "/root", "/home", "/work", "/proc")],
    "write-app-mount": lambda: _write("/0/owned.py"),
    "write-stdlib-mount": lambda: _write("/python/os.py"),
    "write-request-mount": lambda: _write("/request/owned"),
    "write-root": lambda: _write("/owned"),
    "write-tmp": lambda: _write("/tmp/owned"),
    "mkdir-anywhere": lambda: os.mkdir("/request/dir"),
    "symlink-out": _symlink,
    "chmod-app": _chmod,
    "list-root": lambda: os.listdir("/"),
    "tcp-loopback": _tcp,
    "udp-send": _udp,
    "dns-lookup": _dns,
    "listen": _listen,
    "fork": lambda: os.fork(),
    "subprocess": _subprocess,
    "os-system": lambda: os.system("id"),
    "execv": lambda: os.execv("/bin/sh", ["sh"]),
    "kill": lambda: os.kill(1, 9),
    "thread": _thread,
    "ctypes": _ctypes,
    "pwd": _pwd,
    "rlimit": _rlimit,
    "signal-alarm": _signal,
}


@app.get("/try/{name}")
def attempt(name: str):
    try:
        value = ATTEMPTS[name]()
    except BaseException as error:  # noqa: BLE001 - anything the sandbox raises counts as blocked
        return {"blocked": True, "error": type(error).__name__}
    return {"blocked": False, "value": repr(value)[:500]}


@app.get("/environ")
def environ():
    return {"environ": dict(os.environ)}


@app.get("/argv")
def argv():
    return {"argv": sys.argv, "executable": sys.executable, "cwd": os.getcwd()}


@app.get("/state")
def state():
    CALLS["n"] += 1
    return CALLS


@app.post("/request-dir")
def request_dir(request: Request):
    """What this request can see of uploads: its own files only."""
    return {"entries": sorted(os.listdir("/request")), "files": [f.filename for f in request.files]}
