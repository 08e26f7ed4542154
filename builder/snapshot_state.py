"""Reads the state of a running component instance out, and writes it back as a component's
initial state: pre-initialization, as componentize-py's (component-init's) does it, redone
on an instance of a component that is already a snapshot.

`instrument` adds to a component what lets the host read its state: each core module that
defines a memory or mutable globals exports them, a small accessor module reads them, and
the component exports, lifted, one function per mutable global (`wasmgate-snapshot-g<N>`),
one that answers the whole memory as one latin-1 string (`wasmgate-snapshot-memory`: a
`list<u8>` would cross wasmtime-py a byte at a time), and the two resets componentize-py
runs at the end of its own pre-initialization (`wasmgate-snapshot-reset-adapter`,
`wasmgate-snapshot-reset-preopens`: the WASI adapter forgets the handles it holds, wasi-libc
its preopened directories, so that an instance made of the snapshot asks its own host for
them). `rewrite` writes what was read into the original component: the memory as active data
segments (all-zero pages left out), its size as the memory's minimum, each mutable global's
value as its initializer.

It handles the components componentize-py makes (one memory, i32 and i64 globals, no data
in any module but the memory's); anything else is a SnapshotUnsupported, and the builder
then runs componentize-py itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from builder.component_layers import COMPONENT_MAGIC, core_instances
from builder.wasm_binary import MAGIC, WasmFormatError, _encoded_name, _import_end, _name, _sleb, _uleb, sections, uleb

MEMORY_EXPORT = "wasmgate-snapshot-memory"
RESET_ADAPTER_EXPORT = "wasmgate-snapshot-reset-adapter"
RESET_PREOPENS_EXPORT = "wasmgate-snapshot-reset-preopens"
_RESETS = {RESET_ADAPTER_EXPORT: "reset_adapter_state", RESET_PREOPENS_EXPORT: "__wasilibc_reset_preopens"}
PAGE = 65536
_ZERO_RUN = 4096  # all-zero runs of this size (aligned) are left out of the data segments
# Component sections and sorts.
_C_CUSTOM, _C_MODULE, _C_CORE_INSTANCE, _C_CORE_TYPE, _C_COMPONENT, _C_INSTANCE = 0, 1, 2, 3, 4, 5
_C_ALIAS, _C_TYPE, _C_CANON, _C_START, _C_IMPORT, _C_EXPORT = 6, 7, 8, 9, 10, 11
_CORE_FUNC, _CORE_MEMORY, _CORE_MODULE_SORT, _CORE_INSTANCE_SORT = 0x00, 0x02, 0x11, 0x12
_FUNC, _TYPE, _COMPONENT, _INSTANCE = 0x01, 0x03, 0x04, 0x05
# Core module sections.
_M_TYPE, _M_IMPORT, _M_FUNCTION, _M_MEMORY, _M_GLOBAL, _M_EXPORT = 1, 2, 3, 5, 6, 7
_M_START, _M_ELEMENT, _M_CODE, _M_DATA, _M_DATA_COUNT = 8, 9, 10, 11, 12
_I32, _I64 = 0x7F, 0x7E
_LIFTED_TYPE = {_I32: 0x7A, _I64: 0x78}  # s32, s64


class SnapshotUnsupported(WasmFormatError):
    """The component is not one this module can instrument or rewrite."""


@dataclass
class Target:
    """A core module holding state: where it is instantiated, and what it defines."""

    module: int
    instance: int = -1
    memory: bytes | None = None  # its memory's limits, as encoded, when it defines one
    globals: list[tuple[int, int]] = field(default_factory=list)  # (index, valtype) of each mutable one

    def global_export(self, index: int) -> str:
        return f"wasmgate-snapshot-m{self.module}-g{index}"


@dataclass
class Plan:
    targets: list[Target]

    def global_exports(self) -> list[tuple[Target, int, int, str]]:
        """(target, global index, its value type, the component's export reading it) of every
        mutable global."""
        return [(t, index, valtype, t.global_export(index)) for t in self.targets for index, valtype in t.globals]


@dataclass
class State:
    memory: bytes
    globals: dict[str, int]  # by the component export that read it


def instrument(component: bytes) -> tuple[bytes, Plan]:
    """The component with its state readable (module docstring), and what was added."""
    spaces = _IndexSpaces.of(component)
    modules = spaces.modules
    targets = []
    for index, module in enumerate(modules):
        if module is None:
            continue
        target = _target(index, module)
        if target is None:
            continue
        instances = [i for i, m in enumerate(spaces.instantiates) if m == index]
        if len(instances) != 1:
            raise SnapshotUnsupported(f"core module {index} is instantiated {len(instances)} times")
        target.instance = instances[0]
        targets.append(target)
    memories = [t for t in targets if t.memory is not None]
    if len(memories) != 1:
        raise SnapshotUnsupported(f"{len(memories)} core modules define a memory (one is handled)")
    resets = {export: _instance_exporting(spaces, name) for export, name in _RESETS.items()}
    plan = Plan(targets)

    out = bytearray(COMPONENT_MAGIC)
    module_index = 0
    for section, start, end in sections(component, COMPONENT_MAGIC):
        payload = component[start:end]
        if section == _C_MODULE:
            target = next((t for t in targets if t.module == module_index), None)
            if target is not None:
                payload = _with_state_exports(payload, target)
            module_index += 1
        out += _section(section, payload)
    out += _accessors(plan, memories[0], resets, spaces)
    return bytes(out), plan


def rewrite(component: bytes, plan: Plan, state: State) -> bytes:
    """`component` (as before `instrument`) starting from `state`."""
    if len(state.memory) % PAGE:
        raise SnapshotUnsupported("the memory read is not a whole number of pages")
    out = bytearray(COMPONENT_MAGIC)
    module_index = 0
    by_module = {t.module: t for t in plan.targets}
    for section, start, end in sections(component, COMPONENT_MAGIC):
        payload = component[start:end]
        if section == _C_MODULE:
            target = by_module.get(module_index)
            if target is not None:
                payload = _module_with_state(payload, target, state)
            module_index += 1
        out += _section(section, payload)
    return bytes(out)


# --- reading a component's index spaces -------------------------------------------------------


@dataclass
class _IndexSpaces:
    """How many items of each kind the component's top level defines (what appended items
    are numbered after), the core modules (None: not defined here), the module each core
    instance instantiates (None: made of exports), and each module's exports."""

    modules: list[bytes | None] = field(default_factory=list)
    instantiates: list[int | None] = field(default_factory=list)
    core_funcs: int = 0
    core_memories: int = 0
    funcs: int = 0
    types: int = 0

    @classmethod
    def of(cls, component: bytes) -> _IndexSpaces:
        spaces = cls()
        for section, start, end in sections(component, COMPONENT_MAGIC):
            payload = component[start:end]
            if section == _C_MODULE:
                spaces.modules.append(payload)
            elif section == _C_CORE_INSTANCE:
                spaces.instantiates += [module for module, _args in core_instances(payload)]
            elif section == _C_TYPE:
                spaces.types += _uleb(payload, 0)[0]
            elif section == _C_ALIAS:
                spaces._aliases(payload)
            elif section == _C_CANON:
                spaces._canons(payload)
            elif section == _C_IMPORT:
                spaces._imports(payload)
            elif section == _C_EXPORT:
                spaces._exports(payload)
            elif section in (_C_COMPONENT, _C_INSTANCE, _C_CORE_TYPE, _C_CUSTOM):
                continue  # no index of the kinds counted here
            else:
                raise SnapshotUnsupported(f"component section {section} is not handled")
        return spaces

    def _add(self, sort: int, core: bool) -> None:
        if core:
            if sort == _CORE_FUNC:
                self.core_funcs += 1
            elif sort == _CORE_MEMORY:
                self.core_memories += 1
            elif sort == _CORE_MODULE_SORT:
                self.modules.append(None)
            elif sort == _CORE_INSTANCE_SORT:
                self.instantiates.append(None)
        elif sort == _FUNC:
            self.funcs += 1
        elif sort == _TYPE:
            self.types += 1

    def _aliases(self, payload: bytes) -> None:
        count, at = _uleb(payload, 0)
        for _ in range(count):
            core = payload[at] == 0x00
            sort, at = (payload[at + 1], at + 2) if core else (payload[at], at + 1)
            target = payload[at]
            if target in (0x00, 0x01):  # (core) export: instance, name
                _index, at = _uleb(payload, at + 1)
                _field, at = _name(payload, at)
            elif target == 0x02:  # outer: count, index
                at = _uleb(payload, _uleb(payload, at + 1)[1])[1]
            else:
                raise SnapshotUnsupported(f"alias target {target}")
            self._add(sort, core)

    def _canons(self, payload: bytes) -> None:
        count, at = _uleb(payload, 0)
        for _ in range(count):
            kind = payload[at]
            if kind == 0x00:  # lift: 0x00 core func, options, type
                at = _options_end(payload, _uleb(payload, at + 2)[1])
                at = _uleb(payload, at)[1]
                self.funcs += 1
            elif kind == 0x01:  # lower: 0x00 func, options
                at = _options_end(payload, _uleb(payload, at + 2)[1])
                self.core_funcs += 1
            elif kind in (0x02, 0x03, 0x04, 0x07):  # resource.new / drop / rep / drop async: type
                at = _uleb(payload, at + 1)[1]
                self.core_funcs += 1
            else:
                raise SnapshotUnsupported(f"canonical function kind {kind:#x}")

    def _imports(self, payload: bytes) -> None:
        count, at = _uleb(payload, 0)
        for _ in range(count):
            _field, at = _name(payload, at + 1)
            kind = payload[at]
            if kind == 0x00:  # core module
                self.modules.append(None)
                at = _uleb(payload, at + 2)[1]
            elif kind == 0x03:  # type bound
                self.types += 1
                at = _uleb(payload, at + 2)[1] if payload[at + 1] == 0x00 else at + 2
            elif kind == 0x02:  # value
                at = at + 2 if payload[at + 1] == 0x01 else _uleb(payload, at + 2)[1]
            else:
                self._add(kind, False)
                at = _uleb(payload, at + 1)[1]

    def _exports(self, payload: bytes) -> None:
        count, at = _uleb(payload, 0)
        for _ in range(count):
            _field, at = _name(payload, at + 1)
            core = payload[at] == 0x00
            sort, at = (payload[at + 1], at + 2) if core else (payload[at], at + 1)
            _index, at = _uleb(payload, at)
            if payload[at] == 0x01:  # an ascribed type
                raise SnapshotUnsupported("an export with an ascribed type")
            at += 1
            self._add(sort, core)


def _options_end(data: bytes, at: int) -> int:
    count, at = _uleb(data, at)
    for _ in range(count):
        option = data[at]
        at += 1
        if option in (0x03, 0x04, 0x05, 0x07):  # memory, realloc, post-return, callback: an index
            at = _uleb(data, at)[1]
        elif option not in (0x00, 0x01, 0x02, 0x06):  # string encodings, async
            raise SnapshotUnsupported(f"canonical option {option:#x}")
    return at


def _instance_exporting(spaces: _IndexSpaces, name: str) -> int:
    """The one core instance whose module exports function `name`."""
    found = [
        instance for instance, module in enumerate(spaces.instantiates)
        if module is not None and spaces.modules[module] is not None and name in _exports(spaces.modules[module])
    ]
    if len(found) != 1:
        raise SnapshotUnsupported(f"{len(found)} core instances export `{name}`")
    return found[0]


# --- core modules ---------------------------------------------------------------------------


def _section(section: int, payload: bytes) -> bytes:
    return bytes([section]) + uleb(len(payload)) + payload


def _exports(module: bytes) -> set[str]:
    names = set()
    for section, start, _end in sections(module, MAGIC):
        if section == _M_EXPORT:
            count, at = _uleb(module, start)
            for _ in range(count):
                name, at = _name(module, at)
                names.add(name)
                at = _uleb(module, at + 1)[1]
    return names


def _target(index: int, module: bytes) -> Target | None:
    """What state module `index` defines (None: none), checking it is state this handles."""
    target = Target(index)
    imported_globals = 0
    active_data = passive_data = False
    for section, start, end in sections(module, MAGIC):
        if section == _M_IMPORT:
            imported_globals = sum(kind == 0x03 for kind in _import_kinds(module, start))
        elif section == _M_MEMORY:
            count, at = _uleb(module, start)
            if count != 1 or module[at] not in (0x00, 0x01):
                raise SnapshotUnsupported(f"core module {index} defines memories this does not handle")
            target.memory = module[at:end]
        elif section == _M_GLOBAL:
            for position, (valtype, mutable, _at, _end) in enumerate(_globals(module, start)):
                if mutable:
                    if valtype not in _LIFTED_TYPE:
                        raise SnapshotUnsupported(f"core module {index} has a mutable global of type {valtype:#x}")
                    target.globals.append((imported_globals + position, valtype))
        elif section == _M_DATA:
            kinds = _data_kinds(module, start)
            active_data, passive_data = any(k != 1 for k in kinds), 1 in kinds
    if active_data and target.memory is None:  # it would write over the snapshot at every instantiation
        raise SnapshotUnsupported(f"core module {index} has data for a memory not its own")
    if passive_data and target.memory is not None:  # `rewrite` would renumber its segments
        raise SnapshotUnsupported(f"core module {index}, which defines the memory, has passive data")
    return target if target.memory is not None or target.globals else None


def _data_kinds(module: bytes, start: int) -> list[int]:
    """Each data segment's kind: 0 or 2 active, 1 passive (inert until `memory.init`)."""
    kinds = []
    count, at = _uleb(module, start)
    for _ in range(count):
        kind, at = _uleb(module, at)
        if kind == 2:
            at = _uleb(module, at)[1]
        if kind != 1:
            at = _const_expr_end(module, at)
        size, at = _uleb(module, at)
        at += size
        kinds.append(kind)
    return kinds


def _import_kinds(module: bytes, start: int) -> list[int]:
    kinds = []
    count, at = _uleb(module, start)
    for _ in range(count):
        _module, at = _name(module, at)
        _field, at = _name(module, at)
        kinds.append(module[at])
        at = _import_end(module, at)
    return kinds


def _globals(module: bytes, start: int) -> list[tuple[int, int, int, int]]:
    """(valtype, mutable, initializer start, initializer end) of each defined global."""
    found = []
    count, at = _uleb(module, start)
    for _ in range(count):
        valtype, mutable = module[at], module[at + 1]
        init = at + 2
        at = _const_expr_end(module, init)
        found.append((valtype, mutable, init, at))
    return found


def _const_expr_end(module: bytes, at: int) -> int:
    while True:
        op = module[at]
        at += 1
        if op == 0x0B:
            return at
        if op in (0x41, 0x42):  # i32.const, i64.const
            at = _sleb(module, at)[1]
        elif op in (0x23, 0xD2):  # global.get, ref.func
            at = _uleb(module, at)[1]
        elif op == 0x43:
            at += 4
        elif op == 0x44:
            at += 8
        elif op == 0xD0:  # ref.null: heap type
            at = _sleb(module, at)[1]
        elif op not in (0x6A, 0x6B, 0x6C, 0x7C, 0x7D, 0x7E):  # extended constant arithmetic
            raise SnapshotUnsupported(f"constant expression opcode {op:#x}")


def _with_state_exports(module: bytes, target: Target) -> bytes:
    """The module also exporting its memory and each mutable global under snapshot names."""
    added = [(target.global_export(index), 0x03, index) for index, _type in target.globals]
    if target.memory is not None:
        added.append((MEMORY_EXPORT, 0x02, 0))
    entries = b"".join(_encoded_name(name) + bytes([kind]) + uleb(index) for name, kind, index in added)
    out = bytearray(MAGIC)
    done = False
    for section, start, end in sections(module, MAGIC):
        payload = module[start:end]
        if section == _M_EXPORT:
            count, at = _uleb(module, start)
            payload = uleb(count + len(added)) + module[at:end] + entries
            done = True
        elif not done and section in (_M_START, _M_ELEMENT, _M_DATA_COUNT, _M_CODE, _M_DATA):
            out += _section(_M_EXPORT, uleb(len(added)) + entries)
            done = True
        out += _section(section, payload)
    if not done:
        out += _section(_M_EXPORT, uleb(len(added)) + entries)
    return bytes(out)


def _module_with_state(module: bytes, target: Target, state: State) -> bytes:
    out = bytearray(MAGIC)
    values = {index: state.globals[target.global_export(index)] for index, _type in target.globals}
    imported_globals = 0
    for section, start, end in sections(module, MAGIC):
        payload = module[start:end]
        if section == _M_IMPORT:
            imported_globals = sum(kind == 0x03 for kind in _import_kinds(module, start))
        elif section == _M_GLOBAL:
            body = bytearray(module[start:_uleb(module, start)[1]])
            for position, (valtype, mutable, init, init_end) in enumerate(_globals(module, start)):
                body += bytes([valtype, mutable])
                index = imported_globals + position
                if mutable:
                    opcode = 0x41 if valtype == _I32 else 0x42
                    body += bytes([opcode]) + _sleb_encode(_signed(values[index], 32 if valtype == _I32 else 64)) + b"\x0b"
                else:
                    body += module[init:init_end]
            payload = bytes(body)
        elif section == _M_MEMORY and target.memory is not None:
            payload = uleb(1) + _limits(target.memory, len(state.memory) // PAGE)
        elif section == _M_DATA and target.memory is not None:
            payload = _data_section(state.memory)
        out += _section(section, payload)
    return bytes(out)


def _limits(encoded: bytes, minimum: int) -> bytes:
    flags = encoded[0]
    old_minimum, at = _uleb(encoded, 1)
    out = bytes([flags]) + uleb(max(minimum, old_minimum))
    if flags & 1:
        maximum, _at = _uleb(encoded, at)
        if maximum < minimum:
            raise SnapshotUnsupported("the memory grew past its declared maximum")
        out += uleb(maximum)
    return out


def _data_section(memory: bytes) -> bytes:
    """Active segments for memory 0 holding `memory`, all-zero aligned runs left out."""
    zero = bytes(_ZERO_RUN)
    segments = []
    start = None
    view = memory
    for at in range(0, len(view), _ZERO_RUN):
        empty = view[at:at + _ZERO_RUN] == zero
        if not empty and start is None:
            start = at
        elif empty and start is not None:
            segments.append((start, at))
            start = None
    if start is not None:
        segments.append((start, len(view)))
    body = bytearray(uleb(len(segments)))
    for begin, end in segments:
        body += b"\x00\x41" + _sleb_encode(_signed(begin, 32)) + b"\x0b" + uleb(end - begin) + view[begin:end]
    return bytes(body)


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _sleb_encode(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


# --- the accessors appended to the component -----------------------------------------------


def _accessors(plan: Plan, memory: Target, resets: dict[str, int], spaces: _IndexSpaces) -> bytes:
    """The accessor module, its instance, and the lifted, exported functions (module docstring)."""
    readers = plan.global_exports()
    types = b"\x60\x00\x01\x7f" + b"\x60\x00\x01\x7e"  # () -> i32, () -> i64
    imports = [_encoded_name(str(t.instance)) + _encoded_name(export) + bytes([0x03, valtype, 1])
               for t, _index, valtype, export in readers]
    imports.append(_encoded_name(str(memory.instance)) + _encoded_name(MEMORY_EXPORT) + b"\x02" + memory.memory)
    functions = [0 if valtype == _I32 else 1 for _t, _index, valtype, _e in readers] + [0]
    bodies = [b"\x00\x23" + uleb(position) + b"\x0b" for position in range(len(readers))]
    bodies.append(
        b"\x01\x01\x7f"  # one i32 local
        b"\x41\x01\x40\x00\x22\x00\x41\x7f\x46\x04\x40\x00\x0b"  # grow by a page, trap if it fails
        b"\x20\x00\x41\x10\x74\x21\x00"  # local = the old size in bytes
        b"\x20\x00\x41\x00\x36\x02\x00"  # [local] = 0 (the string's start)
        b"\x20\x00\x20\x00\x36\x02\x04"  # [local + 4] = local (its length)
        b"\x20\x00\x0b"  # return where the pair is
    )
    names = [str(position) for position in range(len(bodies))]
    module = bytearray(MAGIC)
    module += _section(_M_TYPE, uleb(2) + types)
    module += _section(_M_IMPORT, uleb(len(imports)) + b"".join(imports))
    module += _section(_M_FUNCTION, uleb(len(functions)) + b"".join(uleb(f) for f in functions))
    module += _section(_M_EXPORT, uleb(len(names)) + b"".join(
        _encoded_name(name) + b"\x00" + uleb(position) for position, name in enumerate(names)))
    module += _section(_M_CODE, uleb(len(bodies)) + b"".join(uleb(len(body)) + body for body in bodies))

    instances = sorted({t.instance for t in plan.targets})
    accessor_instance = len(spaces.instantiates)
    instantiate = b"\x00" + uleb(len(spaces.modules)) + uleb(len(instances)) + b"".join(
        _encoded_name(str(i)) + b"\x12" + uleb(i) for i in instances)

    aliases = [b"\x00\x00\x01" + uleb(accessor_instance) + _encoded_name(name) for name in names]
    aliases += [b"\x00\x00\x01" + uleb(resets[export]) + _encoded_name(_RESETS[export]) for export in _RESETS]
    aliases.append(b"\x00\x02\x01" + uleb(memory.instance) + _encoded_name(MEMORY_EXPORT))
    memory_index = spaces.core_memories

    lifted_types = [b"\x40\x00\x00" + bytes([_LIFTED_TYPE[valtype]]) for valtype in (_I32, _I64)]
    lifted_types += [b"\x40\x00\x00\x73", b"\x40\x00\x01\x00"]  # () -> string, () -> ()
    s32, s64, string, unit = (spaces.types + i for i in range(4))

    canons = []
    exports = []
    for position, (_target, _index, valtype, export) in enumerate(readers):
        lifted = s32 if valtype == _I32 else s64
        canons.append(b"\x00\x00" + uleb(spaces.core_funcs + position) + b"\x00" + uleb(lifted))
        exports.append(export)
    memory_func = spaces.core_funcs + len(readers)
    canons.append(b"\x00\x00" + uleb(memory_func) + b"\x02\x03" + uleb(memory_index) + b"\x02" + uleb(string))
    exports.append(MEMORY_EXPORT)
    for position, export in enumerate(_RESETS):
        canons.append(b"\x00\x00" + uleb(memory_func + 1 + position) + b"\x00" + uleb(unit))
        exports.append(export)
    export_entries = [b"\x00" + _encoded_name(name) + b"\x01" + uleb(spaces.funcs + position) + b"\x00"
                      for position, name in enumerate(exports)]

    return b"".join([
        _section(_C_MODULE, bytes(module)),
        _section(_C_CORE_INSTANCE, uleb(1) + instantiate),
        _section(_C_ALIAS, uleb(len(aliases)) + b"".join(aliases)),
        _section(_C_TYPE, uleb(len(lifted_types)) + b"".join(lifted_types)),
        _section(_C_CANON, uleb(len(canons)) + b"".join(canons)),
        _section(_C_EXPORT, uleb(len(export_entries)) + b"".join(export_entries)),
    ])
