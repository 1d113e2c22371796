"""examples/service over real HTTP: many client threads, kill -9, restart, the durability promise.

The promise: every acknowledged /learn survives a crash. Labels are learned in log
order (``seq``), so "the restarted model has learned records 1..E with E ≥ the highest
acknowledged seq" is exactly that promise; and after a kill with no request in flight,
the restarted model equals a serial run of the acknowledged labels in seq order.
"""

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from river import linear_model, preprocessing

import streamlearn
from streamlearn.engine.checkpoint import CheckpointStore
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, directory, every_events=200):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "STREAMLEARN_SERVICE_DIR": str(directory),
            "STREAMLEARN_SERVICE_EVERY_EVENTS": str(every_events),
            "STREAMLEARN_SERVICE_EVERY_SECONDS": "3600",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "app:create_app", "--factory", "--app-dir", "examples/service",
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"the service did not start: {self.process.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "the service did not answer /health within 60 s"
            time.sleep(0.1)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def _event(rng, i):
    x = {"a": rng.random(), "b": rng.random()}
    return f"e{i}", x, x["a"] + x["b"] > 1


def _traffic(url, thread, n, acked, stop=None):
    """predict then learn n events; record each acknowledged learn as seq → (x, y, prediction)."""
    rng = random.Random(thread)
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(n):
            if stop is not None and stop.is_set():
                return
            event_id, x, y = _event(rng, thread * 100_000 + i)
            try:
                prediction = client.post("/predict", json={"id": event_id, "x": x}).json()["prediction"]
                answer = client.post("/learn", json={"id": event_id, "y": y})
            except httpx.TransportError:
                return  # the server was killed
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["durable"] is True
            acked[body["seq"]] = (x, y, prediction)


def test_every_acknowledged_label_survives_kill_minus_9(tmp_path):
    server = Server(tmp_path)
    acked: dict[int, tuple] = {}
    threads = [threading.Thread(target=_traffic, args=(server.url, t, 150, acked)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(acked) == 1200 and sorted(acked) == list(range(1, 1201))
    health = httpx.get(f"{server.url}/health").json()
    assert health["events"] == 1200 and health["checkpoint_events"] is not None  # checkpoints every 200
    server.kill()  # nothing in flight: the restart must equal the acknowledged run exactly

    server = Server(tmp_path)
    health = httpx.get(f"{server.url}/health").json()
    assert health["events"] == 1200
    expected = streamlearn.OnlineModel(preprocessing.StandardScaler() | linear_model.LogisticRegression())
    for seq in sorted(acked):
        x, y, prediction = acked[seq]
        expected.learn_one(x, y, prediction=prediction)
    assert health["metrics"] == expected.metrics()
    probe_rng = random.Random(99)
    for i in range(20):
        _, x, _ = _event(probe_rng, i)
        got = httpx.post(f"{server.url}/predict", json={"id": f"p{i}", "x": x}).json()
        assert got["proba"] == {str(k).lower(): v for k, v in expected.predict_proba_one(x).items()}

    # now kill it while 8 threads are sending: whatever was acknowledged must be there
    more: dict[int, tuple] = {}
    stop = threading.Event()
    threads = [threading.Thread(target=_traffic, args=(server.url, 10 + t, 10_000, more, stop)) for t in range(8)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    server.kill()
    stop.set()
    for t in threads:
        t.join()
    assert more, "no request was acknowledged before the kill"
    server = Server(tmp_path)
    events = httpx.get(f"{server.url}/health").json()["events"]
    assert events >= max(more), f"acknowledged up to seq {max(more)} but only {events} labels survived"
    assert "streamlearn_service_events_total" in httpx.get(f"{server.url}/metrics").text
    # SIGTERM: a graceful stop stores a final checkpoint of everything learned
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    assert CheckpointStore(tmp_path / "checkpoints").list()[-1].events == events


def test_hostile_and_careless_requests_get_clear_4xx(tmp_path):
    server = Server(tmp_path)
    url = server.url
    try:
        cases = [
            ("/predict", b'{"id": 1, "x": {"a": NaN}}', 422, "finite"),
            ("/predict", b'{"id": 1, "x": {"a": 1e999}}', 422, "finite"),
            ("/predict", b'{"id": 1, "x": {"a": "high"}}', 422, "valid number"),
            ("/predict", b'{"id": 1, "x": {"a": true}}', 422, "valid number"),
            ("/predict", b'{"id": 1, "x": [1, 2]}', 422, "valid dictionary"),
            ("/predict", b'{"id": 1, "x": {"a": 1.0}, "extra": 1}', 422, "Extra inputs"),
            ("/predict", b'{"id": 1, "x": {"a": 1.0', 422, "JSON decode error"),
            ("/predict", b'{"x": {"a": 1.0}}', 422, "Field required"),
            ("/predict", b'{"id": {"nested": 1}, "x": {"a": 1.0}}', 422, "id"),
            ("/predict", ('{"id": 1, "x": {%s}}' % ",".join(f'"f{i}": 1' for i in range(1001))).encode(), 422, "at most 1000"),
            ("/predict", ('{"id": "%s", "x": {"a": 1}}' % ("i" * 200)).encode(), 422, "at most 128"),
            ("/learn", b'{"id": "never-seen", "y": true}', 404, "send x with the label"),
            ("/learn", b'{"id": 1, "y": 0.5, "x": {"a": 1.0}}', 422, "y"),
            ("/predict", b'{"id": 1, "x": {"a": "' + b"z" * 70_000 + b'"}}', 413, "larger than 65536 bytes"),
        ]
        with httpx.Client(base_url=url, timeout=10) as client:
            for path, body, status, words in cases:
                answer = client.post(path, content=body, headers={"content-type": "application/json"})
                assert answer.status_code == status, (body[:80], answer.status_code, answer.text[:300])
                assert words in answer.text, (body[:80], answer.text[:300])

            # a huge body without a Content-Length (chunked) is cut off too
            def chunks():
                yield b'{"id": 1, "x": {"a": "'
                for _ in range(100):
                    yield b"z" * 1024
                yield b'"}}'

            answer = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})
            assert answer.status_code == 413
            # and the service still works
            assert client.post("/learn", json={"id": "direct", "y": True, "x": {"a": 1.0}}).json()["seq"] == 1
            assert client.get("/health").json()["events"] == 1
    finally:
        server.kill()
