"""The paper-fill model at the Decimal boundary: the live worker's paper fills.

Every paper fill of :class:`hean.worker.engine.Engine` (all strategies, spot legs,
book-driven fills, stop-loss/take-profit exits) is priced, charged and clipped by the
C++ functions ``hean._native.fill_*`` (``native/include/hean/fill.hpp``), the same
inline functions the replay loop (:class:`hean.engine.NativeEngine`,
:func:`hean.engine.replay`) calls for its fills, so replay and live paper trading
cannot drift apart. This module only converts Decimals to scaled integers and back:

* A value is scaled by ``10^d`` with ``d = max(decimals of the instrument's tick size
  (qty step), decimals of the value)``, so the conversion is exact (nothing is rounded
  here). A value that is not finite, has more than :data:`MAX_DECIMALS` decimals or
  whose scaled integer does not fit int64 raises ValueError naming the field.
* Results come back as Decimals with the exponent the worker's former Decimal code
  gave them: prices quantized to the tick size (``Instrument.round_price``), fees to
  ``1e-8`` USDT, a maker price and a reduce-only quantity as the order's own values.

Formulas (Python's default decimal context, 28 digits, ROUND_HALF_EVEN; the C++
reproduces them exactly, see ``native/README.md``):

* taker price = ``round_price(ref * (1 + bps/10^4), "up")`` for a Buy,
  ``round_price(ref * (1 - bps/10^4), "down")`` for a Sell (slippage and tick rounding
  against the trader); maker price = the order's limit price.
* fee (USDT) = ``(qty * price * rate).quantize(Decimal("0.00000001"))``; rates are
  fractions of notional (Bybit's fee table,
  https://www.bybit.com/en/help-center/article/Trading-Fee-Structure).
* reduce-only fill qty = ``min(qty, |position|)`` if the order reduces the position,
  else None (rejected: REDUCE_ONLY_NO_POSITION).
* stop/target of an entry filled at ``price``: Buy ``round_price(price - stop, "down")``
  / ``round_price(price + target, "up")``; Sell ``round_price(price + stop, "up")`` /
  ``round_price(price - target, "down")``.
* exit trigger of a candle: stop checked before target; a gap through the level fills
  at the open.
"""

from __future__ import annotations

from decimal import Decimal

from hean import _native

#: most decimals a price, quantity or tick size may carry (10^18 scale still fits int64
#: for values below 9.2)
MAX_DECIMALS = 18
_I64 = 2**63
_FEE_EXP = Decimal("0.00000001")
_SIDES = {"Buy": 1, "Sell": -1}


def _decimals(value: Decimal, field: str) -> int:
    exp = value.as_tuple().exponent
    if not isinstance(exp, int):  # 'n', 'N', 'F': NaN, sNaN, Infinity
        raise ValueError(f"{field} must be a finite Decimal, got {value!r}")
    if exp >= 0:
        return 0
    if -exp > MAX_DECIMALS:
        raise ValueError(f"{field} {value} has {-exp} decimals; at most {MAX_DECIMALS} are supported")
    return -exp


def _scaled(value: Decimal, d: int, field: str) -> int:
    """``value * 10^d`` as an exact int64 (``d`` >= the value's decimals)."""
    if value.adjusted() + d < 19:  # < 10^19 units: scaleb is exact (<= 28 digits)
        n = int(value.scaleb(d))
    else:
        sign, digits, exp = value.as_tuple()
        n = int("".join(map(str, digits)) or "0") * 10 ** (exp + d)
        if sign:
            n = -n
    if not -_I64 <= n < _I64:
        raise ValueError(f"{field} {value} does not fit a 64-bit integer at {d} decimals")
    return n


def _units(*pairs: tuple[Decimal, str], at_least: int = 0) -> tuple[int, list[int]]:
    """Scale several ``(value, field)`` pairs to one exact int64 unit 10^-d, ``d`` = the
    most decimals among them (and ``at_least``). Returns ``(d, [units...])``."""
    d = at_least
    for v, field in pairs:
        exp = v.as_tuple().exponent
        if not isinstance(exp, int) or -exp > MAX_DECIMALS:
            _decimals(v, field)  # raises the ValueError naming the field
        if -exp > d:
            d = -exp
    return d, [_scaled(v, d, field) for v, field in pairs]


def _side(side: str) -> int:
    try:
        return _SIDES[side]
    except KeyError:
        raise ValueError(f"side must be 'Buy' or 'Sell', got {side!r}") from None


def _price(units: int, d: int, tick: Decimal) -> Decimal:
    """``units * 10^-d`` with the tick size's exponent (as ``Instrument.round_price``)."""
    return Decimal(units).scaleb(-d).quantize(tick)


def taker_fill_price(ref: Decimal, side: str, slippage_bps: Decimal, tick: Decimal) -> Decimal:
    """Price (USDT) of a paper market (taker) fill of ``side`` (``"Buy"``/``"Sell"``) at the
    reference price ``ref`` (next candle's open, the book touch, a stop/target level),
    worsened by ``slippage_bps`` basis points and rounded to ``tick`` against the trader.
    Computed by ``hean._native.fill_taker_price``. ValueError: bad side, a value that
    does not fit (names the field), ``tick`` <= 0."""
    d, (r, t) = _units((ref, "ref_price"), (tick, "tick_size"))
    units = _native.fill_taker_price(r, _side(side), str(slippage_bps), t)
    return _price(units, d, tick)


def maker_fill_price(limit_price: Decimal) -> Decimal:
    """Price (USDT) of a paper maker fill: the resting limit order's own price
    (``hean._native.fill_maker_price``; no slippage). Returns a Decimal equal to
    ``limit_price`` with its exponent."""
    d = _decimals(limit_price, "limit_price")
    units = _native.fill_maker_price(_scaled(limit_price, d, "limit_price"))
    return Decimal(units).scaleb(-d).quantize(Decimal(1).scaleb(limit_price.as_tuple().exponent))


def fill_fee(qty: Decimal, price: Decimal, rate: Decimal, qty_step: Decimal, tick: Decimal) -> Decimal:
    """Fee (USDT, exponent -8) of a fill of ``qty`` (base coin) at ``price`` (USDT) with fee
    ``rate`` (fraction of notional): ``(qty * price * rate)`` quantized half-even to 1e-8,
    by ``hean._native.fill_fee_e8``. ValueError names a field that does not fit."""
    qd, (q,) = _units((qty, "qty"), at_least=_decimals(qty_step, "qty_step"))
    pd, (p,) = _units((price, "price"), at_least=_decimals(tick, "tick_size"))
    e8 = _native.fill_fee_e8(q, p, pd + qd, str(rate))
    return Decimal(e8).scaleb(-8)


def reduce_only_qty(qty: Decimal, position: Decimal, side: str, qty_step: Decimal) -> Decimal | None:
    """Quantity a reduce-only order of ``qty`` on ``side`` fills against the signed
    ``position`` (base coin): ``min(qty, |position|)`` (as that Decimal object) if the
    order reduces the position, else None (rejected: REDUCE_ONLY_NO_POSITION). Decided
    by ``hean._native.fill_reduce_only_qty``."""
    _, (q, pos) = _units((qty, "qty"), (position, "position"), at_least=_decimals(qty_step, "qty_step"))
    out = _native.fill_reduce_only_qty(q, pos, _side(side))
    if out == 0:
        return None
    return qty if out == q else abs(position)


def protective_prices(side: str, price: Decimal, stop_distance: Decimal, target_distance: Decimal,
                      tick: Decimal) -> tuple[Decimal, Decimal]:
    """Stop-loss and take-profit levels (USDT) of an entry of ``side`` filled at ``price``:
    ``stop_distance``/``target_distance`` USDT away, rounded to ``tick`` away from the fill
    (``hean._native.fill_protective_price``). Returns ``(stop, target)``."""
    s = _side(side)
    d, (p, t) = _units((price, "fill_price"), (tick, "tick_size"))
    stop = _native.fill_protective_price(p, d, str(stop_distance), -s, t)
    target = _native.fill_protective_price(p, d, str(target_distance), s, t)
    return _price(stop, d, tick), _price(target, d, tick)


def exit_trigger(long_position: bool, open_: Decimal, high: Decimal, low: Decimal, stop: Decimal,
                 target: Decimal) -> tuple[str, Decimal] | None:
    """Stop-loss/take-profit check of one candle for an open position: ``("STOP_LOSS" |
    "TAKE_PROFIT", ref)`` with ``ref`` the exit fill's reference price (the level, or the
    open if the candle gapped through it; one of the given Decimals), or None. The stop is
    checked first. Decided by ``hean._native.fill_exit_trigger``."""
    d, (o, hi, lo, st, tg) = _units((open_, "open"), (high, "high"), (low, "low"), (stop, "stop_price"),
                                    (target, "target_price"))
    hit, ref = _native.fill_exit_trigger(long_position, o, hi, lo, st, tg)
    if hit == 0:
        return None
    level = stop if hit == 1 else target
    # min/max(level, open) returns the level on a tie
    return ("STOP_LOSS" if hit == 1 else "TAKE_PROFIT"), (level if ref == (st if hit == 1 else tg) else open_)
