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
