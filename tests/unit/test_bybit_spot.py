"""``category: spot`` end to end against the test exchange through real pybit: the
public spot stream drives the engine, orders go out with ``marketUnit: baseCoin`` and
never ``reduceOnly``, fills (fee in the coin received) keep the ledger equal to the
wallet's base-coin holding and its cash equal to the wallet's USDT, spot cannot short,
spot qty/notional rules are the exchange's, and reconciliation reads holdings from the
wallet (https://bybit-exchange.github.io/docs/v5/order/create-order)."""

from __future__ import annotations

import asyncio
import tempfile
from decimal import Decimal

import pytest

from exchange.fixtures import account, bybit_exchange  # noqa: F401 - fixtures
from hean.worker.bybit import BybitClient, endpoints_for
from hean.worker.bybit.budget import RateBudget
from hean.worker.bybit.client import Rejected
from hean.worker.bybit.runtime import Blocks, ExchangeRuntime, LiveData, fetch_instruments
from hean.worker.config import RiskPolicySpec, StrategySpec
from hean.worker.engine import R_SPOT_NO_SHORT, Engine
from hean.worker.strategies import OrderIntent

from test_bybit_execution import until

D = Decimal


def spot_engine(x, name="spot"):
    spec = StrategySpec.model_validate({"strategy": "impulse", "symbols": ["BTCUSDT"], "mode": "testnet",
                                        "category": "spot", "capital": 10000, "riskPolicyRef": {"name": "p"},
                                        "marketData": {"source": "live"}, "credentialsSecretRef": {"name": "k"}})
    pol = RiskPolicySpec.model_validate({"maxDailyLossUsdt": 1e6, "maxPositionNotionalUsdt": 1e6})
    eng = Engine(name, spec, pol, fetch_instruments(x.rest_url, "spot", ["BTCUSDT"]))
    eng.symbols["BTCUSDT"].mark = x.last_price("BTCUSDT")
    return eng


def client(x, acc):
    return BybitClient(acc.key, acc.secret, x.rest_url, budget=RateBudget("s" + acc.key[-6:], state_dir=tempfile.mkdtemp()))


def spot_orders(x, acc):
    return [o for o in x.accounts[acc.key].orders.values() if o.category == "spot"]


def test_spot_instrument_rules_come_from_the_spot_instruments_info(bybit_exchange, marketdata_dir):
    import json
    doc = json.loads((marketdata_dir / "bybit/api/docs/real_mainnet_capture_cryptofeed/"
                      "rest_instruments_info_spot_BTC_ETH_SOL_DOGE_subset.json").read_text())
    lot = next(it for it in doc["result"]["list"] if it["symbol"] == "BTCUSDT")["lotSizeFilter"]
    inst = fetch_instruments(bybit_exchange.rest_url, "spot", ["BTCUSDT"])["BTCUSDT"]
    assert inst.qty_step == D(lot["basePrecision"]) and inst.min_notional == D(lot["minOrderAmt"])
    assert inst.min_order_qty == D(lot["minOrderQty"]) and inst.max_leverage == 1


def test_spot_rules_of_the_exchange(bybit_exchange, account):
    x, c = bybit_exchange, client(bybit_exchange, account)
    price = x.last_price("BTCUSDT")
    # a Market Buy's qty is quote coin (USDT) unless marketUnit says baseCoin
    c.place_order("spot", "BTCUSDT", "Buy", "100", "sp-quote")
    o = x.accounts[account.key].by_link["sp-quote"]
    assert o.status == "Filled" and o.qty == (D(100) / price).quantize(D("0.000001"), "ROUND_DOWN")
    c.place_order("spot", "BTCUSDT", "Buy", "0.001", "sp-base", market_unit="baseCoin")
    assert x.accounts[account.key].by_link["sp-base"].qty == D("0.001")
    # reduce-only does not exist on spot; no short; minimum value (minOrderAmt 5 USDT)
    with pytest.raises(Rejected) as e:
        c.place_order("spot", "BTCUSDT", "Sell", "0.0001", "sp-ro", reduce_only=True)
    assert e.value.code == 10001
    with pytest.raises(Rejected) as e:
        c.place_order("spot", "BTCUSDT", "Sell", "1", "sp-short", market_unit="baseCoin")
    assert (e.value.code, e.value.label) == (170131, "INSUFFICIENT_BALANCE")
    with pytest.raises(Rejected) as e:
        c.place_order("spot", "BTCUSDT", "Buy", "0.00001", "sp-tiny", market_unit="baseCoin")
    assert (e.value.code, e.value.label) == (170140, "BELOW_MIN_NOTIONAL")
    with pytest.raises(Rejected) as e:
        c.place_order("spot", "BTCUSDT", "Buy", "0.0000015", "sp-step", market_unit="baseCoin")
    assert e.value.code == 10001  # not a multiple of basePrecision
    with pytest.raises(Rejected) as e:
        c.place_order("spot", "BTCUSDT", "Buy", "0.001", "sp-base", market_unit="baseCoin")
    assert e.value.label == "DUPLICATE_ORDER_LINK_ID"
    # the wallet holds the base coin bought, net of the fee charged in BTC
    coins = {w["coin"]: w for w in c.wallet()["coin"]}
    held = D(coins["BTC"]["walletBalance"])
    bought = sum(D(e["execQty"]) - D(e["execFee"]) for e in x.accounts[account.key].executions
                 if e["category"] == "spot" and e["side"] == "Buy")
    assert held == bought > 0
    assert all(e["feeCurrency"] == "BTC" for e in x.accounts[account.key].executions if e["category"] == "spot")


def test_a_spot_strategy_trades_and_reconciles_against_the_exchange(bybit_exchange, account):
    x = bybit_exchange

    async def main():
        eng = spot_engine(x)
        blocks = Blocks()
        blocks.engine = eng
        ep = endpoints_for("testnet", account.env)
        live = LiveData(eng, ep, "1", 50, 5.0, blocks)
        rt = ExchangeRuntime(eng, "ns", "spot", ep, tempfile.mkdtemp(), blocks, reconcile_seconds=60, env=account.env)
        rt.execution.lookup_delay = 0.2
        tasks = [asyncio.create_task(live.run()), asyncio.create_task(rt.run())]
        await until(lambda: rt.execution.reconciled and rt.private.connected(), what="reconciled")
        await until(lambda: live.bars >= 2, what="spot candles from /v5/public/spot")
        await until(lambda: live.feed.books["BTCUSDT"].best_bid() is not None, 5,
                    what=f"a spot book (depth 50 is a spot depth): {live.feed.snapshot()}")
        wallet0 = x.accounts[account.key].wallet
        st = eng.symbols["BTCUSDT"]
        # entry: Market Buy, qty in base coin (marketUnit baseCoin), no reduceOnly
        eng._queue(st, "Buy", D("0.012345"), False, "TEST", D("500"), D("900"))
        await until(lambda: st.pending is None, what="spot buy filled")
        buy = x.accounts[account.key].executions[-1]
        o = spot_orders(x, account)[-1]
        assert o.qty == D("0.012345") and o.category == "spot" and not o.reduce_only
        held = x.accounts[account.key].coins["BTC"]
        assert D(buy["execFee"]) == D("0.00001235") and buy["feeCurrency"] == "BTC"  # 0.1 % of 0.012345, 8 dp
        assert held == D("0.01233265") == eng.ledger.position("BTCUSDT").size
        # exit: the engine's reduce-only exit goes out as a plain Sell of the holding, rounded
        # down to basePrecision; the 0.00000065 BTC below the step is written off as dust
        eng._queue(st, "Sell", eng.ledger.position("BTCUSDT").size, True, "TEST")
        await until(lambda: st.pending is None and eng.ledger.position("BTCUSDT").size == 0, what="spot sell")
        sell = x.accounts[account.key].executions[-1]
        assert D(sell["execQty"]) == D("0.012332") and sell["feeCurrency"] == "USDT"
        assert x.accounts[account.key].coins["BTC"] == D("0.00000065")
        assert rt.execution.counters["spot_dust_written_off"] == 1
        dust = [f for f in eng.ledger.fills if f.reason == "SPOT_DUST"]
        assert len(dust) == 1 and dust[0].qty == D("0.00000065") and dust[0].fee == 0
        # the ledger's cash (without the dust write-off) moved exactly like the wallet's USDT
        real = [f for f in eng.ledger.fills if f.reason != "SPOT_DUST"]
        cash = sum((f.qty * f.price * (1 if f.side == "Sell" else -1) - f.fee for f in real), D(0))
        assert cash == x.accounts[account.key].wallet - wallet0, [(f.side, f.qty, f.price, f.fee) for f in real]
        assert len(x.accounts[account.key].executions) == 2 and all(
            n == 1 for (k, _), n in x.order_creates.items() if k == account.key)
        # reconciliation: holdings from the wallet; the ledger never claims more than it
        report = await rt.execution.reconcile()  # the dust in the wallet is not adopted
        assert not report.get("positionRepairs") and eng.ledger.position("BTCUSDT").size == 0
        eng._queue(st, "Buy", D("0.010"), False, "TEST", D("500"), D("900"))
        await until(lambda: st.pending is None, what="second buy")
        with x.lock:
            x.accounts[account.key].coins["BTC"] -= D("0.004")  # e.g. a manual sale or withdrawal
        await asyncio.sleep(1.2)
        report = await rt.execution.reconcile()
        assert report.get("positionRepairs") == 1
        assert eng.ledger.position("BTCUSDT").size == x.accounts[account.key].coins["BTC"]
        with x.lock:
            x.accounts[account.key].coins["BTC"] += D("1")  # coins that are not the strategy's
        report = await rt.execution.reconcile()
        assert not report.get("positionRepairs") and eng.ledger.position("BTCUSDT").size < D("0.01")
        eng.ledger.check()
        for t in tasks:
            t.cancel()

    asyncio.run(main())


def test_the_engine_does_not_short_spot(bybit_exchange):
    eng = spot_engine(bybit_exchange, "spotshort")
    st = eng.symbols["BTCUSDT"]
    # a short entry (what impulse sends on a falling impulse below a falling trend):
    # linear would sell, spot must not
    intent = OrderIntent(side="Sell", reason="IMPULSE_ENTRY", risk_fraction=0.005, stop_distance=Decimal(1))
    assert eng._try_entry(st, intent) == R_SPOT_NO_SHORT
    assert st.pending is None and eng.orders_sent == 0
