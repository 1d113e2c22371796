"""Helpers for crash-testing: kill a streamlearn process at random moments until it finishes.

Used by the test suite and the crash benchmarks; nothing here runs in production.
"""

from __future__ import annotations

import dataclasses
import random
import subprocess
import time
from collections.abc import Sequence

from streamlearn.engine.checkpoint import CheckpointStore

__all__ = ["CrashRun", "kill_until_done"]


@dataclasses.dataclass
class CrashRun:
    kills: int
    finished: bool
    returncode: int | None


def _latest_seq(store: CheckpointStore) -> int:
    entries = store.list()
    return entries[-1].seq if entries else 0


def kill_until_done(
    command: Sequence[str],
    store: CheckpointStore,
    kills: int,
    rng: random.Random,
    *,
    max_delay: float = 0.4,
    timeout: float = 120.0,
) -> CrashRun:
    """Start ``command``; ``kills`` times, once it has written a new checkpoint, SIGKILL it
    after a random delay in [0, max_delay) and start it again; then let it finish.

    Waiting for a new checkpoint before each kill makes every restart make progress, so
    the kills land all along the stream (mid-batch, mid-checkpoint, between the two).
    """
    done = 0
    while True:
        proc = subprocess.Popen(list(command), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if done < kills:
            seen = _latest_seq(store)
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline and _latest_seq(store) == seen:
                time.sleep(0.02)
            time.sleep(rng.uniform(0.0, max_delay))
            if proc.poll() is None:
                proc.kill()  # SIGKILL: no handler runs, no final checkpoint
                proc.wait()
                done += 1
                continue
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return CrashRun(done, False, None)
        return CrashRun(done, code == 0, code)
