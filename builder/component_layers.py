"""Moves the core modules every bundle shares out of a component, into layers.

componentize-py's component embeds CPython's compiled libraries (libpython, libc, its own
runtime: ~7 MB of WebAssembly) beside the one module whose data is the pre-initialized heap.
Compared byte for byte between two APIs, only the heap module and a small one holding the
snapshot's globals differ. So each large core module without memory or data of its own
becomes a component-level import of a core module named after its sha256
(`wasmgate-layer-m<sha256>`), which the store keeps once and the runtime compiles and loads
once (`runtime.bundle.BundleStore.load_layer`); the bundle's component keeps the rest.

An imported module costs at every instantiation what an embedded one costs once, at compile
time: wasmtime 51 (its C API has no component InstancePre) type-checks the import and finds
each of the module's imports and used exports by name. Measured per fresh instance (make,
call, close): libpython alone (649 imports, 418 exports used) +0.13-0.18 ms CPU; libc and
componentize-py's runtime as well +0.45-0.55 ms for 0.6 MB more shared. Hence MIN_LAYER_BYTES.

The import takes the embedded module's place in the section order, so the core module index
space, and everything that refers to it, stays as it was. Its declared type lists the
module's own imports and the exports the component uses, so the layer satisfies it, and
the component can reach nothing else.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

from builder.wasm_binary import WasmFormatError, _name, _uleb, sections, uleb
from runtime.bundle import LAYER_PREFIX, layer_name

COMPONENT_MAGIC = b"\0asm\x0d\0\x01\0"
MIN_LAYER_BYTES = 1 << 20  # libpython (6.3 MB) is a layer; libc (0.4 MB) and the runtime (0.3 MB) are not
# Component sections, and the core sorts of its index spaces.
_CORE_MODULE, _CORE_INSTANCE, _CORE_TYPE, _ALIAS, _IMPORT = 1, 2, 3, 6, 10
_SORT_CORE_TYPE, _SORT_CORE_MODULE, _SORT_CORE_INSTANCE = 0x10, 0x11, 0x12
# Core module sections.
_TYPE, _MOD_IMPORT, _FUNCTION, _TABLE, _MEMORY, _GLOBAL, _EXPORT, _DATA, _TAG = 1, 2, 3, 4, 5, 6, 7, 11, 13


class NotSplittable(WasmFormatError):
    """A core module uses an encoding this splitter does not describe: it stays embedded."""


def split(component: bytes, min_bytes: int = MIN_LAYER_BYTES) -> tuple[bytes, dict[str, bytes]]:
    """(the component importing its large code-only core modules, {sha256: module})."""
    out = bytearray(COMPONENT_MAGIC)
    layers: dict[str, bytes] = {}
    used = _used_exports(component)
    core_types = modules = 0
    for section, start, end in sections(component, COMPONENT_MAGIC):
        payload = component[start:end]
        if section == _CORE_TYPE:
            core_types += _uleb(component, start)[0]
        elif section == _ALIAS:
            core_types += _core_type_aliases(payload)
        modules += _modules_defined(section, payload)
        if section == _CORE_MODULE and len(payload) >= min_bytes and _code_only(payload):
            try:
                module_type = _module_type(payload, used.get(modules - 1, set()))
            except NotSplittable:
                module_type = None
            if module_type is not None:
                digest = hashlib.sha256(payload).hexdigest()
                layers[digest] = payload
                out += _section(_CORE_TYPE, uleb(1) + module_type)
                name = layer_name(digest).encode()
                entry = b"\x00" + uleb(len(name)) + name + b"\x00\x11" + uleb(core_types)
                out += _section(_IMPORT, uleb(1) + entry)
                core_types += 1
                continue
        out += bytes([section]) + uleb(len(payload)) + payload
    return bytes(out), layers


def layer_imports(component: bytes) -> list[str]:
    """The sha256 of every layer a (split) component imports."""
    found = []
    for section, start, _end in sections(component, COMPONENT_MAGIC):
        if section != _IMPORT:
            continue
        count, at = _uleb(component, start)
        for _ in range(count):
            at += 1  # importname' prefix
            name, at = _name(component, at)
            if name.startswith(LAYER_PREFIX):
                found.append(name[len(LAYER_PREFIX):])
            at = _externdesc_end(component, at)
    return found


def _section(section: int, payload: bytes) -> bytes:
    return bytes([section]) + uleb(len(payload)) + payload


def _externdesc_end(data: bytes, at: int) -> int:
    kind = data[at]
    if kind == 0x00:  # core module: 0x11 typeidx
        return _uleb(data, at + 2)[1]
    if kind == 0x03:  # type bound: eq idx | sub resource
        return _uleb(data, at + 2)[1] if data[at + 1] == 0x00 else at + 2
    if kind == 0x02:  # value: 0x00 valtype (a primitive byte or a type index) | 0x01
        return at + 2 if data[at + 1] == 0x01 else _uleb(data, at + 2)[1]
    return _uleb(data, at + 1)[1]  # func, component, instance: a type index


def _aliases(payload: bytes) -> Iterator[tuple[int | None, int, int, str]]:
    """(core sort or None, target kind, instance index, export name) of each alias; an outer
    alias gives its count and index in place of the last two."""
    count, at = _uleb(payload, 0)
    for _ in range(count):
        core_sort = None
        if payload[at] == 0x00:  # a core sort: 0x00 then its byte
            core_sort, at = payload[at + 1], at + 2
        else:
            at += 1
        target = payload[at]
        if target in (0x00, 0x01):  # export of a (core) instance: index, name
            index, at = _uleb(payload, at + 1)
            name, at = _name(payload, at)
            yield core_sort, target, index, name
        elif target == 0x02:  # outer: count, index
            outer, at = _uleb(payload, at + 1)
            index, at = _uleb(payload, at)
            yield core_sort, target, outer, str(index)
        else:
            raise WasmFormatError(f"unknown alias target {target}")


def _core_type_aliases(payload: bytes) -> int:
    return sum(sort == _SORT_CORE_TYPE for sort, _t, _i, _n in _aliases(payload))


def _modules_defined(section: int, payload: bytes) -> int:
    """How many entries of the core module index space a component section adds."""
    if section == _CORE_MODULE:
        return 1
    if section == _IMPORT:
        count, at, found = *_uleb(payload, 0), 0
        for _ in range(count):
            _field, at = _name(payload, at + 1)
            found += payload[at] == 0x00 and payload[at + 1] == _SORT_CORE_MODULE
            at = _externdesc_end(payload, at)
        return found
    if section == _ALIAS:
        return sum(sort == _SORT_CORE_MODULE for sort, _t, _i, _n in _aliases(payload))
    return 0


def core_instances(payload: bytes) -> Iterator[tuple[int | None, list[tuple[str, int]]]]:
    """For each core instance a core instance section defines: the module it instantiates and
    its (argument name, instance) pairs, or (None, []) for one made of inline exports."""
    count, at = _uleb(payload, 0)
    for _ in range(count):
        kind = payload[at]
        if kind == 0x00:  # instantiate a module with named instances
            module, at = _uleb(payload, at + 1)
            args, at = _uleb(payload, at)
            pairs = []
            for _ in range(args):
                arg, at = _name(payload, at)
                instance, at = _uleb(payload, at + 1)  # 0x12: an instance
                pairs.append((arg, instance))
            yield module, pairs
        else:  # made of inline exports: name, sort, index each
            exports, at = _uleb(payload, at + 1)
            for _ in range(exports):
                _field, at = _name(payload, at)
                _index, at = _uleb(payload, at + 1)
            yield None, []


def _used_exports(component: bytes) -> dict[int, set[str]]:
    """For each core module (by index), the export names the component uses of its
    instances: aliased, or imported by a module the instance is passed to. Only these are
    declared when the module becomes an import: a declared export is looked up and type
    checked at every instantiation (libpython alone has ~1,900)."""
    modules: list[bytes | None] = []  # core module index -> its bytes (None: imported)
    instance_of: list[int | None] = []  # core instance index -> the module it instantiates
    passed: list[tuple[int, str, int]] = []  # (module instantiated, argument name, instance)
    used: dict[int, set[str]] = {}
    for section, start, end in sections(component, COMPONENT_MAGIC):
        payload = component[start:end]
        if section == _CORE_MODULE:
            modules.append(payload)
        elif section == _IMPORT:
            modules += [None] * _modules_defined(section, payload)
        elif section == _CORE_INSTANCE:
            for module, args in core_instances(payload):
                passed += [(module, arg, instance) for arg, instance in args]
                instance_of.append(module)
        elif section == _ALIAS:
            for sort, target, index, name in _aliases(payload):
                if target == 0x01 and instance_of[index] is not None:
                    used.setdefault(instance_of[index], set()).add(name)
                if sort == _SORT_CORE_MODULE:
                    modules.append(None)
                elif sort == _SORT_CORE_INSTANCE:
                    instance_of.append(None)
    for module, arg, instance in passed:
        source = instance_of[instance]
        if source is not None and modules[module] is not None:
            fields = {field for mod, field, _kind in _module_imports(modules[module]) if mod == arg}
            used.setdefault(source, set()).update(fields)
    return used


def _code_only(module: bytes) -> bool:
    """Whether a core module defines no memory and carries no data: such a module is part
    of the toolchain, the same in every bundle (the snapshot lives in the one with memory)."""
    return not any(section in (_MEMORY, _DATA) for section, _s, _e in sections(module))


def _module_imports(module: bytes) -> list[tuple[str, str, int]]:
    """(module, name, kind) of each import of a core module."""
    found = []
    for section, start, _end in sections(module):
        if section == _MOD_IMPORT:
            count, at = _uleb(module, start)
            for _ in range(count):
                source, at = _name(module, at)
                field, at = _name(module, at)
                found.append((source, field, module[at]))
                at = _desc_end(module, at)
    return found


def _entries(data: bytes, start: int, entry_end: Callable[[bytes, int], int]) -> Iterator[tuple[int, int]]:
    """The (start, end) of each entry of a vector section beginning at `start`."""
    count, at = _uleb(data, start)
    for _ in range(count):
        stop = entry_end(data, at)
        yield at, stop
        at = stop


def _table_end(data: bytes, at: int) -> int:
    if data[at] == 0x40:
        raise NotSplittable("a table with an initialiser expression")
    return _limits_end(data, _reftype_end(data, at))


def _tag_end(data: bytes, at: int) -> int:
    return _uleb(data, at + 1)[1]  # attribute byte, type index


def _module_type(module: bytes, exports_used: set[str]) -> bytes:
    """The encoded core module type (`0x50 decl*`) of this module's imports and of the
    exports the component uses, its types declared in its own order so that type indices
    keep their meaning."""
    types: list[bytes] = []
    decls: list[bytes] = []
    funcs: list[int] = []  # type index of every function, imported ones first
    tables: list[bytes] = []
    memories: list[bytes] = []
    globals_: list[bytes] = []
    tags: list[bytes] = []
    exports: list[bytes] = []
    for section, start, end in sections(module):
        if section == _TYPE:
            types += [module[at:stop] for at, stop in _entries(module, start, _functype_end)]
        elif section == _MOD_IMPORT:
            count, at = _uleb(module, start)
            for _ in range(count):
                entry_start = at
                _module, at = _name(module, at)
                _field, at = _name(module, at)
                desc_at = at
                at = _desc_end(module, at)
                decls.append(b"\x00" + module[entry_start:at])
                _record(module[desc_at:at], funcs, tables, memories, globals_, tags)
        elif section == _FUNCTION:
            count, at = _uleb(module, start)
            for _ in range(count):
                index, at = _uleb(module, at)
                funcs.append(index)
        elif section == _TABLE:
            tables += [b"\x01" + module[at:stop] for at, stop in _entries(module, start, _table_end)]
        elif section == _GLOBAL:
            count, at = _uleb(module, start)
            for _ in range(count):
                type_end = _valtype_end(module, at) + 1
                globals_.append(b"\x03" + module[at:type_end])
                at = _const_expr_end(module, type_end)
        elif section == _TAG:
            tags += [b"\x04" + module[at:stop] for at, stop in _entries(module, start, _tag_end)]
        elif section == _EXPORT:
            count, at = _uleb(module, start)
            for _ in range(count):
                name_start = at
                field, at = _name(module, at)
                name = module[name_start:at]
                kind = module[at]
                index, at = _uleb(module, at + 1)
                if field not in exports_used:
                    continue
                if kind == 0:
                    desc = b"\x00" + uleb(funcs[index])
                else:
                    desc = {1: tables, 2: memories, 3: globals_, 4: tags}[kind][index]
                exports.append(b"\x03" + name + desc)
    body = [b"\x01" + t for t in types] + decls + exports  # 0x01 type, 0x00 import, 0x03 export
    return b"\x50" + uleb(len(body)) + b"".join(body)


def _record(desc: bytes, funcs: list, tables: list, memories: list, globals_: list, tags: list) -> None:
    kind = desc[0]
    if kind == 0:
        funcs.append(_uleb(desc, 1)[0])
    else:
        {1: tables, 2: memories, 3: globals_, 4: tags}[kind].append(desc)


def _valtype_end(data: bytes, at: int) -> int:
    byte = data[at]
    if byte in (0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F):
        return at + 1
    raise NotSplittable(f"value type 0x{byte:02x}")


def _reftype_end(data: bytes, at: int) -> int:
    if data[at] in (0x70, 0x6F):
        return at + 1
    raise NotSplittable(f"reference type 0x{data[at]:02x}")


def _limits_end(data: bytes, at: int) -> int:
    flags = data[at]
    if flags not in (0x00, 0x01):
        raise NotSplittable(f"limits flags 0x{flags:02x}")
    _, at = _uleb(data, at + 1)
    return _uleb(data, at)[1] if flags & 1 else at


def _functype_end(data: bytes, at: int) -> int:
    if data[at] != 0x60:
        raise NotSplittable(f"type form 0x{data[at]:02x}")
    at += 1
    for _ in range(2):  # parameters, results
        count, at = _uleb(data, at)
        for _ in range(count):
            at = _valtype_end(data, at)
    return at


def _desc_end(data: bytes, at: int) -> int:
    kind = data[at]
    if kind == 0:
        return _uleb(data, at + 1)[1]
    if kind == 1:
        return _limits_end(data, _reftype_end(data, at + 1))
    if kind == 2:
        return _limits_end(data, at + 1)
    if kind == 3:
        return _valtype_end(data, at + 1) + 1
    if kind == 4:
        return _uleb(data, at + 2)[1]
    raise NotSplittable(f"import kind {kind}")


def _const_expr_end(data: bytes, at: int) -> int:
    while True:
        op = data[at]
        at += 1
        if op == 0x0B:
            return at
        if op in (0x41, 0x42):  # i32.const, i64.const: signed LEB128
            while data[at] & 0x80:
                at += 1
            at += 1
        elif op == 0x43:
            at += 4
        elif op == 0x44:
            at += 8
        elif op in (0x23, 0xD2):  # global.get, ref.func
            _, at = _uleb(data, at)
        elif op == 0xD0:  # ref.null t
            at += 1
        elif op in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended constant arithmetic
            pass
        else:
            raise NotSplittable(f"constant expression opcode 0x{op:02x}")
