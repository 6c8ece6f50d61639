// Market replay engine (see include/hean/market.hpp). Every step has a line-for-
// line counterpart in hean.engine.market.replay_market_reference; keep them in step.
#include "hean/market.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace hean {

namespace {
double p10d(int k) {
    double v = 1;
    for (int i = 0; i < k; ++i) v *= 10;
    return v;
}
}  // namespace

MarketEngine::Sym::Sym(const MarketSymbolSpec &s, const MarketParams &p)
    : spec(s),
      m(s.price_decimals, s.size_decimals, s.tick, s.qty_step, s.min_qty, s.min_notional, s.maker_fee, s.taker_fee,
        s.spot),
      flow(p.flow_period),
      trend(p.trend_period),
      p10(p10d(s.price_decimals)),
      s10(p10d(s.size_decimals)) {}

MarketEngine::MarketEngine(std::vector<MarketSymbolSpec> syms, int money_decimals, i128 capital, MarketParams p,
                           MarketRisk r)
    : md_(money_decimals), money_scale_f_(p10d(money_decimals)), p_(p), r_(r), cash_(capital), peak_(capital) {
    if (syms.empty()) throw std::invalid_argument("at least one symbol is needed");
    if (money_decimals < 8 || money_decimals > 30)
        throw std::invalid_argument("money_decimals must be in [8, 30], got " + std::to_string(money_decimals));
    if (p.imbalance_levels < 1 || p.imbalance_levels > 1000)
        throw std::invalid_argument("imbalance_levels must be in [1, 1000]");
    if (p.cooldown_ms < 0 || p.max_hold_ms < 0 || p.order_ttl_ms < 0)
        throw std::invalid_argument("cooldown_ms, max_hold_ms and order_ttl_ms must be >= 0");
    if (r.order_notional <= 0) throw std::invalid_argument("order_notional must be > 0");
    if (r.max_position_notional < 0 || r.max_orders_per_minute < 0 || r.hard_drawdown_bps < 0)
        throw std::invalid_argument("max_position_notional, max_orders_per_minute and hard_drawdown_bps must be >= 0");
    money_per_fee_ = pow10_128(md_ - 8);
    for (const auto &s : syms) {
        const int pq = s.price_decimals + s.size_decimals;
        if (pq > md_)
            throw std::invalid_argument("money_decimals must be >= price_decimals + size_decimals of every symbol");
        auto st = std::make_unique<Sym>(s, p);
        st->mpq = pow10_128(md_ - pq);
        sym_.push_back(std::move(st));
    }
    order_reason_.push_back(0);  // ids start at 1
}

double MarketEngine::to_double_money(i128 v) const {
    if (v > -(i128{1} << 53) && v < (i128{1} << 53))
        return static_cast<double>(static_cast<std::int64_t>(v)) / money_scale_f_;
    return dec_to_double(Dec{v, -md_});
}

i128 MarketEngine::equity() const {
    i128 eq = cash_;
    for (const auto &sp : sym_) {
        const std::int64_t pos = sp->m.position;
        if (pos != 0) eq += static_cast<i128>(pos) * (pos > 0 ? sp->mark_bid : sp->mark_ask) * sp->mpq;
    }
    return eq;
}

std::int64_t MarketEngine::book_counts(int status) const {
    std::int64_t n = 0;
    for (const auto &sp : sym_) n += sp->m.book.counts()[status];
    return n;
}

// Depth-weighted imbalance of the top N levels, the same operations in the same
// order as hean.engine.book.ReferenceBook.imbalance.
double MarketEngine::imbalance(const OrderBook &b, double s10) const {
    const std::size_t n = static_cast<std::size_t>(p_.imbalance_levels);
    auto bi = b.bids_.begin();
    auto ai = b.asks_.begin();
    double num = 0, den = 0;
    for (std::size_t k = 0; k < n; ++k) {
        const double w = 1.0 / static_cast<double>(k + 1);
        double qb = 0.0, qa = 0.0;
        if (bi != b.bids_.end()) qb = static_cast<double>((bi++)->second) / s10;
        if (ai != b.asks_.end()) qa = static_cast<double>((ai++)->second) / s10;
        num += w * (qb - qa);
        den += w * (qb + qa);
    }
    return den > 0 ? num / den : kNaN;
}

void MarketEngine::absorb(int s) {
    Sym &st = *sym_[s];
    const auto &mf = st.m.fills;
    for (std::size_t k = st.seen; k < mf.size(); ++k) {
        const MFill &f = mf[k];
        const i128 notional = static_cast<i128>(f.price) * f.qty * st.mpq;
        cash_ += f.side > 0 ? -notional : notional;
        cash_ -= static_cast<i128>(f.fee_e8) * money_per_fee_;
        const std::int8_t reason =
            f.order_id > 0 && static_cast<std::size_t>(f.order_id) < order_reason_.size() ? order_reason_[f.order_id] : 0;
        fills_.push_back(MarketFill{f.ts, f.price, f.qty, f.fee_e8, f.order_id, s, static_cast<std::int8_t>(f.side),
                                    reason, static_cast<std::int8_t>(f.maker ? 1 : 0)});
    }
    st.seen = mf.size();
}

void MarketEngine::submit(int s, std::int64_t ts, int side, int type, int tif, std::int64_t qty,
                          std::int64_t price, bool reduce_only, int reason) {
    Sym &st = *sym_[s];
    const std::int64_t id = ++order_seq_;
    order_reason_.push_back(static_cast<std::int8_t>(reason));
    ++orders_sent_;
    order_times_.push_back(ts);
    st.ordered = true;
    st.last_order_ts = ts;
    const SubmitResult res = st.m.submit(id, side, type, tif, qty, price, reduce_only, ts);
    if (res.ret_code != 0) ++order_rejects_;
    if (tif == TIF_POST_ONLY && (res.status == OS_NEW || res.status == OS_PARTIAL)) {
        st.resting_id = id;
        st.resting_ts = ts;
    }
    absorb(s);
}

void MarketEngine::decide(int s, std::int64_t ts) {
    if (hard_stop_) {
        ++reasons_[MR_HARD_STOP];
        return;
    }
    Sym &st = *sym_[s];
    const OrderBook &book = st.m.book;
    if (!book.valid() || !book.has_bid() || !book.has_ask()) {
        ++reasons_[MR_BOOK_NOT_READY];
        return;
    }
    if (st.resting_id) {
        const MOrder &o = st.m.orders.find(st.resting_id)->second;
        if (o.status == OS_NEW || o.status == OS_PARTIAL) {
            if (ts - st.resting_ts >= p_.order_ttl_ms) {
                st.m.cancel(st.resting_id);
                ++cancels_;
                st.resting_id = 0;
            }
        } else {
            st.resting_id = 0;
        }
    }
    const double imb = imbalance(book, st.s10);
    const std::int64_t pos = st.m.position;
    if (pos != 0) {
        const int dir = pos > 0 ? 1 : -1;
        const std::int64_t size = pos > 0 ? pos : -pos;
        if (imb * dir < -p_.exit_imbalance)
            submit(s, ts, -dir, OT_MARKET, TIF_IOC, size, 0, true, MF_EXIT_SIGNAL);
        else if (ts - st.entry_ts >= p_.max_hold_ms)
            submit(s, ts, -dir, OT_MARKET, TIF_IOC, size, 0, true, MF_EXIT_TIME);
        return;
    }
    if (st.resting_id) {
        ++reasons_[MR_PENDING];
        return;
    }
    const int signal = imb > p_.entry_imbalance ? 1 : imb < -p_.entry_imbalance ? -1 : 0;
    if (signal == 0) {
        ++reasons_[MR_NO_SIGNAL];
        return;
    }
    if (st.flow.ready() && st.flow.value() * signal <= 0) {
        ++reasons_[MR_FLOW_DISAGREES];
        return;
    }
    const std::int64_t bb = book.best_bid().first, ba = book.best_ask().first;
    if (st.trend.ready()) {
        const double mid = static_cast<double>(bb + ba) / (2.0 * st.p10);
        if ((mid - st.trend.value()) * signal < 0) {
            ++reasons_[MR_TREND_DISAGREES];
            return;
        }
    }
    if (st.ordered && ts - st.last_order_ts < p_.cooldown_ms) {
        ++reasons_[MR_COOLDOWN];
        return;
    }
    while (!order_times_.empty() && order_times_.front() <= ts - 60000) order_times_.pop_front();
    if (static_cast<std::int64_t>(order_times_.size()) >= r_.max_orders_per_minute) {
        ++reasons_[MR_ORDER_RATE];
        return;
    }
    const std::int64_t ref = p_.post_only ? (signal > 0 ? bb : ba) : (signal > 0 ? ba : bb);
    const i128 unit = static_cast<i128>(ref) * st.mpq;  // money per size unit
    const std::int64_t step = st.spec.qty_step;
    std::int64_t qty = static_cast<std::int64_t>(r_.order_notional / unit / step * step);
    if (r_.max_position_notional > 0 && static_cast<i128>(qty) * unit > r_.max_position_notional) {
        qty = static_cast<std::int64_t>(r_.max_position_notional / unit / step * step);
        if (qty <= 0) {
            ++reasons_[MR_MAX_POSITION_NOTIONAL];
            return;
        }
    }
    if (qty <= 0 || qty < st.spec.min_qty) {
        ++reasons_[MR_BELOW_MIN_ORDER];
        return;
    }
    st.entry_ts = ts;
    if (p_.post_only)
        submit(s, ts, signal, OT_LIMIT, TIF_POST_ONLY, qty, ref, false, MF_ENTRY);
    else
        submit(s, ts, signal, OT_MARKET, TIF_IOC, qty, 0, false, MF_ENTRY);
}

void MarketEngine::check_hard_stop(std::int64_t ts) {
    const i128 eq = equity();
    if (eq > peak_) peak_ = eq;
    if (hard_stop_ || r_.hard_drawdown_bps <= 0) return;
    if ((peak_ - eq) * 10000 < static_cast<i128>(r_.hard_drawdown_bps) * peak_) return;
    hard_stop_ = true;
    for (int s = 0; s < n_symbols(); ++s) {
        Sym &st = *sym_[s];
        if (st.resting_id) {
            if (st.m.cancel(st.resting_id)) ++cancels_;
            st.resting_id = 0;
        }
        const std::int64_t pos = st.m.position;
        if (pos != 0) submit(s, ts, pos > 0 ? -1 : 1, OT_MARKET, TIF_IOC, pos > 0 ? pos : -pos, 0, true, MF_HARD_STOP);
    }
}

void MarketEngine::run(const std::int8_t *kind, const std::int32_t *sym, const std::int64_t *ts,
                       const std::int64_t *x0, const std::int64_t *x1, const std::int64_t *x2,
                       const std::int64_t *x3, std::size_t n, const std::int8_t *lv_side,
                       const std::int64_t *lv_price, const std::int64_t *lv_size, std::size_t n_levels,
                       double *equity_out) {
    const int ns = n_symbols();
    for (std::size_t i = 0; i < n; ++i) {
        ++events_;
        const int k = kind[i], s = sym[i];
        if (s < 0 || s >= ns || k == EV_MALFORMED || k < 0 || k > EV_MALFORMED) {
            ++malformed_;
        } else {
            Sym &st = *sym_[s];
            const std::int64_t t = ts[i];
            if (k == EV_TRADE) {
                if (st.m.on_trade(t, x0[i], x1[i], static_cast<int>(x2[i]))) {
                    ++trades_;
                    st.flow.update(static_cast<double>(x2[i]) * (static_cast<double>(x1[i]) / st.s10));
                    absorb(s);
                } else {
                    ++bad_trades_;
                }
            } else if (k == EV_CANDLE) {
                const std::int64_t o = x0[i], h = x1[i], l = x2[i], c = x3[i];
                if (o <= 0 || h <= 0 || l <= 0 || c <= 0 || l > h || o < l || o > h || c < l || c > h) {
                    ++rejected_candles_;
                } else if (t <= st.last_candle_ts) {
                    ++dropped_candles_;
                } else {
                    st.last_candle_ts = t;
                    ++candles_;
                    st.trend.update(static_cast<double>(c) / st.p10);
                }
            } else {  // book
                const std::int64_t a = x2[i], b = x3[i];
                if (a < 0 || b < a || static_cast<std::size_t>(b) > n_levels) {
                    ++malformed_;
                } else {
                    st.bids.clear();
                    st.asks.clear();
                    for (std::int64_t j = a; j < b; ++j)
                        (lv_side[j] > 0 ? st.bids : st.asks).emplace_back(lv_price[j], lv_size[j]);
                    const int status = st.m.on_book_levels(k == EV_BOOK_SNAPSHOT, st.bids, st.asks, x0[i], x1[i], t);
                    absorb(s);
                    if (status == BOOK_OK) {
                        if (st.m.book.has_bid() && st.m.book.has_ask()) {
                            st.mark_bid = st.m.book.best_bid().first;
                            st.mark_ask = st.m.book.best_ask().first;
                        }
                        decide(s, t);
                    }
                }
            }
            check_hard_stop(t);
        }
        if (equity_out) equity_out[i] = to_double_money(equity());
    }
}

}  // namespace hean
