"""Generate the hean Grafana dashboards (``monitoring/dashboards/*.json``).

``python monitoring/dashboards/build.py`` rewrites the JSON files; the test
``tests/unit/test_obs_dashboards.py`` fails if they are out of date. Every dashboard
uses a ``datasource``-type variable (never ``__inputs``/``${DS_PROMETHEUS}``, which
break when the Grafana sidecar provisions files), a stable ``uid``, ``namespace`` and
``strategy`` variables (the operator dashboard: ``namespace`` only) and
``$__rate_interval`` in every rate/increase.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'namespace=~"$namespace", strategy=~"$strategy"'


def variables(strategy: bool = True, metric: str = "hean_worker_up") -> dict:
    v = [{"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
          "current": {}, "hide": 0, "refresh": 1}]
    v.append({"name": "namespace", "label": "Namespace", "type": "query", "datasource": DS,
              "query": {"query": f"label_values({metric}, namespace)", "refId": "ns"},
              "definition": f"label_values({metric}, namespace)", "multi": True, "includeAll": True,
              "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1})
    if strategy:
        q = 'label_values(hean_worker_up{namespace=~"$namespace"}, strategy)'
        v.append({"name": "strategy", "label": "Strategy", "type": "query", "datasource": DS,
                  "query": {"query": q, "refId": "strategy"}, "definition": q, "multi": True, "includeAll": True,
                  "current": {"text": "All", "value": "$__all"}, "refresh": 2, "sort": 1})
    return {"list": v}


class Board:
    def __init__(self, uid: str, title: str, description: str, strategy: bool = True, metric: str = "hean_worker_up"):
        self.uid, self.title, self.description = uid, title, description
        self.strategy, self.metric = strategy, metric
        self.panels: list[dict] = []
        self.x = self.y = 0

    def panel(self, title: str, exprs: list[tuple[str, str]], kind: str = "timeseries", unit: str = "short",
              w: int = 12, h: int = 8, description: str = "", **options) -> None:
        if self.x + w > 24:
            self.x, self.y = 0, self.y + h
        pid = len(self.panels) + 1
        p = {"id": pid, "type": kind, "title": title, "description": description, "datasource": DS,
             "gridPos": {"x": self.x, "y": self.y, "w": w, "h": h},
             "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
             "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": e, "legendFormat": legend,
                          **({"instant": True, "format": "table"} if kind == "table" else {})}
                         for i, (e, legend) in enumerate(exprs)],
             "options": options or {}}
        self.panels.append(p)
        self.x += w

    def json(self) -> dict:
        return {"uid": self.uid, "title": self.title, "description": self.description,
                "tags": ["hean"], "timezone": "utc", "schemaVersion": 39, "version": 1, "editable": True,
                "refresh": "30s", "time": {"from": "now-6h", "to": "now"}, "graphTooltip": 1,
                "templating": variables(self.strategy, self.metric), "annotations": {"list": []},
                "links": [{"title": "hean dashboards", "type": "dashboards", "tags": ["hean"], "asDropdown": True}],
                "panels": self.panels}


def fleet() -> Board:
    b = Board("hean-fleet", "hean / Fleet overview",
              "All strategies: equity, PnL, drawdown, risk state and why they are not trading.")
    b.panel("Equity", [(f"sum by (namespace, strategy) (hean_worker_equity_usdt{{{SEL}}})",
                        "{{namespace}}/{{strategy}}")], unit="currencyUSD")
    b.panel("Net PnL", [(f"sum by (namespace, strategy) (hean_worker_pnl_usdt{{{SEL}}})",
                         "{{namespace}}/{{strategy}}")], unit="currencyUSD")
    b.panel("Drawdown", [(f"max by (namespace, strategy) (hean_worker_drawdown_ratio{{{SEL}}})",
                          "{{namespace}}/{{strategy}}")], unit="percentunit")
    b.panel("Risk state", [(f"max by (namespace, strategy, state) (hean_worker_risk_state{{{SEL}}}) == 1",
                            "{{namespace}}/{{strategy}} {{state}}")], kind="table")
    b.panel("Trading active", [(f"max by (namespace, strategy) (hean_worker_trading_active{{{SEL}}})",
                                "{{namespace}}/{{strategy}}")], kind="stat", w=8)
    b.panel("Open positions", [(f"sum by (namespace, strategy) (hean_worker_open_positions{{{SEL}}})",
                                "{{namespace}}/{{strategy}}")], kind="stat", w=8)
    b.panel("Gross exposure", [(f"sum by (namespace, strategy) (hean_worker_exposure_usdt{{{SEL}}})",
                                "{{namespace}}/{{strategy}}")], unit="currencyUSD", w=8)
    b.panel("Reasons not trading (top 10)",
            [(f"topk(10, sum by (reason) (rate(hean_worker_entries_blocked_total{{{SEL}}}[$__rate_interval])))",
              "{{reason}}")], w=24)
    return b


def strategy() -> Board:
    b = Board("hean-strategy", "hean / Strategy", "One strategy in depth: account, risk, positions and orders.")
    b.panel("Equity and capital", [(f"hean_worker_equity_usdt{{{SEL}}}", "equity {{strategy}}"),
                                   (f"hean_worker_capital_usdt{{{SEL}}}", "capital {{strategy}}")], unit="currencyUSD")
    b.panel("PnL", [(f"hean_worker_realized_pnl_usdt{{{SEL}}}", "realized {{strategy}}"),
                    (f"hean_worker_unrealized_pnl_usdt{{{SEL}}}", "unrealized {{strategy}}"),
                    (f"hean_worker_pnl_usdt{{{SEL}}}", "net {{strategy}}")], unit="currencyUSD")
    b.panel("Drawdown vs limits", [(f"hean_worker_drawdown_ratio{{{SEL}}}", "drawdown {{strategy}}"),
                                   (f"hean_worker_drawdown_limit_ratio{{{SEL}}}", "{{level}} limit {{strategy}}")],
            unit="percentunit")
    b.panel("Exposure and leverage", [(f"hean_worker_exposure_usdt{{{SEL}}}", "exposure {{strategy}}")],
            unit="currencyUSD", w=6)
    b.panel("Leverage", [(f"hean_worker_leverage_ratio{{{SEL}}}", "{{strategy}}")], unit="x", w=6)
    b.panel("Position notional by symbol", [(f"hean_worker_position_notional_usdt{{{SEL}}}",
                                             "{{strategy}} {{symbol}}")], unit="currencyUSD")
    b.panel("Fees and funding", [(f"increase(hean_worker_fees_usdt_total{{{SEL}}}[$__rate_interval])", "fees {{strategy}}"),
                                 (f"increase(hean_worker_funding_usdt_total{{{SEL}}}[$__rate_interval])",
                                  "funding {{strategy}}")], unit="currencyUSD")
    b.panel("Order outcomes", [(f"sum by (strategy, outcome) (rate(hean_worker_order_outcomes_total{{{SEL}}}[$__rate_interval]))",
                                "{{strategy}} {{outcome}}")], unit="ops")
    b.panel("Entries blocked by reason", [(
        f"sum by (strategy, reason) (rate(hean_worker_entries_blocked_total{{{SEL}}}[$__rate_interval]))",
        "{{strategy}} {{reason}}")])
    b.panel("Quarantined symbols", [(f"hean_worker_symbol_quarantined{{{SEL}}}", "{{strategy}} {{symbol}}")],
            kind="stat")
    b.panel("Risk state", [(f"max by (strategy, state) (hean_worker_risk_state{{{SEL}}})", "{{strategy}} {{state}}")],
            kind="timeseries")
    return b


def execution() -> Board:
    b = Board("hean-execution", "hean / Execution quality", "Slippage, rejects, maker/taker mix and order latency.")
    bucket = f"hean_worker_fill_slippage_bps_bucket{{{SEL}}}[$__rate_interval]"
    b.panel("Slippage p50 / p90", [
        (f"histogram_quantile(0.5, sum by (strategy, le) (rate({bucket})))", "p50 {{strategy}}"),
        (f"histogram_quantile(0.9, sum by (strategy, le) (rate({bucket})))", "p90 {{strategy}}")], unit="none")
    b.panel("Fills", [(f"sum by (strategy) (rate(hean_worker_fills_total{{{SEL}}}[$__rate_interval]))",
                       "{{strategy}}")], unit="ops")
    b.panel("Reject ratio", [(
        f"sum by (strategy) (rate(hean_worker_order_outcomes_total{{{SEL}, outcome=\"rejected\"}}[$__rate_interval]))"
        f" / sum by (strategy) (rate(hean_worker_order_outcomes_total{{{SEL}}}[$__rate_interval]))",
        "{{strategy}}")], unit="percentunit")
    b.panel("Rejects by reason", [(
        f"sum by (strategy, reason) (rate(hean_worker_order_rejects_total{{{SEL}}}[$__rate_interval]))",
        "{{strategy}} {{reason}}")], unit="ops")
    b.panel("Filled notional by liquidity", [(
        f"sum by (strategy, liquidity) (rate(hean_worker_fill_notional_usdt_total{{{SEL}}}[$__rate_interval]))",
        "{{strategy}} {{liquidity}}")], unit="currencyUSD")
    b.panel("Maker ratio", [(f"hean_worker_maker_ratio{{{SEL}}}", "{{strategy}}")], unit="percentunit")
    b.panel("Order latency p90", [(
        f"histogram_quantile(0.9, sum by (strategy, le) (rate(hean_worker_order_latency_seconds_bucket{{{SEL}}}[$__rate_interval])))",
        "{{strategy}}")], unit="s")
    b.panel("Exchange rate limit hits", [(
        f"sum by (strategy) (increase(hean_worker_exchange_rate_limited_total{{{SEL}}}[$__rate_interval]))",
        "{{strategy}}")])
    b.panel("Pending orders", [(f"hean_worker_orders_pending{{{SEL}}}", "{{strategy}}")], w=24)
    return b


def marketdata() -> Board:
    b = Board("hean-marketdata", "hean / Market data health", "Staleness, throughput, gaps, reconnects and drops.")
    b.panel("Staleness", [(f"hean_worker_marketdata_staleness_seconds{{{SEL}}}", "{{strategy}}")], unit="s")
    b.panel("Candles per second", [(
        f"sum by (strategy) (rate(hean_worker_marketdata_events_total{{{SEL}}}[$__rate_interval]))",
        "{{strategy}}")], unit="ops")
    b.panel("Market-time cursor", [(f"hean_worker_marketdata_cursor_timestamp_seconds{{{SEL}}} * 1000",
                                    "{{strategy}}")], unit="dateTimeAsIso")
    b.panel("Gap candles", [(
        f"sum by (strategy, symbol) (increase(hean_worker_marketdata_gap_candles_total{{{SEL}}}[$__rate_interval]))",
        "{{strategy}} {{symbol}}")])
    b.panel("Reconnects", [(
        f"sum by (strategy) (increase(hean_worker_marketdata_reconnects_total{{{SEL}}}[$__rate_interval]))",
        "{{strategy}}")], w=8)
    b.panel("Dropped records", [(
        f"sum by (strategy, reason) (increase(hean_worker_marketdata_dropped_total{{{SEL}}}[$__rate_interval]))",
        "{{strategy}} {{reason}}")], w=8)
    b.panel("Feed latency p90", [(
        f"histogram_quantile(0.9, sum by (strategy, le) (rate(hean_worker_marketdata_latency_seconds_bucket{{{SEL}}}[$__rate_interval])))",
        "{{strategy}}")], unit="s", w=8)
    b.panel("Replay finished", [(f"hean_worker_replay_finished{{{SEL}}}", "{{strategy}}")], kind="stat", w=12)
    b.panel("Last status heartbeat age", [(f"time() - hean_worker_heartbeat_timestamp_seconds{{{SEL}}}",
                                           "{{strategy}}")], unit="s", w=12)
    return b


def operator() -> Board:
    sel = 'namespace=~"$namespace"'
    b = Board("hean-operator", "hean / Operator", "Reconcile throughput, errors, latency, workers and backlog.",
              strategy=False, metric="hean_operator_up")
    b.panel("Reconciles by kind", [(f"sum by (kind) (rate(hean_operator_reconciles_total{{{sel}}}[$__rate_interval]))",
                                    "{{kind}}")], unit="ops")
    b.panel("Reconcile errors by kind", [(
        f"sum by (kind) (rate(hean_operator_reconcile_errors_total{{{sel}}}[$__rate_interval]))", "{{kind}}")],
        unit="ops")
    b.panel("Reconcile duration p90", [(
        f"histogram_quantile(0.9, sum by (kind, le) (rate(hean_operator_reconcile_duration_seconds_bucket{{{sel}}}[$__rate_interval])))",
        "{{kind}}")], unit="s")
    b.panel("Since last successful reconcile", [(
        f"time() - max by (kind) (hean_operator_last_successful_reconcile_timestamp_seconds{{{sel}}})", "{{kind}}")],
        unit="s")
    b.panel("Workers by phase", [(f"sum by (phase) (hean_operator_workers{{{sel}}})", "{{phase}}")], w=8)
    b.panel("Backlog", [(f"sum(hean_operator_reconcile_backlog{{{sel}}})", "backlog")], w=8)
    b.panel("Objects", [(f"sum by (kind) (hean_operator_objects{{{sel}}})", "{{kind}}")], w=8)
    b.panel("Up", [(f"max(hean_operator_up{{{sel}}})", "up")], kind="stat", w=24)
    return b


BOARDS = {"fleet": fleet, "strategy": strategy, "execution": execution, "marketdata": marketdata,
          "operator": operator}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"hean-{k}.json": json.dumps(f().json(), indent=2, sort_keys=True) + "\n" for k, f in BOARDS.items()}


if __name__ == "__main__":
    for name, text in render().items():
        (HERE / name).write_text(text)
        print("wrote", HERE / name)
