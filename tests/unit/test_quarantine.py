"""Quarantine activity and label-selector semantics shared by operator and worker."""

from datetime import datetime, timezone

import pytest

from hean.quarantine import quarantine_applies, quarantine_expiry, selector_matches

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def q(**spec):
    return {"metadata": {"name": "q", "creationTimestamp": "2026-01-01T11:59:00Z"},
            "spec": {"symbol": "BTCUSDT", "reason": "r", **spec}}


@pytest.mark.parametrize("selector,labels,expected", [
    (None, {}, True),
    ({}, {"a": "1"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
    ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
    ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {}, False),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
    ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {"a": ""}, True),
    ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
    ({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}, {"a": ""}, False),
    ({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]}, {"a": "1"}, False),
])
def test_selector_semantics(selector, labels, expected):
    assert selector_matches(selector, labels) is expected


def test_ttl_and_expires_at():
    assert quarantine_expiry(q(ttlSeconds=90)) == datetime(2026, 1, 1, 12, 0, 30, tzinfo=timezone.utc)
    assert quarantine_expiry(q(expiresAt="2026-01-02T00:00:00Z")) == datetime(2026, 1, 2, tzinfo=timezone.utc)
    assert quarantine_expiry(q()) is None


def test_applies_only_to_its_symbol_while_active_and_not_deleting():
    assert quarantine_applies(q(ttlSeconds=90), "BTCUSDT", {}, NOW)
    assert not quarantine_applies(q(ttlSeconds=90), "ETHUSDT", {}, NOW)
    assert not quarantine_applies(q(ttlSeconds=30), "BTCUSDT", {}, NOW)  # expired at 11:59:30
    deleting = q(ttlSeconds=90)
    deleting["metadata"]["deletionTimestamp"] = "2026-01-01T11:59:59Z"
    assert not quarantine_applies(deleting, "BTCUSDT", {}, NOW)
    assert not quarantine_applies(q(expiresAt="not a time"), "BTCUSDT", {}, NOW)
