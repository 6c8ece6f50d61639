// nanobind bindings of the market replay engine (hean::MarketEngine). Python users
// go through hean.engine.market (encode_frames, replay_market_native).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "hean/dec.hpp"
#include "hean/market.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using I64In = nb::ndarray<const std::int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using I32In = nb::ndarray<const std::int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using I8In = nb::ndarray<const std::int8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
template <class T>
using NpArr = nb::ndarray<nb::numpy, T, nb::ndim<1>, nb::c_contig>;

template <class T>
NpArr<T> np_empty(std::size_t n, const char *dtype) {
    nb::object arr = nb::module_::import_("numpy").attr("empty")(n, dtype);
    return nb::cast<NpArr<T>>(arr);
}

hean::i128 money(const std::string &s, int md, const char *what) {
    bool exact = true;
    const hean::i128 v = hean::dec_to_scaled(hean::dec_parse(s), md, &exact);
    if (!exact) throw std::invalid_argument(std::string(what) + " " + s + " has more than " + std::to_string(md) + " decimals");
    return v;
}

const char *kReasons[] = {"BOOK_NOT_READY", "HARD_STOP", "ORDER_PENDING", "NO_SIGNAL", "FLOW_DISAGREES",
                          "TREND_DISAGREES", "COOLDOWN", "ORDER_RATE_LIMIT", "MAX_POSITION_NOTIONAL",
                          "BELOW_MIN_ORDER"};
const char *kStatus[] = {"OK", "GAP", "STALE", "CROSSED", "BAD", "NO_SNAPSHOT"};

}  // namespace

void bind_market(nb::module_ &m) {
    m.attr("MARKET_REASONS") = nb::make_tuple("BOOK_NOT_READY", "HARD_STOP", "ORDER_PENDING", "NO_SIGNAL",
                                              "FLOW_DISAGREES", "TREND_DISAGREES", "COOLDOWN", "ORDER_RATE_LIMIT",
                                              "MAX_POSITION_NOTIONAL", "BELOW_MIN_ORDER");
    nb::class_<hean::MarketEngine>(
        m, "MarketEngine",
        "Replay of a recorded stream of candles, public trades and L2 book updates through "
        "indicators -> book-imbalance strategy -> risk checks -> PaperMatcher per symbol -> exact "
        "cash ledger (see native/include/hean/market.hpp). Use it through "
        "hean.engine.market.replay_market_native.")
        .def("__init__",
             [](hean::MarketEngine *self, nb::list symbols, int money_decimals, const std::string &capital,
                nb::dict params, nb::dict risk) {
                 std::vector<hean::MarketSymbolSpec> specs;
                 for (nb::handle h : symbols) {
                     auto t = nb::cast<std::tuple<int, int, std::int64_t, std::int64_t, std::int64_t, std::string,
                                                  std::string, std::string, bool>>(h);
                     hean::MarketSymbolSpec s;
                     s.price_decimals = std::get<0>(t);
                     s.size_decimals = std::get<1>(t);
                     s.tick = std::get<2>(t);
                     s.qty_step = std::get<3>(t);
                     s.min_qty = std::get<4>(t);
                     s.min_notional = hean::dec_parse(std::get<5>(t));
                     s.maker_fee = hean::dec_parse(std::get<6>(t));
                     s.taker_fee = hean::dec_parse(std::get<7>(t));
                     s.spot = std::get<8>(t);
                     specs.push_back(s);
                 }
                 hean::MarketParams p;
                 auto geti = [&](const char *k, std::int64_t &dst) { if (params.contains(k)) dst = nb::cast<std::int64_t>(params[k]); };
                 auto getf = [&](const char *k, double &dst) { if (params.contains(k)) dst = nb::cast<double>(params[k]); };
                 geti("imbalance_levels", p.imbalance_levels);
                 getf("entry_imbalance", p.entry_imbalance);
                 getf("exit_imbalance", p.exit_imbalance);
                 geti("flow_period", p.flow_period);
                 geti("trend_period", p.trend_period);
                 geti("cooldown_ms", p.cooldown_ms);
                 geti("max_hold_ms", p.max_hold_ms);
                 geti("order_ttl_ms", p.order_ttl_ms);
                 if (params.contains("post_only")) p.post_only = nb::cast<bool>(params["post_only"]);
                 hean::MarketRisk r;
                 r.order_notional = money(nb::cast<std::string>(risk["order_notional"]), money_decimals, "order_notional");
                 if (risk.contains("max_position_notional"))
                     r.max_position_notional = money(nb::cast<std::string>(risk["max_position_notional"]), money_decimals,
                                                     "max_position_notional");
                 if (risk.contains("max_orders_per_minute"))
                     r.max_orders_per_minute = nb::cast<std::int64_t>(risk["max_orders_per_minute"]);
                 if (risk.contains("hard_drawdown_bps")) r.hard_drawdown_bps = nb::cast<std::int64_t>(risk["hard_drawdown_bps"]);
                 new (self) hean::MarketEngine(specs, money_decimals, money(capital, money_decimals, "capital"), p, r);
             },
             "symbols"_a, "money_decimals"_a, "capital"_a, "params"_a, "risk"_a,
             "symbols: list of (price_decimals, size_decimals, tick, qty_step, min_qty (scaled ints), "
             "min_notional, maker_fee, taker_fee (decimal strings), spot); capital (USDT) and the risk "
             "dict's order_notional / max_position_notional (USDT) as decimal strings; params: "
             "imbalance_levels, entry_imbalance, exit_imbalance, flow_period, trend_period, cooldown_ms, "
             "max_hold_ms, post_only, order_ttl_ms; risk: max_orders_per_minute, hard_drawdown_bps.")
        .def("run",
             [](hean::MarketEngine &e, const I8In &kind, const I32In &sym, const I64In &ts, const I64In &x0,
                const I64In &x1, const I64In &x2, const I64In &x3, const I8In &lv_side, const I64In &lv_price,
                const I64In &lv_size) {
                 const std::size_t n = kind.shape(0);
                 if (sym.shape(0) != n || ts.shape(0) != n || x0.shape(0) != n || x1.shape(0) != n ||
                     x2.shape(0) != n || x3.shape(0) != n)
                     throw std::invalid_argument("kind, sym, ts, x0..x3 must have the same length");
                 const std::size_t nl = lv_side.shape(0);
                 if (lv_price.shape(0) != nl || lv_size.shape(0) != nl)
                     throw std::invalid_argument("level_side, level_price, level_size must have the same length");
                 auto curve = np_empty<double>(n, "float64");
                 {
                     nb::gil_scoped_release release;
                     e.run(kind.data(), sym.data(), ts.data(), x0.data(), x1.data(), x2.data(), x3.data(), n,
                           lv_side.data(), lv_price.data(), lv_size.data(), nl, curve.data());
                 }
                 return curve;
             },
             "kind"_a, "sym"_a, "ts"_a, "x0"_a, "x1"_a, "x2"_a, "x3"_a, "level_side"_a, "level_price"_a,
             "level_size"_a,
             "Run a tape (see hean.engine.market.MarketTape) with the GIL released; returns the equity "
             "after each event, float64 (n,), USDT. Calling again continues the same account.")
        .def("fills", [](const hean::MarketEngine &e) {
            const auto &f = e.fills();
            const std::size_t n = f.size();
            auto ts = np_empty<std::int64_t>(n, "int64");
            auto sym = np_empty<std::int32_t>(n, "int32");
            auto side = np_empty<std::int8_t>(n, "int8");
            auto qty = np_empty<std::int64_t>(n, "int64");
            auto price = np_empty<std::int64_t>(n, "int64");
            auto fee = np_empty<std::int64_t>(n, "int64");
            auto oid = np_empty<std::int64_t>(n, "int64");
            auto reason = np_empty<std::int8_t>(n, "int8");
            auto maker = np_empty<std::int8_t>(n, "int8");
            for (std::size_t i = 0; i < n; ++i) {
                ts.data()[i] = f[i].ts;
                sym.data()[i] = f[i].sym;
                side.data()[i] = f[i].side;
                qty.data()[i] = f[i].qty;
                price.data()[i] = f[i].price;
                fee.data()[i] = f[i].fee_e8;
                oid.data()[i] = f[i].order_id;
                reason.data()[i] = f[i].reason;
                maker.data()[i] = f[i].maker;
            }
            nb::dict d;
            d["ts_ms"] = ts;
            d["symbol"] = sym;
            d["side"] = side;
            d["qty"] = qty;
            d["price"] = price;
            d["fee_e8"] = fee;
            d["order_id"] = oid;
            d["reason"] = reason;
            d["maker"] = maker;
            return d;
        }, "Fills: dict of arrays ts_ms, symbol, side (+1 Buy/-1 Sell), qty (size units of the symbol), "
           "price (price units), fee_e8 (1e-8 USDT), order_id, reason (0 entry, 1 exit on signal, "
           "2 exit on time, 3 hard stop), maker (1 maker / 0 taker).")
        .def("counters", [](const hean::MarketEngine &e) {
            nb::dict d, reasons, book;
            for (int i = 0; i < hean::MR_COUNT; ++i) reasons[kReasons[i]] = e.reasons()[i];
            for (int i = 0; i < hean::BOOK_STATUS_COUNT; ++i) book[kStatus[i]] = e.book_counts(i);
            d["reasons"] = reasons;
            d["book"] = book;
            d["events"] = e.events();
            d["trades"] = e.trades();
            d["bad_trades"] = e.bad_trades();
            d["candles"] = e.candles();
            d["rejected_candles"] = e.rejected_candles();
            d["dropped_candles"] = e.dropped_candles();
            d["malformed"] = e.malformed();
            d["orders_sent"] = e.orders_sent();
            d["order_rejects"] = e.order_rejects();
            d["cancels"] = e.cancels();
            d["hard_stop"] = e.hard_stop();
            nb::list pos;
            for (int s = 0; s < e.n_symbols(); ++s) pos.append(e.position(s));
            d["positions"] = pos;
            return d;
        }, "Counters: reasons (entries not made, by code), book (messages by OrderBook status, all "
           "symbols), events, trades / bad_trades, candles / rejected_candles / dropped_candles (out of "
           "order), malformed frames, orders_sent, order_rejects (nonzero retCode), cancels, hard_stop, "
           "positions (size units per symbol).")
        .def("figures", [](const hean::MarketEngine &e) {
            nb::dict d;
            d["equity_units"] = nb::int_(nb::str(hean::i128_str(e.equity()).c_str()));
            d["cash_units"] = nb::int_(nb::str(hean::i128_str(e.cash()).c_str()));
            d["peak_units"] = nb::int_(nb::str(hean::i128_str(e.peak()).c_str()));
            return d;
        }, "Exact equity, cash and peak equity as Python ints in money units (10^-money_decimals USDT).");
}
