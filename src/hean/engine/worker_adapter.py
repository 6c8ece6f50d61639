"""The worker's paper :class:`hean.worker.engine.Engine` surface backed by the C++ engine.

:class:`NativePaperEngine` has the attributes and methods the worker (``worker/app.py``,
``worker/http.py``) reads from its Engine in paper mode, but every candle runs through
:class:`hean.engine.NativeEngine` (``hean._native.PaperEngine``), the same code as
:func:`hean.engine.replay`, so a replay and live paper trading cannot drift apart.
Fills come back as :class:`hean.worker.ledger.Fill` objects and are applied to a real
:class:`hean.worker.ledger.Ledger` (so ``ledger.fills``, ``ledger.check()``, positions
and equity work as before); risk transitions are appended to ``risk_events``.

Wiring it (not done here because ``worker/engine.py`` is being changed in parallel):
in ``worker/app.py`` ``_build_engine`` build ``NativePaperEngine(...)`` instead of
``Engine(...)`` when ``spec.mode == "paper"`` (the exchange path keeps Engine: the C++
engine has no executor hooks, and the constructor here refuses an executor). Whatever
the worker's Engine gains (strategy interface, risk features) must be mirrored in
``native/src/engine.cpp`` first; ``tests/unit/test_native_worker_adapter.py`` and
``tests/unit/test_native_replay.py`` then show whether the two still agree.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any, Mapping

from hean.engine.replay import REASONS, NativeEngine

__all__ = ["NativePaperEngine", "REPLAY_FINISHED"]

#: hean.worker.engine.R_REPLAY_DONE
REPLAY_FINISHED = "REPLAY_FINISHED"


class _SymbolView:
    """Read-only per-symbol state with the fields of ``hean.worker.engine.SymbolState``
    that the worker reports: ``symbol``, ``instrument``, ``params``, ``mark``,
    ``stop_price``, ``target_price``, ``entry_orders``, ``last_reason``,
    ``quarantined``, ``pending`` (bool here)."""

    def __init__(self, owner: "NativePaperEngine", symbol: str, index: int) -> None:
        self._o, self.symbol, self._i = owner, symbol, index
        self.instrument = owner._n.instruments[symbol]

    @property
    def params(self):
        return self._o.spec.params

    def _state(self) -> dict[str, Any]:
        return self._o._n._e.symbol_state(self._i)

    @property
    def mark(self) -> Decimal | None:
        m = self._state()["mark"]
        return None if m is None else Decimal(m).scaleb(-self._o._n.price_decimals).quantize(self.instrument.tick_size)

    @property
    def stop_price(self) -> Decimal | None:
        return self._o._n.positions()[self.symbol]["stop_price"]

    @property
    def target_price(self) -> Decimal | None:
        return self._o._n.positions()[self.symbol]["target_price"]

    @property
    def pending(self) -> bool:
        return bool(self._state()["pending"])

    @property
    def entry_orders(self) -> int:
        return int(self._state()["entry_orders"])

    @property
    def quarantined(self) -> bool:
        return self.symbol in self._o._quarantined

    @property
    def last_reason(self) -> str:
        if self._o._finished and self._state()["size"] == 0:
            return REPLAY_FINISHED
        r = self._state()["last_reason"]
        if r < 0:
            return ""
        name = REASONS[r]
        return (self._o.blocked_reason or name) if name == "BLOCKED" else name


class NativePaperEngine:
    """Drop-in for :class:`hean.worker.engine.Engine` in paper mode.

    Args: as Engine (``name``, ``spec``: StrategySpec, ``policy``: RiskPolicySpec or
    None, ``instruments``: symbol -> Instrument, ``labels``). Raises KeyError naming a
    symbol without instrument info, ValueError for ``spec.mode`` other than paper.
    """

    def __init__(self, name: str, spec, policy, instruments: Mapping[str, Any],
                 labels: Mapping[str, str] | None = None) -> None:
        from hean.worker.ledger import Ledger

        if getattr(spec, "mode", "paper") != "paper":
            raise ValueError(f"NativePaperEngine is for spec.mode 'paper', got {spec.mode!r}")
        self.name = name
        self.labels = dict(labels or {})
        self._n = NativeEngine(name, spec, policy, instruments)
        self.ledger = Ledger(capital=spec.capital)
        self.risk_events: list[tuple[str, str, list[str]]] = []
        self._fills_seen = 0
        self._risk_seen = 0
        self._finished = False
        self._quarantined: set[str] = set()
        self.symbols = {s: _SymbolView(self, s, i) for i, s in enumerate(self._n.symbols)}

    # Exchange execution hooks of Engine: always None here (paper only).
    @property
    def executor(self):
        return None

    @executor.setter
    def executor(self, value) -> None:
        if value is not None:
            raise ValueError("NativePaperEngine trades on paper only; use hean.worker.engine.Engine with an executor")

    link_ids = None

    @property
    def spec(self):
        return self._n.spec

    @property
    def policy(self):
        return self._n.policy

    @property
    def blocked_reason(self) -> str | None:
        return self._n.blocked_reason

    @blocked_reason.setter
    def blocked_reason(self, reason: str | None) -> None:
        self._n.set_blocked_reason(reason)

    def _sync(self) -> None:
        new = self._n.fills(self._fills_seen)
        for f in new:
            self.ledger.apply(f)
        self._fills_seen += len(new)
        ev = self._n.risk_events()
        self.risk_events.extend(ev[self._risk_seen:])
        self._risk_seen = len(ev)

    # ---- Engine methods ------------------------------------------------------------
    def on_bar(self, symbol: str, bar) -> None:
        """Process one closed candle (:class:`hean.marketdata.Bar`)."""
        self._finished = False
        self._n.on_bar(symbol, bar)
        self._sync()

    def update_spec(self, spec) -> None:
        self._n.update_spec(spec)

    def update_policy(self, policy) -> None:
        self._n.update_policy(policy)
        self._sync()

    def set_quarantined(self, symbols: set[str]) -> None:
        self._quarantined = set(symbols) & set(self.symbols)
        self._n.set_quarantined(self._quarantined)
        self._sync()

    def clear_hard_stop(self, at) -> bool:
        done = self._n.clear_hard_stop(at)
        self._sync()
        return done

    def finish(self) -> None:
        """Mark every flat symbol as done (the replay ran out)."""
        self._finished = True

    def marks(self) -> dict[str, Decimal]:
        return {s: v.mark for s, v in self.symbols.items() if v.mark is not None}

    def equity(self) -> Decimal:
        return self._n.equity()

    def drawdown_percent(self) -> Decimal:
        return self._n.drawdown_percent()

    def top_reasons(self, n: int = 5) -> list[dict]:
        return self._n.top_reasons(n)

    def trading_active(self) -> bool:
        return self._n.trading_active()

    # ---- Engine counters and state -----------------------------------------------------
    @property
    def reasons(self) -> Counter:
        return self._n.counters()["reasons"]

    @property
    def rejects(self) -> Counter:
        return self._n.counters()["rejects"]

    @property
    def dropped(self) -> Counter:
        return self._n.counters()["dropped"]

    @property
    def bars_processed(self) -> int:
        return self._n.counters()["bars_processed"]

    @property
    def orders_sent(self) -> int:
        return self._n.counters()["orders_sent"]

    @property
    def order_seq(self) -> int:
        return self._n.counters()["order_seq"]

    @property
    def now_ms(self) -> int:
        return int(self._n._e.counters()["now_ms"])

    @property
    def risk_state(self) -> str:
        return self._n.risk_state

    @property
    def risk_reasons(self) -> list[str]:
        return self._n.figures()["risk_reasons"]

    @property
    def peak_equity(self) -> Decimal:
        return self._n.figures()["peak_equity"]
