"""A prediction service that learns online: FastAPI around ``streamlearn.OnlineModel``.

Run it (``pip install 'streamlearn[service]'``)::

    STREAMLEARN_SERVICE_DIR=service-state uvicorn app:create_app --factory --app-dir examples/service

Endpoints
---------
``POST /predict`` ``{"id": "a1", "x": {"f1": 0.3, "f2": 1.0}}``
    → ``{"id": "a1", "prediction": true, "proba": {...}}``. The features are kept under
    the id (at most ``MAX_PENDING`` ids, the oldest dropped first) for the label to come.
``POST /learn`` ``{"id": "a1", "y": false}`` (``"x"`` too if the id was not predicted here)
    → ``{"id": "a1", "seq": 42, "durable": true}``: the label is joined with the features
    and the prediction of ``/predict``, learned (the prediction is scored), and
    acknowledged only once it is on disk.
``GET /metrics``
    Prometheus text: events, running metrics, durable log position, last checkpoint.
``GET /health``
    ``{"status": "ok", "events": ..., "durable_seq": ..., "checkpoint_events": ...}``.

Durability promise
------------------
**Every acknowledged** ``/learn`` **survives a crash** (``kill -9``, power loss after the
fsync). An accepted label is appended to a write-ahead log (:mod:`label_log`) in the
order it is learned, and the response is sent only after an ``fsync`` covers it; fsyncs
are shared by the requests waiting at the same time (group commit). Checkpoints are
written in the background (every ``STREAMLEARN_SERVICE_EVERY_EVENTS`` events or
``STREAMLEARN_SERVICE_EVERY_SECONDS`` seconds) and record the log position they include;
on start the service loads the latest checkpoint and learns the log records after it,
then drops log segments that checkpoints cover. A label that got no response may or may
not have been learned: resend it only if you can tolerate learning it twice. Pending
predictions (features waiting for their label) are not durable: after a restart,
``/learn`` of an unknown id answers 404 and the client sends ``x`` with the label.

Hostile or careless requests get a clear 4xx: bodies over ``MAX_BODY_BYTES`` (413),
malformed JSON, wrong types, non-finite numbers, unknown fields, too many or too long
feature names or ids (422), an unknown id without ``x`` (404).
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from label_log import LabelLog
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints
from river import linear_model, preprocessing

import streamlearn

MAX_BODY_BYTES = 64 * 1024
MAX_FEATURES = 1_000
MAX_PENDING = 100_000

Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
EventId = StrictInt | Name
Label = StrictBool | StrictInt | Name
Features = Annotated[dict[Name, Number], Field(max_length=MAX_FEATURES)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: EventId
    x: Features


class LearnRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: EventId
    y: Label
    x: Features | None = None


class BodyLimit:
    """ASGI middleware: a request body above ``limit`` bytes is answered 413 before it is read whole."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await _too_large(send, self.limit)
        # Read the body here, up to the limit (a chunked body declares no length), then hand it on.
        messages, received = [], 0
        while True:
            message = await receive()
            messages.append(message)
            received += len(message.get("body", b""))
            if received > self.limit:
                return await _too_large(send, self.limit)
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay() -> dict:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Any, limit: int) -> None:
    body = f'{{"detail":"request body larger than {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


class Service:
    """The model, its label log and the predictions waiting for their labels."""

    def __init__(self, directory: Path, model: Any, every_events: int, every_seconds: float):
        checkpoints = directory / "checkpoints"
        self.log = LabelLog(directory / "wal")
        if (checkpoints / "manifest.json").exists():
            self.model = streamlearn.OnlineModel.load(
                checkpoints, every_events=every_events, every_seconds=every_seconds, on_checkpoint=self._checkpointed
            )
        else:
            self.model = streamlearn.OnlineModel(
                model, checkpoint=checkpoints, every_events=every_events, every_seconds=every_seconds, on_checkpoint=self._checkpointed
            )
        # Learn what the log holds beyond the checkpoint, in log order.
        for record in self.log.records_after(self._checkpoint_seq(self.model.positions)):
            self.model.learn_one(record["x"], record["y"], prediction=record["prediction"], position={"wal": record["seq"]})
        self.pending: collections.OrderedDict = collections.OrderedDict()
        self.pending_lock = threading.Lock()

    @staticmethod
    def _checkpoint_seq(positions: dict) -> int:
        return int(positions.get("wal", 0))

    def _checkpointed(self, info: Any) -> None:
        self.log.rotate()
        self.log.drop_through(self._checkpoint_seq(info.positions))

    def predict(self, request: PredictRequest) -> dict[str, Any]:
        prediction = self.model.predict_one(request.x)
        with self.pending_lock:
            self.pending[request.id] = (request.x, prediction)
            self.pending.move_to_end(request.id)
            while len(self.pending) > MAX_PENDING:
                self.pending.popitem(last=False)
        answer = {"id": request.id, "prediction": prediction}
        if self.model.kind == "classifier":
            answer["proba"] = self.model.predict_proba_one(request.x)
        return answer

    def learn(self, request: LearnRequest) -> dict[str, Any]:
        with self.pending_lock:
            x, prediction = self.pending.pop(request.id, (None, None))
        if x is None:
            if request.x is None:
                raise HTTPException(404, f"no prediction for id {request.id!r} is waiting (never made, expired or lost in a restart); send x with the label")
            x = request.x
        record = {"id": request.id, "x": x, "y": request.y, "prediction": prediction}

        def apply(seq: int) -> None:
            self.model.learn_one(x, request.y, prediction=prediction, position={"wal": seq})

        seq = self.log.append(record, apply)
        if not self.log.wait_durable(seq):
            raise HTTPException(503, f"learned as seq {seq} but the log did not reach the disk in time; it may be lost in a crash")
        return {"id": request.id, "seq": seq, "durable": True}

    def prometheus(self) -> str:
        lines = [
            "# TYPE streamlearn_service_events_total counter",
            f"streamlearn_service_events_total {self.model.events}",
            "# TYPE streamlearn_service_durable_seq gauge",
            f"streamlearn_service_durable_seq {self.log.durable}",
            "# TYPE streamlearn_service_pending_predictions gauge",
            f"streamlearn_service_pending_predictions {len(self.pending)}",
            "# TYPE streamlearn_service_checkpoint_events gauge",
            f"streamlearn_service_checkpoint_events {self.model.last_checkpoint.events if self.model.last_checkpoint else 0}",
            "# TYPE streamlearn_service_metric gauge",
        ]
        lines += [f'streamlearn_service_metric{{name="{name}"}} {value}' for name, value in self.model.metrics().items()]
        return "\n".join(lines) + "\n"

    def close(self) -> None:
        self.model.close()
        self.log.close()


def create_app(directory: str | os.PathLike | None = None, model: Any = None) -> FastAPI:
    """The app; state in ``directory`` (default ``$STREAMLEARN_SERVICE_DIR`` or ``service-state``)."""
    directory = Path(directory or os.environ.get("STREAMLEARN_SERVICE_DIR", "service-state"))
    service = Service(
        directory,
        model if model is not None else preprocessing.StandardScaler() | linear_model.LogisticRegression(),
        every_events=int(os.environ.get("STREAMLEARN_SERVICE_EVERY_EVENTS", "1000")),
        every_seconds=float(os.environ.get("STREAMLEARN_SERVICE_EVERY_SECONDS", "30")),
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.close()

    app = FastAPI(title="streamlearn online model", lifespan=lifespan)
    app.add_middleware(BodyLimit)
    app.state.service = service

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Any, exc: RequestValidationError) -> JSONResponse:
        # Where and what, without echoing the input: it may be huge, or NaN (not valid JSON).
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    # Plain ``def`` endpoints run in the thread pool: the model's lock and the log's fsync
    # wait block a worker thread, never the event loop.
    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        return service.predict(request)

    @app.post("/learn")
    def learn(request: LearnRequest) -> dict[str, Any]:
        return service.learn(request)

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> str:
        return service.prometheus()

    @app.get("/health")
    def health() -> dict[str, Any]:
        last = service.model.last_checkpoint
        return {
            "status": "ok",
            "events": service.model.events,
            "durable_seq": service.log.durable,
            "checkpoint_events": last.events if last else None,
            "metrics": service.model.metrics(),
        }

    return app
