// Paper matching engine for one instrument against a Bybit L2 book and trades.
//
// Orders: Market, Limit with timeInForce GTC / IOC / FOK / PostOnly, optional
// reduceOnly. Prices int64 in 10^-price_decimals, quantities int64 in
// 10^-qty_decimals, fees int64 in 1e-8 quote (half-even), maker/taker rates
// exact decimals. Validation follows Bybit v5 /v5/order/create (retCode,
// retMsg):
//   110072 "OrderLinkedID is duplicate"        a reused order id
//   10001  "Qty invalid"                       qty <= 0 after rounding down to qtyStep
//   10001  "The number of contracts exceeds minimum limit allowed"
//                                              (linear; spot: 170136 "Order quantity
//                                              exceeded lower limit") qty < minOrderQty
//   10001  "Order price is invalid"            a limit price <= 0
//   10001  "Market order cannot be post only"  Market + PostOnly
//   110094 "Order does not meet minimum order value" (linear; spot 170140 "Order
//          value exceeded lower limit")        qty * price < minNotionalValue; the
//          price is the limit price, or the best opposite price for a market order;
//          reduce-only orders are exempt
//   110017 "Reduce-only rule not satisfied"    reduceOnly with no position to reduce
//   10001  "Reduce-only is not supported for spot" (paper rule) spot + reduceOnly
// Accepted orders can still end Cancelled with Bybit's rejectReason:
//   PostOnly that would take liquidity -> "EC_PostOnlyWillTakeLiquidity" (nothing fills)
//   FOK that cannot fill completely     -> "EC_CancelForNoFullFill" (nothing fills)
//   IOC / Market remainder              -> "EC_NoImmediateQtyToFill" (partial fills kept)
// Rounding: quantities round down to qtyStep; limit prices round to the tick
// away from the market (buys down, sells up), so rounding never makes an order
// more aggressive.
//
// Fills: taker fills walk the book from the best level up to the limit price
// (and consume the paper-filled size from the local book until the exchange's
// next update of that level). A resting limit order has a queue position:
// queue_ahead = visible size at its price when it starts resting; trades at its
// price on the opposite aggressor side first reduce queue_ahead, the rest fills
// the order (maker); a trade through its price fills it up to the trade size;
// a book update that shrinks its level below queue_ahead lowers queue_ahead to
// the new size (cancellations are assumed to be ahead: optimistic about queue
// only when the data proves it); a book whose opposite best crosses the order's
// price fills the order at its price (maker) up to the crossing size.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "hean/book.hpp"
#include "hean/dec.hpp"

namespace hean {

enum OrderStatus : int { OS_NEW = 0, OS_PARTIAL = 1, OS_FILLED = 2, OS_CANCELLED = 3, OS_REJECTED = 4 };
enum OrderType : int { OT_MARKET = 0, OT_LIMIT = 1 };
enum TimeInForce : int { TIF_GTC = 0, TIF_IOC = 1, TIF_FOK = 2, TIF_POST_ONLY = 3 };

struct MOrder {
    std::int64_t id = 0, price = 0, qty = 0, filled = 0, queue_ahead = 0, ts = 0;
    int side = 0, type = 0, tif = 0, status = OS_NEW;
    bool reduce_only = false;
    std::string reason;  // rejectReason / cancel reason
};

struct MFill {
    std::int64_t order_id, ts, price, qty, fee_e8;
    int side;
    bool maker;
};

struct SubmitResult {
    int ret_code = 0;
    std::string ret_msg = "OK";
    int status = OS_NEW;
};

class PaperMatcher {
public:
    PaperMatcher(int price_decimals, int qty_decimals, std::int64_t tick, std::int64_t qty_step,
                 std::int64_t min_qty, Dec min_notional, Dec maker_fee, Dec taker_fee, bool spot);
    // live_ points into `orders`: a copy would point into the original.
    PaperMatcher(const PaperMatcher &) = delete;
    PaperMatcher &operator=(const PaperMatcher &) = delete;

    SubmitResult submit(std::int64_t id, int side, int type, int tif, std::int64_t qty, std::int64_t price,
                        bool reduce_only, std::int64_t ts);
    bool cancel(std::int64_t id);
    /// A book message (see OrderBook::apply); then resting orders are re-checked.
    int on_book(bool snapshot, const std::vector<std::pair<std::string, std::string>> &bids,
                const std::vector<std::pair<std::string, std::string>> &asks, std::int64_t u,
                std::int64_t seq, std::int64_t ts);
    /// Same with already-scaled levels (see OrderBook::apply_levels).
    int on_book_levels(bool snapshot, const std::vector<Level> &bids, const std::vector<Level> &asks,
                       std::int64_t u, std::int64_t seq, std::int64_t ts);
    /// A public trade; aggressor_side +1 Buy / -1 Sell. Returns false (and counts
    /// it) for a non-positive price or size or a timestamp older than the last.
    bool on_trade(std::int64_t ts, std::int64_t price, std::int64_t qty, int aggressor_side);

    OrderBook book;
    std::map<std::int64_t, MOrder> orders;
    std::vector<MFill> fills;
    std::int64_t position = 0;
    std::int64_t fees_e8 = 0;
    std::int64_t rejected_trades = 0;
    std::map<int, std::int64_t> reject_counts;  // retCode -> count (incl. post-only/FOK cancels as 0)
    std::int64_t post_only_cancels = 0, fok_cancels = 0;

private:
    void add_fill(MOrder &o, std::int64_t price, std::int64_t qty, bool maker, std::int64_t ts);
    void take(MOrder &o, std::int64_t ts);
    void recheck_resting(std::int64_t ts);
    SubmitResult reject(int code, const char *msg);
    int pd_, qd_;
    std::int64_t tick_, step_, min_qty_;
    Dec min_notional_, maker_fee_, taker_fee_;
    bool spot_;
    std::int64_t last_trade_ts_ = 0;
    // Orders that may still be live, by id (the same order as `orders`); entries
    // whose order has ended are erased lazily, so checks cost O(live orders).
    std::map<std::int64_t, MOrder *> live_;
    std::vector<MOrder *> cands_;  // scratch of on_trade
};

}  // namespace hean
