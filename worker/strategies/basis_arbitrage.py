"""``basis_arbitrage``: spot versus perpetual basis capture, both legs.

basis = (perp close - spot close) / spot close, in bps. Flat and basis >=
``entryBasisBps``: sell the perpetual and buy the same quantity of spot (cash and
carry, the engine's ``hedge`` leg); basis <= -``entryBasisBps`` and ``allowReverse``:
buy the perpetual and sell spot. Open and ``|basis| <= exitBasisBps``: close both
legs. Leg balance: the legs' quantities may differ by at most
``maxLegImbalanceFraction`` of the larger; an entry that cannot meet it after rounding
to both qty steps is refused (``LEG_IMBALANCE``); an open pair that breaks it (a leg
failed) is closed at once (``LEG_IMBALANCE_EXIT``).

The spot leg arrives through :meth:`hean.worker.engine.Engine.on_leg_bar` (key
``<symbol>.SPOT`` in the ledger, spot fees); feed it before the perpetual's candle of
the same open time so both legs fill at their own next open.
"""

from __future__ import annotations

from decimal import Decimal

from .base import R_NO_SIGNAL, R_WARMING_UP, OrderIntent, PositionView, Strategy


class BasisArbitrageStrategy(Strategy):
    """Per-symbol basis state: the spot leg's last close and the last basis (bps)."""

    name = "basis_arbitrage"

    def reset(self) -> None:
        self.spot: Decimal | None = None
        self.basis_bps: float | None = None
        self.warm = False

    def on_leg_bar(self, leg: str, bar, view: PositionView):
        """Remember the spot close."""
        self.spot = bar.close
        return None

    def on_bar(self, bar, view: PositionView):
        """Basis of this perpetual candle against the latest spot candle."""
        p = self.params
        if self.spot is None or self.spot <= 0:
            return R_WARMING_UP
        self.warm = True
        basis = float((bar.close - self.spot) / self.spot) * 10000
        self.basis_bps = basis
        if view.size != 0 or view.leg_size != 0:
            if view.pending:
                return None
            a, b = abs(view.size), abs(view.leg_size)
            imbalance = float(abs(a - b) / max(a, b))
            side = "Sell" if view.size > 0 or (view.size == 0 and view.leg_size < 0) else "Buy"
            if imbalance > p.maxLegImbalanceFraction:
                return OrderIntent(side, "LEG_IMBALANCE_EXIT", reduce_only=True, hedge=True)
            if abs(basis) <= p.exitBasisBps:
                return OrderIntent(side, "BASIS_EXIT", reduce_only=True, hedge=True)
            return None
        if basis >= p.entryBasisBps:
            side = "Sell"
        elif basis <= -p.entryBasisBps and p.allowReverse:
            side = "Buy"
        else:
            return R_NO_SIGNAL
        return OrderIntent(side, "BASIS_ENTRY", notional_usdt=Decimal(repr(p.legNotionalUsdt)), hedge=True,
                           max_leg_imbalance=p.maxLegImbalanceFraction)
