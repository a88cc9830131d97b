"""The baseline of ``benchmarks/intake.py``: a bare FastAPI endpoint that only publishes
what it is sent, to the same broker, the way intake publishes.

What it shares with intake, so that the comparison is fair:
- the producer: ``shared.kafka.EventProducer`` with intake's settings (acks=all, linger
  1 ms, the same request timeout, the same batching: every record of a request is
  handed to the producer, then all acknowledgements are awaited);
- keys: every record is keyed by its customer (the JSON of the item's ``customer``), so
  one customer's records stay on one partition as intake's do, at the cost of the same
  partitioner per record;
- the answer: 202 only once the broker acknowledged every record; 503 if it did not;
- the server: uvicorn with the settings ``shared.runtime.Service`` uses (127.0.0.1,
  h11, no access log, no lifespan), the same FastAPI routes.

What it does not do, which is intake's own work: no authentication, rate limit,
validation, normalising, CloudEvents envelope (the records carry no headers), per-item
answer, metrics or logs.

- ``POST /v1/feedback``: the request body is published as one record;
- ``POST /v1/feedback/batch``: ``{"items": [...]}``, one record per item (the item's
  JSON bytes).

    python -m benchmarks.bare_publisher --port PORT --bootstrap HOST:PORT --topic TOPIC
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic_core import from_json, to_json

from services.intake.settings import IntakeSettings
from shared.envelope import KafkaRecord
from shared.errors import BrokerUnavailable
from shared.kafka import EventProducer


def new_producer(bootstrap: str) -> EventProducer:
    """The producer intake has, with intake's default settings."""
    return EventProducer(IntakeSettings(kafka_bootstrap=bootstrap), "closeloop-bench-bare")


def customer_key(item: Any) -> bytes | None:
    """One key per customer: the JSON of the item's ``customer`` object."""
    customer = item.get("customer") if isinstance(item, dict) else None
    return to_json(customer) if customer is not None else None


def build_app(producer: EventProducer, topic: str) -> FastAPI:
    app = FastAPI(
        title="bare publisher", telemetry={"tracing": False, "metrics": False, "logs": False}
    )

    async def publish(items: Sequence[Any], values: Sequence[bytes]) -> Response | None:
        records = [
            KafkaRecord(topic=topic, key=customer_key(item), value=value, headers=[])
            for item, value in zip(items, values, strict=True)
        ]
        try:
            await producer.send_records(records)
        except BrokerUnavailable:
            return Response(status_code=503)
        return None

    @app.post("/v1/feedback")
    async def single(request: Request) -> Response:
        body = await request.body()
        failed = await publish([from_json(body)], [body])
        return failed or JSONResponse({"status": "accepted"}, status_code=202)

    @app.post("/v1/feedback/batch")
    async def batch(request: Request) -> Response:
        items = from_json(await request.body())["items"]
        failed = await publish(items, [to_json(item) for item in items])
        return failed or JSONResponse({"accepted": len(items)}, status_code=202)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


async def serve(port: int, bootstrap: str, topic: str) -> None:
    producer = new_producer(bootstrap)
    if not await producer.connect():
        raise SystemExit(f"cannot connect to the broker at {bootstrap}")
    try:
        server = uvicorn.Server(
            uvicorn.Config(
                build_app(producer, topic),
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="off",
                http="httptools",
            )
        )
        await server.serve()  # until SIGTERM or SIGINT
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.bootstrap, args.topic))


if __name__ == "__main__":
    main()
