"""The native paper engine: a per-candle object for the live worker and a one-call replay.

:class:`NativeEngine` wraps :class:`hean._native.PaperEngine`, the C++ transcription of
:class:`hean.worker.engine.Engine` (impulse strategy -> Risk Governor -> next-open
market fills with slippage -> exact ledger). Given the same candles, spec, policy and
instruments it produces the same fills (timestamps, sides, quantities, prices, fees,
order link ids), the same risk transitions and the same counters; the equivalence
tests in ``tests/unit/test_native_replay.py`` hold it to that on recorded Bybit data.

Numbers never pass through binary floats on the money side: prices are integers in
units of ``10**-price_decimals``, quantities in ``10**-qty_decimals``, money in
``10**-money_decimals`` (128-bit), fees in 1e-8 USDT; the few steps where the Python
engine divides Decimals use a C++ decimal type with Python's default context (28
significant digits, half-even). Indicators and the signal are float64 computed by the
same kernels as :mod:`hean.indicators` in the same order.

:func:`replay` runs a whole merged candle stream in one call (GIL released) and
returns fills, the equity curve and counters as numpy arrays. With ``strategy=`` a
Python callable decides entries in batches (see :func:`impulse_strategy` for the
built-in logic written in numpy); results are identical to the built-in kernel when
the logic is.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from hean import _native

__all__ = [
    "NativeEngine",
    "ReplayInput",
    "ReplayResult",
    "REASONS",
    "REJECTS",
    "FILL_REASONS",
    "RISK_STATES",
    "impulse_strategy",
    "merge_klines",
    "replay",
]

#: Index -> reason code of ``counters()["reasons"]`` (hean.worker.engine's R_* codes).
REASONS = ("NO_RISK_POLICY", "PAUSED", "HARD_STOP", "SYMBOL_QUARANTINED", "SOFT_BRAKE", "WARMING_UP",
           "COOLDOWN", "NO_SIGNAL", "SPOT_NO_SHORT", "ORDER_RATE_LIMIT", "MAX_OPEN_POSITIONS",
           "MAX_POSITION_NOTIONAL", "BELOW_MIN_ORDER", "ORDER_PENDING", "BLOCKED")
#: Index -> reject code of ``counters()["rejects"]``.
REJECTS = ("ORDER_RATE_LIMIT", "BELOW_MIN_ORDER", "REDUCE_ONLY_NO_POSITION")
#: Fill reason codes by index.
FILL_REASONS = ("IMPULSE_ENTRY", "TREND_FLIP", "STOP_LOSS", "TAKE_PROFIT", "HARD_STOP")
RISK_STATES = ("NORMAL", "SOFT_BRAKE", "QUARANTINE", "HARD_STOP")
_RISK_REASON_BITS = ((2, "HARD_DRAWDOWN"), (4, "DAILY_LOSS"), (16, "HARD_STOP_LATCHED"),
                     (1, "SOFT_DRAWDOWN"), (8, "SYMBOL_QUARANTINE"))
FEES = {"linear": (Decimal("0.00055"), Decimal("0.0002")), "spot": (Decimal("0.001"), Decimal("0.001"))}


def _decimals(d: Decimal) -> int:
    exp = d.normalize().as_tuple().exponent
    return max(0, -int(exp)) if isinstance(exp, int) else 0


def _scaled(d: Decimal, decimals: int, what: str) -> int:
    q = d.scaleb(decimals)
    i = int(q)
    if q != i:
        raise ValueError(f"{what} {d} has more than {decimals} decimals")
    return i


def _risk_reasons(bits: int) -> list[str]:
    return [name for bit, name in _RISK_REASON_BITS if bits & bit]


@dataclass
class ReplayInput:
    """A merged multi-symbol candle stream in time order (shape ``(n,)`` each):
    ``symbol`` int32 index into ``symbols``, ``ts_ms`` int64 open time (epoch ms),
    ``open/high/low/close`` int64 prices in units of ``10**-price_decimals``."""

    symbols: list[str]
    price_decimals: int
    symbol: np.ndarray
    ts_ms: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray

    def __len__(self) -> int:
        return int(self.symbol.shape[0])


def merge_klines(series: Mapping[str, Any], symbols: Iterable[str], price_decimals: int,
                 n: int | None = None) -> ReplayInput:
    """Merge per-symbol :class:`hean.marketdata.KlineSeries` (first ``n`` bars each)
    into one stream ordered by (open time, symbol name), as the worker's tests feed
    :class:`hean.worker.engine.Engine`. Prices become exact integers at
    ``price_decimals`` (ValueError naming the value if one has more decimals)."""
    symbols = list(symbols)
    cols: dict[str, list] = {k: [] for k in ("symbol", "ts_ms", "open", "high", "low", "close")}
    keys = []
    for idx, sym in enumerate(symbols):
        bars = series[sym].bars[:n] if n is not None else series[sym].bars
        for b in bars:
            keys.append((b.ts_ms, sym))
            cols["symbol"].append(idx)
            cols["ts_ms"].append(b.ts_ms)
            for k in ("open", "high", "low", "close"):
                cols[k].append(_scaled(getattr(b, k), price_decimals, f"{sym} {k}"))
    order = sorted(range(len(keys)), key=keys.__getitem__)
    arr = {k: np.asarray(v, dtype=np.int32 if k == "symbol" else np.int64)[order] if v else
           np.zeros(0, dtype=np.int32 if k == "symbol" else np.int64) for k, v in cols.items()}
    return ReplayInput(symbols, price_decimals, **{k: np.ascontiguousarray(v) for k, v in arr.items()})


def _policy_dict(policy) -> dict[str, Any] | None:
    if policy is None:
        return None
    return {
        "softMaxDrawdownPercent": str(policy.softMaxDrawdownPercent),
        "hardMaxDrawdownPercent": str(policy.hardMaxDrawdownPercent),
        "maxDailyLossUsdt": str(policy.maxDailyLossUsdt),
        "maxLeverage": str(policy.maxLeverage),
        "maxPositionNotionalUsdt": str(policy.maxPositionNotionalUsdt),
        "softBrakeSizeFactor": str(policy.softBrakeSizeFactor),
        "maxOpenPositions": int(policy.maxOpenPositions),
        "maxOrdersPerMinute": int(policy.maxOrdersPerMinute),
    }


def _check_native(spec) -> None:
    """The C++ kernel implements ``impulse`` with its gates off and no scanner;
    anything else must run on :class:`hean.worker.engine.Engine` (ValueError naming
    what is not supported)."""
    if getattr(spec, "strategy", "impulse") != "impulse":
        raise ValueError(f"the native kernel implements spec.strategy 'impulse' only, not {spec.strategy!r}: "
                         "use hean.worker.engine.Engine")
    gates = spec.params.gates_on() if hasattr(spec.params, "gates_on") else []
    if gates:
        raise ValueError(f"the native kernel has no impulse gates; switched on: "
                         f"{', '.join('spec.params.' + g for g in gates)}: use hean.worker.engine.Engine")
    if getattr(spec, "scanner", None) is not None:
        raise ValueError("the native kernel has no spec.scanner: use hean.worker.engine.Engine")


class NativeEngine:
    """Drop-in native counterpart of :class:`hean.worker.engine.Engine`.

    Args:
        name: the TradingStrategy's name (order link ids are ``<name[:20]>-<seq>``).
        spec: :class:`hean.worker.config.StrategySpec`.
        policy: :class:`hean.worker.config.RiskPolicySpec` or None.
        instruments: symbol -> :class:`hean.marketdata.Instrument` for every symbol.
        price_decimals: fixed-point scale of prices (default: the finest tick size);
            candles with more decimals raise ValueError in :meth:`on_bar`.

    Per-candle use (the live worker): :meth:`on_bar` with a
    :class:`hean.marketdata.Bar`; control changes between candles with
    :meth:`update_policy`, :meth:`set_paused`, :meth:`set_quarantined`,
    :meth:`clear_hard_stop`. Batch use: :meth:`run` / :func:`replay`.
    """

    def __init__(self, name: str, spec, policy, instruments: Mapping[str, Any],
                 price_decimals: int | None = None) -> None:
        _check_native(spec)
        self.name = name
        self.spec = spec
        self.policy = policy
        self.symbols = list(spec.symbols)
        for sym in self.symbols:
            if sym not in instruments:
                raise KeyError(f"no instrument info for {spec.category} symbol {sym}")
        self.instruments = {s: instruments[s] for s in self.symbols}
        insts = [self.instruments[s] for s in self.symbols]
        pd = max(_decimals(i.tick_size) for i in insts)
        self.price_decimals = pd if price_decimals is None else max(pd, int(price_decimals))
        self.qty_decimals = max(max(_decimals(i.qty_step), _decimals(i.min_order_qty)) for i in insts)
        md = max(8, self.price_decimals + self.qty_decimals, _decimals(spec.capital))
        if policy is not None:
            md = max(md, _decimals(policy.maxDailyLossUsdt))
        self.money_decimals = md
        self.taker_fee, self.maker_fee = FEES[spec.category]
        p = spec.params
        params = {k: getattr(p, k) for k in type(p).model_fields}
        inst_rows = [(_scaled(i.tick_size, self.price_decimals, "tick size"),
                      _scaled(i.qty_step, self.qty_decimals, "qty step"),
                      _scaled(i.min_order_qty, self.qty_decimals, "min order qty"),
                      str(i.min_notional), str(i.max_leverage)) for i in insts]
        self._e = _native.PaperEngine(self.price_decimals, self.qty_decimals, self.money_decimals,
                                      spec.category == "spot", str(spec.capital), str(spec.maxLeverage),
                                      str(spec.execution.slippageBps), str(self.taker_fee), spec.paused,
                                      params, inst_rows)
        self._e.set_policy(_policy_dict(policy), evaluate=False)
        self._index = {s: i for i, s in enumerate(self.symbols)}
        self._blocked_counts: Counter = Counter()
        self.blocked_reason: str | None = None

    # ---- control changes ---------------------------------------------------------
    def update_spec(self, spec) -> None:
        """Engine.update_spec: a live-tunable spec change (params, paused, execution,
        maxLeverage); indicators are rebuilt only if a period changed. Structural
        fields (symbols, category, capital) need a new engine (ValueError)."""
        _check_native(spec)
        if list(spec.symbols) != self.symbols or spec.category != self.spec.category or spec.capital != self.spec.capital:
            raise ValueError("symbols, category and capital are structural: build a new NativeEngine")
        p = spec.params
        self._e.update_spec({k: getattr(p, k) for k in type(p).model_fields}, spec.paused,
                            str(spec.execution.slippageBps), str(spec.maxLeverage))
        self.spec = spec

    def update_policy(self, policy) -> None:
        """Apply a RiskPolicy change (None: no entries); re-evaluates the risk state."""
        self.policy = policy
        self._e.set_policy(_policy_dict(policy))

    def set_paused(self, paused: bool) -> None:
        """Pause or resume new entries (``spec.paused``)."""
        self._e.set_paused(bool(paused))
        self.spec = self.spec.model_copy(update={"paused": bool(paused)})

    def set_blocked_reason(self, reason: str | None) -> None:
        """Engine.blocked_reason: a truthy reason (e.g. ``MARKET_DATA_STALE``) blocks new
        entries (checked right after the policy) and is counted under that name."""
        self._flush_blocked()
        self.blocked_reason = reason or None
        self._e.set_blocked(bool(reason))

    def _flush_blocked(self) -> None:
        n = self._e.counters()["reasons"][REASONS.index("BLOCKED")]
        done = sum(self._blocked_counts.values())
        if n > done and self.blocked_reason:
            self._blocked_counts[self.blocked_reason] += n - done

    def set_quarantined(self, symbols: set[str]) -> None:
        """Set which of the strategy's symbols are quarantined now."""
        self._e.set_quarantined([s in symbols for s in self.symbols])

    def clear_hard_stop(self, at: datetime) -> bool:
        """Clear a latched HARD_STOP if ``at`` (aware datetime) is later than the stop."""
        us = (at - datetime(1970, 1, 1, tzinfo=timezone.utc)) // _US
        return self._e.clear_hard_stop(int(us))

    # ---- per candle ----------------------------------------------------------------
    def on_bar(self, symbol: str, bar) -> None:
        """Process one closed candle (:class:`hean.marketdata.Bar`) of ``symbol``."""
        pd = self.price_decimals
        self._e.on_bar(self._index[symbol], bar.ts_ms, _scaled(bar.open, pd, "open"),
                       _scaled(bar.high, pd, "high"), _scaled(bar.low, pd, "low"),
                       _scaled(bar.close, pd, "close"))

    def run(self, stream: ReplayInput, strategy: Callable | None = None, batch: int = 65536) -> np.ndarray:
        """Run a merged stream (see :func:`merge_klines`); returns the equity after each
        event, float64 ``(n,)`` USDT. ``strategy``: optional batched Python callable
        (see :func:`impulse_strategy`); if it raises, the engine is left mid-batch and
        must be discarded. The GIL is released while C++ runs: do not use the same
        engine from another thread meanwhile."""
        if stream.symbols != self.symbols:
            raise ValueError(f"stream symbols {stream.symbols} differ from the engine's {self.symbols}")
        if stream.price_decimals != self.price_decimals:
            raise ValueError(f"stream price_decimals {stream.price_decimals} != engine's {self.price_decimals}")
        args = (stream.symbol, stream.ts_ms, stream.open, stream.high, stream.low, stream.close)
        if strategy is None:
            return self._e.run(*args)
        return self._e.run_callback(*args, strategy, batch)

    # ---- figures -------------------------------------------------------------------
    def figures(self) -> dict[str, Any]:
        """Exact equity, cash, realized PnL, fees, peak equity (Decimal, USDT),
        drawdown (Decimal percent), risk state and reasons."""
        f = self._e.figures()
        out = {k: Decimal(f[k]) for k in ("equity", "cash", "realized_pnl", "fees", "peak_equity",
                                            "drawdown_percent")}
        out["risk_state"] = RISK_STATES[f["risk_state"]]
        out["risk_reasons"] = _risk_reasons(f["risk_reasons"])
        out["open_positions"] = f["open_positions"]
        out["trading_active"] = f["trading_active"]
        return out

    def top_reasons(self, n: int = 5) -> list[dict]:
        """The ``n`` most frequent reasons entries were not made: ``[{reason, count}]``."""
        return [{"reason": r, "count": c} for r, c in self.counters()["reasons"].most_common(n)]

    def trading_active(self) -> bool:
        """True if the engine could open a position now on at least one symbol."""
        return bool(self._e.figures()["trading_active"])

    def equity(self) -> Decimal:
        """Account equity at the current marks (USDT, exact)."""
        return Decimal(self._e.figures()["equity"])

    def drawdown_percent(self) -> Decimal:
        return Decimal(self._e.figures()["drawdown_percent"])

    @property
    def risk_state(self) -> str:
        return RISK_STATES[self._e.figures()["risk_state"]]

    def counters(self) -> dict[str, Any]:
        """``reasons``/``rejects`` as Counters by code, plus orders_sent, bars_processed,
        dropped (``out_of_order``), rejected_bars, closed/winning trades."""
        c = self._e.counters()
        self._flush_blocked()
        reasons = Counter({REASONS[i]: v for i, v in enumerate(c["reasons"]) if v and REASONS[i] != "BLOCKED"})
        reasons.update(self._blocked_counts)
        return {
            "reasons": reasons,
            "rejects": Counter({REJECTS[i]: v for i, v in enumerate(c["rejects"]) if v}),
            "dropped": Counter({"out_of_order": c["dropped_out_of_order"]} if c["dropped_out_of_order"] else {}),
            "rejected_bars": c["rejected_bars"],
            "orders_sent": c["orders_sent"],
            "order_seq": c["order_seq"],
            "bars_processed": c["bars_processed"],
            "closed_trades": c["closed_trades"],
            "winning_trades": c["winning_trades"],
        }

    def risk_events(self) -> list[tuple[str, str, list[str]]]:
        """Risk transitions ``(old, new, reasons)`` as the Python engine records them."""
        return [(RISK_STATES[o], RISK_STATES[n], _risk_reasons(r)) for _, o, n, r in self._e.risk_events()]

    def fill_arrays(self, start: int = 0) -> dict[str, np.ndarray]:
        """Fills from index ``start`` as int arrays (see ``PaperEngine.fills``)."""
        return self._e.fills(start)

    def fills(self, start: int = 0) -> list:
        """Fills from ``start`` as :class:`hean.worker.ledger.Fill` objects."""
        from hean.worker.ledger import Fill

        a = self._e.fills(start)
        out = []
        pd, qd = self.price_decimals, self.qty_decimals
        for i in range(len(a["ts_ms"])):
            sym = self.symbols[int(a["symbol"][i])]
            inst = self.instruments[sym]
            link = f"{self.name[:20]}-{int(a['order_seq'][i])}"[:36]
            out.append(Fill(
                f"{link}-f", link, sym, "Buy" if a["side"][i] > 0 else "Sell",
                Decimal(int(a["qty"][i])).scaleb(-qd).quantize(inst.qty_step),
                Decimal(int(a["price"][i])).scaleb(-pd).quantize(inst.tick_size),
                Decimal(int(a["fee_e8"][i])).scaleb(-8), int(a["ts_ms"][i]), "taker",
                FILL_REASONS[int(a["reason"][i])]))
        return out

    def positions(self) -> dict[str, dict[str, Any]]:
        """symbol -> {size (Decimal, signed), entry_price, mark, stop_price, target_price}."""
        out = {}
        for i, s in enumerate(self.symbols):
            st = self._e.symbol_state(i)
            conv = lambda v: None if v is None else Decimal(v).scaleb(-self.price_decimals)  # noqa: E731
            out[s] = {"size": Decimal(st["size"]).scaleb(-self.qty_decimals),
                      "entry_price": conv(st["entry_price"]) if st["size"] else Decimal(0),
                      "mark": conv(st["mark"]), "stop_price": conv(st["stop_price"]),
                      "target_price": conv(st["target_price"]), "pending": st["pending"]}
        return out


_US = __import__("datetime").timedelta(microseconds=1)


def impulse_strategy(params) -> Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]:
    """The built-in impulse decision written in numpy, for the batched callback.

    ``params``: :class:`hean.worker.config.ImpulseParams`. The callable receives the
    batch dict of :meth:`PaperEngine.run_callback` and returns ``(entry, bias)``:
    entry +1 when EMA fast > slow and ret > threshold, -1 when fast < slow and
    ret < -threshold, else 0, with threshold = impulseThreshold * sigma *
    sqrt(impulseLookback) (same float64 operations in the same order as the C++
    kernel and hean.worker.engine); bias = sign(fast - slow).
    """
    k = float(params.impulseThreshold)
    sq = math.sqrt(params.impulseLookback)

    def strategy(b: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        fast, slow, ret = b["ema_fast"], b["ema_slow"], b["ret"]
        thr = k * b["sigma"] * sq
        up = fast > slow
        down = fast < slow
        entry = (up & (ret > thr)).astype(np.int8) - (down & (ret < -thr)).astype(np.int8)
        bias = up.astype(np.int8) - down.astype(np.int8)
        return entry, bias

    return strategy


@dataclass
class ReplayResult:
    """What :func:`replay` returns. ``fills``: dict of int arrays (see
    ``PaperEngine.fills``; qty in qty units, price in price units, fee in 1e-8
    USDT); ``equity``: float64 ``(n,)`` USDT after each event; ``counters`` and
    ``figures`` as :meth:`NativeEngine.counters` / :meth:`NativeEngine.figures`."""

    engine: NativeEngine
    fills: dict[str, np.ndarray]
    equity: np.ndarray
    counters: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def fill_objects(self) -> list:
        return self.engine.fills()


def replay(name: str, spec, policy, instruments: Mapping[str, Any], stream: ReplayInput,
           strategy: Callable | None = None, batch: int = 65536) -> ReplayResult:
    """Run ``stream`` through a fresh :class:`NativeEngine` in one call."""
    eng = NativeEngine(name, spec, policy, instruments, price_decimals=stream.price_decimals)
    curve = eng.run(stream, strategy=strategy, batch=batch)
    return ReplayResult(eng, eng.fill_arrays(), curve, eng.counters(), eng.figures())
