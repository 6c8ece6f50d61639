"""The worker's quiet uvicorn server: one housekeeping tick per second, prompt exit."""

import asyncio
import time

import httpx
import uvicorn
from fastapi import FastAPI

from hean.worker.http import quiet_server


def test_quiet_server_serves_ticks_once_a_second_and_exits_at_once():
    app = FastAPI()

    @app.get("/readyz")
    async def readyz() -> dict:
        return {"ready": True}

    async def run():
        server = quiet_server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False))
        ticks = []
        orig = server.on_tick

        async def counting(counter):
            ticks.append(counter)
            return await orig(counter)

        server.on_tick = counting
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient() as c:
            r = await c.get(f"http://127.0.0.1:{port}/readyz")
        t0 = time.monotonic()
        await asyncio.sleep(2.05)
        n = len([t for t in ticks])
        server.request_exit()
        await asyncio.wait_for(task, 2)
        return r, n, time.monotonic() - t0, ticks

    r, n, elapsed, ticks = asyncio.run(run())
    assert r.status_code == 200 and r.json() == {"ready": True} and r.headers.get("date")
    assert 2 <= n <= 4, ticks  # uvicorn's own loop would have ticked ~20 times
    assert elapsed < 2.6  # exit did not wait for the next tick
    assert all(t % 10 == 0 for t in ticks)  # every tick refreshes the Date header


def test_probes_are_answered_before_fastapi_with_the_same_answers():
    from types import SimpleNamespace

    from fastapi.testclient import TestClient

    from hean.worker.http import probe_answer, with_probe_fast_path

    inner_calls = []
    inner = FastAPI()

    @inner.get("/{path:path}")
    async def anything(path: str) -> dict:
        inner_calls.append(path)
        return {"inner": path}

    w = SimpleNamespace(ready=False, spec_error=None, data_error="no candles for XYZUSDT")
    c = TestClient(with_probe_fast_path(inner, w))
    r = c.get("/readyz")
    assert (r.status_code, r.json()) == (503, {"ready": False, "reason": "no candles for XYZUSDT"})
    assert r.headers["content-type"] == "application/json"
    w.ready = True
    assert (c.get("/readyz").status_code, c.get("/readyz").json()) == (200, {"ready": True})
    assert c.get("/healthz").json() == {"ok": True}
    assert c.head("/readyz").status_code == 200
    assert inner_calls == []  # none of the probes reached FastAPI
    assert c.get("/why").json() == {"inner": "why"} and inner_calls == ["why"]
    w.ready, w.data_error = False, None
    assert probe_answer(w, "/readyz") == (503, {"ready": False, "reason": "starting"})
