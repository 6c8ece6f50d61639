"""The paper account's ledger: cash, positions, realized PnL and fees in exact decimals.

Every fill is recorded once (keyed by its execution id) and moves three things:
the position of its symbol, realized PnL (on the part of the fill that reduces the
position), and fees. The ledger's invariant, checked by :meth:`Ledger.check`, is

    total = realized_pnl + funding + rewards - fees - opportunity_cost   (HEAN's truth layer)
    equity = capital + total + unrealized_pnl
    position(symbol) = sum of signed fill quantities of that symbol

``funding`` is funding received (> 0) or paid (< 0), ``rewards`` exchange rebates or
rewards received, ``opportunity_cost`` what the account gave up (e.g. a missed
maker rebate), all USDT. The paper engine books none of the three today (no
funding-rate history for the recorded symbols; :meth:`Ledger.book_funding` is the
hook), so they stay 0 and the formula is still checked.

Position accounting is the average-entry-price method Bybit uses for USDT perpetuals
(https://www.bybit.com/en/help-center/article/Profit-Loss-calculations-USDT-Contract):
a fill in the position's direction moves the average entry price; a fill against it
realizes ``(exit - entry) * qty`` for a long (the negative for a short) and, if it is
larger than the position, opens the rest at the fill price.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)


@dataclass(frozen=True)
class Fill:
    """One execution. ``qty`` > 0 in base coin; ``side`` ``"Buy"`` or ``"Sell"``;
    ``price`` in USDT; ``fee`` in USDT (positive = paid); ``ts_ms`` epoch ms;
    ``liquidity`` ``"taker"`` or ``"maker"``; ``exec_id`` unique per fill."""

    exec_id: str
    order_link_id: str
    symbol: str
    side: str
    qty: Decimal
    price: Decimal
    fee: Decimal
    ts_ms: int
    liquidity: str = "taker"
    reason: str = ""

    @property
    def signed_qty(self) -> Decimal:
        """``qty`` for a Buy, ``-qty`` for a Sell."""
        return self.qty if self.side == "Buy" else -self.qty


@dataclass
class Position:
    """Net position of one symbol: ``size`` signed (base coin, > 0 long, < 0 short),
    ``entry_price`` the average entry price (USDT), ``realized_pnl`` realized on this
    symbol so far (USDT, before fees)."""

    symbol: str
    size: Decimal = ZERO
    entry_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO

    @property
    def side(self) -> str:
        """``"Buy"`` (long), ``"Sell"`` (short) or ``""`` (flat), as Bybit reports it."""
        return "Buy" if self.size > 0 else "Sell" if self.size < 0 else ""

    def unrealized_pnl(self, mark_price: Decimal) -> Decimal:
        """``(mark - entry) * size`` in USDT (negative size makes it a short's PnL)."""
        if self.size == 0:
            return ZERO
        return (mark_price - self.entry_price) * self.size

    def notional(self, mark_price: Decimal) -> Decimal:
        """Absolute position value at ``mark_price`` in USDT."""
        return abs(self.size) * mark_price


class LedgerError(RuntimeError):
    """Raised when a fill would break the ledger (duplicate exec id, bad quantity)."""


@dataclass
class Ledger:
    """The account: ``capital`` (starting USDT), positions, realized PnL, fees, fills.

    Amounts are :class:`decimal.Decimal` throughout; nothing passes through a float.
    """

    capital: Decimal
    positions: dict[str, Position] = field(default_factory=dict)
    realized_pnl: Decimal = ZERO
    fees: Decimal = ZERO
    fills: list[Fill] = field(default_factory=list)
    _exec_ids: set[str] = field(default_factory=set)
    closed_trades: int = 0
    winning_trades: int = 0
    funding: Decimal = ZERO
    rewards: Decimal = ZERO
    opportunity_cost: Decimal = ZERO

    def total(self) -> Decimal:
        """HEAN's truth-layer total, USDT: ``realized_pnl + funding + rewards - fees -
        opportunity_cost``."""
        return self.realized_pnl + self.funding + self.rewards - self.fees - self.opportunity_cost

    def book_funding(self, amount: Decimal) -> None:
        """Book a funding payment: ``amount`` USDT received (> 0) or paid (< 0)."""
        self.funding += amount

    def position(self, symbol: str) -> Position:
        """The position of ``symbol`` (created flat on first use)."""
        pos = self.positions.get(symbol)
        if pos is None:
            pos = self.positions[symbol] = Position(symbol)
        return pos

    def apply(self, fill: Fill) -> Decimal:
        """Book ``fill`` exactly once and return the PnL it realized (USDT, before fee).

        Raises LedgerError, changing nothing, if the execution id was booked already
        or ``qty``/``price`` is not positive.
        """
        if fill.exec_id in self._exec_ids:
            raise LedgerError(f"execution {fill.exec_id} already booked")
        if fill.qty <= 0 or fill.price <= 0:
            raise LedgerError(f"fill {fill.exec_id}: qty and price must be > 0, got {fill.qty} @ {fill.price}")
        if fill.side not in ("Buy", "Sell"):
            raise LedgerError(f"fill {fill.exec_id}: side must be 'Buy' or 'Sell', got {fill.side!r}")
        pos = self.position(fill.symbol)
        signed = fill.signed_qty
        realized = ZERO
        if pos.size == 0 or (pos.size > 0) == (signed > 0):
            new_size = pos.size + signed
            pos.entry_price = (pos.entry_price * abs(pos.size) + fill.price * fill.qty) / abs(new_size)
            pos.size = new_size
        else:
            closing = min(abs(signed), abs(pos.size))
            direction = 1 if pos.size > 0 else -1
            realized = (fill.price - pos.entry_price) * closing * direction
            remaining = pos.size + signed
            if remaining == 0 or (remaining > 0) == (pos.size > 0):
                pos.size = remaining
                if remaining == 0:
                    pos.entry_price = ZERO
                    self.closed_trades += 1
                    if pos.realized_pnl + realized > 0:
                        self.winning_trades += 1
                    pos.realized_pnl = ZERO
                else:
                    pos.realized_pnl += realized
            else:  # flipped through zero: the rest opens at the fill price
                self.closed_trades += 1
                if pos.realized_pnl + realized > 0:
                    self.winning_trades += 1
                pos.size = remaining
                pos.entry_price = fill.price
                pos.realized_pnl = ZERO
        self.realized_pnl += realized
        self.fees += fill.fee
        self.fills.append(fill)
        self._exec_ids.add(fill.exec_id)
        return realized

    def unrealized_pnl(self, marks: dict[str, Decimal]) -> Decimal:
        """Sum of the positions' unrealized PnL at ``marks`` (symbol -> mark price)."""
        total = ZERO
        for sym, pos in self.positions.items():
            if pos.size != 0:
                total += pos.unrealized_pnl(marks[sym])
        return total

    def equity(self, marks: dict[str, Decimal]) -> Decimal:
        """``capital + total() + unrealized_pnl`` in USDT (``total()``: realized PnL +
        funding + rewards - fees - opportunity cost)."""
        return self.capital + self.total() + self.unrealized_pnl(marks)

    def open_positions(self) -> list[Position]:
        """Positions whose size is not zero."""
        return [p for p in self.positions.values() if p.size != 0]

    def gross_notional(self, marks: dict[str, Decimal]) -> Decimal:
        """Sum of absolute position values at ``marks`` in USDT."""
        return sum((p.notional(marks[p.symbol]) for p in self.open_positions()), ZERO)

    def check(self) -> None:
        """Verify the invariants against the fill history; raise LedgerError if broken.

        Replays every fill into a fresh ledger and compares positions, realized PnL
        and fees, and checks execution ids are unique.
        """
        replay = Ledger(self.capital)
        for f in self.fills:
            replay.apply(f)
        if replay.realized_pnl != self.realized_pnl or replay.fees != self.fees:
            raise LedgerError("realized PnL or fees disagree with the fill history")
        for sym, pos in self.positions.items():
            other = replay.positions.get(sym, Position(sym))
            if other.size != pos.size or other.entry_price != pos.entry_price:
                raise LedgerError(f"position {sym} disagrees with the fill history")
            if sum((f.signed_qty for f in self.fills if f.symbol == sym), ZERO) != pos.size:
                raise LedgerError(f"position {sym} is not the sum of its fills")
        if len(self._exec_ids) != len(self.fills):
            raise LedgerError("duplicate execution ids in the fill history")
