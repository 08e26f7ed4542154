"""Pre-made, never-used instances per hot bundle, made and closed off the request path.

`acquire(bundle)` hands out a ready instance (a hit) or makes one on the caller's thread (a
miss, counted); either way the instance has never run anything but `ping` and the warm-up
(no author code: `FreshInstance.warm`), and it is never handed out twice. The newest ready
instance goes first: the memory its making wrote is the most likely to be in the CPU's
caches still, where an older one's has been evicted (on this VM within ~20 ms, when a call
then costs ~2x the CPU); taking the oldest first made the pre-made echo 1.06-1.16x a reused
instance's time, the newest 0.97-1.00x. A caller that
finds none ready while a filler is making one for its bundle waits for that one (handed
over, counted as a hit) for at most AWAIT_FILL_S, about a make's time, instead of making a
second one beside it. `release` passes a used instance to a background thread that closes
it. Filler threads, at a lower CPU priority than request work, keep up to `depth` instances
ready for each bundle used within the last `hot_s` seconds, at most `ready` in all, and
close the ready instances of bundles that went cold or were drained (a hot swap, a
rollback, a deleted API). The warm-up runs only while no miss was seen for that
bundle in the last `busy_s`: when throughput-bound, CPU goes to requests instead.

A hit wakes a filler only when it took its bundle's last ready instance; otherwise the
top-up waits for the call's `release`. Woken by every hit, a filler took the GIL from the
very call that woke it: this alone took a pre-made echo from 1.10-1.14x a reused
instance's time to 1.05-1.12x (three runs, the two interleaved in one process), and with
the store's fuel and memory limit set without letting go of the GIL (`runtime.capi`)
0.586/0.525/0.511 -> 0.550/0.480/0.465 ms (2026-12-07).

Fillers do not hold back while calls run: they used to wait up to 5 ms for running calls
to end (their memory traffic slows a call on the other core), which starved the pool when
calls run on the event loop's thread (at one connection 42% of calls waited for a filler
against 18% without; p50 2.03 -> 1.64 ms) and under load (16 connections, 307 -> 335 req/s,
six alternating rounds each, 2026-12-07).

Every instance holds one of the engine's pooling-allocator slots from being made to being
closed; `slots` bounds them all together, and making one more waits for a close.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

from runtime.bundle import Bundle
from runtime.instance import FreshInstance

log = logging.getLogger("wasmgate.runtime")

_FILLER_NICENESS = 10
# The longest a call waits for an instance a filler is making before it makes its own: about
# what one make costs.
AWAIT_FILL_S = 0.003


@dataclass(frozen=True)
class PoolBudget:
    """ready: pre-made instances across all bundles; depth: per bundle; hot_s: how long
    after its last call a bundle keeps instances ready; fillers: background threads;
    busy_s: a bundle that missed this recently is throughput-bound and filled unwarmed."""

    ready: int = 8
    depth: int = 4
    hot_s: float = 60.0
    fillers: int = 1
    busy_s: float = 1.0

    def __post_init__(self) -> None:
        if min(self.ready, self.depth, self.fillers, self.hot_s, self.busy_s) < 0:
            raise ValueError("pool budget values must not be negative")


class InstancePool:
    def __init__(
        self,
        make: Callable[[Bundle], FreshInstance],
        slots: int,
        budget: PoolBudget,
        loaded: Callable[[Bundle], bool] = lambda bundle: True,
    ) -> None:
        """`loaded` says whether a bundle's component is still loaded: one that was dropped
        (past the loaded-components budget) before its priming came up is not primed, which
        would only load it again and drop another."""
        self._make = make
        self._loaded = loaded
        self.slots = max(1, slots)
        self.budget = budget
        self._cond = threading.Condition()
        self._ready: dict[str, deque[FreshInstance]] = {}
        self._bundles: dict[str, Bundle] = {}
        self._last_used: dict[str, float] = {}
        self._last_miss: dict[str, float] = {}
        self._drained: set[str] = set()
        self._filling: dict[str, int] = {}
        self._awaiting: dict[str, int] = {}  # callers waiting for an instance being made
        self._retired: deque[FreshInstance] = deque()
        self._priming: deque[Bundle] = deque()
        self._primed: set[str] = set()
        self._live = 0
        self._stopped = False
        self.hits = self.misses = self.made = self.closed = self.warmed = self.primes = self.handed_over = 0
        self._threads = [
            threading.Thread(target=self._fill_loop, name=f"wasmgate-pool-{i}", daemon=True)
            for i in range(budget.fillers)
        ]
        for thread in self._threads:
            thread.start()

    # -- the request path ---------------------------------------------------------------------

    def acquire(self, bundle: Bundle, hot: bool = True) -> tuple[FreshInstance, bool]:
        """A never-used instance of `bundle`, and whether it was made before this call.

        `hot=False` (a build's route-table read) does not count as demand for the bundle.
        """
        key = bundle.hash
        now = time.monotonic()
        with self._cond:
            if hot and key not in self._drained:
                self._last_used[key] = now
                self._bundles[key] = bundle
            ready = self._ready.get(key)
            if not ready and self._filling.get(key, 0) > self._awaiting.get(key, 0):
                ready = self._await_fill(key, now)
            if ready:
                self.hits += 1
                instance = ready.pop()  # the newest: its memory the most likely still in the caches
                if not ready:
                    self._cond.notify_all()  # none left: a filler tops it up now, not after the call
                return instance, True
            self.misses += 1
            self._last_miss[key] = now
            self._reserve_slot()
        return self._made(bundle), False

    def _await_fill(self, key: str, now: float) -> deque[FreshInstance] | None:
        """Wait (lock held) for an instance a filler is already making for `key`, rather than
        make a second one inline: the wait is what is left of a make, never longer than a
        whole one. One caller waits per instance in the making; the rest make their own."""
        self._last_miss[key] = now  # the pool is behind: fill without the warm-up
        self._awaiting[key] = self._awaiting.get(key, 0) + 1
        deadline = now + AWAIT_FILL_S
        try:
            while not self._ready.get(key) and self._filling.get(key, 0) and not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        finally:
            self._awaiting[key] -= 1
            if not self._awaiting[key]:
                del self._awaiting[key]
        ready = self._ready.get(key)
        if ready:
            self.handed_over += 1
        return ready

    def release(self, instance: FreshInstance) -> None:
        """Hand a used (or unusable) instance over to be closed off the request path."""
        with self._cond:
            if self._threads:
                self._retired.append(instance)
                self._cond.notify_all()
                return
        self._close(instance)

    # -- lifecycle of bundles ----------------------------------------------------------------

    def drain(self, bundle_hash: str) -> None:
        """Stop keeping instances of `bundle_hash` ready and close those it has."""
        with self._cond:
            self._drained.add(bundle_hash)
            self._primed.discard(bundle_hash)
            self._bundles.pop(bundle_hash, None)
            self._last_used.pop(bundle_hash, None)
            self._retired.extend(self._ready.pop(bundle_hash, ()))
            self._cond.notify_all()
        if not self._threads:
            self._close_retired()

    def activate(self, bundle: Bundle) -> None:
        """`bundle` is served (at start, a new version, a rollback): it may keep instances
        ready, and one instance of it is made and closed in the background (`primed`), so that
        its first request does not pay for faulting in the component's code."""
        with self._cond:
            self._drained.discard(bundle.hash)
            if bundle.hash not in self._primed and self._threads:
                self._primed.add(bundle.hash)
                self._priming.append(bundle)
                self._cond.notify_all()

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "slots": self.slots,
                "live": self._live,
                "ready": sum(len(q) for q in self._ready.values()),
                "hits": self.hits,
                "handed_over": self.handed_over,
                "misses": self.misses,
                "made": self.made,
                "warmed": self.warmed,
                "primed": self.primes,
                "closed": self.closed,
            }

    def close(self) -> None:
        """Stop the fillers and close every instance still held."""
        with self._cond:
            self._stopped = True
            for ready in self._ready.values():
                self._retired.extend(ready)
            self._ready.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        self._close_retired()

    # -- internals ---------------------------------------------------------------------------

    def _reserve_slot(self) -> None:
        """Count one more live instance, closing or evicting others first if none is free.

        Called with the lock held; may release it while a retired instance closes.
        """
        while self._live >= self.slots:
            if self._retired:
                instance = self._retired.popleft()
                self._cond.release()
                try:
                    self._close(instance)
                finally:
                    self._cond.acquire()
                continue
            coldest = min(
                (key for key, ready in self._ready.items() if ready),
                key=lambda k: self._last_used.get(k, 0.0),
                default=None,
            )
            if coldest is not None:
                self._retired.append(self._ready[coldest].popleft())  # its oldest
                continue
            self._cond.wait(0.05)
        self._live += 1

    def _made(self, bundle: Bundle) -> FreshInstance:
        try:
            instance = self._make(bundle)
        except BaseException:
            with self._cond:
                self._live -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self.made += 1
        return instance

    def _close(self, instance: FreshInstance) -> None:
        try:
            instance.close()
        except Exception:
            log.exception("closing an instance of %s failed", instance.bundle.hash[:12])
        with self._cond:
            self._live -= 1
            self.closed += 1
            self._cond.notify_all()

    def _close_retired(self) -> None:
        while True:
            with self._cond:
                if not self._retired:
                    return
                instance = self._retired.popleft()
            self._close(instance)

    def _fill_loop(self) -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _FILLER_NICENESS)
        except (AttributeError, OSError):
            pass  # not Linux, or not allowed: fill at normal priority
        while True:
            with self._cond:
                job = self._next_job()
                while job is None and not self._stopped:
                    self._cond.wait(1.0)
                    job = self._next_job()
                if job is None:
                    return
            kind, value = job
            if kind == "close":
                self._close(value)
            elif kind == "prime":
                self._prime(value)
            else:
                self._fill(value)

    def _next_job(self) -> tuple[str, object] | None:
        """What a filler should do next (lock held): close first, then prime newly served
        bundles, then fill the neediest hot one."""
        if self._retired:
            return "close", self._retired.popleft()
        if self._stopped:
            return None
        now = time.monotonic()
        for key in [k for k, used in self._last_used.items() if now - used > self.budget.hot_s]:
            self._last_used.pop(key)  # gone cold: keep nothing ready
            self._bundles.pop(key, None)
            self._retired.extend(self._ready.pop(key, ()))
        if self._retired:
            return "close", self._retired.popleft()
        if self._live >= self.slots:
            return None
        if self._priming:
            self._live += 1
            return "prime", self._priming.popleft()
        total = sum(len(q) for q in self._ready.values()) + sum(self._filling.values())
        if total >= self.budget.ready:
            return None
        needy = [
            key for key in self._bundles
            if len(self._ready.get(key, ())) + self._filling.get(key, 0) < self.budget.depth
        ]
        if not needy:
            return None
        key = min(needy, key=lambda k: len(self._ready.get(k, ())) + self._filling.get(k, 0))
        self._filling[key] = self._filling.get(key, 0) + 1
        self._live += 1
        return "fill", self._bundles[key]

    def _prime(self, bundle: Bundle) -> None:
        if not self._loaded(bundle):
            with self._cond:
                self._live -= 1
                self._cond.notify_all()
            return
        try:
            instance = self._made(bundle)  # releases the slot itself on failure
        except Exception:
            log.exception("priming %s failed", bundle.hash[:12])
            return
        self._close(instance)
        with self._cond:
            self.primes += 1

    def _fill(self, bundle: Bundle) -> None:
        key = bundle.hash
        try:
            instance = self._made(bundle)  # releases the slot itself on failure
        except Exception:
            log.exception("pre-making an instance of %s failed", key[:12])
            with self._cond:
                self._filling[key] -= 1
                self._bundles.pop(key, None)  # do not retry in a loop; the next call re-adds it
            return
        last_miss = self._last_miss.get(key)
        warm = last_miss is None or time.monotonic() - last_miss >= self.budget.busy_s
        if warm:
            try:
                instance.warm()
            except Exception:
                log.exception("warming an instance of %s failed", key[:12])
                with self._cond:
                    self._filling[key] -= 1
                self._close(instance)
                return
        with self._cond:
            self._filling[key] -= 1
            if warm:
                self.warmed += 1
            if key in self._bundles and not self._stopped:
                self._ready.setdefault(key, deque()).append(instance)
            else:
                self._retired.append(instance)
            self._cond.notify_all()
