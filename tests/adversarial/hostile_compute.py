"""Hostile API: CPU, memory and stack bombs in Python and in C, exits, and BaseException
subclasses: each must end as its typed outcome and leave the gateway as it was."""

import json
import os
import sys

from wasmgate import App

app = App()


class Escape(BaseException):
    pass


@app.get("/cpu/python-loop")
def python_loop():
    while True:
        pass


@app.get("/cpu/big-power")
def big_power():
    return {"digits": len(str(7 ** (10**8)))}


@app.get("/cpu/c-sum")
def c_sum():
    return {"sum": sum(range(10**13))}


@app.get("/cpu/regex-backtracking")
def regex_backtracking():
    import re

    return {"match": bool(re.match(r"(a+)+b", "a" * 64))}


@app.get("/cpu/hash-loop")
def hash_loop():
    import hashlib

    digest = b"x"
    while True:
        digest = hashlib.sha256(digest).digest()


@app.get("/memory/bytearray")
def memory_bytearray():
    return {"n": len(bytearray(1 << 30))}


@app.get("/memory/list-growth")
def memory_list_growth():
    hoard = []
    while True:
        hoard.append(b"y" * 65536)


@app.get("/memory/string-repeat")
def memory_string_repeat():
    return {"n": len("z" * (10**9))}


@app.get("/memory/dict")
def memory_dict():
    return {"n": len(dict.fromkeys(range(10**9)))}


@app.get("/stack/python")
def stack_python():
    def down(n):
        return down(n + 1)

    return down(0)


@app.get("/stack/python-unlimited")
def stack_python_unlimited():
    sys.setrecursionlimit(10**7)

    def down(n):
        return down(n + 1)

    return down(0)


@app.get("/stack/json-parser")
def stack_json_parser():
    return json.loads("[" * 200_000 + "]" * 200_000)


@app.get("/stack/repr")
def stack_repr():
    value = []
    for _ in range(300_000):
        value = [value]
    return {"n": len(repr(value))}


@app.get("/stack/deepcopy")
def stack_deepcopy():
    import copy

    value = []
    for _ in range(300_000):
        value = [value]
    return {"n": len(copy.deepcopy(value))}


@app.get("/stack/compile")
def stack_compile():
    return {"value": eval("-" * 300_000 + "1")}


@app.get("/exit/sys-exit")
def exit_sys():
    sys.exit(0)


@app.get("/exit/os-exit")
def exit_os():
    os._exit(0)


@app.get("/exit/keyboard-interrupt")
def keyboard_interrupt():
    raise KeyboardInterrupt


@app.get("/exit/base-exception")
def base_exception():
    raise Escape("out of the handler")


@app.get("/exit/generator-exit")
def generator_exit():
    raise GeneratorExit


@app.get("/flood/stderr")
def flood_stderr():
    line = "e" * 8191
    for _ in range(2048):
        print(line, file=sys.stderr)
    return {"flooded": True}


@app.get("/flood/one-line")
def flood_one_line():
    sys.stdout.write("o" * (16 << 20))
    return {"flooded": True}
