// Paper matching engine (see include/hean/matcher.hpp).
#include "hean/matcher.hpp"
#include "hean/fill.hpp"

#include <algorithm>
#include <stdexcept>

namespace hean {

PaperMatcher::PaperMatcher(int price_decimals, int qty_decimals, std::int64_t tick, std::int64_t qty_step,
                           std::int64_t min_qty, Dec min_notional, Dec maker_fee, Dec taker_fee, bool spot)
    : book(price_decimals, qty_decimals),
      pd_(price_decimals),
      qd_(qty_decimals),
      tick_(tick),
      step_(qty_step),
      min_qty_(min_qty),
      min_notional_(min_notional),
      maker_fee_(maker_fee),
      taker_fee_(taker_fee),
      spot_(spot) {
    if (tick <= 0 || qty_step <= 0 || min_qty < 0) throw std::invalid_argument("tick and qty_step must be > 0");
}

SubmitResult PaperMatcher::reject(int code, const char *msg) {
    ++reject_counts[code];
    SubmitResult r;
    r.ret_code = code;
    r.ret_msg = msg;
    r.status = OS_REJECTED;
    return r;
}

void PaperMatcher::add_fill(MOrder &o, std::int64_t price, std::int64_t qty, bool maker, std::int64_t ts) {
    if (qty <= 0) return;
    // the fee rule of the shared paper-fill model (hean/fill.hpp): quantized half-even to 1e-8
    const std::int64_t fee_e8 = fill::fee_e8(qty, price, pd_ + qd_, maker ? maker_fee_ : taker_fee_);
    fills.push_back(MFill{o.id, ts, price, qty, fee_e8, o.side, maker});
    fees_e8 += fee_e8;
    position += o.side > 0 ? qty : -qty;
    o.filled += qty;
    o.status = o.filled == o.qty ? OS_FILLED : OS_PARTIAL;
}

// Take liquidity from the book up to the order's limit (market: no limit).
void PaperMatcher::take(MOrder &o, std::int64_t ts) {
    const std::int64_t limit = o.type == OT_MARKET ? 0 : o.price;
    while (o.filled < o.qty) {
        const Level best = o.side > 0 ? book.best_ask() : book.best_bid();
        if (best.second <= 0) break;
        if (limit > 0 && (o.side > 0 ? best.first > limit : best.first < limit)) break;
        const std::int64_t q = std::min(best.second, o.qty - o.filled);
        add_fill(o, best.first, q, false, ts);
        book.consume(o.side, best.first, q);
    }
}

SubmitResult PaperMatcher::submit(std::int64_t id, int side, int type, int tif, std::int64_t qty,
                                  std::int64_t price, bool reduce_only, std::int64_t ts) {
    if (orders.count(id)) return reject(110072, "OrderLinkedID is duplicate");
    if ((side != 1 && side != -1) || (type != OT_MARKET && type != OT_LIMIT) || tif < TIF_GTC || tif > TIF_POST_ONLY)
        return reject(10001, "params error: side, orderType or timeInForce invalid");
    qty = qty > 0 ? qty / step_ * step_ : 0;
    if (qty <= 0) return reject(10001, "Qty invalid");
    if (qty < min_qty_)
        return spot_ ? reject(170136, "Order quantity exceeded lower limit.")
                     : reject(10001, "The number of contracts exceeds minimum limit allowed");
    if (type == OT_MARKET && tif == TIF_POST_ONLY) return reject(10001, "Market order cannot be post only");
    if (type == OT_LIMIT) {
        if (price <= 0) return reject(10001, "Order price is invalid");
        price = side > 0 ? price / tick_ * tick_ : (price + tick_ - 1) / tick_ * tick_;
        if (price <= 0) return reject(10001, "Order price is invalid");
    } else {
        price = 0;
    }
    if (reduce_only) {
        if (spot_) return reject(10001, "Reduce-only is not supported for spot");
        if (position == 0 || (position > 0) == (side > 0)) return reject(110017, "Reduce-only rule not satisfied");
        qty = std::min(qty, position > 0 ? position : -position);
    } else {
        const Level opp = side > 0 ? book.best_ask() : book.best_bid();
        const std::int64_t ref = type == OT_LIMIT ? price : opp.first;
        if (type == OT_MARKET && ref <= 0) return reject(10001, "No liquidity for a market order");
        const Dec notional{static_cast<i128>(qty) * ref, -(pd_ + qd_)};
        if (dec_cmp(notional, min_notional_) < 0)
            return spot_ ? reject(170140, "Order value exceeded lower limit.")
                         : reject(110094, "Order does not meet minimum order value");
    }
    MOrder o;
    o.id = id;
    o.side = side;
    o.type = type;
    o.tif = tif;
    o.qty = qty;
    o.price = price;
    o.reduce_only = reduce_only;
    o.ts = ts;
    SubmitResult res;
    const Level opp = side > 0 ? book.best_ask() : book.best_bid();
    const bool crosses = opp.second > 0 && (type == OT_MARKET || (side > 0 ? opp.first <= price : opp.first >= price));
    if (tif == TIF_POST_ONLY && crosses) {
        o.status = OS_CANCELLED;
        o.reason = "EC_PostOnlyWillTakeLiquidity";
        ++post_only_cancels;
    } else if (tif == TIF_FOK && book.sweep(side, -1, qty, type == OT_LIMIT ? price : 0).qty < qty) {
        o.status = OS_CANCELLED;
        o.reason = "EC_CancelForNoFullFill";
        ++fok_cancels;
    } else {
        take(o, ts);
        if (o.filled < o.qty) {
            if (type == OT_MARKET || tif == TIF_IOC || tif == TIF_FOK) {
                o.status = OS_CANCELLED;  // partial fills are kept
                o.reason = "EC_NoImmediateQtyToFill";
            } else {
                o.queue_ahead = book.size_at(side, price);
            }
        }
    }
    res.status = o.status;
    auto ins = orders.emplace(id, o).first;
    if (o.status == OS_NEW || o.status == OS_PARTIAL) live_.emplace(id, &ins->second);
    return res;
}

bool PaperMatcher::cancel(std::int64_t id) {
    auto it = orders.find(id);
    if (it == orders.end()) return false;
    MOrder &o = it->second;
    if (o.status != OS_NEW && o.status != OS_PARTIAL) return false;
    o.status = OS_CANCELLED;
    o.reason = "EC_PerCancelRequest";
    return true;
}

void PaperMatcher::recheck_resting(std::int64_t ts) {
    for (auto it = live_.begin(); it != live_.end();) {
        MOrder &o = *it->second;
        if (o.status != OS_NEW && o.status != OS_PARTIAL) {
            it = live_.erase(it);
            continue;
        }
        ++it;
        // queue shrinks when the level shrinks below it
        const std::int64_t lvl = book.size_at(o.side, o.price);
        if (lvl < o.queue_ahead) o.queue_ahead = lvl;
        // the opposite side crossed the order's price: the market traded through it
        const Level opp = o.side > 0 ? book.best_ask() : book.best_bid();
        if (opp.second > 0 && (o.side > 0 ? opp.first <= o.price : opp.first >= o.price)) {
            const SweepResult s = book.sweep(o.side, -1, o.qty - o.filled, o.price);
            std::int64_t q = s.qty;
            if (o.reduce_only) q = std::min(q, position > 0 ? position : -position);
            if (q > 0) add_fill(o, o.price, q, true, ts);
            if (o.reduce_only && o.status != OS_FILLED && position == 0) {
                o.status = OS_CANCELLED;
                o.reason = "EC_ReduceOnlyNoPosition";
            }
        }
    }
}

int PaperMatcher::on_book(bool snapshot, const std::vector<std::pair<std::string, std::string>> &bids,
                          const std::vector<std::pair<std::string, std::string>> &asks, std::int64_t u,
                          std::int64_t seq, std::int64_t ts) {
    const int st = book.apply(snapshot, bids, asks, u, seq, ts);
    if (st == BOOK_OK && !live_.empty()) recheck_resting(ts);
    return st;
}

int PaperMatcher::on_book_levels(bool snapshot, const std::vector<Level> &bids, const std::vector<Level> &asks,
                                 std::int64_t u, std::int64_t seq, std::int64_t ts) {
    const int st = book.apply_levels(snapshot, bids, asks, u, seq, ts);
    if (st == BOOK_OK && !live_.empty()) recheck_resting(ts);
    return st;
}

bool PaperMatcher::on_trade(std::int64_t ts, std::int64_t price, std::int64_t qty, int aggressor) {
    if (price <= 0 || qty <= 0 || (aggressor != 1 && aggressor != -1) || ts < last_trade_ts_) {
        ++rejected_trades;
        return false;
    }
    last_trade_ts_ = ts;
    std::int64_t left = qty;
    // resting orders on the passive side, best price first, then time (id order)
    if (live_.empty()) return true;
    std::vector<MOrder *> &cands = cands_;
    cands.clear();
    for (auto it = live_.begin(); it != live_.end();) {
        MOrder &o = *it->second;
        if (o.status != OS_NEW && o.status != OS_PARTIAL) {
            it = live_.erase(it);
            continue;
        }
        ++it;
        if (o.side == -aggressor && (o.side > 0 ? price <= o.price : price >= o.price)) cands.push_back(&o);
    }
    std::stable_sort(cands.begin(), cands.end(), [](const MOrder *a, const MOrder *b) {
        return a->side > 0 ? a->price > b->price : a->price < b->price;
    });
    for (MOrder *o : cands) {
        if (left <= 0) break;
        if (price == o->price) {  // at our level: the queue ahead trades first
            const std::int64_t q = std::min(o->queue_ahead, left);
            o->queue_ahead -= q;
            left -= q;
        }
        if (left <= 0) break;
        std::int64_t q = std::min(left, o->qty - o->filled);
        if (o->reduce_only) q = std::min(q, position > 0 ? position : -position);
        if (q > 0) {
            add_fill(*o, o->price, q, true, ts);
            left -= q;
        }
        if (o->reduce_only && o->status != OS_FILLED && position == 0) {
            o->status = OS_CANCELLED;
            o->reason = "EC_ReduceOnlyNoPosition";
        }
    }
    return true;
}

}  // namespace hean
