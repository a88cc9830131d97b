"""The baseline of ``benchmarks/intake.py``: a bare FastAPI endpoint that only publishes
what it is sent. Same routes as intake's generic ones, same server (uvicorn, as
``shared.runtime.Service`` runs it), same producer options as
``shared.kafka.EventProducer`` (acks=all, linger 1 ms, intake's request timeout), and it
also answers 202 only once the broker acknowledged. Nothing else: no authentication,
no rate limit, no validation, no normalising, no CloudEvents envelope, no metrics, no
logs.

- ``POST /v1/feedback``: the request body is published as one record;
- ``POST /v1/feedback/batch``: ``{"items": [...]}``, one record per item (the item's
  JSON bytes), all acknowledged before the answer.

    python -m benchmarks.bare_publisher --port PORT --bootstrap HOST:PORT --topic TOPIC
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence

import uvicorn
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic_core import from_json, to_json

from services.intake.settings import IntakeSettings


def new_producer(bootstrap: str) -> AIOKafkaProducer:
    """The producer intake gets from ``EventProducer``, with intake's default settings."""
    settings = IntakeSettings(kafka_bootstrap=bootstrap)
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="closeloop-bench-bare",
        acks="all",
        enable_idempotence=settings.kafka_idempotence,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        linger_ms=1,
    )


def build_app(producer: AIOKafkaProducer, topic: str) -> FastAPI:
    app = FastAPI(title="bare publisher")

    async def publish(values: Sequence[bytes]) -> Response | None:
        try:
            pending = [await producer.send(topic, value) for value in values]
            await asyncio.gather(*pending)
        except (KafkaError, TimeoutError):
            return Response(status_code=503)
        return None

    @app.post("/v1/feedback")
    async def single(request: Request) -> Response:
        failed = await publish([await request.body()])
        return failed or JSONResponse({"status": "accepted"}, status_code=202)

    @app.post("/v1/feedback/batch")
    async def batch(request: Request) -> Response:
        items = from_json(await request.body())["items"]
        failed = await publish([to_json(item) for item in items])
        return failed or JSONResponse({"accepted": len(items)}, status_code=202)

    @app.get("/readyz")
    async def readyz() -> dict[str, str]:
        return {"status": "ready"}

    return app


async def serve(port: int, bootstrap: str, topic: str) -> None:
    producer = new_producer(bootstrap)
    await producer.start()
    try:
        server = uvicorn.Server(
            uvicorn.Config(
                build_app(producer, topic),
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                lifespan="off",
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
