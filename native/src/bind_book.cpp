// nanobind bindings of the L2 order book and the paper matching engine.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/tuple.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "hean/book.hpp"
#include "hean/dec.hpp"
#include "hean/matcher.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using Levels = std::vector<std::pair<std::string, std::string>>;

double pxf(const hean::OrderBook &b, std::int64_t v) { return static_cast<double>(v) / std::pow(10.0, b.price_decimals()); }
double qf(const hean::OrderBook &b, std::int64_t v) { return static_cast<double>(v) / std::pow(10.0, b.size_decimals()); }

double mid(const hean::OrderBook &b) {
    if (!b.has_bid() || !b.has_ask()) return NAN;
    return static_cast<double>(b.best_bid().first + b.best_ask().first) / (2.0 * std::pow(10.0, b.price_decimals()));
}
double microprice(const hean::OrderBook &b) {
    if (!b.has_bid() || !b.has_ask()) return NAN;
    const auto bb = b.best_bid(), ba = b.best_ask();
    const double qb = qf(b, bb.second), qa = qf(b, ba.second);
    return (pxf(b, bb.first) * qa + pxf(b, ba.first) * qb) / (qa + qb);
}
double imbalance(const hean::OrderBook &b, std::size_t levels) {
    const auto bids = b.levels(1, levels), asks = b.levels(-1, levels);
    double num = 0, den = 0;
    for (std::size_t k = 0; k < levels; ++k) {
        const double w = 1.0 / static_cast<double>(k + 1);
        const double qb = k < bids.size() ? qf(b, bids[k].second) : 0.0;
        const double qa = k < asks.size() ? qf(b, asks[k].second) : 0.0;
        num += w * (qb - qa);
        den += w * (qb + qa);
    }
    return den > 0 ? num / den : NAN;
}

const char *kStatus[] = {"OK", "GAP", "STALE", "CROSSED", "BAD", "NO_SNAPSHOT"};
const char *kOrderStatus[] = {"New", "PartiallyFilled", "Filled", "Cancelled", "Rejected"};

int parse_side(const std::string &s) {
    if (s == "Buy") return 1;
    if (s == "Sell") return -1;
    return 0;
}
int parse_type(const std::string &s) { return s == "Market" ? hean::OT_MARKET : s == "Limit" ? hean::OT_LIMIT : -1; }
int parse_tif(const std::string &s) {
    if (s == "GTC") return hean::TIF_GTC;
    if (s == "IOC") return hean::TIF_IOC;
    if (s == "FOK") return hean::TIF_FOK;
    if (s == "PostOnly") return hean::TIF_POST_ONLY;
    return -1;
}

}  // namespace

void bind_book(nb::module_ &m) {
    m.attr("BOOK_STATUS") = nb::make_tuple("OK", "GAP", "STALE", "CROSSED", "BAD", "NO_SNAPSHOT");
    m.def("parse_fixed", [](const std::string &s, int decimals) -> nb::object {
        std::int64_t v;
        if (!hean::parse_fixed(s.data(), s.size(), decimals, &v)) return nb::none();
        return nb::int_(v);
    }, "text"_a, "decimals"_a,
    "Exact parse of a non-negative decimal string into units of 10^-decimals; None if it is "
    "not one (sign, exponent, NaN/inf, too many decimals, overflow).");

    nb::class_<hean::OrderBook>(m, "OrderBook",
        "L2 book for Bybit v5 orderbook snapshots/deltas. Prices in units of 10^-price_decimals, "
        "sizes in 10^-size_decimals (exact). apply() returns one of BOOK_STATUS: OK, GAP (u jumped: "
        "re-snapshot; later deltas are refused until a snapshot), STALE (u or seq not increasing), "
        "CROSSED (rolled back; needs a snapshot), BAD (NaN/inf/negative/unparsable/over-precise "
        "number or zero size in a snapshot; nothing applied), NO_SNAPSHOT. Every outcome is counted.")
        .def(nb::init<int, int>(), "price_decimals"_a, "size_decimals"_a)
        .def("apply", [](hean::OrderBook &b, bool snapshot, const Levels &bids, const Levels &asks,
                         std::int64_t u, std::int64_t seq, std::int64_t ts) {
                 return std::string(kStatus[b.apply(snapshot, bids, asks, u, seq, ts)]);
             }, "snapshot"_a, "bids"_a, "asks"_a, "u"_a, "seq"_a, "ts"_a,
             "Apply one message; bids/asks are [(price, size)] decimal strings as Bybit sends them.")
        .def_prop_ro("valid", &hean::OrderBook::valid, "True when a snapshot is in and no gap/cross since.")
        .def_prop_ro("price_decimals", &hean::OrderBook::price_decimals)
        .def_prop_ro("size_decimals", &hean::OrderBook::size_decimals)
        .def_prop_ro("needs_snapshot", &hean::OrderBook::needs_snapshot)
        .def_prop_ro("last_u", &hean::OrderBook::last_u)
        .def_prop_ro("last_seq", &hean::OrderBook::last_seq)
        .def_prop_ro("counts", [](const hean::OrderBook &b) {
            nb::dict d;
            for (int i = 0; i < hean::BOOK_STATUS_COUNT; ++i) d[kStatus[i]] = b.counts()[i];
            return d;
        }, "Messages by outcome.")
        .def("best_bid", [](const hean::OrderBook &b) { return b.best_bid(); }, "(price, size) in units; (0, 0) if empty")
        .def("best_ask", [](const hean::OrderBook &b) { return b.best_ask(); }, "(price, size) in units; (0, 0) if empty")
        .def("levels", &hean::OrderBook::levels, "side"_a, "n"_a, "Top n (price, size) of side +1 bids / -1 asks.")
        .def("spread", [](const hean::OrderBook &b) {
            return b.has_bid() && b.has_ask() ? pxf(b, b.best_ask().first - b.best_bid().first) : NAN;
        }, "best ask - best bid, price units of the quote (float); NaN if a side is empty")
        .def("mid", &mid, "(best bid + best ask) / 2 (float)")
        .def("microprice", &microprice,
             "Size-weighted mid (S. Stoikov, 'The micro-price', 2018, first-order form): "
             "(bid*ask_size + ask*bid_size)/(bid_size + ask_size)")
        .def("imbalance", &imbalance, "levels"_a = 5,
             "Depth-weighted imbalance of the top `levels`: sum w_k (bid_k - ask_k) / sum w_k (bid_k + "
             "ask_k), w_k = 1/(k+1), in [-1, 1]; NaN for an empty book")
        .def("sweep_cost", [](const hean::OrderBook &b, int side, double notional) {
                 const double scale = std::pow(10.0, b.price_decimals() + b.size_decimals());
                 const hean::i128 n = static_cast<hean::i128>(notional * scale);
                 const hean::SweepResult r = b.sweep(side, n, 0, 0);
                 nb::dict d;
                 d["qty"] = qf(b, r.qty);
                 d["notional"] = static_cast<double>(r.notional) / scale;
                 const double avg = r.qty ? static_cast<double>(r.notional) / scale / qf(b, r.qty) : NAN;
                 d["avg_price"] = avg;
                 d["levels"] = r.levels;
                 d["complete"] = r.complete;
                 d["worst_price"] = pxf(b, r.last_price);
                 const double md = mid(b);
                 d["slippage_bps"] = r.qty && md == md ? (side > 0 ? 1.0 : -1.0) * (avg / md - 1.0) * 1e4 : NAN;
                 return d;
             }, "side"_a, "notional"_a,
             "Cost of a taker of `side` (+1 buys the asks, -1 sells the bids) spending `notional` quote: "
             "dict qty (base), notional (quote actually spent), avg_price, worst_price, levels, "
             "complete (False if the book ran out), slippage_bps (avg vs mid, positive = cost).");

    nb::class_<hean::PaperMatcher>(m, "PaperMatcher",
        "Paper matching engine for one instrument (see native/include/hean/matcher.hpp): market, "
        "limit GTC/IOC/FOK/PostOnly, reduce-only, queue position for resting orders, exact fees.")
        .def("__init__", [](hean::PaperMatcher *self, int pd, int qd, std::int64_t tick, std::int64_t step,
                            std::int64_t min_qty, const std::string &min_notional, const std::string &maker,
                            const std::string &taker, bool spot) {
                 new (self) hean::PaperMatcher(pd, qd, tick, step, min_qty, hean::dec_parse(min_notional),
                                               hean::dec_parse(maker), hean::dec_parse(taker), spot);
             }, "price_decimals"_a, "qty_decimals"_a, "tick"_a, "qty_step"_a, "min_qty"_a, "min_notional"_a,
             "maker_fee"_a, "taker_fee"_a, "spot"_a = false,
             "tick/qty_step/min_qty in units; min_notional (quote) and fee rates (fractions) as decimal strings.")
        .def("submit", [](hean::PaperMatcher &mt, std::int64_t id, const std::string &side, const std::string &type,
                          std::int64_t qty, std::int64_t price, const std::string &tif, bool reduce_only,
                          std::int64_t ts) {
                 const int s = parse_side(side), t = parse_type(type), f = parse_tif(tif);
                 const hean::SubmitResult r = mt.submit(id, s == 0 ? 2 : s, t, f, qty, price, reduce_only, ts);
                 return nb::make_tuple(r.ret_code, r.ret_msg, kOrderStatus[r.status]);
             }, "order_id"_a, "side"_a, "order_type"_a, "qty"_a, "price"_a = 0, "time_in_force"_a = "GTC",
             "reduce_only"_a = false, "ts"_a = 0,
             "Submit an order (side 'Buy'/'Sell', order_type 'Market'/'Limit', time_in_force "
             "'GTC'/'IOC'/'FOK'/'PostOnly', qty/price in units). Returns (retCode, retMsg, orderStatus).")
        .def("cancel", &hean::PaperMatcher::cancel, "order_id"_a)
        .def("on_book", [](hean::PaperMatcher &mt, bool snapshot, const Levels &bids, const Levels &asks,
                           std::int64_t u, std::int64_t seq, std::int64_t ts) {
                 return std::string(kStatus[mt.on_book(snapshot, bids, asks, u, seq, ts)]);
             }, "snapshot"_a, "bids"_a, "asks"_a, "u"_a, "seq"_a, "ts"_a)
        .def("on_trade", [](hean::PaperMatcher &mt, std::int64_t ts, std::int64_t price, std::int64_t qty,
                            const std::string &side) { return mt.on_trade(ts, price, qty, parse_side(side)); },
             "ts"_a, "price"_a, "qty"_a, "aggressor_side"_a,
             "A public trade (price/qty in units, aggressor 'Buy'/'Sell'); False (counted) if invalid.")
        .def_prop_ro("book", [](hean::PaperMatcher &mt) -> hean::OrderBook & { return mt.book; },
                     nb::rv_policy::reference_internal)
        .def_prop_ro("position", [](const hean::PaperMatcher &mt) { return mt.position; })
        .def_prop_ro("fees_e8", [](const hean::PaperMatcher &mt) { return mt.fees_e8; })
        .def_prop_ro("rejected_trades", [](const hean::PaperMatcher &mt) { return mt.rejected_trades; })
        .def("order", [](const hean::PaperMatcher &mt, std::int64_t id) -> nb::object {
            auto it = mt.orders.find(id);
            if (it == mt.orders.end()) return nb::none();
            const hean::MOrder &o = it->second;
            nb::dict d;
            d["status"] = kOrderStatus[o.status];
            d["qty"] = o.qty;
            d["price"] = o.price;
            d["filled"] = o.filled;
            d["leaves"] = (o.status == hean::OS_NEW || o.status == hean::OS_PARTIAL) ? o.qty - o.filled : 0;
            d["queue_ahead"] = o.queue_ahead;
            d["reason"] = o.reason;
            return d;
        }, "order_id"_a)
        .def_prop_ro("n_fills", [](const hean::PaperMatcher &mt) { return mt.fills.size(); })
        .def("fills", [](const hean::PaperMatcher &mt, std::size_t start) {
            nb::list out;
            for (std::size_t i = start; i < mt.fills.size(); ++i) {
                const auto &f = mt.fills[i];
                out.append(nb::make_tuple(f.order_id, f.ts, f.side > 0 ? "Buy" : "Sell", f.price, f.qty, f.fee_e8,
                                          f.maker ? "maker" : "taker"));
            }
            return out;
        }, "start"_a = 0, "[(order_id, ts, side, price, qty, fee_e8, liquidity)] from index `start` (units; fee in 1e-8 quote)")
        .def("counters", [](const hean::PaperMatcher &mt) {
            nb::dict d, rc;
            for (const auto &kv : mt.reject_counts) rc[nb::int_(kv.first)] = kv.second;
            d["rejects_by_retcode"] = rc;
            d["post_only_cancels"] = mt.post_only_cancels;
            d["fok_cancels"] = mt.fok_cancels;
            d["rejected_trades"] = mt.rejected_trades;
            d["book"] = nb::dict();
            for (int i = 0; i < hean::BOOK_STATUS_COUNT; ++i) d["book"][kStatus[i]] = mt.book.counts()[i];
            return d;
        });
}
