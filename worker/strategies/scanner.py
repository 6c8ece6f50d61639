"""The symbol scanner (``spec.scanner``): rank a universe by liquidity and volatility
over a rolling window of candles and trade the top N.

Metrics per symbol over the last ``lookbackBars`` candles:

* liquidity: quote turnover ``sum(close x volume)`` in USDT (the recorded klines have
  base-coin volume and no turnover column, so it is computed; Bybit's kline
  ``turnover`` field is the same quantity,
  https://bybit-exchange.github.io/docs/v5/market/kline);
* volatility: the sample standard deviation of 1-candle log returns, in bps.

Each metric becomes a rank score in 0..1 (the highest value 1, the lowest 0, evenly
spaced; a single symbol scores 1); ``score = liquidityWeight x liquidity score +
volatilityWeight x volatility score``, normalised by the sum of the weights. Ties
are broken by symbol name. :class:`Scanner` keeps the windows, re-ranks every
``rerankBars`` candles of the universe's first symbol, and exposes the picks.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass(frozen=True)
class Ranked:
    """One symbol's ranking: ``turnover_usdt`` (USDT), ``volatility_bps``, ``score`` 0..1."""

    symbol: str
    turnover_usdt: float
    volatility_bps: float
    score: float


def _rank_scores(values: dict[str, float]) -> dict[str, float]:
    n = len(values)
    if n == 1:
        return {s: 1.0 for s in values}
    order = sorted(values, key=lambda s: (values[s], s))  # ascending
    return {s: i / (n - 1) for i, s in enumerate(order)}


def rank(windows: dict[str, list[tuple[float, float]]], liquidity_weight: float = 0.5,
         volatility_weight: float = 0.5) -> list[Ranked]:
    """Rank symbols from their windows of ``(close, volume)`` pairs (oldest first).

    Returns every symbol with at least 2 candles, best first. Raises ValueError if
    both weights are 0.
    """
    wsum = liquidity_weight + volatility_weight
    if wsum <= 0:
        raise ValueError("liquidityWeight + volatilityWeight must be > 0")
    turnover, vol = {}, {}
    for sym, w in windows.items():
        if len(w) < 2:
            continue
        turnover[sym] = sum(c * v for c, v in w)
        rets = [math.log(w[i][0] / w[i - 1][0]) for i in range(1, len(w)) if w[i - 1][0] > 0 and w[i][0] > 0]
        if len(rets) >= 2:
            m = sum(rets) / len(rets)
            vol[sym] = math.sqrt(sum((r - m) ** 2 for r in rets) / (len(rets) - 1)) * 10000
        else:
            vol[sym] = 0.0
    if not turnover:
        return []
    ls, vs = _rank_scores(turnover), _rank_scores(vol)
    out = [Ranked(s, turnover[s], vol[s], (liquidity_weight * ls[s] + volatility_weight * vs[s]) / wsum)
           for s in turnover]
    return sorted(out, key=lambda r: (-r.score, r.symbol))


class Scanner:
    """Rolling windows of the universe and the current picks.

    ``spec``: :class:`hean.worker.strategies.params.ScannerSpec`. Feed every candle
    with :meth:`on_bar`; :attr:`picks` is None until the first ranking (then the
    ``topN`` best symbols), :attr:`ranked_at_ms` the data time of that ranking.
    """

    def __init__(self, spec) -> None:
        self.spec = spec
        self.windows: dict[str, deque] = {s: deque(maxlen=spec.lookbackBars) for s in spec.universe}
        self.clock_symbol = spec.universe[0]
        self.clock = 0
        self.picks: list[str] | None = None
        self.ranking: list[Ranked] = []
        self.ranked_at_ms: int | None = None
        self.rankings = 0

    def update_spec(self, spec) -> None:
        """Apply a new scanner spec; windows are kept for symbols still in the universe."""
        old = self.windows
        self.spec = spec
        self.windows = {s: deque(old.get(s, ()), maxlen=spec.lookbackBars) for s in spec.universe}
        self.clock_symbol = spec.universe[0]
        if self.ranking:
            self._rank(self.ranked_at_ms or 0)

    def on_bar(self, symbol: str, bar) -> bool:
        """Add a candle; returns True if this candle triggered a re-ranking."""
        w = self.windows.get(symbol)
        if w is None:
            return False
        w.append((float(bar.close), float(bar.volume)))
        if symbol != self.clock_symbol:
            return False
        self.clock += 1
        if self.clock >= self.spec.lookbackBars and (self.picks is None or self.clock % self.spec.rerankBars == 0):
            self._rank(bar.ts_ms)
            return True
        return False

    def _rank(self, ts_ms: int) -> None:
        self.ranking = rank({s: list(w) for s, w in self.windows.items()},
                            self.spec.liquidityWeight, self.spec.volatilityWeight)
        self.picks = [r.symbol for r in self.ranking[: self.spec.topN]]
        self.ranked_at_ms = ts_ms
        self.rankings += 1

    def status(self) -> dict:
        """``status.scanner``: ``{picks, rankedAt, ranking: [{symbol, score,
        turnoverUsdt, volatilityBps}]}`` (decimal strings)."""
        out: dict = {"picks": list(self.picks or [])}
        if self.ranked_at_ms is not None:
            out["rankedAt"] = datetime.fromtimestamp(self.ranked_at_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        out["ranking"] = [{"symbol": r.symbol, "score": f"{r.score:.4f}", "turnoverUsdt": f"{r.turnover_usdt:.2f}",
                           "volatilityBps": f"{r.volatility_bps:.4f}"} for r in self.ranking]
        return out
