"""The paper-fill model (native/include/hean/fill.hpp) shared by the native replay and
the live worker's paper fills.

(1) Property tests: every ``hean._native.fill_*`` function equals a Decimal
recomputation written HERE (Python's decimal module in an explicit default context:
28 digits, ROUND_HALF_EVEN), over random and extreme prices, quantities, slippage,
fee rates, tick sizes, distances, including rounding ties and int64 limits.
(2) The worker's paper fills go through the native model: a spy that delegates to the
real ``hean._native`` records every call of the Decimal boundary (hean.engine.fill)
while the worker's Engine runs real data (a candle month; a book-driven strategy on
the recorded order book; a two-leg strategy with spot-leg fills; maker fills of the
limit-first router), and each fill's price and fee must be the value the native
function returned; the worker's fills over the month also equal the native replay's.
"""

from __future__ import annotations

import decimal
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_EVEN, Context, Decimal as D
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as hs

from hean import _native
from hean.engine import fill as fillmodel

I64_MAX = 2**63 - 1
I64_MIN = -(2**63)
CTX = Context(prec=28, rounding=ROUND_HALF_EVEN, Emax=999999, Emin=-999999,
              traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])
ROOT = Path(__file__).resolve().parents[2]
PROP = settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def dec_of(units: int, decimals: int) -> D:
    return D(units).scaleb(-decimals, context=CTX)


def fits(v: int) -> bool:
    return I64_MIN <= v <= I64_MAX


# ---- the independent recomputation (default decimal context) ---------------------------
def expected_taker(ref: int, side: int, bps: str, tick: int) -> int | None:
    """Instrument.round_price(ref * (1 +/- bps * 0.0001), up/down) in units; None if the
    result does not fit int64."""
    slip = CTX.multiply(D(bps), D("0.0001"))
    factor = CTX.add(D(1), slip) if side > 0 else CTX.subtract(D(1), slip)
    steps = CTX.divide(CTX.multiply(D(ref), factor), D(tick))
    n = steps.to_integral_value(rounding=ROUND_CEILING if side > 0 else ROUND_FLOOR)
    out = int(n) * tick
    return out if fits(out) else None


def expected_fee(qty: int, price: int, pq: int, rate: str) -> int | None:
    value = CTX.multiply(CTX.multiply(D(qty), dec_of(price, pq)), D(rate))
    try:
        q = value.quantize(D("0.00000001"), rounding=ROUND_HALF_EVEN, context=CTX)
    except decimal.InvalidOperation:  # more than 28 digits: far outside int64 anyway
        return None
    out = int(q.scaleb(8, context=CTX))
    return out if fits(out) else None


def expected_protective(price: int, pd: int, distance: str, direction: int, tick: int) -> int | None:
    px = dec_of(price, pd)
    x = CTX.add(px, D(distance)) if direction > 0 else CTX.subtract(px, D(distance))
    steps = CTX.divide(x, dec_of(tick, pd))
    n = steps.to_integral_value(rounding=ROUND_CEILING if direction > 0 else ROUND_FLOOR)
    out = int(n) * tick
    return out if fits(out) else None


def check(native_call, expected, refusable: bool = False):
    """``expected`` None: the result does not fit int64, so a ValueError. ``refusable``:
    the operands are outside the model's documented exact range (a Decimal coefficient
    of more than 38 digits in the fallback), where a ValueError saying so is allowed."""
    if expected is None:
        with pytest.raises(ValueError, match="does not fit|exact decimal range"):
            native_call()
        return
    try:
        got = native_call()
    except ValueError as e:
        if refusable and "exact decimal range" in str(e):
            return
        raise
    assert got == expected


def coefficient(x: D) -> int:
    return abs(int("".join(map(str, x.as_tuple().digits))))


def aligned(x: D, e: int) -> int:
    """|coefficient of x| at exponent e (<= x's exponent)."""
    return coefficient(x) * 10 ** (x.as_tuple().exponent - e)


def dec_str(mantissa: int, exp: int) -> str:
    return str(D(mantissa).scaleb(exp, context=CTX))


prices = hs.one_of(hs.integers(1, 10**9), hs.integers(1, I64_MAX), hs.sampled_from([1, 2, I64_MAX, I64_MAX - 1, 2**53]))
ticks = hs.one_of(hs.integers(1, 1000), hs.sampled_from([1, 5, 10, 25, 100, 10**6, 10**18, I64_MAX]),
                  hs.integers(1, I64_MAX))
bps_strs = hs.one_of(hs.builds(dec_str, hs.integers(0, 50000), hs.integers(-4, 0)),
                     hs.builds(dec_str, hs.integers(0, 10**20), hs.integers(-30, -16)),  # many digits: Dec path
                     hs.sampled_from(["0", "2.0", "0.5", "500", "9999.9999", "10000", "12000", "1E+2", "2.5E-7"]))


@PROP
@given(ref=prices, side=hs.sampled_from([1, -1]), bps=bps_strs, tick=ticks)
@example(ref=10000, side=1, bps="2", tick=1)
@example(ref=I64_MAX, side=1, bps="0", tick=1)
@example(ref=I64_MAX, side=1, bps="0.0001", tick=1)  # overflows int64 after slippage
@example(ref=I64_MAX, side=-1, bps="0.0000000000000000000001", tick=1)  # outside the exact range
@example(ref=10**9 + 1, side=-1, bps="4E-24", tick=1)  # 28-digit product rounding
@example(ref=10**18, side=-1, bps="0.00000000001", tick=3)  # quotient 1e-27 below an integer
@example(ref=12345, side=-1, bps="10000", tick=5)  # factor 0: price 0
@example(ref=12345, side=-1, bps="12000", tick=5)  # factor < 0
def test_taker_price_equals_decimal_recomputation(ref, side, bps, tick):
    slip = CTX.multiply(D(bps), D("0.0001"))
    factor = CTX.add(D(1), slip) if side > 0 else CTX.subtract(D(1), slip)
    check(lambda: _native.fill_taker_price(ref, side, bps, tick), expected_taker(ref, side, bps, tick),
          refusable=ref * coefficient(factor) >= 2**127)


def test_taker_price_rounds_against_the_trader_on_exact_and_near_ties():
    # 100.00 + 2 bps = 100.02 exactly on a 0.01 tick: no rounding either way
    assert _native.fill_taker_price(10000, 1, "2", 1) == 10002
    assert _native.fill_taker_price(10000, -1, "2", 1) == 9998
    # the same on a 0.05 tick: 100.02 -> 100.05 (buy, up), 99.98 -> 99.95 (sell, down)
    assert _native.fill_taker_price(10000, 1, "2", 5) == 10005
    assert _native.fill_taker_price(10000, -1, "2", 5) == 9995
    # 28-digit rounding decides: (10^9 + 1) * (1 - 4e-28) = 10^9 + 1 - 4.0000000004e-19
    # is rounded by Python's 28-digit product back onto 10^9 + 1; exact arithmetic
    # would floor it to 10^9
    ref = 10**9 + 1
    assert (ref * (10**28 - 4)) // 10**28 == ref - 1
    assert expected_taker(ref, -1, "4E-24", 1) == ref
    assert _native.fill_taker_price(ref, -1, "4E-24", 1) == ref


qtys = hs.one_of(hs.integers(1, 10**7), hs.integers(1, I64_MAX), hs.sampled_from([1, I64_MAX]))
rates = hs.one_of(hs.sampled_from(["0.00055", "0.0002", "0.001", "0", "1", "0.5", "-0.0001", "1E-12", "2E+3"]),
                  hs.builds(dec_str, hs.integers(-10**10 + 1, 10**10 - 1), hs.integers(-20, 2)))  # < 10^10


@PROP
@given(qty=qtys, price=prices, pq=hs.integers(0, 38), rate=rates)
@example(qty=1, price=5, pq=9, rate="1")  # 0.5e-8: half-even -> 0
@example(qty=1, price=15, pq=9, rate="1")  # 1.5e-8 -> 2e-8
@example(qty=1, price=25, pq=9, rate="1")  # 2.5e-8 -> 2e-8
@example(qty=3, price=12345, pq=3, rate="0.00055")
@example(qty=I64_MAX, price=I64_MAX, pq=38, rate="0.00055")  # Q*P > 10^28: Python rounds the product
@example(qty=I64_MAX, price=I64_MAX, pq=0, rate="1")  # does not fit
def test_fee_equals_decimal_recomputation(qty, price, pq, rate):
    check(lambda: _native.fill_fee_e8(qty, price, pq, rate), expected_fee(qty, price, pq, rate))


distances = hs.one_of(hs.builds(dec_str, hs.integers(0, 10**17), hs.integers(-30, 4)),
                      hs.builds(dec_str, hs.integers(-10**6, 10**6), hs.integers(-8, 0)),
                      hs.sampled_from(["0", "1", "0.5", "123.456", "1E+10", "1.2345678901234567E-9"]))


@PROP
@given(price=prices, pd=hs.integers(0, 18), distance=distances, direction=hs.sampled_from([1, -1]), tick=ticks)
@example(price=1000, pd=1, distance="1.23456789", direction=-1, tick=5)
@example(price=1000, pd=1, distance="2.5", direction=1, tick=5)  # exactly on the tick
@example(price=I64_MAX, pd=0, distance="1", direction=1, tick=1)  # overflows
@example(price=10**18, pd=18, distance="1E-30", direction=-1, tick=1)  # 28-digit sum rounding
@example(price=5, pd=0, distance="10", direction=-1, tick=2)  # negative level
def test_protective_price_equals_decimal_recomputation(price, pd, distance, direction, tick):
    px, dist = dec_of(price, pd), D(distance)
    e = min(-pd, dist.as_tuple().exponent)
    check(lambda: _native.fill_protective_price(price, pd, distance, direction, tick),
          expected_protective(price, pd, distance, direction, tick),
          refusable=aligned(px, e) + aligned(dist, e) >= 2**127)


@PROP
@given(qty=hs.integers(1, I64_MAX), position=hs.integers(-I64_MAX, I64_MAX), side=hs.sampled_from([1, -1]))
@example(qty=5, position=0, side=1)
@example(qty=5, position=5, side=-1)
@example(qty=5, position=-3, side=1)
@example(qty=5, position=3, side=1)
def test_reduce_only_clipping(qty, position, side):
    reduces = position != 0 and (position > 0) != (side > 0)
    assert _native.fill_reduce_only_qty(qty, position, side) == (min(qty, abs(position)) if reduces else 0)


@PROP
@given(long_position=hs.booleans(), o=hs.integers(1, 10**6), hi=hs.integers(0, 10**6), lo=hs.integers(0, 10**6),
       stop=hs.integers(1, 10**6), target=hs.integers(1, 10**6))
def test_exit_trigger(long_position, o, hi, lo, stop, target):
    high, low = max(o, hi, lo), min(o, hi, lo)
    if long_position:
        want = (1, min(stop, o)) if low <= stop else (2, max(target, o)) if high >= target else (0, 0)
    else:
        want = (1, max(stop, o)) if high >= stop else (2, min(target, o)) if low <= target else (0, 0)
    assert _native.fill_exit_trigger(long_position, o, high, low, stop, target) == want


def test_bad_arguments_name_the_field():
    with pytest.raises(ValueError, match="side"):
        _native.fill_taker_price(100, 0, "2", 1)
    with pytest.raises(ValueError, match="tick size"):
        _native.fill_taker_price(100, 1, "2", 0)
    with pytest.raises(ValueError, match="slippage_bps"):
        _native.fill_taker_price(100, 1, "two", 1)
    with pytest.raises(ValueError, match="rate"):
        _native.fill_fee_e8(1, 1, 2, "NaN")
    with pytest.raises(ValueError, match="direction"):
        _native.fill_protective_price(100, 2, "1", 2, 1)


# ---- the Decimal boundary (hean.engine.fill) ------------------------------------------
@PROP
@given(ref=hs.builds(dec_str, hs.integers(1, 10**7), hs.integers(-8, 0)),
       tick=hs.sampled_from(["0.1", "0.10", "0.01", "0.5", "0.0001", "1", "5", "0.000005"]),
       bps=hs.sampled_from([0.0, 0.5, 1.0, 2.0, 3.3, 17.25, 500.0]), side=hs.sampled_from(["Buy", "Sell"]),
       qty=hs.builds(dec_str, hs.integers(1, 10**6), hs.integers(-6, 0)),
       rate=hs.sampled_from(["0.00055", "0.0002", "0.001"]),
       sd=hs.builds(lambda x: D(repr(x)), hs.floats(1e-6, 1e4)), td=hs.builds(lambda x: D(repr(x)), hs.floats(1e-6, 1e4)))
def test_decimal_boundary_matches_the_worker_formulas(ref, tick, bps, side, qty, rate, sd, td):
    """The wrappers equal the worker's former Decimal code, value AND exponent."""
    ref, tick, qty, rate = D(ref), D(tick), D(qty), D(rate)
    slip = D(str(bps)) * D("0.0001")
    raw = ref * (1 + slip) if side == "Buy" else ref * (1 - slip)
    n = (raw / tick).to_integral_value(rounding=ROUND_CEILING if side == "Buy" else ROUND_FLOOR)
    want = (n * tick).quantize(tick)
    got = fillmodel.taker_fill_price(ref, side, D(str(bps)), tick)
    assert got == want and got.as_tuple() == want.as_tuple()
    fee = fillmodel.fill_fee(qty, got, rate, D("0.001"), tick)
    want_fee = (qty * got * rate).quantize(D("0.00000001"))
    assert fee == want_fee and fee.as_tuple() == want_fee.as_tuple()
    stop, target = fillmodel.protective_prices(side, got, sd, td, tick)
    if side == "Buy":
        ws = ((got - sd) / tick).to_integral_value(rounding=ROUND_FLOOR) * tick
        wt = ((got + td) / tick).to_integral_value(rounding=ROUND_CEILING) * tick
    else:
        ws = ((got + sd) / tick).to_integral_value(rounding=ROUND_CEILING) * tick
        wt = ((got - td) / tick).to_integral_value(rounding=ROUND_FLOOR) * tick
    assert (stop, target) == (ws, wt)
    assert stop.as_tuple().exponent == target.as_tuple().exponent == tick.as_tuple().exponent


def test_decimal_boundary_refuses_what_does_not_fit():
    with pytest.raises(ValueError, match="ref_price"):
        fillmodel.taker_fill_price(D("NaN"), "Buy", D(2), D("0.1"))
    with pytest.raises(ValueError, match="ref_price .* 64-bit"):
        fillmodel.taker_fill_price(D("1E+30"), "Buy", D(2), D("0.1"))
    with pytest.raises(ValueError, match="tick_size .* decimals"):
        fillmodel.taker_fill_price(D(100), "Buy", D(2), D("1E-19"))
    with pytest.raises(ValueError, match="qty"):
        fillmodel.fill_fee(D("1E+25"), D(100), D("0.00055"), D("0.001"), D("0.1"))
    with pytest.raises(ValueError, match="side"):
        fillmodel.reduce_only_qty(D(1), D(-1), "buy", D("0.001"))
    # exact: a price with more decimals than the tick is scaled, not rounded
    assert fillmodel.maker_fill_price(D("100.123")) == D("100.123")
    assert fillmodel.maker_fill_price(D("100.10")).as_tuple() == D("100.10").as_tuple()
    assert fillmodel.reduce_only_qty(D("0.5"), D("-0.30"), "Buy", D("0.01")) == D("0.30")
    assert fillmodel.reduce_only_qty(D("0.5"), D("0.30"), "Buy", D("0.01")) is None
    assert fillmodel.exit_trigger(True, D(100), D(101), D(94), D(95), D(110)) == ("STOP_LOSS", D(95))
    assert fillmodel.exit_trigger(True, D(93), D(101), D(90), D(95), D(110)) == ("STOP_LOSS", D(93))  # gap
    assert fillmodel.exit_trigger(False, D(100), D(101), D(94), D(105), D(95)) == ("TAKE_PROFIT", D(95))
    assert fillmodel.exit_trigger(False, D(100), D(104), D(96), D(105), D(95)) is None


# ---- (2) the worker's paper fills are the native model's --------------------------------
class NativeSpy:
    """Delegates every attribute to the real ``hean._native`` and records the fill_*
    calls with their results (the real C++ still computes everything)."""

    def __init__(self, real):
        self._real = real
        self.calls: list[tuple[str, tuple, object]] = []

    def __getattr__(self, name):
        fn = getattr(self._real, name)
        if not name.startswith("fill_"):
            return fn

        def call(*args):
            out = fn(*args)
            self.calls.append((name, args, out))
            return out
        return call


@pytest.fixture
def spy(monkeypatch):
    s = NativeSpy(_native)
    monkeypatch.setattr(fillmodel, "_native", s)
    return s


def assert_fills_from_native(spy: NativeSpy, eng, min_fills: int = 1) -> None:
    """Each paper fill of ``eng`` took its price from one native price call and its fee
    from one native fee call, in fill order."""
    fills = eng.ledger.fills
    assert len(fills) >= min_fills
    price_calls = [c for c in spy.calls if c[0] in ("fill_taker_price", "fill_maker_price")]
    fee_calls = [c for c in spy.calls if c[0] == "fill_fee_e8"]
    assert len(price_calls) == len(fee_calls) == len(fills)
    for f, (name, args, out), (_, _, fee_e8) in zip(fills, price_calls, fee_calls):
        assert f.liquidity == ("maker" if name == "fill_maker_price" else "taker")
        assert f.fee == D(fee_e8).scaleb(-8)
        inst = eng.symbols[f.symbol.split(".")[0]]
        inst = (inst.leg_instrument or inst.instrument) if f.symbol.endswith(".SPOT") else inst.instrument
        if name == "fill_taker_price":  # native units / native tick units == price / tick size
            assert Fraction(out, args[3]) == Fraction(f.price) / Fraction(inst.tick_size)
            assert args[1] == (1 if f.side == "Buy" else -1)


def test_worker_candle_month_fills_are_native_and_equal_the_replay(spy, marketdata_dir):
    from hean.engine import merge_klines, replay
    from hean.marketdata import load_instruments, load_klines
    from hean.worker.config import RiskPolicySpec, StrategySpec
    from hean.worker.engine import Engine

    syms = ("BTCUSDT", "ETHUSDT")
    inst = load_instruments(marketdata_dir)
    series = {s: load_klines(marketdata_dir, s, "1") for s in syms}
    n = 30 * 1440  # one month (30 days) of 1-minute candles per symbol: the whole recording
    assert all(len(series[s].bars) >= n for s in syms)
    sp = StrategySpec.model_validate({"strategy": "impulse", "symbols": list(syms), "capital": 10000,
                                      "riskPolicyRef": {"name": "p"}, "execution": {"slippageBps": 3.5}})
    pol = RiskPolicySpec.model_validate(dict(softMaxDrawdownPercent=5, hardMaxDrawdownPercent=10,
                                             maxDailyLossUsdt=1000, maxLeverage=3, maxPositionNotionalUsdt=20000,
                                             maxOpenPositions=4, maxOrdersPerMinute=60))
    instruments = {s: inst[("linear", s)] for s in syms}
    eng = Engine("fill-month", sp, pol, instruments)
    for _, s, b in sorted(((b.ts_ms, s, b) for s in syms for b in series[s].bars[:n]), key=lambda t: (t[0], t[1])):
        eng.on_bar(s, b)
    assert_fills_from_native(spy, eng, min_fills=100)
    reasons = {f.reason for f in eng.ledger.fills}
    assert {"IMPULSE_ENTRY", "STOP_LOSS"} <= reasons
    # stop/target levels and exit triggers came from the native model too
    assert any(c[0] == "fill_protective_price" for c in spy.calls)
    assert sum(c[0] == "fill_exit_trigger" and c[2][0] != 0 for c in spy.calls) == \
        sum(f.reason in ("STOP_LOSS", "TAKE_PROFIT") for f in eng.ledger.fills)
    # the native replay (C++ PaperEngine, same fill.hpp) fills identically
    stream = merge_klines(series, syms, 2, n)
    res = replay("fill-month", sp, pol, instruments, stream)
    key = lambda f: (f.ts_ms, f.symbol, f.side, f.qty, f.price, f.fee, f.reason, f.order_link_id)  # noqa: E731
    assert [key(f) for f in res.engine.fills()] == [key(f) for f in eng.ledger.fills]


def test_worker_book_and_spot_leg_and_maker_fills_are_native(spy, marketdata_dir):
    """Book-driven fills (scalping on the recorded Bybit book), spot-leg fills
    (basis_arbitrage on a pair built from real candles) and maker fills of the
    limit-first router (examples/backtest/riskpolicy-safety.yaml) all come from the
    native model."""
    from datetime import datetime, timezone

    from hean.backtest import load_manifests, parse_specs, run_backtest

    def run(files, end_day):
        spy.calls.clear()
        sobj, pobj = load_manifests([ROOT / f for f in files])
        name, spec, pol = parse_specs(sobj, pobj)
        end_ms = None if end_day is None else int(datetime(2025, 6, end_day, tzinfo=timezone.utc).timestamp() * 1000)
        return run_backtest(name, spec, pol, marketdata_dir, end_ms=end_ms, progress=False).engine

    eng = run(["examples/backtest/impulse-majors.yaml", "examples/backtest/riskpolicy-safety.yaml"], 4)
    assert {f.liquidity for f in eng.ledger.fills} == {"maker", "taker"}
    assert_fills_from_native(spy, eng, min_fills=5)
    eng = run(["examples/backtest/scalping-book.yaml", "examples/riskpolicy.yaml"], None)
    assert eng.spec.strategy == "scalping"
    assert_fills_from_native(spy, eng, min_fills=2)
    eng = run(["examples/backtest/basis-arbitrage-majors.yaml", "examples/riskpolicy.yaml"], 10)
    assert any(f.symbol.endswith(".SPOT") for f in eng.ledger.fills)
    assert_fills_from_native(spy, eng, min_fills=2)
