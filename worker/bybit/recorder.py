"""Record live Bybit data in the formats the replay reads, so anyone can record a day
and replay it (``HEAN_MARKETDATA_DIR=<out>``):

* ``<out>/bybit/klines/<SYMBOL>_<interval>m.csv``: confirmed candles, header
  ``timestamp,open,high,low,close,volume`` with ``YYYY-MM-DD HH:MM:SS+00:00``
  timestamps (as ``hean.marketdata.load_klines`` reads them);
* ``<out>/bybit/ws/BYBIT.jsonl.zst``: the capture format (``{t:"header"}``, then
  ``{t:"http",url,data}`` with the instruments-info response, so
  ``load_instruments`` works on the recording, then ``{t:"recv",conn,ts,data}`` per
  raw frame). The header and instruments are the first zstd frame; every flush
  appends a frame (``zstd -dc`` reads them all).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from pathlib import Path


class Recorder:
    """Writes what the live feed receives in the formats the replay reads:
    ``<out>/bybit/klines/<SYMBOL>_<interval>m.csv`` (confirmed candles) and the raw frames
    as ``<out>/bybit/ws/BYBIT.jsonl.zst`` (``{t, conn, ts, data}`` lines, plus the
    instruments-info REST response), flushed every ``flush_every`` frames. Thread-safe.
    """
    def __init__(self, out_dir: Path, interval: str, instruments_response: dict, rest_url: str,
                 flush_every: int = 200):
        import zstandard

        self.out = Path(out_dir)
        self.interval = interval
        (self.out / "bybit" / "klines").mkdir(parents=True, exist_ok=True)
        (self.out / "bybit" / "ws").mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self._raw = open(self.out / "bybit" / "ws" / "BYBIT.jsonl.zst", "ab")
        self._z = zstandard.ZstdCompressor(level=3).stream_writer(self._raw, closefd=False)
        self._zmod = zstandard
        self._pending = 0
        self.flush_every = flush_every
        self.frames = 0
        self.candles = 0
        self._last_ts: dict[str, int] = {}
        self._line({"t": "header", "recorder": "hean", "started": time.time()})
        self._line({"t": "http", "conn": 0, "ts": time.time(),
                    "url": f"{rest_url.rstrip('/')}/v5/market/instruments-info?category="
                           f"{instruments_response.get('result', {}).get('category', 'linear')}",
                    "data": instruments_response})
        self.flush()

    def _line(self, obj: dict) -> None:
        self._z.write((json.dumps(obj, separators=(",", ":")) + "\n").encode())
        self._pending += 1

    def frame(self, msg: dict) -> None:
        """Record one raw WebSocket frame; a confirmed kline also goes to the CSV."""
        with self.lock:
            self._line({"t": "recv", "conn": 1, "ts": time.time(), "data": json.dumps(msg, separators=(",", ":"))})
            self.frames += 1
            topic = msg.get("topic", "")
            if topic.startswith("kline."):
                _, interval, symbol = topic.split(".", 2)
                for k in msg.get("data") or []:
                    if k.get("confirm") and int(k["start"]) > self._last_ts.get(symbol, -1):
                        self._candle(symbol, interval, k)
            if self._pending >= self.flush_every:
                self.flush()

    def _candle(self, symbol: str, interval: str, k: dict) -> None:
        path = self.out / "bybit" / "klines" / f"{symbol}_{interval}m.csv"
        new = not path.exists()
        ts = datetime.fromtimestamp(int(k["start"]) / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S+00:00")
        with open(path, "a") as f:
            if new:
                f.write("timestamp,open,high,low,close,volume\n")
            f.write(f"{ts},{k['open']},{k['high']},{k['low']},{k['close']},{k['volume']}\n")
        self._last_ts[symbol] = int(k["start"])
        self.candles += 1

    def flush(self) -> None:
        self._z.flush(self._zmod.FLUSH_FRAME)
        self._raw.flush()
        self._pending = 0

    def close(self) -> None:
        with self.lock:
            self.flush()
            self._z.close()
            self._raw.close()
