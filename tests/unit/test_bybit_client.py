"""The REST client's error policy against the test exchange, through real pybit:
clock fix on 10002, backoff on 10006 with and without headers (and pybit's bare
ValueError on a past reset time), fail-fast rejects with labels, 5xx/timeouts, the
shared budget, and the orderLinkId scheme."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

import pytest

from exchange.fixtures import account, bybit_exchange  # noqa: F401 - fixtures
from hean.worker.bybit import BybitClient, OutcomeUnknown, Rejected
from hean.worker.bybit.budget import RateBudget
from hean.worker.bybit.orderlink import MAX_LEN, OrderLinkIds


def client(x, acc, **kw):
    budget = kw.pop("budget", None) or RateBudget("t" + acc.key[-6:], state_dir=tempfile.mkdtemp())
    return BybitClient(acc.key, acc.secret, x.rest_url, budget=budget, **kw)


def creates(x, path="/v5/order/create"):
    return sum(1 for m, p in x.requests if p == path)


def test_10002_fixes_the_clock_and_retries(bybit_exchange, account):
    bybit_exchange.set_clock_skew(20_000)
    c = client(bybit_exchange, account)
    assert c.wallet()["accountType"] == "UNIFIED"
    assert abs(c.http.offset_ms - 20_000) < 1_000
    assert c.errors["clock_fixed"] == 1


@pytest.mark.parametrize("headers", [True, False])
def test_10006_backs_off_and_the_order_is_placed_once(bybit_exchange, account, headers):
    x = bybit_exchange
    c = client(x, account)
    x.inject("rate_limit", "/v5/order/create", count=2, headers=headers, reset_in_ms=400)
    before = creates(x)
    t0 = time.monotonic()
    link = f"rl{account.key[-8:]}"
    c.place_order("linear", "BTCUSDT", "Buy", "0.001", link)
    assert creates(x) - before == 3 and x.order_creates[(account.key, link)] == 1
    assert c.errors["rate_limited"] == 2
    assert time.monotonic() - t0 >= (0.35 if headers else 0.55)  # waited for the reset / backoff 0.2 + 0.4


def test_pybit_raises_a_bare_value_error_on_a_past_reset_and_the_client_handles_it(bybit_exchange, account):
    from pybit.unified_trading import HTTP

    x = bybit_exchange
    raw = HTTP(api_key=account.key, api_secret=account.secret, retry_delay=0)
    raw.endpoint = x.rest_url
    x.inject("rate_limit", "/v5/account/wallet-balance", headers=True, reset_in_ms=-5_000)
    with pytest.raises(ValueError):  # the premise: pybit's own retry loop sleeps a negative time
        raw.get_wallet_balance(accountType="UNIFIED")
    c = client(x, account, pybit_retries=True)
    x.inject("rate_limit", "/v5/account/wallet-balance", headers=True, reset_in_ms=-5_000)
    assert c.wallet()["accountType"] == "UNIFIED"
    assert c.errors["pybit_past_reset"] == 1


@pytest.mark.parametrize("code,label", [(10001, "PARAMETER_ERROR"), (10003, "INVALID_API_KEY"),
                                        (10004, "INVALID_SIGNATURE"), (110007, "INSUFFICIENT_BALANCE")])
def test_auth_and_parameter_errors_fail_fast(bybit_exchange, account, caplog, code, label):
    x = bybit_exchange
    c = client(x, account)
    x.inject("reject", "/v5/order/create", retCode=code, retMsg=f"refused {account.key}")
    before = creates(x)
    with caplog.at_level(logging.ERROR), pytest.raises(Rejected) as ei:
        c.place_order("linear", "BTCUSDT", "Buy", "0.001", f"ff{code}{account.key[-6:]}")
    assert (ei.value.code, ei.value.label) == (code, label)
    assert creates(x) - before == 1  # no retry
    assert c.rejects[label] == 1
    assert label in caplog.text and account.key not in caplog.text and account.key not in str(ei.value)


def test_bybit_echoes_the_key_in_10004_and_the_client_scrubs_it(bybit_exchange, account, caplog):
    c = BybitClient(account.key, "not-the-secret", bybit_exchange.rest_url,
                    budget=RateBudget("s", state_dir=tempfile.mkdtemp()))
    with caplog.at_level(logging.ERROR), pytest.raises(Rejected) as ei:
        c.wallet()
    assert ei.value.code == 10004
    assert account.key not in str(ei.value) and account.key not in caplog.text and "***" in caplog.text


def test_real_validation_errors_come_from_the_exchange(bybit_exchange, account):
    c = client(bybit_exchange, account)
    with pytest.raises(Rejected) as ei:
        c.place_order("linear", "BTCUSDT", "Buy", "0.0001", "tiny" + account.key[-6:])  # below min qty
    assert ei.value.code == 10001
    big = client(bybit_exchange, account)
    with pytest.raises(Rejected) as ei:
        big.place_order("linear", "BTCUSDT", "Buy", "1000", "huge" + account.key[-6:])
    assert ei.value.label == "INSUFFICIENT_BALANCE"


def test_5xx_is_retried_for_reads_and_unknown_for_creates(bybit_exchange, account):
    x = bybit_exchange
    c = client(x, account)
    x.inject("http_status", "/v5/position/list", status=502)
    assert c.positions("linear", "BTCUSDT")[0]["symbol"] == "BTCUSDT"
    x.inject("http_status", "/v5/order/create", status=503)
    with pytest.raises(OutcomeUnknown):
        c.place_order("linear", "BTCUSDT", "Buy", "0.001", "u5" + account.key[-6:])
    slow = client(x, account, timeout=0.5)
    x.inject("timeout_after_accept", "/v5/order/create", delay=1.5)
    link = "to" + account.key[-6:]
    with pytest.raises(OutcomeUnknown):
        slow.place_order("linear", "BTCUSDT", "Buy", "0.001", link)
    assert slow.order_by_link("linear", link)["orderStatus"] == "Filled"  # it was accepted


def test_workers_sharing_a_key_share_one_budget(bybit_exchange, account):
    x = bybit_exchange
    state = tempfile.mkdtemp()
    a = client(x, account, budget=RateBudget("shared", per_second=10, state_dir=state))
    b = client(x, account, budget=RateBudget("shared", per_second=10, state_dir=state))
    errors = []

    def burst(c, tag):
        for i in range(8):
            try:
                c.place_order("linear", "BTCUSDT", "Buy", "0.001", f"sb{tag}{i}{account.key[-6:]}")
            except Exception as e:  # noqa: BLE001
                errors.append(e)

    t0 = time.monotonic()
    threads = [threading.Thread(target=burst, args=(c, t)) for c, t in ((a, "a"), (b, "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert a.errors["rate_limited"] + b.errors["rate_limited"] == 0  # the exchange never had to refuse
    assert time.monotonic() - t0 >= 0.6  # 16 orders at 10/s


def test_order_link_ids_are_short_unique_and_survive_a_restart(tmp_path: Path):
    ids = OrderLinkIds("trading-desk-namespace", "a-very-long-strategy-name-indeed-x" * 1, tmp_path)
    links = [ids.next() for _ in range(500)]
    assert len(set(links)) == 500 and all(len(x) <= MAX_LEN for x in links)
    again = OrderLinkIds("trading-desk-namespace", "a-very-long-strategy-name-indeed-x", tmp_path)
    assert again.next() not in links  # the sequence was persisted
    other_ns = OrderLinkIds("other", "a-very-long-strategy-name-indeed-x", tmp_path)
    assert other_ns.prefix != ids.prefix
    lost = OrderLinkIds("ns", "s", tmp_path / "fresh")
    assert lost.ensure_above([f"{lost.prefix}-zz", "foreign-1"]) == int("zz", 36)
    assert lost.next() == f"{lost.prefix}-{'100'}"
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / f"{lost.prefix}.seq").write_text("x1")
    with pytest.raises(ValueError, match="expected an integer"):
        OrderLinkIds("ns", "s", tmp_path / "bad")
