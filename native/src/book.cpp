// L2 order book (see include/hean/book.hpp).
#include "hean/book.hpp"

#include <limits>
#include <stdexcept>

namespace hean {

bool parse_fixed(const char *s, std::size_t n, int decimals, std::int64_t *out) {
    if (n == 0 || n > 40) return false;
    std::int64_t v = 0;
    int frac = -1;  // digits after the point, -1 = no point yet
    bool any = false;
    for (std::size_t i = 0; i < n; ++i) {
        const char c = s[i];
        if (c >= '0' && c <= '9') {
            if (frac >= 0) {
                if (frac == decimals) {  // extra digits must be zeros
                    if (c != '0') return false;
                    any = true;
                    continue;
                }
                ++frac;
            }
            if (v > (std::numeric_limits<std::int64_t>::max() - 9) / 10) return false;
            v = v * 10 + (c - '0');
            any = true;
        } else if (c == '.' && frac < 0) {
            frac = 0;
        } else {
            return false;
        }
    }
    if (!any) return false;
    for (int k = frac < 0 ? 0 : frac; k < decimals; ++k) {
        if (v > std::numeric_limits<std::int64_t>::max() / 10) return false;
        v *= 10;
    }
    *out = v;
    return true;
}

OrderBook::OrderBook(int price_decimals, int size_decimals) : pd_(price_decimals), sd_(size_decimals) {
    if (pd_ < 0 || pd_ > 12 || sd_ < 0 || sd_ > 12)
        throw std::invalid_argument("price_decimals and size_decimals must be in [0, 12]");
}

Level OrderBook::best_bid() const { return bids_.empty() ? Level{0, 0} : Level{bids_.begin()->first, bids_.begin()->second}; }
Level OrderBook::best_ask() const { return asks_.empty() ? Level{0, 0} : Level{asks_.begin()->first, asks_.begin()->second}; }

bool OrderBook::crossed() const {
    return !bids_.empty() && !asks_.empty() && bids_.begin()->first >= asks_.begin()->first;
}

std::int64_t OrderBook::size_at(int side, std::int64_t price) const {
    if (side > 0) {
        auto it = bids_.find(price);
        return it == bids_.end() ? 0 : it->second;
    }
    auto it = asks_.find(price);
    return it == asks_.end() ? 0 : it->second;
}

int OrderBook::apply(bool snapshot, const std::vector<std::pair<std::string, std::string>> &bids,
                     const std::vector<std::pair<std::string, std::string>> &asks, std::int64_t u,
                     std::int64_t seq, std::int64_t ts) {
    std::vector<Level> b, a;
    b.reserve(bids.size());
    a.reserve(asks.size());
    for (int side = 0; side < 2; ++side) {
        const auto &src = side == 0 ? bids : asks;
        auto &dst = side == 0 ? b : a;
        for (const auto &lv : src) {
            std::int64_t p, q;
            if (!parse_fixed(lv.first.data(), lv.first.size(), pd_, &p) ||
                !parse_fixed(lv.second.data(), lv.second.size(), sd_, &q) || p <= 0) {
                ++counts_[BOOK_BAD];
                return BOOK_BAD;
            }
            dst.emplace_back(p, q);
        }
    }
    return apply_levels(snapshot, b, a, u, seq, ts);
}

int OrderBook::apply_levels(bool snapshot, const std::vector<Level> &bids, const std::vector<Level> &asks,
                            std::int64_t u, std::int64_t seq, std::int64_t ts) {
    for (const auto *side : {&bids, &asks})
        for (const Level &lv : *side)
            if (lv.first <= 0 || lv.second < 0 || (snapshot && lv.second == 0)) {
                ++counts_[BOOK_BAD];
                return BOOK_BAD;
            }
    if (snapshot) {
        decltype(bids_) nb;
        decltype(asks_) na;
        for (const Level &lv : bids) nb[lv.first] = lv.second;
        for (const Level &lv : asks) na[lv.first] = lv.second;
        if (!nb.empty() && !na.empty() && nb.begin()->first >= na.begin()->first) {
            ++counts_[BOOK_CROSSED];
            needs_snapshot_ = true;
            return BOOK_CROSSED;
        }
        bids_.swap(nb);
        asks_.swap(na);
        has_snapshot_ = true;
        needs_snapshot_ = false;
        last_u_ = u;
        last_seq_ = seq;
        last_ts_ = ts;
        ++counts_[BOOK_OK];
        return BOOK_OK;
    }
    if (!has_snapshot_ || needs_snapshot_) {
        ++counts_[BOOK_NO_SNAPSHOT];
        return BOOK_NO_SNAPSHOT;
    }
    if (u <= last_u_ || seq < last_seq_) {
        ++counts_[BOOK_STALE];
        return BOOK_STALE;
    }
    if (u != last_u_ + 1) {
        ++counts_[BOOK_GAP];
        needs_snapshot_ = true;
        return BOOK_GAP;
    }
    // apply with an undo log so that a crossing delta can be rolled back
    std::vector<std::pair<int, Level>> &undo = undo_;  // (side, (price, old size or 0)); reused
    undo.clear();
    auto set = [&](auto &m, int side, const Level &lv) {
        auto it = m.find(lv.first);
        undo.push_back({side, {lv.first, it == m.end() ? 0 : it->second}});
        if (lv.second == 0) {
            if (it != m.end()) m.erase(it);
        } else if (it != m.end()) {
            it->second = lv.second;
        } else {
            m.emplace(lv.first, lv.second);
        }
    };
    for (const Level &lv : bids) set(bids_, 1, lv);
    for (const Level &lv : asks) set(asks_, -1, lv);
    if (crossed()) {
        for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
            const Level &lv = it->second;
            if (it->first > 0) {
                if (lv.second == 0) bids_.erase(lv.first); else bids_[lv.first] = lv.second;
            } else {
                if (lv.second == 0) asks_.erase(lv.first); else asks_[lv.first] = lv.second;
            }
        }
        ++counts_[BOOK_CROSSED];
        needs_snapshot_ = true;
        return BOOK_CROSSED;
    }
    last_u_ = u;
    last_seq_ = seq;
    last_ts_ = ts;
    ++counts_[BOOK_OK];
    return BOOK_OK;
}

std::vector<Level> OrderBook::levels(int side, std::size_t n) const {
    std::vector<Level> out;
    if (side > 0) {
        for (auto it = bids_.begin(); it != bids_.end() && out.size() < n; ++it) out.push_back(*it);
    } else {
        for (auto it = asks_.begin(); it != asks_.end() && out.size() < n; ++it) out.push_back(*it);
    }
    return out;
}

SweepResult OrderBook::sweep(int side, i128 notional, std::int64_t qty, std::int64_t limit_price) const {
    SweepResult r;
    auto walk = [&](auto &m, auto worse) {
        for (auto it = m.begin(); it != m.end(); ++it) {
            const std::int64_t px = it->first;
            if (limit_price > 0 && worse(px, limit_price)) break;
            std::int64_t take = it->second;
            if (notional >= 0) {
                const i128 left = notional - r.notional;
                const i128 full = static_cast<i128>(take) * px;
                if (full >= left) {
                    take = static_cast<std::int64_t>(left / px);  // whole size units only
                    r.qty += take;
                    r.notional += static_cast<i128>(take) * px;
                    r.levels += take > 0;
                    r.last_price = px;
                    r.complete = true;
                    return;
                }
            } else if (r.qty + take >= qty) {
                take = qty - r.qty;
                r.qty += take;
                r.notional += static_cast<i128>(take) * px;
                ++r.levels;
                r.last_price = px;
                r.complete = true;
                return;
            }
            r.qty += take;
            r.notional += static_cast<i128>(take) * px;
            ++r.levels;
            r.last_price = px;
        }
    };
    if (side > 0) walk(asks_, [](std::int64_t px, std::int64_t lim) { return px > lim; });
    else walk(bids_, [](std::int64_t px, std::int64_t lim) { return px < lim; });
    return r;
}

void OrderBook::consume(int side, std::int64_t price, std::int64_t qty) {
    if (side > 0) {
        auto it = asks_.find(price);
        if (it == asks_.end()) return;
        it->second -= qty;
        if (it->second <= 0) asks_.erase(it);
    } else {
        auto it = bids_.find(price);
        if (it == bids_.end()) return;
        it->second -= qty;
        if (it->second <= 0) bids_.erase(it);
    }
}

}  // namespace hean
