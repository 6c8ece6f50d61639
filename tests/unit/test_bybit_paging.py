"""Cursor paging of /v5/execution/list, /v5/order/realtime and /v5/order/history
(https://bybit-exchange.github.io/docs/v5/order/execution: ``limit``, ``cursor``,
``nextPageCursor``) through real pybit against the test exchange, with more rows than
one page, and reconciliation booking every missed fill of a long history."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
from decimal import Decimal
from urllib.parse import unquote

import pytest

from exchange.fixtures import account, bybit_exchange  # noqa: F401 - fixtures
from hean.worker.bybit import BybitClient
from hean.worker.bybit.budget import RateBudget
from hean.worker.bybit.client import Rejected

from test_bybit_execution import make_engine, runtime

D = Decimal
# The official example's cursor: "132766%3A2%2C132766%3A2" = URL-encoded "<id>:<page>,<id>:<page>".
CURSOR = re.compile(r"^\d+%3A\d+%2C\d+%3A\d+$")


def client(x, acc):
    return BybitClient(acc.key, acc.secret, x.rest_url, budget=RateBudget("p" + acc.key[-6:], state_dir=tempfile.mkdtemp()))


def requests_to(x, path):
    return sum(1 for _, p in x.requests if p == path)


def test_the_cursor_looks_like_the_official_example(bybit_exchange, account, marketdata_dir):
    example = json.loads((marketdata_dir / "bybit/api/docs/rest_execution_list__02_response_example.json").read_text())
    assert CURSOR.match(example["result"]["nextPageCursor"])  # the pattern is the docs' own form
    x = bybit_exchange
    x.trade_history(account.key, "linear", "BTCUSDT", [f"cur-{i}" for i in range(3)], "0.001")
    c = client(x, account)
    page = c.call("get_executions", category="linear", symbol="BTCUSDT", limit=2)
    assert len(page["list"]) == 2 and CURSOR.match(page["nextPageCursor"]), page["nextPageCursor"]
    last = c.call("get_executions", category="linear", symbol="BTCUSDT", limit=2, cursor=page["nextPageCursor"])
    assert len(last["list"]) == 1 and last["nextPageCursor"] == ""
    # the cursor names the last row of the page it ends (decoded "<seq>:<page>,<seq>:<page>")
    assert unquote(page["nextPageCursor"]).split(",")[0] == f"{page['list'][-1]['seq']}:1"


def test_executions_are_read_across_pages(bybit_exchange, account):
    x = bybit_exchange
    n = 230
    links = [f"pg-{i}" for i in range(n)]
    x.trade_history(account.key, "linear", "BTCUSDT", links, "0.001")
    want = {e["execId"] for e in x.accounts[account.key].executions}
    assert len(want) == n
    c = client(x, account)
    before = requests_to(x, "/v5/execution/list")
    rows = c.executions("linear", "BTCUSDT", limit=100)
    assert requests_to(x, "/v5/execution/list") - before == 3  # 100 + 100 + 30
    assert [r["execId"] for r in rows if r["execId"] in want] == [r["execId"] for r in rows]
    assert {r["execId"] for r in rows} == want and len(rows) == n  # none lost, none twice
    assert [int(r["seq"]) for r in rows] == sorted((int(r["seq"]) for r in rows), reverse=True)  # newest first
    # a page bound stops the walk and says so
    few = c.executions("linear", "BTCUSDT", limit=50, max_pages=2)
    assert len(few) == 100 and c.errors["pages_truncated"] == 1
    # the endpoint's limit is 1..100: more is a parameter error, failed fast
    with pytest.raises(Rejected) as e:
        c.call("get_executions", category="linear", symbol="BTCUSDT", limit=101)
    assert e.value.code == 10001


def test_rows_added_between_pages_neither_repeat_nor_shift_the_next_page(bybit_exchange, account):
    x = bybit_exchange
    x.trade_history(account.key, "linear", "BTCUSDT", [f"mv-{i}" for i in range(30)], "0.001")
    old = {e["execId"] for e in x.accounts[account.key].executions}
    c = client(x, account)
    first = c.call("get_executions", category="linear", symbol="BTCUSDT", limit=20)
    x.trade_history(account.key, "linear", "BTCUSDT", ["mv-new"], "0.001")  # a fill arrives meanwhile
    second = c.call("get_executions", category="linear", symbol="BTCUSDT", limit=20, cursor=first["nextPageCursor"])
    ids = [r["execId"] for r in first["list"] + second["list"]]
    assert len(ids) == len(set(ids)) == 30 and set(ids) == old


def test_open_orders_and_order_history_page_and_a_finished_order_is_found_by_link(bybit_exchange, account):
    x = bybit_exchange
    c = client(x, account)
    price = x.instruments["BTCUSDT"].round_price(x.last_price("BTCUSDT") * D("0.5"), "down")
    links = [f"oo-{i}" for i in range(60)]
    for i, link in enumerate(links):  # 60 resting limit orders, far below the market
        if i and i % 9 == 0:
            __import__("time").sleep(1.0)  # stay under the 10/s order limit
        c.place_order("linear", "BTCUSDT", "Buy", "0.001", link, order_type="Limit", price=str(price),
                      time_in_force="GTC")
    before = requests_to(x, "/v5/order/realtime")
    open_ = c.open_orders("linear")
    assert requests_to(x, "/v5/order/realtime") - before == 2  # 50 + 10 a page
    assert sorted(o["orderLinkId"] for o in open_) == sorted(links)
    x.trade_history(account.key, "linear", "BTCUSDT", [f"hist-{i}" for i in range(70)], "0.001")
    hist = c.order_history("linear", "BTCUSDT")
    assert {o["orderLinkId"] for o in hist} == {f"hist-{i}" for i in range(70)}
    assert all(o["orderStatus"] == "Filled" for o in hist)
    # /v5/order/realtime lists open orders only: a filled order is found in the history
    found = c.order_by_link("linear", "hist-3")
    assert found is not None and found["orderStatus"] == "Filled"
    assert c.order_by_link("linear", "oo-5")["orderStatus"] == "New"
    assert c.order_by_link("linear", "never-sent") is None


def test_reconciliation_books_every_fill_of_a_history_longer_than_a_page(bybit_exchange, account):
    x = bybit_exchange

    async def main():
        eng = make_engine(x, "pagedrecon")
        rt = runtime(x, account, eng)
        links = [rt.ids.next() for _ in range(250)]
        x.trade_history(account.key, "linear", "BTCUSDT", links, "0.001", sides=("Buy",))
        rt.ids.seq = 0  # a lost sequence file: reconciliation must move past the exchange's ids
        await asyncio.sleep(1.2)  # fills older than the position read: the position is compared too
        report = await rt.execution.reconcile()
        assert report["missedFills"] == 250 and not report.get("positionRepairs")
        assert eng.ledger.position("BTCUSDT").size == D("0.250") == x.accounts[account.key].positions["BTCUSDT"].size
        assert rt.ids.seq >= 250
        assert sorted(f.exec_id for f in eng.ledger.fills) == sorted(e["execId"] for e in x.accounts[account.key].executions)
        eng.ledger.check()

    asyncio.run(main())
