"""builder.snapshot_state on small components made here: the state an instance reaches is the
state an instance of the rewritten component starts from (memory, its growth, i32 and i64
globals), and what the snapshotter does not handle is refused, not guessed."""

import pytest
import wasmtime
from wasmtime.component import Component, Linker

from builder import resnapshot
from builder.snapshot_state import SnapshotUnsupported, instrument, rewrite

_MODULE = """
  (core module $m
    (memory (export "memory") 1)
    (global $g (mut i32) (i32.const 7))
    (global $h (mut i64) (i64.const -5))
    (global $fixed i32 (i32.const 3))
    (data (i32.const 100) "hello")
    (func (export "poke")
      (i32.store8 (i32.const 100) (i32.const 72))
      (global.set $g (i32.const -42))
      (global.set $h (i64.const 1234567890123))
      (drop (memory.grow (i32.const 1)))
      (i32.store (i32.const 70000) (i32.const 9)))
    (func (export "peek") (result i32)
      (i32.add (i32.add (i32.load8_u (i32.const 100)) (global.get $fixed)) (i32.load (i32.const 70000))))
    (func (export "g") (result i32) (global.get $g))
    (func (export "h") (result i64) (global.get $h))
    (func (export "resets") (result i32) (global.get $resets))
    (global $resets (mut i32) (i32.const 0))
    (func (export "reset_adapter_state") (global.set $resets (i32.add (global.get $resets) (i32.const 1))))
    (func (export "__wasilibc_reset_preopens") (global.set $resets (i32.add (global.get $resets) (i32.const 10))))
  )
"""

_COMPONENT = f"""
(component
  {_MODULE}
  (core instance $i (instantiate $m))
  (func (export "poke") (canon lift (core func $i "poke")))
  (func (export "peek") (result u32) (canon lift (core func $i "peek")))
  (func (export "g") (result s32) (canon lift (core func $i "g")))
  (func (export "h") (result s64) (canon lift (core func $i "h")))
  (func (export "resets") (result s32) (canon lift (core func $i "resets")))
)
"""


def _instance(engine, component: bytes):
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1)
    instance = Linker(engine).instantiate(store, Component(engine, component))
    return store, instance


def _call(store, instance, name):
    return resnapshot._call(instance, store, name)


def test_the_rewritten_component_starts_where_the_instance_was():
    engine = resnapshot.engine()
    original = wasmtime.wat2wasm(_COMPONENT)
    instrumented, plan = instrument(bytes(original))
    store, instance = _instance(engine, instrumented)
    _call(store, instance, "poke")
    state = resnapshot.read_state(instance, store, plan)
    assert len(state.memory) == 2 * 65536  # grown by the app, not by the reading

    store, fresh = _instance(engine, rewrite(bytes(original), plan, state))
    assert _call(store, fresh, "g") == -42
    assert _call(store, fresh, "h") == 1234567890123
    assert _call(store, fresh, "peek") == ord("H") + 3 + 9
    assert _call(store, fresh, "resets") == 11  # both resets ran before the state was read


def test_an_untouched_instance_rewrites_to_the_same_behaviour():
    engine = resnapshot.engine()
    original = bytes(wasmtime.wat2wasm(_COMPONENT))
    instrumented, plan = instrument(original)
    store, instance = _instance(engine, instrumented)
    state = resnapshot.read_state(instance, store, plan)
    store, fresh = _instance(engine, rewrite(original, plan, state))
    assert (_call(store, fresh, "g"), _call(store, fresh, "h")) == (7, -5)
    assert state.memory[100:105] == b"hello"


def test_two_memories_are_refused():
    two = _COMPONENT.replace("(core instance $i (instantiate $m))", """(core instance $i (instantiate $m))
  (core module $n (memory 1) (data (i32.const 0) "x"))
  (core instance $j (instantiate $n))""")
    with pytest.raises(SnapshotUnsupported, match="2 core modules define a memory"):
        instrument(bytes(wasmtime.wat2wasm(two)))


def test_a_component_without_the_resets_is_refused():
    without = _COMPONENT.replace('(func (export "__wasilibc_reset_preopens")', '(func (export "other")')
    with pytest.raises(SnapshotUnsupported, match="__wasilibc_reset_preopens"):
        instrument(bytes(wasmtime.wat2wasm(without)))
