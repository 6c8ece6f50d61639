// The paper-fill model: ONE implementation of how a paper order fills, shared
// by the replay loop (src/engine.cpp, PaperEngine) and the live worker's paper
// trading (worker/engine.py Engine._fill / _execute_at / _check_exits, through
// the nanobind functions `hean._native.fill_*` and the Decimal wrappers in
// hean.engine.fill). Replay and live paper trading cannot drift apart because
// neither has its own copy of these rules.
//
// Units: prices and tick sizes are int64 in units of 10^-pd (the caller picks pd;
// the rounding functions are independent of it except `protective_price`,
// which adds a decimal distance), quantities int64 in units of 10^-qd, fees
// int64 in 1e-8 USDT. Decimal parameters (slippage in basis points, fee
// rates as fractions of notional, stop/target distances in USDT) are `Dec`.
//
// Semantics: each function returns exactly what the worker's former Python
// Decimal code returned in Python's default decimal context (28 significant
// digits, ROUND_HALF_EVEN):
//   taker price  Instrument.round_price(ref * (1 +/- bps * 0.0001), "up"/"down")
//                = ceil/floor(round28(round28(ref * factor) / tick)) * tick
//   fee          (qty * price * rate).quantize(Decimal("0.00000001"))  (half-even)
//   stop/target  Instrument.round_price(price -/+ distance, "down"/"up")
// Fast path: plain 128-bit integer arithmetic with exact floor/ceil division.
// It equals the 28-digit Decimal result whenever every intermediate numerator
// is below 10^27 in magnitude: a non-integer quotient N/D is then at least 1/D
// from an integer while 28-digit rounding moves it by at most
// 0.5 * 10^(k-28) < 1/(2D) (k = integer digits of N/D, 10^(k-1) * D <= |N|
// < 10^27), so floor/ceil of the rounded and the exact quotient agree, and the
// products/sums themselves are exact (<= 27 digits). Outside that domain the
// functions compute with `Dec`, which reproduces Python's decimal module
// operation by operation, so the result is the same for every input.
// Errors: std::invalid_argument for a non-positive tick, a result that does not
// fit int64 (fill price, stop/target, fee), std::overflow_error from `Dec`
// beyond 38 digits.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "hean/dec.hpp"

namespace hean {
namespace fill {

/// Fee rates of Bybit's non-VIP tier as fractions of notional
/// (https://www.bybit.com/en/help-center/article/Trading-Fee-Structure); the
/// worker's FEES table. Paper market orders pay taker, resting limits maker.
inline constexpr Dec kLinearTaker{55, -5};  // 0.055 %
inline constexpr Dec kLinearMaker{2, -4};   // 0.02 %
inline constexpr Dec kSpotFee{1, -3};       // 0.1 % (taker and maker)

namespace detail {
inline constexpr i128 kExact = static_cast<i128>(1000000000000000000LL) * 1000000000;  // 10^27

inline i128 p10(int k) {  // 10^k, 0 <= k <= 38
    i128 r = 1;
    for (int i = 0; i < k; ++i) r *= 10;
    return r;
}
inline i128 abs128(i128 v) { return v < 0 ? -v : v; }
inline i128 floor_div(i128 n, i128 d) {  // d > 0
    i128 q = n / d;
    if ((n % d != 0) && (n < 0)) --q;
    return q;
}
inline i128 ceil_div(i128 n, i128 d) {  // d > 0
    i128 q = n / d;
    if ((n % d != 0) && (n > 0)) ++q;
    return q;
}
[[noreturn]] inline void too_big(const char *what) {
    throw std::invalid_argument(std::string(what) + " does not fit a 64-bit integer at this scale");
}
inline std::int64_t to_i64(i128 v, const char *what) {
    if (v > INT64_MAX || v < INT64_MIN) too_big(what);
    return static_cast<std::int64_t>(v);
}
// n * tick as int64 (n from a Dec floor/ceil: any i128)
inline std::int64_t times_tick(i128 n, std::int64_t tick, const char *what) {
    i128 r;
    if (n > INT64_MAX || n < INT64_MIN || __builtin_mul_overflow(n, static_cast<i128>(tick), &r)) too_big(what);
    return to_i64(r, what);
}
// the Dec fallback's operands exceed 128-bit coefficients: refuse, naming the field
[[noreturn]] inline void out_of_range(const char *what) {
    throw std::invalid_argument(std::string(what) +
                                ": operands outside the exact decimal range (coefficients of at most 38 digits)");
}
inline void check_tick(std::int64_t tick) {
    if (tick <= 0) throw std::invalid_argument("tick size must be > 0");
}
// n * tick where n = up ? ceil(num/den) : floor(num/den), exactly; false if the
// fast-path bounds do not hold (the caller then uses Dec)
inline bool round_exact(i128 num, i128 den, bool up, std::int64_t tick, std::int64_t *out,
                        const char *what) {
    if (abs128(num) >= kExact || den <= 0 || den >= kExact) return false;
    const i128 n = up ? ceil_div(num, den) : floor_div(num, den);
    *out = times_tick(n, tick, what);
    return true;
}
}  // namespace detail

/// The taker slippage factor 1 + bps/10^4 for a buy (side > 0), 1 - bps/10^4
/// for a sell (side < 0): Python's ``1 +/- Decimal(str(slippageBps)) * BPS``.
inline Dec slippage_factor(Dec slippage_bps, int side) {
    const Dec slip = dec_mul(slippage_bps, Dec{1, -4});
    return side > 0 ? dec_add(Dec{1, 0}, slip) : dec_sub(Dec{1, 0}, slip);
}

/// Price of a paper market (taker) fill: the reference price `ref` (next
/// candle's open, the book touch, a stop/target level) worsened by the
/// slippage factor (see slippage_factor) and rounded to the tick against the
/// trader (up for a buy, down for a sell). `ref`, `tick` and the result in the
/// same price units. Worker: Engine._fill (maker=False).
inline std::int64_t taker_fill_price(std::int64_t ref, int side, Dec factor, std::int64_t tick) {
    detail::check_tick(tick);
    const bool up = side > 0;
    std::int64_t out;
    if (factor.m > 0 && factor.m < static_cast<i128>(1000000000000000000LL) && factor.e <= 0 &&
        factor.e >= -18) {
        const i128 num = static_cast<i128>(ref) * factor.m;
        const i128 den = static_cast<i128>(tick) * detail::p10(-factor.e);
        if (detail::round_exact(num, den, up, tick, &out, "fill price")) return out;
    }
    i128 n;
    try {
        const Dec steps = dec_div(dec_mul(Dec{ref, 0}, factor), Dec{tick, 0});
        n = up ? dec_ceil(steps) : dec_floor(steps);
    } catch (const std::overflow_error &) {
        detail::out_of_range("fill price");
    }
    return detail::times_tick(n, tick, "fill price");
}

/// Price of a paper maker fill: a resting limit order fills at its own price
/// (no slippage). Worker: Engine._fill (maker=True).
inline std::int64_t maker_fill_price(std::int64_t limit_price) { return limit_price; }

/// Fee of a fill in 1e-8 USDT: (qty * price * rate) quantized to 1e-8
/// half-even, with qty in 10^-qty_decimals, price in 10^-price_decimals
/// (pq_decimals = price_decimals + qty_decimals, 0..38) and `rate` a fraction
/// of notional (e.g. kLinearTaker). Worker: Engine._fill.
inline std::int64_t fee_e8(std::int64_t qty, std::int64_t price, int pq_decimals, Dec rate) {
    if (pq_decimals < 0 || pq_decimals > 38) throw std::invalid_argument("pq_decimals must be in 0..38");
    const i128 qp = static_cast<i128>(qty) * price;  // |qp| < 2^126
    const i128 lim = static_cast<i128>(10000000000LL);
    if (detail::abs128(qp) < detail::kExact && rate.m > -lim && rate.m < lim) {
        const i128 c = qp * rate.m;  // < 10^37: exact
        if (detail::abs128(c) < detail::kExact) {
            const int shift = -8 - (rate.e - pq_decimals);  // digits to drop (> 0) or add (< 0)
            if (shift <= 0) {
                if (shift >= -10) return detail::to_i64(c * detail::p10(-shift), "fee");
            } else if (shift <= 38) {
                if (shift > 27) return 0;  // |c| < 10^27 < 10^shift / 2: rounds to 0
                const i128 d = detail::p10(shift);
                i128 q = c / d;
                const i128 r = detail::abs128(c % d);
                const i128 twice = 2 * r;
                if (twice > d || (twice == d && (q % 2 != 0))) q += c < 0 ? -1 : 1;
                return detail::to_i64(q, "fee");
            }
        }
    }
    Dec fee;
    try {
        const Dec notional = dec_mul(Dec{qty, 0}, Dec{price, -pq_decimals});
        fee = dec_quantize(dec_mul(notional, rate), -8);
    } catch (const std::overflow_error &) {
        detail::out_of_range("fee");
    }
    return detail::to_i64(fee.m, "fee");
}

/// Quantity a reduce-only order may fill against a position of `position`
/// (signed, same units as `qty`): min(qty, |position|) if the order reduces
/// it (side opposite to the position), else 0 (rejected:
/// REDUCE_ONLY_NO_POSITION). Worker: Engine._execute_at.
inline std::int64_t reduce_only_qty(std::int64_t qty, std::int64_t position, int side) {
    if (position == 0 || (position > 0) == (side > 0)) return 0;
    const std::int64_t a = position < 0 ? -position : position;
    return qty < a ? qty : a;
}

/// A protective price `distance` (USDT, Dec) away from `price` (in 10^-pd),
/// rounded to the tick away from `price`: direction > 0 gives
/// ceil((price + distance) / tick) * tick, direction < 0
/// floor((price - distance) / tick) * tick. Stop and target of an entry filled
/// at `price` on `side`: stop = protective_price(price, pd, sd, -side, tick),
/// target = protective_price(price, pd, td, +side, tick).
/// Worker: Engine._execute_at (Instrument.round_price of fill.price -/+ distance).
inline std::int64_t protective_price(std::int64_t price, int pd, Dec distance, int direction,
                                     std::int64_t tick) {
    detail::check_tick(tick);
    if (pd < 0 || pd > 18) throw std::invalid_argument("price decimals must be in 0..18");
    const bool up = direction > 0;
    const i128 lim = static_cast<i128>(1000000000000000000LL);
    std::int64_t out;
    if (distance.m > -lim && distance.m < lim && distance.e >= -36 && distance.e <= 18) {
        if (distance.e >= -pd) {  // distance in price units: m * 10^(e + pd)
            const int k = distance.e + pd;
            if (k <= 18) {
                const i128 d = distance.m * detail::p10(k);
                const i128 num = static_cast<i128>(price) + (up ? d : -d);
                if (detail::round_exact(num, tick, up, tick, &out, "stop/target price")) return out;
            }
        } else {  // scale everything by 10^s so the distance is an integer
            const int s = -distance.e - pd;  // 1..36
            if (s <= 18) {
                const i128 px = static_cast<i128>(price) * detail::p10(s);
                const i128 num = px + (up ? distance.m : -distance.m);
                const i128 den = static_cast<i128>(tick) * detail::p10(s);
                if (detail::abs128(px) < detail::kExact &&
                    detail::round_exact(num, den, up, tick, &out, "stop/target price"))
                    return out;
            }
        }
    }
    i128 n;
    try {
        const Dec px{price, -pd};
        const Dec x = up ? dec_add(px, distance) : dec_sub(px, distance);
        const Dec steps = dec_div(x, Dec{tick, -pd});
        n = up ? dec_ceil(steps) : dec_floor(steps);
    } catch (const std::overflow_error &) {
        detail::out_of_range("stop/target price");
    }
    return detail::times_tick(n, tick, "stop/target price");
}

/// Stop-loss / take-profit check of one candle for an open position
/// (`long_position`: size > 0). Returns 0 (nothing touched), 1 (stop-loss) or
/// 2 (take-profit) and sets *ref to the reference price of the exit fill: the
/// level, or the open if the candle gapped through it. The stop is checked
/// first (both touched in one candle: the stop is assumed, conservatively).
/// Worker: Engine._check_exits.
inline int exit_trigger(bool long_position, std::int64_t open, std::int64_t high, std::int64_t low,
                        std::int64_t stop, std::int64_t target, std::int64_t *ref) {
    if (long_position && low <= stop) {
        *ref = stop < open ? stop : open;
        return 1;
    }
    if (!long_position && high >= stop) {
        *ref = stop > open ? stop : open;
        return 1;
    }
    if (long_position && high >= target) {
        *ref = target > open ? target : open;
        return 2;
    }
    if (!long_position && low <= target) {
        *ref = target < open ? target : open;
        return 2;
    }
    return 0;
}

}  // namespace fill
}  // namespace hean
