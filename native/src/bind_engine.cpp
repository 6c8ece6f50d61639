// nanobind bindings of the paper engine (hean::PaperEngine). Python users go
// through hean.engine (replay(), NativeEngine), which computes the scales and
// converts Decimals; these bindings take integers and decimal strings.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/tuple.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "hean/dec.hpp"
#include "hean/engine.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using I64In = nb::ndarray<const std::int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using I32In = nb::ndarray<const std::int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
template <class T>
using NpArr = nb::ndarray<nb::numpy, T, nb::ndim<1>, nb::c_contig>;

template <class T>
NpArr<T> np_empty_t(std::size_t n, const char *dtype) {
    nb::object arr = nb::module_::import_("numpy").attr("empty")(n, dtype);
    return nb::cast<NpArr<T>>(arr);
}

hean::Dec D(const std::string &s) { return hean::dec_parse(s); }

void read_params(nb::dict params, hean::EngineParams &p) {
    auto geti = [&](const char *k, std::int64_t &dst) { if (params.contains(k)) dst = nb::cast<std::int64_t>(params[k]); };
    auto getf = [&](const char *k, double &dst) { if (params.contains(k)) dst = nb::cast<double>(params[k]); };
    geti("emaFastPeriod", p.ema_fast);
    geti("emaSlowPeriod", p.ema_slow);
    geti("volatilityWindow", p.vol_window);
    geti("impulseLookback", p.lookback);
    geti("atrPeriod", p.atr_period);
    geti("cooldownBars", p.cooldown_bars);
    getf("impulseThreshold", p.impulse_threshold);
    getf("stopLossAtr", p.stop_loss_atr);
    getf("takeProfitAtr", p.take_profit_atr);
    getf("riskPerTradeFraction", p.risk_fraction);
}

hean::EngineConfig make_config(int price_decimals, int qty_decimals, int money_decimals, bool spot,
                               const std::string &capital, const std::string &max_leverage,
                               const std::string &slippage_bps, const std::string &taker_fee,
                               bool paused, nb::dict params, nb::list instruments) {
    hean::EngineConfig c;
    c.price_decimals = price_decimals;
    c.qty_decimals = qty_decimals;
    c.money_decimals = money_decimals;
    c.spot = spot;
    c.capital = D(capital);
    c.spec_max_leverage = D(max_leverage);
    c.slippage_bps = D(slippage_bps);
    c.taker_fee = D(taker_fee);
    c.paused = paused;
    read_params(params, c.params);
    for (nb::handle h : instruments) {
        auto t = nb::cast<std::tuple<std::int64_t, std::int64_t, std::int64_t, std::string, std::string>>(h);
        hean::InstrumentSpec in;
        in.tick = std::get<0>(t);
        in.qty_step = std::get<1>(t);
        in.min_qty = std::get<2>(t);
        in.min_notional = D(std::get<3>(t));
        in.max_leverage = D(std::get<4>(t));
        c.instruments.push_back(in);
    }
    return c;
}

hean::PolicySpec make_policy(std::optional<nb::dict> d) {
    hean::PolicySpec p;
    if (!d) return p;
    nb::dict &x = *d;
    p.present = true;
    p.soft_dd = D(nb::cast<std::string>(x["softMaxDrawdownPercent"]));
    p.hard_dd = D(nb::cast<std::string>(x["hardMaxDrawdownPercent"]));
    p.max_daily_loss = D(nb::cast<std::string>(x["maxDailyLossUsdt"]));
    p.max_leverage = D(nb::cast<std::string>(x["maxLeverage"]));
    p.max_position_notional = D(nb::cast<std::string>(x["maxPositionNotionalUsdt"]));
    p.soft_brake_factor = D(nb::cast<std::string>(x["softBrakeSizeFactor"]));
    p.max_open_positions = nb::cast<std::int64_t>(x["maxOpenPositions"]);
    p.max_orders_per_minute = nb::cast<std::int64_t>(x["maxOrdersPerMinute"]);
    return p;
}

struct Stream {
    const std::int32_t *sym;
    const std::int64_t *ts, *o, *h, *l, *c;
    std::size_t n;
};

Stream check_stream(const I32In &sym, const I64In &ts, const I64In &o, const I64In &h, const I64In &l,
                    const I64In &c, int n_sym) {
    const std::size_t n = sym.shape(0);
    const char *names[] = {"ts_ms", "open", "high", "low", "close"};
    const I64In *arrs[] = {&ts, &o, &h, &l, &c};
    for (int i = 0; i < 5; ++i)
        if (arrs[i]->shape(0) != n)
            throw std::invalid_argument(std::string(names[i]) + " must have the same length as symbol (" +
                                        std::to_string(n) + "), got " + std::to_string(arrs[i]->shape(0)));
    const std::size_t bad = hean::first_bad_symbol(sym.data(), n, n_sym);  // -O3 kernel library
    if (bad != n) throw std::invalid_argument("symbol index out of range at index " + std::to_string(bad));
    return Stream{sym.data(), ts.data(), o.data(), h.data(), l.data(), c.data(), n};
}

nb::dict fills_dict(const hean::PaperEngine &e, std::size_t start) {
    const auto &f = e.fills();
    const std::size_t n = start < f.size() ? f.size() - start : 0;
    auto ts = np_empty_t<std::int64_t>(n, "int64");
    auto sym = np_empty_t<std::int32_t>(n, "int32");
    auto side = np_empty_t<std::int8_t>(n, "int8");
    auto qty = np_empty_t<std::int64_t>(n, "int64");
    auto price = np_empty_t<std::int64_t>(n, "int64");
    auto fee = np_empty_t<std::int64_t>(n, "int64");
    auto seq = np_empty_t<std::int64_t>(n, "int64");
    auto reason = np_empty_t<std::int8_t>(n, "int8");
    for (std::size_t i = 0; i < n; ++i) {
        const hean::FillRec &r = f[start + i];
        ts.data()[i] = r.ts;
        sym.data()[i] = r.sym;
        side.data()[i] = r.side;
        qty.data()[i] = r.qty;
        price.data()[i] = r.price;
        fee.data()[i] = r.fee_e8;
        seq.data()[i] = r.seq;
        reason.data()[i] = r.reason;
    }
    nb::dict d;
    d["ts_ms"] = ts;
    d["symbol"] = sym;
    d["side"] = side;
    d["qty"] = qty;
    d["price"] = price;
    d["fee_e8"] = fee;
    d["order_seq"] = seq;
    d["reason"] = reason;
    return d;
}

}  // namespace

void bind_engine(nb::module_ &m) {
    nb::class_<hean::PaperEngine>(
        m, "PaperEngine",
        "C++ paper-trading engine (impulse strategy -> Risk Governor -> next-open fills -> "
        "exact ledger), a step-for-step transcription of hean.worker.engine.Engine. Use it "
        "through hean.engine.NativeEngine / hean.engine.replay(), which compute the fixed-point "
        "scales: prices int64 in 10^-price_decimals, quantities int64 in 10^-qty_decimals, "
        "money in 10^-money_decimals, fees int64 in 1e-8 USDT.")
        .def("__init__",
             [](hean::PaperEngine *self, int pd, int qd, int md, bool spot, const std::string &capital,
                const std::string &max_leverage, const std::string &slippage_bps,
                const std::string &taker_fee, bool paused, nb::dict params, nb::list instruments) {
                 new (self) hean::PaperEngine(make_config(pd, qd, md, spot, capital, max_leverage,
                                                          slippage_bps, taker_fee, paused, params,
                                                          instruments));
             },
             "price_decimals"_a, "qty_decimals"_a, "money_decimals"_a, "spot"_a, "capital"_a,
             "max_leverage"_a, "slippage_bps"_a, "taker_fee"_a, "paused"_a, "params"_a,
             "instruments"_a,
             "instruments: list of (tick, qty_step, min_qty (scaled ints), min_notional, "
             "max_leverage (decimal strings)); params: the ImpulseParams fields by CRD name.")
        .def("set_policy", [](hean::PaperEngine &e, std::optional<nb::dict> d, bool evaluate) {
                 e.set_policy(make_policy(d), evaluate);
             },
             "policy"_a.none(), "evaluate"_a = true,
             "Apply a RiskPolicy (dict of decimal strings / ints by CRD name) or None; re-evaluates risk.")
        .def("set_paused", &hean::PaperEngine::set_paused, "paused"_a)
        .def("update_spec", [](hean::PaperEngine &e, nb::dict params, bool paused, const std::string &slippage_bps,
                               const std::string &max_leverage) {
                 hean::EngineParams p = e.config().params;
                 read_params(params, p);
                 e.update_spec(p, paused, D(slippage_bps), D(max_leverage));
             }, "params"_a, "paused"_a, "slippage_bps"_a, "max_leverage"_a,
             "Engine.update_spec: params by CRD name, paused, slippage (bps) and spec.maxLeverage as "
             "decimal strings; indicators rebuild only if a period changed.")
        .def("set_blocked", &hean::PaperEngine::set_blocked, "blocked"_a,
             "Block new entries (Engine.blocked_reason set); counted under reason index R_BLOCKED.")
        .def("set_quarantined", &hean::PaperEngine::set_quarantined, "flags"_a,
             "Per-symbol quarantine flags; re-evaluates risk.")
        .def("clear_hard_stop", [](hean::PaperEngine &e, std::int64_t at_us) { return e.clear_hard_stop(at_us); },
             "at_us"_a, "Clear a latched HARD_STOP older than at_us (epoch microseconds).")
        .def("on_bar",
             [](hean::PaperEngine &e, int sym, std::int64_t ts, std::int64_t o, std::int64_t h,
                std::int64_t l, std::int64_t c) { e.on_bar(sym, hean::Bar{ts, o, h, l, c}); },
             "symbol"_a, "ts_ms"_a, "open"_a, "high"_a, "low"_a, "close"_a,
             "Process one closed candle (prices in price units).")
        .def("run",
             [](hean::PaperEngine &e, const I32In &sym, const I64In &ts, const I64In &o, const I64In &h,
                const I64In &l, const I64In &c) {
                 const Stream s = check_stream(sym, ts, o, h, l, c, e.n_symbols());
                 auto curve = np_empty_t<double>(s.n, "float64");
                 {
                     nb::gil_scoped_release release;
                     e.run(s.sym, s.ts, s.o, s.h, s.l, s.c, s.n, curve.data());
                 }
                 return curve;
             },
             "symbol"_a, "ts_ms"_a, "open"_a, "high"_a, "low"_a, "close"_a,
             "Run a merged candle stream (symbol int32 index, ts_ms int64, prices int64 price units, "
             "all shape (n,)) through the built-in strategy with the GIL released; returns the "
             "equity after each event, float64 (n,), USDT.")
        .def("run_callback",
             [](hean::PaperEngine &e, const I32In &sym, const I64In &ts, const I64In &o, const I64In &h,
                const I64In &l, const I64In &c, nb::callable strategy, std::size_t batch) {
                 const Stream s = check_stream(sym, ts, o, h, l, c, e.n_symbols());
                 if (batch == 0) throw std::invalid_argument("batch must be >= 1");
                 auto curve = np_empty_t<double>(s.n, "float64");
                 const std::size_t cap = batch < s.n ? batch : (s.n ? s.n : 1);
                 nb::object numpy = nb::module_::import_("numpy");
                 auto alloc = [&](const char *dt, void **ptr) {
                     nb::object a = numpy.attr("empty")(cap, dt);
                     *ptr = nb::cast<nb::ndarray<nb::c_contig>>(a).data();
                     return a;
                 };
                 void *p_fast, *p_slow, *p_sigma, *p_atr, *p_ret, *p_close, *p_warm, *p_valid;
                 nb::object o_fast = alloc("float64", &p_fast), o_slow = alloc("float64", &p_slow),
                            o_sigma = alloc("float64", &p_sigma), o_atr = alloc("float64", &p_atr),
                            o_ret = alloc("float64", &p_ret), o_close = alloc("float64", &p_close),
                            o_warm = alloc("bool", &p_warm), o_valid = alloc("bool", &p_valid);
                 double *f_fast = static_cast<double *>(p_fast), *f_slow = static_cast<double *>(p_slow),
                        *f_sigma = static_cast<double *>(p_sigma), *f_atr = static_cast<double *>(p_atr),
                        *f_ret = static_cast<double *>(p_ret), *f_close = static_cast<double *>(p_close);
                 bool *f_warm = static_cast<bool *>(p_warm), *f_valid = static_cast<bool *>(p_valid);
                 std::vector<hean::Features> feats(cap);
                 const double scale = static_cast<double>(hean::pow10_128(e.config().price_decimals));
                 for (std::size_t start = 0; start < s.n; start += cap) {
                     const std::size_t m = s.n - start < cap ? s.n - start : cap;
                     for (std::size_t k = 0; k < m; ++k) {
                         const std::size_t i = start + k;
                         f_valid[k] = e.features(s.sym[i], hean::Bar{s.ts[i], s.o[i], s.h[i], s.l[i], s.c[i]}, &feats[k]);
                         f_fast[k] = feats[k].fast;
                         f_slow[k] = feats[k].slow;
                         f_sigma[k] = feats[k].sigma;
                         f_atr[k] = feats[k].atr;
                         f_ret[k] = feats[k].ret;
                         f_warm[k] = feats[k].warm;
                         f_close[k] = static_cast<double>(s.c[i]) / scale;
                     }
                     nb::dict b;
                     nb::object sl = nb::module_::import_("builtins").attr("slice")(0, m);
                     b["ema_fast"] = o_fast[sl];
                     b["ema_slow"] = o_slow[sl];
                     b["sigma"] = o_sigma[sl];
                     b["atr"] = o_atr[sl];
                     b["ret"] = o_ret[sl];
                     b["warm"] = o_warm[sl];
                     b["valid"] = o_valid[sl];
                     b["close"] = o_close[sl];
                     b["start"] = start;
                     nb::object res = strategy(b);
                     auto tup = nb::cast<nb::tuple>(res);
                     if (tup.size() != 2) throw std::invalid_argument("strategy must return (entry, bias)");
                     nb::object ent = numpy.attr("ascontiguousarray")(tup[0], "int8");
                     nb::object bia = numpy.attr("ascontiguousarray")(tup[1], "int8");
                     auto ea = nb::cast<nb::ndarray<const std::int8_t, nb::ndim<1>, nb::c_contig>>(ent);
                     auto ba = nb::cast<nb::ndarray<const std::int8_t, nb::ndim<1>, nb::c_contig>>(bia);
                     if (ea.shape(0) != m || ba.shape(0) != m)
                         throw std::invalid_argument("strategy must return two arrays of the batch's length (" +
                                                     std::to_string(m) + ")");
                     {
                         nb::gil_scoped_release release;
                         for (std::size_t k = 0; k < m; ++k) {
                             const std::size_t i = start + k;
                             e.on_bar_signal(s.sym[i], hean::Bar{s.ts[i], s.o[i], s.h[i], s.l[i], s.c[i]},
                                             feats[k], ea.data()[k], ba.data()[k]);
                             curve.data()[i] = e.to_double_money(e.equity());
                         }
                     }
                 }
                 return curve;
             },
             "symbol"_a, "ts_ms"_a, "open"_a, "high"_a, "low"_a, "close"_a, "strategy"_a, "batch"_a = 65536,
             "Like run(), but the entry decision comes from a Python callable called once per "
             "batch of up to `batch` events with a dict of float64 arrays (ema_fast, ema_slow, "
             "sigma, atr, ret, close), bool arrays (warm, valid) and the batch's `start` index; "
             "it returns (entry, bias): int8 arrays, entry +1 long / -1 short / 0 none (read "
             "only when the engine would enter), bias +1 trend up / -1 down / 0 flat (exits "
             "longs on -1, shorts on +1). If the callable raises, the exception propagates and "
             "the engine is left mid-batch (indicators advanced, steps not run): discard it.")
        .def("fills", [](const hean::PaperEngine &e, std::size_t start) { return fills_dict(e, start); },
             "start"_a = 0,
             "Fills from index `start`: dict of int arrays ts_ms, symbol, side (+1 Buy/-1 Sell), "
             "qty (qty units), price (price units), fee_e8 (1e-8 USDT), order_seq, reason.")
        .def_prop_ro("n_fills", [](const hean::PaperEngine &e) { return e.fills().size(); })
        .def("risk_events", [](const hean::PaperEngine &e) {
            nb::list out;
            for (const auto &r : e.risk_events())
                out.append(nb::make_tuple(r.bar_index, r.old_state, r.new_state, r.reasons));
            return out;
        }, "[(event index, old state, new state, reason bits)]")
        .def("counters", [](const hean::PaperEngine &e) {
            nb::dict d;
            nb::list reasons, rejects;
            for (int i = 0; i < hean::R_COUNT; ++i) reasons.append(e.reasons()[i]);
            for (int i = 0; i < hean::J_COUNT; ++i) rejects.append(e.rejects()[i]);
            d["reasons"] = reasons;
            d["rejects"] = rejects;
            d["dropped_out_of_order"] = e.dropped_out_of_order();
            d["rejected_bars"] = e.rejected_bars();
            d["bars_processed"] = e.bars_processed();
            d["orders_sent"] = e.orders_sent();
            d["order_seq"] = e.order_seq();
            d["closed_trades"] = e.closed_trades();
            d["winning_trades"] = e.winning_trades();
            d["now_ms"] = e.now_ms();
            return d;
        })
        .def("figures", [](const hean::PaperEngine &e) {
            nb::dict d;
            d["equity"] = hean::dec_str(e.money_dec(e.equity()));
            d["cash"] = hean::dec_str(e.money_dec(e.cash()));
            d["realized_pnl"] = hean::dec_str(e.money_dec(e.realized()));
            d["fees"] = hean::dec_str(hean::Dec{e.fees_e8(), -8});
            d["peak_equity"] = hean::dec_str(e.money_dec(e.peak()));
            d["drawdown_percent"] = hean::dec_str(e.drawdown_percent());
            d["risk_state"] = e.risk_state();
            d["risk_reasons"] = e.risk_reasons();
            d["hard_stop_at_us"] = e.hard_stop_latched() ? nb::object(nb::int_(e.hard_stop_at_us())) : nb::none();
            d["open_positions"] = e.open_positions();
            d["trading_active"] = e.trading_active();
            return d;
        }, "Exact figures as decimal strings (USDT) plus the risk state.")
        .def("symbol_state", [](const hean::PaperEngine &e, int s) {
            if (s < 0 || s >= e.n_symbols()) throw std::out_of_range("symbol index out of range");
            nb::dict d;
            d["size"] = e.position(s);
            d["entry_price"] = e.entry_price(s);
            d["mark"] = e.has_mark(s) ? nb::object(nb::int_(e.mark(s))) : nb::none();
            d["stop_price"] = e.has_stop(s) ? nb::object(nb::int_(e.stop_price(s))) : nb::none();
            d["target_price"] = e.has_stop(s) ? nb::object(nb::int_(e.target_price(s))) : nb::none();
            d["pending"] = e.has_pending(s);
            d["last_reason"] = e.last_reason(s);
            d["entry_orders"] = e.entry_orders(s);
            return d;
        }, "symbol"_a, "Position (qty units), entry/mark/stop/target (price units) and state of one symbol.");
}
