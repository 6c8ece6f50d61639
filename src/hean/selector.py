"""HEAN's selector: the anti-overfitting gates a revision must pass before promotion.

Pure functions over a strategy's closed round trips (:class:`Trade`), used by the
promotion controller (:mod:`hean.operator.promotion`) with the thresholds of
``spec.promotion.gates`` (:class:`hean.promotion.GatesSpec`):

* **minimum closed trades** - ``n >= minClosedTrades``, counting the trades whose
  entry regime is known (the market history before them is long enough to label
  it); fewer is not a failure but "waiting" (no other gate is judged on too few
  trades);
* **recency-weighted performance** - the k-th most recent trade (k = 0 for the
  newest) has weight ``w_k = 0.5 ** (k / halfLifeTrades)`` (exponential decay with
  a half-life counted in trades); the weighted mean net PnL per trade
  ``sum(w_k * pnl_k) / sum(w_k)`` (USDT) must be ``>= minWeightedPnlUsdt``;
* **holdout** - the most recent ``h = max(1, round(n * holdoutFraction))`` trades
  are the holdout, the ``n - h`` before them the earlier window; with ``m_e`` and
  ``m_h`` their mean net PnL per trade the check passes iff
  ``m_h >= min(m_e, 0) - maxHoldoutDropUsdt``: a profitable record must not turn
  into a losing holdout, and a losing one must not get worse (a *collapse*);
* **regime coverage** - each trade is labelled with the market regime at its entry
  (:func:`regime_labels`: trend up/down x volatility high/low, four buckets); at
  least ``minRegimes`` buckets must hold ``minTradesPerRegime`` trades each, so
  the performance was measured in more than one kind of market;
* **shadow** (a candidate beside a promoted revision) - the candidate's net PnL on
  the same market data must be ``>= promoted - toleranceUsdt``.

Net PnL of a trade = realized PnL of its closing fills - the fees of all its fills
(USDT), as in the worker's ledger (average-entry-price accounting).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any, Iterable

import numpy as np

from hean.promotion import GatesSpec

REGIMES = ("up-high", "up-low", "down-high", "down-low")
REGIME_WINDOW = 60       # bars of the trend and volatility measured at each bar
REGIME_REF_WINDOW = 1440  # bars of the volatility reference (a day of 1-minute candles)


@dataclass(frozen=True)
class Trade:
    """One closed round trip: ``side`` of the entry (``Buy`` long, ``Sell`` short),
    entry and exit times in epoch milliseconds, ``pnl_usdt`` net of fees (float,
    USDT), ``regime`` one of :data:`REGIMES` or ``""`` (unknown)."""

    symbol: str
    side: str
    entry_ts_ms: int
    exit_ts_ms: int
    pnl_usdt: float
    regime: str = ""

    def to_dict(self) -> dict:
        """JSON form (the worker's ``/trades``): camelCase keys."""
        d = asdict(self)
        return {"symbol": d["symbol"], "side": d["side"], "entryTsMs": d["entry_ts_ms"],
                "exitTsMs": d["exit_ts_ms"], "pnlUsdt": d["pnl_usdt"], "regime": d["regime"]}

    @classmethod
    def from_dict(cls, d: dict) -> "Trade":
        """Inverse of :meth:`to_dict`; raises KeyError/ValueError on a malformed dict."""
        return cls(str(d["symbol"]), str(d["side"]), int(d["entryTsMs"]), int(d["exitTsMs"]),
                   float(d["pnlUsdt"]), str(d.get("regime") or ""))


def _get(f: Any, *names: str) -> Any:
    for n in names:
        if isinstance(f, dict) and n in f:
            return f[n]
        if hasattr(f, n):
            return getattr(f, n)
    raise KeyError(f"fill has none of {names}")


def round_trips(fills: Iterable[Any]) -> list[Trade]:
    """Closed round trips from a fill history in booking order.

    ``fills``: :class:`hean.worker.ledger.Fill` objects or the worker's ``/ledger``
    JSON dicts (``symbol``, ``side`` ``Buy``/``Sell``, ``qty``, ``price``, ``fee``,
    ``tsMs``). A trip opens when a symbol's position leaves zero and closes when it
    returns to zero; a fill that flips the position closes the trip and opens the
    next with the rest (its fee split pro rata). Open trips are not returned.
    """
    state: dict[str, dict] = {}
    out: list[Trade] = []
    for f in fills:
        sym = _get(f, "symbol")
        side = _get(f, "side")
        qty = Decimal(str(_get(f, "qty")))
        price = Decimal(str(_get(f, "price")))
        fee = Decimal(str(_get(f, "fee")))
        ts = int(_get(f, "ts_ms", "tsMs"))
        signed = qty if side == "Buy" else -qty
        s = state.setdefault(sym, {"size": Decimal(0), "entry": Decimal(0), "pnl": Decimal(0), "ts": ts,
                                   "side": side})
        if s["size"] == 0:
            s.update(size=Decimal(0), entry=Decimal(0), pnl=Decimal(0), ts=ts, side=side)
        if s["size"] == 0 or (s["size"] > 0) == (signed > 0):
            new = s["size"] + signed
            s["entry"] = (s["entry"] * abs(s["size"]) + price * qty) / abs(new)
            s["size"] = new
            s["pnl"] -= fee
            continue
        closing = min(abs(signed), abs(s["size"]))
        direction = 1 if s["size"] > 0 else -1
        share = closing / qty
        s["pnl"] += (price - s["entry"]) * closing * direction - fee * share
        rest = s["size"] + signed
        if rest == 0 or (rest > 0) == (s["size"] > 0):
            s["size"] = rest
            if rest == 0:
                out.append(Trade(sym, s["side"], s["ts"], ts, float(s["pnl"])))
        else:  # flipped through zero
            out.append(Trade(sym, s["side"], s["ts"], ts, float(s["pnl"])))
            s.update(size=rest, entry=price, pnl=-(fee * (1 - share)), ts=ts, side=side)
    return out


def regime_labels(closes: np.ndarray, window: int = REGIME_WINDOW, ref_window: int = REGIME_REF_WINDOW) -> np.ndarray:
    """The regime at each bar from the closes up to it (causal: no look-ahead).

    ``closes``: float64 array of close prices (> 0). Trend at bar t:
    ``log(close[t] / close[t - window])`` (>= 0 ``up``, else ``down``); volatility
    at t: the population standard deviation of the ``window`` 1-bar log returns
    ending at t, ``high`` if above the mean of that volatility over the last
    ``ref_window`` bars (fewer at the start), else ``low``. Returns an object array
    of :data:`REGIMES` labels, ``""`` for the first ``window`` bars. Raises
    ValueError if ``window < 2`` or a close is not positive.
    """
    c = np.asarray(closes, dtype=np.float64)
    if window < 2 or ref_window < 1:
        raise ValueError(f"window must be >= 2 and ref_window >= 1, got {window}, {ref_window}")
    if np.any(~(c > 0)):
        raise ValueError("closes must be positive numbers")
    n = len(c)
    out = np.full(n, "", dtype=object)
    if n <= window:
        return out
    lc = np.log(c)
    r = np.diff(lc)  # r[i] = return into bar i+1
    cs, cs2 = np.concatenate(([0.0], np.cumsum(r))), np.concatenate(([0.0], np.cumsum(r * r)))
    t = np.arange(window, n)  # bars with `window` returns behind them: r[t-window .. t-1]
    s1, s2 = cs[t] - cs[t - window], cs2[t] - cs2[t - window]
    vol = np.sqrt(np.maximum(s2 / window - (s1 / window) ** 2, 0.0))
    cv = np.concatenate(([0.0], np.cumsum(vol)))
    k = np.arange(1, len(vol) + 1)
    lo = np.maximum(k - ref_window, 0)
    ref = (cv[k] - cv[lo]) / (k - lo)
    trend = lc[t] - lc[t - window]
    up = np.where(trend >= 0, "up", "down")
    hi = np.where(vol > ref, "high", "low")
    out[window:] = np.char.add(np.char.add(up.astype(str), "-"), hi.astype(str))
    return out


def label_trades(trades: list[Trade], bars: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[Trade]:
    """Set each trade's ``regime`` to the label of the last bar of its symbol at or
    before its entry. ``bars``: symbol -> (int64 open times in ms, labels from
    :func:`regime_labels`), times ascending. Trades without bars stay ``""``."""
    out = []
    for tr in trades:
        ts_labels = bars.get(tr.symbol)
        regime = ""
        if ts_labels is not None and len(ts_labels[0]):
            i = int(np.searchsorted(ts_labels[0], tr.entry_ts_ms, side="right")) - 1
            if i >= 0:
                regime = str(ts_labels[1][i])
        out.append(Trade(tr.symbol, tr.side, tr.entry_ts_ms, tr.exit_ts_ms, tr.pnl_usdt, regime))
    return out


def recency_weighted_mean(pnls: list[float], half_life: float) -> float:
    """``sum(w_k * pnl_k) / sum(w_k)`` with ``w_k = 0.5 ** (k / half_life)``, k = 0
    for the LAST element (the most recent trade). Raises ValueError on an empty list
    or ``half_life <= 0``."""
    if not pnls or half_life <= 0:
        raise ValueError("recency_weighted_mean needs trades and half_life > 0")
    n = len(pnls)
    w = 0.5 ** (np.arange(n - 1, -1, -1, dtype=np.float64) / half_life)
    return float(np.dot(w, np.asarray(pnls, dtype=np.float64)) / w.sum())


def holdout_split(pnls: list[float], fraction: float) -> tuple[list[float], list[float]]:
    """``(earlier, holdout)``: the holdout is the last ``max(1, round(n *
    fraction))`` trades (at most n - 1, so the earlier window is never empty for
    n >= 2)."""
    n = len(pnls)
    h = min(max(1, round(n * fraction)), max(n - 1, 1))
    return pnls[:n - h], pnls[n - h:]


def regime_counts(trades: list[Trade]) -> dict[str, tuple[int, float]]:
    """Per regime bucket: (number of trades, mean net PnL per trade, USDT). Trades
    without a regime are left out."""
    out: dict[str, tuple[int, float]] = {}
    for r in REGIMES:
        p = [t.pnl_usdt for t in trades if t.regime == r]
        if p:
            out[r] = (len(p), sum(p) / len(p))
    return out


def evaluate(trades: list[Trade], gates: GatesSpec,
             shadow: tuple[float, float, float] | None = None) -> tuple[str, list[dict]]:
    """Run every gate (see the module docstring) and return ``(verdict, results)``.

    ``verdict`` is ``Waiting`` (fewer than ``minClosedTrades`` trades), ``Refused``
    (a gate failed) or ``Passed``; ``results`` is a list of ``{name, passed,
    message}`` in the order minClosedTrades, recencyWeightedPnl, holdout,
    regimeCoverage, shadow. ``shadow`` = (candidate net PnL, promoted net PnL,
    tolerance), USDT, when a candidate runs beside a promoted revision.
    """
    n = sum(1 for t in trades if t.regime)
    results = [{"name": "minClosedTrades", "passed": n >= gates.minClosedTrades,
                "message": f"{n} closed trades with a known regime, need {gates.minClosedTrades}"}]
    if n < gates.minClosedTrades:
        return "Waiting", results
    pnls = [t.pnl_usdt for t in sorted(trades, key=lambda t: (t.exit_ts_ms, t.entry_ts_ms))]
    wm = recency_weighted_mean(pnls, gates.halfLifeTrades)
    results.append({"name": "recencyWeightedPnl", "passed": wm >= gates.minWeightedPnlUsdt,
                    "message": f"weighted mean {wm:+.4f} USDT/trade (half-life {gates.halfLifeTrades:g} trades), "
                               f"need >= {gates.minWeightedPnlUsdt:+g}"})
    earlier, hold = holdout_split(pnls, gates.holdoutFraction)
    me = sum(earlier) / len(earlier) if earlier else 0.0
    mh = sum(hold) / len(hold)
    floor = min(me, 0.0) - gates.maxHoldoutDropUsdt
    results.append({"name": "holdout", "passed": mh >= floor,
                    "message": f"holdout ({len(hold)} trades) mean {mh:+.4f} USDT/trade vs earlier ({len(earlier)}) "
                               f"{me:+.4f}: need >= {floor:+.4f}" + ("" if mh >= floor else " (collapse)")})
    counts = regime_counts(trades)
    covered = sorted(r for r, (c, _) in counts.items() if c >= gates.minTradesPerRegime)
    per = ", ".join(f"{r}: {c} trades {m:+.3f}" for r, (c, m) in counts.items())
    results.append({"name": "regimeCoverage", "passed": len(covered) >= gates.minRegimes,
                    "message": f"{len(covered)} regimes with >= {gates.minTradesPerRegime} trades, need "
                               f"{gates.minRegimes} ({per or 'no labelled trades'})"})
    if shadow is not None:
        cand, prom, tol = shadow
        results.append({"name": "shadow", "passed": cand >= prom - tol,
                        "message": f"candidate net PnL {cand:+.2f} USDT vs promoted {prom:+.2f} "
                                   f"(tolerance {tol:g})"})
    ok = all(r["passed"] for r in results)
    for r in results:
        r["message"] = r["message"][:512]
    return ("Passed" if ok else "Refused"), results


def finite(x: float) -> bool:
    """True for a finite float (helper for JSON inputs)."""
    return isinstance(x, (int, float)) and math.isfinite(x)
