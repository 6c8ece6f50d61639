// Market replay: one call that runs a recorded multi-symbol stream of Bybit
// candles, public trades and L2 book snapshots/deltas through
//   indicators (book imbalance, trade-flow EMA, candle-close EMA)
//   -> the built-in book-imbalance strategy kernel
//   -> risk checks (order rate, position notional, hard drawdown stop)
//   -> PaperMatcher (one per symbol: book, queue positions, exact fees)
//   -> an exact cash ledger,
// producing fills, the equity after every event and counters.
//
// The stream is a flat "tape" (see hean.engine.market.encode_frames): per event
// kind, symbol index, timestamp (ms) and four int64 fields:
//   EV_CANDLE        x0..x3 = open, high, low, close (price units)
//   EV_TRADE         x0 = price, x1 = size (size units), x2 = aggressor +1 Buy / -1 Sell
//   EV_BOOK_SNAPSHOT x0 = u, x1 = seq, [x2, x3) = rows of the level table
//   EV_BOOK_DELTA    as the snapshot
//   EV_MALFORMED     a frame the encoder could not read (counted, nothing else)
// and a level table (side +1 bid / -1 ask, price, size). Numbers the encoder
// could not parse are -1, so the book and the matcher reject them (BAD /
// rejected trade) and count them, exactly as the string path does.
//
// The pure-Python pipeline hean.engine.market.replay_market_reference is the
// same algorithm over the raw JSON frames; tests hold the two fill-for-fill
// identical on the recorded Bybit files.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "hean/dec.hpp"
#include "hean/indicators.hpp"
#include "hean/matcher.hpp"

namespace hean {

enum MarketEventKind : int {
    EV_CANDLE = 0, EV_TRADE = 1, EV_BOOK_SNAPSHOT = 2, EV_BOOK_DELTA = 3, EV_MALFORMED = 4
};

/// Why an entry was not made at a decision point (counted per code).
enum MarketReason : int {
    MR_BOOK_NOT_READY = 0, MR_HARD_STOP, MR_PENDING, MR_NO_SIGNAL, MR_FLOW_DISAGREES, MR_TREND_DISAGREES,
    MR_COOLDOWN, MR_ORDER_RATE, MR_MAX_POSITION_NOTIONAL, MR_BELOW_MIN_ORDER, MR_COUNT
};
/// Why a fill happened.
enum MarketFillReason : int { MF_ENTRY = 0, MF_EXIT_SIGNAL = 1, MF_EXIT_TIME = 2, MF_HARD_STOP = 3 };

struct MarketSymbolSpec {
    int price_decimals = 2, size_decimals = 3;
    std::int64_t tick = 1, qty_step = 1, min_qty = 0;  // price / size units
    Dec min_notional, maker_fee, taker_fee;            // USDT; fractions
    bool spot = false;
};

struct MarketParams {
    std::int64_t imbalance_levels = 5;    // depth-weighted imbalance over the top N levels
    double entry_imbalance = 0.3;         // enter when |imbalance| > this
    double exit_imbalance = 0.1;          // exit when imbalance against the position < -this
    std::int64_t flow_period = 20;        // EMA of signed trade size (base coin)
    std::int64_t trend_period = 3;        // EMA of confirmed candle closes
    std::int64_t cooldown_ms = 1000;      // between orders of one symbol
    std::int64_t max_hold_ms = 60000;     // exit after this long in a position
    bool post_only = false;               // entries as PostOnly limits at the near touch
    std::int64_t order_ttl_ms = 2000;     // resting entry cancelled after this long
};

struct MarketRisk {
    i128 order_notional = 0;          // money units per entry
    i128 max_position_notional = 0;   // money units; 0 = no limit
    std::int64_t max_orders_per_minute = 60;
    std::int64_t hard_drawdown_bps = 0;  // from peak equity; 0 = off
};

struct MarketFill {
    std::int64_t ts, price, qty, fee_e8, order_id;
    std::int32_t sym;
    std::int8_t side, reason, maker;
};

class MarketEngine {
public:
    /// money_decimals >= max(price_decimals + size_decimals) and >= 8; capital in money units.
    MarketEngine(std::vector<MarketSymbolSpec> syms, int money_decimals, i128 capital, MarketParams p,
                 MarketRisk r);
    MarketEngine(const MarketEngine &) = delete;
    MarketEngine &operator=(const MarketEngine &) = delete;

    /// Run events [0, n) of the tape; equity_out[i] (may be null) gets the
    /// equity after event i (USDT, float64). Can be called again to continue.
    void run(const std::int8_t *kind, const std::int32_t *sym, const std::int64_t *ts, const std::int64_t *x0,
             const std::int64_t *x1, const std::int64_t *x2, const std::int64_t *x3, std::size_t n,
             const std::int8_t *lv_side, const std::int64_t *lv_price, const std::int64_t *lv_size,
             std::size_t n_levels, double *equity_out);

    i128 equity() const;
    i128 cash() const { return cash_; }
    i128 peak() const { return peak_; }
    double to_double_money(i128 v) const;
    const std::vector<MarketFill> &fills() const { return fills_; }
    const std::int64_t *reasons() const { return reasons_; }
    std::int64_t book_counts(int status) const;  // summed over symbols
    std::int64_t trades() const { return trades_; }
    std::int64_t bad_trades() const { return bad_trades_; }
    std::int64_t candles() const { return candles_; }
    std::int64_t rejected_candles() const { return rejected_candles_; }
    std::int64_t dropped_candles() const { return dropped_candles_; }
    std::int64_t malformed() const { return malformed_; }
    std::int64_t orders_sent() const { return orders_sent_; }
    std::int64_t order_rejects() const { return order_rejects_; }
    std::int64_t cancels() const { return cancels_; }
    std::int64_t events() const { return events_; }
    bool hard_stop() const { return hard_stop_; }
    std::int64_t position(int s) const { return sym_[s]->m.position; }
    int n_symbols() const { return static_cast<int>(sym_.size()); }
    const PaperMatcher &matcher(int s) const { return sym_[s]->m; }

private:
    struct Sym {
        MarketSymbolSpec spec;
        PaperMatcher m;
        Ema flow, trend;
        double p10 = 1, s10 = 1;   // 10^price_decimals, 10^size_decimals
        i128 mpq = 1;              // money units per (price unit * size unit)
        std::size_t seen = 0;      // matcher fills already in the ledger
        std::int64_t mark_bid = 0, mark_ask = 0, last_candle_ts = -1, last_order_ts = 0;
        bool ordered = false;
        std::int64_t entry_ts = 0;
        std::int64_t resting_id = 0, resting_ts = 0;  // a live PostOnly entry
        std::vector<Level> bids, asks;  // scratch for book events
        Sym(const MarketSymbolSpec &s, const MarketParams &p);
    };

    void absorb(int s);
    void decide(int s, std::int64_t ts);
    void submit(int s, std::int64_t ts, int side, int type, int tif, std::int64_t qty, std::int64_t price,
                bool reduce_only, int reason);
    double imbalance(const OrderBook &b, double s10) const;
    void check_hard_stop(std::int64_t ts);

    std::vector<std::unique_ptr<Sym>> sym_;
    int md_;
    double money_scale_f_;
    i128 money_per_fee_;
    MarketParams p_;
    MarketRisk r_;
    i128 cash_, peak_;
    bool hard_stop_ = false;
    std::deque<std::int64_t> order_times_;
    std::vector<std::int8_t> order_reason_;  // by order id
    std::vector<MarketFill> fills_;
    std::int64_t reasons_[MR_COUNT] = {};
    std::int64_t trades_ = 0, bad_trades_ = 0, candles_ = 0, rejected_candles_ = 0, dropped_candles_ = 0,
                 malformed_ = 0, orders_sent_ = 0, order_rejects_ = 0, cancels_ = 0, events_ = 0;
    std::int64_t order_seq_ = 0;
};

}  // namespace hean
