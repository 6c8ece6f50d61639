// L2 order book for Bybit v5 `orderbook.<depth>.<symbol>` snapshots and deltas,
// and a paper matching engine that trades against it.
//
// Prices are int64 in units of 10^-price_decimals, sizes int64 in units of
// 10^-size_decimals (both fixed per book); the exchange's decimal strings are
// parsed exactly (no binary floats). Rules (https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook):
//  * a snapshot replaces the book (including u == 1 after a service restart);
//  * a delta level with size 0 deletes the level, otherwise sets its size;
//  * `u` must be the previous u + 1: a larger u is a GAP (the delta is not
//    applied; every later delta is refused until the next snapshot, so the
//    caller re-subscribes/re-snapshots), a smaller or equal u is STALE;
//    `seq` (cross sequence) must not go backwards;
//  * a message with an unparsable, NaN/inf, negative or over-precise number,
//    or a zero-size level in a snapshot, is BAD and changes nothing;
//  * a message that would leave the book crossed (best bid >= best ask) is
//    CROSSED and is rolled back; the book then needs a snapshot.
// Every rejection is counted by kind.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "hean/dec.hpp"

namespace hean {

enum BookStatus : int {
    BOOK_OK = 0, BOOK_GAP = 1, BOOK_STALE = 2, BOOK_CROSSED = 3, BOOK_BAD = 4, BOOK_NO_SNAPSHOT = 5,
    BOOK_STATUS_COUNT = 6
};

/// Parse a non-negative decimal string ("1.9531", "6203", "0.001") exactly into
/// units of 10^-decimals. Returns false for anything else (sign, exponent, NaN,
/// inf, empty, more decimals than `decimals`, overflow).
bool parse_fixed(const char *s, std::size_t n, int decimals, std::int64_t *out);

using Level = std::pair<std::int64_t, std::int64_t>;  // (price, size)

struct SweepResult {
    std::int64_t qty = 0;    // base filled, size units
    i128 notional = 0;       // price * size units
    std::int64_t levels = 0;
    bool complete = false;   // the whole notional could be filled
    std::int64_t last_price = 0;
};

class OrderBook {
public:
    OrderBook(int price_decimals, int size_decimals);

    /// Apply a snapshot/delta given as decimal strings. Returns a BookStatus.
    int apply(bool snapshot, const std::vector<std::pair<std::string, std::string>> &bids,
              const std::vector<std::pair<std::string, std::string>> &asks, std::int64_t u,
              std::int64_t seq, std::int64_t ts);
    /// Same with already-scaled integers (size 0 deletes in a delta).
    int apply_levels(bool snapshot, const std::vector<Level> &bids, const std::vector<Level> &asks,
                     std::int64_t u, std::int64_t seq, std::int64_t ts);

    bool has_bid() const { return !bids_.empty(); }
    bool has_ask() const { return !asks_.empty(); }
    Level best_bid() const;  // (0, 0) if empty
    Level best_ask() const;
    bool valid() const { return has_snapshot_ && !needs_snapshot_; }
    bool needs_snapshot() const { return needs_snapshot_ || !has_snapshot_; }
    std::size_t depth_bids() const { return bids_.size(); }
    std::size_t depth_asks() const { return asks_.size(); }
    std::int64_t last_u() const { return last_u_; }
    std::int64_t last_seq() const { return last_seq_; }
    std::int64_t last_ts() const { return last_ts_; }
    const std::int64_t *counts() const { return counts_; }
    std::int64_t size_at(int side, std::int64_t price) const;  // side +1 bid, -1 ask

    /// Top `n` levels of one side (+1 bids best first, -1 asks best first).
    std::vector<Level> levels(int side, std::size_t n) const;
    /// Walk the opposite side for a taker of `side` (+1 buys asks) until
    /// `notional` (price*size units) is spent, or until `qty` (size units) if
    /// notional < 0; stops at `limit_price` if limit_price > 0.
    SweepResult sweep(int side, i128 notional, std::int64_t qty, std::int64_t limit_price) const;
    /// Consume `qty` at prices not worse than limit (used by the matcher's taker fills).
    void consume(int side, std::int64_t price, std::int64_t qty);

    int price_decimals() const { return pd_; }
    int size_decimals() const { return sd_; }

    std::map<std::int64_t, std::int64_t, std::greater<std::int64_t>> bids_;
    std::map<std::int64_t, std::int64_t> asks_;

private:
    bool crossed() const;
    int pd_, sd_;
    bool has_snapshot_ = false, needs_snapshot_ = false;
    std::int64_t last_u_ = 0, last_seq_ = -1, last_ts_ = 0;
    std::int64_t counts_[BOOK_STATUS_COUNT] = {};
    std::vector<std::pair<int, Level>> undo_;  // scratch of apply_levels (no allocation per delta)
};

}  // namespace hean
