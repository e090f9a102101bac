"""The floor of the chosen stack: the least a FastAPI app on uvicorn can do per request here.

`bench/aims_bench.py` (unless `--no-floor`) starts this app after our reads in every run and drives
it with the same load generator, so the aims can be read against what the framework alone allows on
the same machine in the same run. Nothing of the project is imported: no authentication, no rate
limits, no tenancy, no envelope, no Mutation Engine. Four routes:

- `GET /hello`: a constant JSON body (FastAPI's hello world).
- `GET /candidates/{id}`: one candidate row by its primary key (the benchmark's region, from
  BENCH_FLOOR_REGION), one asyncpg query, returned as JSON (the naive read).
- `GET /keyed/candidates/{id}`: close to the least the contract asks of every read: the key looked up
  by its SHA-256 on every request (a revoked key fails on the next one, §3.6), then the row read
  within the key's region; one pooled connection, two queries (the keyed read; it skips expiry).
- `POST /records`: a Pydantic model, one INSERT and COMMIT with asyncpg (the naive accept, as
  ARCHITECTURE.md describes it), into the benchmark's `bench_raw_inserts` table.

    BENCH_FLOOR_DSN=postgresql://postgres@127.0.0.1:5432/oreg_aims BENCH_FLOOR_REGION=reg_... \
        python -c "import bench.floor_app as f; f.serve(8001, processes=1)"

Without BENCH_FLOOR_DSN only `/hello` answers (the SQLite benchmark has no asyncpg to offer).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
import uvicorn
from fastapi import FastAPI, Header, HTTPException
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel, Field

# the connections our engine may open (db.make_engine: a pool of 10 and up to 10 more)
POOL_MIN, POOL_MAX = 10, 20
# by the primary key (region_id, sandbox, id): a look-up by id alone would scan the table
READ = (
    "SELECT id, properties, phase, created_at, updated_at FROM candidates"
    " WHERE region_id = $1 AND sandbox = false AND id = $2"
)
KEY = "SELECT region_id, revoked_at FROM api_keys WHERE secret_hash = $1"
INSERT = "INSERT INTO bench_raw_inserts (payload, created_at) VALUES ($1, now())"


class Record(BaseModel):
    name: str = Field(max_length=200)
    email: str = Field(max_length=254)
    privacyConsent: bool


pools: dict[str, asyncpg.Pool] = {}


@asynccontextmanager
async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
    dsn = os.environ.get("BENCH_FLOOR_DSN")
    if dsn:
        pools["db"] = await asyncpg.create_pool(dsn, min_size=POOL_MIN, max_size=POOL_MAX)
    try:
        yield
    finally:
        if "db" in pools:
            await pools.pop("db").close()


app = FastAPI(lifespan=lifespan, default_response_class=ORJSONResponse)


@app.get("/hello")
async def hello() -> dict[str, Any]:
    return {"data": {"message": "hello"}}


@app.get("/candidates/{candidate_id}")
async def read_candidate(candidate_id: str) -> dict[str, Any]:
    row = await pools["db"].fetchrow(READ, os.environ["BENCH_FLOOR_REGION"], candidate_id)
    if row is None:
        raise HTTPException(404)
    return {"data": dict(row)}


@app.get("/keyed/candidates/{candidate_id}")
async def read_candidate_keyed(candidate_id: str, x_api_key: Annotated[str, Header()] = "") -> dict[str, Any]:
    async with pools["db"].acquire() as connection:
        key = await connection.fetchrow(KEY, hashlib.sha256(x_api_key.encode()).hexdigest())
        if key is None or key["revoked_at"] is not None:
            raise HTTPException(401)
        row = await connection.fetchrow(READ, key["region_id"], candidate_id)
    if row is None:
        raise HTTPException(404)
    return {"data": dict(row)}


@app.post("/records", status_code=202)
async def accept_record(record: Record) -> dict[str, Any]:
    async with pools["db"].acquire() as connection:
        await connection.execute(INSERT, record.email)
    return {"data": {"accepted": True}}


def serve(port: int, processes: int = 1, host: str = "127.0.0.1") -> None:
    """uvicorn with the arguments `onderwijsregio serve [--processes N]` uses (uvloop and httptools)."""
    target: FastAPI | str = app if processes == 1 else "bench.floor_app:app"  # workers need an import
    uvicorn.run(
        target,
        host=host,
        port=port,
        workers=None if processes == 1 else processes,
        access_log=False,
        log_config=None,
        proxy_headers=False,
    )
