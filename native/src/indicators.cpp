// hean native indicator kernels (see include/hean/indicators.hpp).
//
// Compiled into the static library `hean_kernels` with -O3 and
// -ffp-contract=off (no FMA contraction, no fast-math), so every floating-point
// operation happens exactly as written, in the same order as the pure-Python
// reference in src/hean/indicators/reference.py.
#include "hean/indicators.hpp"

#include "fast_kernels.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <limits>
#include <string>

namespace hean {

// ---------------------------------------------------------------------------
// Validation and messages
// ---------------------------------------------------------------------------

void check_period(const char *name, std::int64_t value, std::int64_t lo) {
    if (value < lo || value > kMaxPeriod) {
        throw std::invalid_argument(std::string(name) + " must be an integer in [" +
                                    std::to_string(lo) + ", " + std::to_string(kMaxPeriod) +
                                    "], got " + std::to_string(value));
    }
}

void check_same_length(const char *name, std::size_t len, const char *ref_name,
                       std::size_t ref_len) {
    if (len != ref_len) {
        throw std::invalid_argument(std::string(name) + " must have the same length as " +
                                    ref_name + " (" + std::to_string(ref_len) + "), got " +
                                    std::to_string(len));
    }
}

void check_out_length(std::size_t out_len, const char *ref_name, std::size_t n) {
    if (out_len != n) {
        throw std::invalid_argument("out must have length " + std::to_string(n) +
                                    " (the length of " + ref_name + "), got " +
                                    std::to_string(out_len));
    }
}

std::string format_double(double v) {
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";

    // Shortest round-trip digits, then laid out like Python's repr():
    // scientific when the decimal exponent is < -4 or >= 16.
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::scientific);
    std::string s(buf, res.ptr);

    std::string sign;
    if (!s.empty() && s[0] == '-') {
        sign = "-";
        s.erase(0, 1);
    }
    std::size_t epos = s.find('e');
    std::string mant = s.substr(0, epos);
    int exp10 = std::atoi(s.c_str() + epos + 1);
    std::string digits;
    for (char c : mant)
        if (c != '.') digits.push_back(c);

    const int ndigits = static_cast<int>(digits.size());
    const int decpt = exp10 + 1;
    std::string out;
    if (decpt <= -4 || decpt > 16) {
        out = digits.substr(0, 1);
        if (ndigits > 1) out += "." + digits.substr(1);
        char ebuf[16];
        int e = exp10 < 0 ? -exp10 : exp10;
        std::snprintf(ebuf, sizeof(ebuf), "e%c%02d", exp10 < 0 ? '-' : '+', e);
        out += ebuf;
    } else if (decpt <= 0) {
        out = "0." + std::string(static_cast<std::size_t>(-decpt), '0') + digits;
    } else if (decpt >= ndigits) {
        out = digits + std::string(static_cast<std::size_t>(decpt - ndigits), '0') + ".0";
    } else {
        out = digits.substr(0, decpt) + "." + digits.substr(decpt);
    }
    return sign + out;
}

[[noreturn]] static void throw_bad_close(double close, const std::size_t *index) {
    std::string msg = "close must be finite and > 0, got " + format_double(close);
    if (index) msg += " at index " + std::to_string(*index);
    throw std::invalid_argument(msg);
}

// ---------------------------------------------------------------------------
// EMA
// ---------------------------------------------------------------------------

Ema::Ema(std::int64_t period) : period_(period), alpha_(0.0) {
    check_period("period", period, 1);
    alpha_ = 2.0 / (static_cast<double>(period) + 1.0);
}


double Ema::update_o3(double x) noexcept { return update(x); }

void Ema::reset() noexcept {
    sum_ = 0.0;
    value_ = kNaN;
    count_ = 0;
}

// ---------------------------------------------------------------------------
// Rolling standard deviation of log returns
// ---------------------------------------------------------------------------

RollingLogReturnStd::RollingLogReturnStd(std::int64_t window) : window_(window), mom_(window, 2) {}

double RollingLogReturnStd::update(double close) {
    if (!valid_close(close)) throw_bad_close(close, nullptr);
    return update_unchecked(close);
}


void RollingLogReturnStd::reset() noexcept {
    mom_.reset();
    prev_close_ = kNaN;
    value_ = kNaN;
    count_ = 0;
}

// ---------------------------------------------------------------------------
// ATR (Wilder)
// ---------------------------------------------------------------------------

Atr::Atr(std::int64_t period) : period_(period) { check_period("period", period, 1); }


double Atr::update_o3(double high, double low, double close) noexcept { return update(high, low, close); }

void Atr::reset() noexcept {
    sum_ = 0.0;
    prev_close_ = kNaN;
    value_ = kNaN;
    count_ = 0;
}

// ---------------------------------------------------------------------------
// Batch kernels
// ---------------------------------------------------------------------------


static bool overlaps(const double *a, const double *b, std::size_t n) { return n && a < b + n && b < a + n; }

// The batch kernels below keep the state in locals (a class member written
// through `this` may alias `out`, which forces a reload every step) and split
// the warm-up from the steady state, but perform exactly the same floating-
// point operations in the same order as the streaming classes: results are
// bit-identical (the tests check it).

void ema(const double *x, std::size_t n, std::int64_t period, double *out, bool lookahead) {
    check_period("period", period, 1);
    if (lookahead && !overlaps(x, out, n)) {
        fast::ema(x, n, period, out);
        return;
    }
    const std::size_t p = static_cast<std::size_t>(period);
    const double alpha = 2.0 / (static_cast<double>(period) + 1.0);
    double sum = 0.0;
    std::size_t i = 0;
    for (; i < n && i + 1 < p; ++i) {
        sum += x[i];
        out[i] = kNaN;
    }
    if (i >= n) return;
    sum += x[i];
    double v = sum / static_cast<double>(period);
    out[i++] = v;
    for (; i < n; ++i) {  // the streaming formula, bit-identical to Ema::update and TA_EMA
        v = v + alpha * (x[i] - v);
        out[i] = v;
    }
}

void rolling_log_return_std(const double *close, std::size_t n, std::int64_t window,
                            double *out) {
    RollingLogReturnStd st(window);
    for (std::size_t i = 0; i < n; ++i)
        if (!valid_close(close[i])) throw_bad_close(close[i], &i);
    for (std::size_t i = 0; i < n; ++i) out[i] = st.update_unchecked(close[i]);
}

void atr(const double *high, const double *low, const double *close, std::size_t n,
         std::int64_t period, double *out, bool lookahead) {
    check_period("period", period, 1);
    if (lookahead && !(overlaps(out, close, n) || overlaps(out, high, n) || overlaps(out, low, n))) {
        fast::atr(high, low, close, n, period, out);
        return;
    }
    if (n == 0) return;
    const std::size_t pp = static_cast<std::size_t>(period);
    const double p = static_cast<double>(period);
    double prev = close[0];
    out[0] = kNaN;
    double sum = 0.0;
    std::size_t i = 1;
    for (; i < n && i < pp; ++i) {
        sum += true_range(high[i], low[i], prev);
        prev = close[i];
        out[i] = kNaN;
    }
    if (i >= n) return;
    sum += true_range(high[i], low[i], prev);
    prev = close[i];
    double v = sum / p;
    out[i++] = v;
    const double pm1 = p - 1.0;  // the streaming formula, bit-identical to Atr::update
    for (; i < n; ++i) {
        const double tr = true_range(high[i], low[i], prev);
        prev = close[i];
        v = (v * pm1 + tr) / p;
        out[i] = v;
    }
}


// ---------------------------------------------------------------------------
// SMA (TA-Lib operation order)
// ---------------------------------------------------------------------------

Sma::Sma(std::int64_t period) : period_(period) {
    check_period("period", period, 1);
    ring_.assign(static_cast<std::size_t>(period), 0.0);
}

double Sma::update(double x) noexcept {
    ++count_;
    sum_ += x;
    ring_[pos_] = x;
    if (++pos_ == ring_.size()) pos_ = 0;
    if (count_ < period_) return kNaN;
    value_ = sum_ / static_cast<double>(period_);
    sum_ -= ring_[pos_];  // the oldest of the last `period` values
    return value_;
}

void Sma::reset() noexcept {
    std::fill(ring_.begin(), ring_.end(), 0.0);
    pos_ = 0;
    sum_ = 0.0;
    value_ = kNaN;
    count_ = 0;
}

// ---------------------------------------------------------------------------
// RSI (Wilder, TA-Lib operation order)
// ---------------------------------------------------------------------------

Rsi::Rsi(std::int64_t period) : period_(period) { check_period("period", period, 1); }

double Rsi::update(double x) noexcept {
    ++count_;
    if (count_ == 1) {
        prev_ = x;
        return kNaN;
    }
    const double d = x - prev_;
    prev_ = x;
    const std::int64_t n = count_ - 1;
    const double p = static_cast<double>(period_);
    if (n > period_) {
        loss_ *= p - 1.0;
        gain_ *= p - 1.0;
    }
    if (d < 0.0)
        loss_ -= d;
    else
        gain_ += d;
    if (n < period_) return kNaN;
    loss_ /= p;
    gain_ /= p;
    const double s = gain_ + loss_;
    value_ = s != 0.0 ? 100.0 * (gain_ / s) : 0.0;
    return value_;
}

void Rsi::reset() noexcept {
    prev_ = kNaN;
    gain_ = loss_ = 0.0;
    value_ = kNaN;
    count_ = 0;
}

// ---------------------------------------------------------------------------
// Rolling moments (sliding Welford + exact recompute)
// ---------------------------------------------------------------------------

RollingMoments::RollingMoments(std::int64_t window, std::int64_t lo) : window_(window) {
    check_period("window", window, lo);
    ring_.assign(static_cast<std::size_t>(window), 0.0);
}

void RollingMoments::recompute() noexcept {
    const double n = static_cast<double>(window_);
    double s = 0.0;
    for (double v : ring_) s += v;
    const double mean = s / n;
    double m2 = 0.0;
    for (double v : ring_) {
        const double d = v - mean;
        m2 += d * d;
    }
    mean_ = mean;
    m2_ = m2;
    m2_ref_ = m2;
}

void RollingMoments::reset() noexcept {
    std::fill(ring_.begin(), ring_.end(), 0.0);
    pos_ = 0;
    full_ = false;
    mean_ = m2_ = m2_ref_ = 0.0;
}

// ---------------------------------------------------------------------------
// Bollinger, z-score
// ---------------------------------------------------------------------------

static void check_k(double k) {
    if (!(k >= 0.0 && k <= 1000.0))
        throw std::invalid_argument("k must be a finite number in [0, 1000], got " +
                                    format_double(k));
}

Bollinger::Bollinger(std::int64_t period, double k) : sma_(period), mom_(period), k_(k) {
    check_k(k);
}

Bands Bollinger::update(double x) noexcept {
    const double mid = sma_.update(x);
    if (!mom_.update(x)) return value_;
    const double w = k_ * mom_.pstd();
    value_ = Bands{mid + w, mid, mid - w};
    return value_;
}

void Bollinger::reset() noexcept {
    sma_.reset();
    mom_.reset();
    value_ = Bands{kNaN, kNaN, kNaN};
}

ZScore::ZScore(std::int64_t window) : mom_(window, 2) {}

double ZScore::update(double x) noexcept {
    ++count_;
    if (!mom_.update(x)) return kNaN;
    const double sd = mom_.pstd();
    value_ = sd > 0.0 ? (x - mom_.mean()) / sd : 0.0;
    return value_;
}

void ZScore::reset() noexcept {
    mom_.reset();
    value_ = kNaN;
    count_ = 0;
}

// ---------------------------------------------------------------------------
// Rolling sums, VWAP, OFI
// ---------------------------------------------------------------------------

RollingSum2::RollingSum2(std::int64_t window, std::int64_t lo) : window_(window) {
    check_period("window", window, lo);
    ra_.assign(static_cast<std::size_t>(window), 0.0);
    rb_.assign(static_cast<std::size_t>(window), 0.0);
}

bool RollingSum2::update(double a, double b) noexcept {
    const std::size_t w = ra_.size();
    if (!full_) {
        ra_[pos_] = a;
        rb_[pos_] = b;
        sa_ += a;
        sb_ += b;
        if (++pos_ < w) return false;
        pos_ = 0;
        full_ = true;
        return true;
    }
    sa_ += a - ra_[pos_];
    sb_ += b - rb_[pos_];
    ra_[pos_] = a;
    rb_[pos_] = b;
    if (++pos_ == w) {  // exact recompute once per window: no drift
        pos_ = 0;
        double s1 = 0.0, s2 = 0.0;
        for (std::size_t i = 0; i < w; ++i) {
            s1 += ra_[i];
            s2 += rb_[i];
        }
        sa_ = s1;
        sb_ = s2;
    }
    return true;
}

void RollingSum2::reset() noexcept {
    std::fill(ra_.begin(), ra_.end(), 0.0);
    std::fill(rb_.begin(), rb_.end(), 0.0);
    pos_ = 0;
    full_ = false;
    sa_ = sb_ = 0.0;
}

static bool valid_volume(double v) noexcept {
    return v >= 0.0 && v <= std::numeric_limits<double>::max();
}

[[noreturn]] static void throw_bad(const char *what, const char *rule, double v,
                                   const std::size_t *index) {
    std::string msg = std::string(what) + " must be " + rule + ", got " + format_double(v);
    if (index) msg += " at index " + std::to_string(*index);
    throw std::invalid_argument(msg);
}

Vwap::Vwap(std::int64_t window) : sums_(window) {}

double Vwap::update(double price, double volume) {
    if (!valid_close(price)) throw_bad("price", "finite and > 0", price, nullptr);
    if (!valid_volume(volume)) throw_bad("volume", "finite and >= 0", volume, nullptr);
    return update_unchecked(price, volume);
}

double Vwap::update_unchecked(double price, double volume) noexcept {
    ++count_;
    if (!sums_.update(price * volume, volume)) return kNaN;
    value_ = sums_.b() > 0.0 ? sums_.a() / sums_.b() : kNaN;
    return value_;
}

void Vwap::reset() noexcept {
    sums_.reset();
    value_ = kNaN;
    count_ = 0;
}

Ofi::Ofi(std::int64_t window) : sums_(window) {}

double Ofi::update(double bid_px, double bid_sz, double ask_px, double ask_sz) noexcept {
    ++count_;
    if (count_ == 1) {
        pb_ = bid_px;
        qb_ = bid_sz;
        pa_ = ask_px;
        qa_ = ask_sz;
        return kNaN;
    }
    double e = 0.0;
    if (bid_px >= pb_) e += bid_sz;
    if (bid_px <= pb_) e -= qb_;
    if (ask_px <= pa_) e -= ask_sz;
    if (ask_px >= pa_) e += qa_;
    pb_ = bid_px;
    qb_ = bid_sz;
    pa_ = ask_px;
    qa_ = ask_sz;
    if (!sums_.update(e, 0.0)) return kNaN;
    value_ = sums_.a();
    return value_;
}

void Ofi::reset() noexcept {
    sums_.reset();
    pb_ = qb_ = pa_ = qa_ = kNaN;
    value_ = kNaN;
    count_ = 0;
}

// ---------------------------------------------------------------------------
// Batch kernels for the above
// ---------------------------------------------------------------------------

void sma(const double *x, std::size_t n, std::int64_t period, double *out, bool lookahead) {
    check_period("period", period, 1);
    const std::size_t p = static_cast<std::size_t>(period);
    const double pd = static_cast<double>(period);
    if (lookahead && !overlaps(x, out, n)) {
        fast::sma(x, n, period, out);
        return;
    }
    if (overlaps(x, out, n) && p > 1) {  // in place: x[i-p+1] would be overwritten, keep a ring
        Sma st(period);
        for (std::size_t i = 0; i < n; ++i) out[i] = st.update(x[i]);
        return;
    }
    double sum = 0.0;
    std::size_t i = 0;
    for (; i < n && i + 1 < p; ++i) {
        sum += x[i];
        out[i] = kNaN;
    }
    for (; i < n; ++i) {
        sum += x[i];
        const double v = sum / pd;
        sum -= x[i + 1 - p];
        out[i] = v;
    }
}

void rsi(const double *x, std::size_t n, std::int64_t period, double *out, bool lookahead) {
    check_period("period", period, 1);
    if (lookahead && (out == x || !overlaps(x, out, n))) {
        fast::rsi(x, n, period, out);
        return;
    }
    if (n == 0) return;
    const std::size_t pp = static_cast<std::size_t>(period);
    const double p = static_cast<double>(period), pm1 = p - 1.0;
    double prev = x[0];
    out[0] = kNaN;
    double gain = 0.0, loss = 0.0;
    std::size_t i = 1;
    for (; i < n && i < pp; ++i) {
        const double d = x[i] - prev;
        prev = x[i];
        if (d < 0.0) loss -= d; else gain += d;
        out[i] = kNaN;
    }
    if (i >= n) return;
    {
        const double d = x[i] - prev;
        prev = x[i];
        if (d < 0.0) loss -= d; else gain += d;
        loss /= p;
        gain /= p;
        const double s = gain + loss;
        out[i++] = s != 0.0 ? 100.0 * (gain / s) : 0.0;
    }
    // the streaming formula, bit-identical to Rsi::update and TA_RSI
    for (; i < n; ++i) {
        const double d = x[i] - prev;
        prev = x[i];
        out[i] = wilder_rsi_step(d, gain, loss, p, pm1);
    }
}

// ---------------------------------------------------------------------------
// Local-state step code for the fused pass and the Bollinger / z-score batch
// kernels. Each struct performs exactly the floating-point operations of the
// streaming class of the same name, in the same order (bit-identical; the
// tests compare them), but lives in registers: a class's members reached
// through `this` may alias the output arrays, which forces a store and reload
// on every step and serialises the independent dependency chains.
// ---------------------------------------------------------------------------
namespace {
struct EmaL {
    std::int64_t period, count = 0;
    double alpha, sum = 0.0, v = kNaN;
    explicit EmaL(std::int64_t p) : period(p), alpha(2.0 / (static_cast<double>(p) + 1.0)) {}
    inline double step(double x) {
        ++count;
        if (count < period) {
            sum += x;
            return kNaN;
        }
        if (count == period) {
            sum += x;
            v = sum / static_cast<double>(period);
            return v;
        }
        v = v + alpha * (x - v);
        return v;
    }
};
struct SmaL {  // ring-free: reads the oldest value from the input series
    std::int64_t period, count = 0;
    double pd, sum = 0.0;
    explicit SmaL(std::int64_t p) : period(p), pd(static_cast<double>(p)) {}
    inline double step(const double *x, std::size_t i) {
        ++count;
        sum += x[i];
        if (count < period) return kNaN;
        const double v = sum / pd;
        sum -= x[i + 1 - static_cast<std::size_t>(period)];
        return v;
    }
};
struct RsiL {
    std::int64_t period, count = 0;
    double p, pm1, prev = kNaN, gain = 0.0, loss = 0.0;
    explicit RsiL(std::int64_t per) : period(per), p(static_cast<double>(per)), pm1(p - 1.0) {}
    inline double step(double x) {
        ++count;
        if (count == 1) {
            prev = x;
            return kNaN;
        }
        const double d = x - prev;
        prev = x;
        const std::int64_t n = count - 1;
        if (n > period) {
            loss *= pm1;
            gain *= pm1;
        }
        const double ad = std::fabs(d);  // exact max(-d, 0), max(d, 0): no branch
        loss += 0.5 * (ad - d);
        gain += 0.5 * (d + ad);
        if (n < period) return kNaN;
        loss /= p;
        gain /= p;
        const double s = gain + loss;
        return s != 0.0 ? 100.0 * (gain / s) : 0.0;
    }
};
struct AtrL {
    std::int64_t period, count = 0;
    double p, pm1, sum = 0.0, prev = kNaN, v = kNaN;
    explicit AtrL(std::int64_t per) : period(per), p(static_cast<double>(per)), pm1(p - 1.0) {}
    inline double step(double h, double l, double c) {
        ++count;
        if (count == 1) {
            prev = c;
            return kNaN;
        }
        const double tr = true_range(h, l, prev);
        prev = c;
        const std::int64_t n = count - 1;
        if (n < period) {
            sum += tr;
            return kNaN;
        }
        if (n == period) {
            sum += tr;
            v = sum / p;
            return v;
        }
        v = (v * pm1 + tr) / p;
        return v;
    }
};
// RollingMoments with the ring emulated on the input series: ring slot j holds
// the newest x[k] with k % window == j, so a recompute sums slots 0..w-1 in the
// same order as the class does.
struct MomL {
    std::size_t w, until_wrap;
    double n, mean = 0.0, m2 = 0.0, m2_ref = 0.0;
    explicit MomL(std::int64_t window)
        : w(static_cast<std::size_t>(window)), until_wrap(static_cast<std::size_t>(window)),
          n(static_cast<double>(window)) {}
    inline void recompute(const double *x, std::size_t i) {
        // window x[base..i]; x[k] sits in slot k % w; sum slots 0..w-1 in order:
        // slots 0..r-1 hold x[base+w-r .. i], slots r..w-1 hold x[base .. base+w-r-1]
        const std::size_t base = i + 1 - w;
        const std::size_t r = base % w;
        const double *hi = x + base + w - r, *lo = x + base;
        double s = 0.0;
        for (std::size_t j = 0; j < r; ++j) s += hi[j];
        for (std::size_t j = 0; j < w - r; ++j) s += lo[j];
        const double mn = s / n;
        double q = 0.0;
        for (std::size_t j = 0; j < r; ++j) {
            const double d = hi[j] - mn;
            q += d * d;
        }
        for (std::size_t j = 0; j < w - r; ++j) {
            const double d = lo[j] - mn;
            q += d * d;
        }
        mean = mn;
        m2 = q;
        m2_ref = q;
    }
    // returns true once full; x[i] is the newest value
    inline bool step(const double *x, std::size_t i) {
        const bool wrap = --until_wrap == 0;  // the class's ring wraps after this write
        if (wrap) until_wrap = w;
        if (i + 1 < w) return false;
        if (i + 1 == w) {
            recompute(x, i);
            return true;
        }
        const double xi = x[i], old = x[i - w];
        const double delta = xi - old;
        const double new_mean = mean + delta / n;
        m2 += delta * ((xi - new_mean) + (old - mean));
        mean = new_mean;
        if (wrap) {
            recompute(x, i);
        } else if (m2 < m2_ref * kCancelGuard) {
            recompute(x, i);
        } else {
            m2_ref = std::max(m2_ref, m2);  // maxsd: this test flips often, a branch mispredicts
        }
        return true;
    }
    inline double pstd() const { return std::sqrt((m2 > 0.0 ? m2 : 0.0) / n); }
};
}  // namespace

// Bollinger: fast = true runs fast::bollinger (indicators_fast.cpp: the exact
// form's sliding Welford update with multiplications by 1/p, re-summed every
// multiple of the window >= 128 outputs, middle = the Welford mean; ~1e-14
// relative); fast = false the streaming classes' operations, bit for bit.
void bollinger(const double *x, std::size_t n, std::int64_t period, double k, double *upper,
               double *middle, double *lower, bool fast) {
    check_period("period", period, 1);
    if (fast && !(overlaps(x, upper, n) || overlaps(x, middle, n) || overlaps(x, lower, n))) {
        Bollinger probe(period, k);  // validates k
        fast::bollinger(x, n, period, k, upper, middle, lower);
        return;
    }
    if (overlaps(x, upper, n) || overlaps(x, middle, n) || overlaps(x, lower, n)) {
        Bollinger st(period, k);
        for (std::size_t i = 0; i < n; ++i) {
            const Bands b = st.update(x[i]);
            upper[i] = b.upper;
            middle[i] = b.middle;
            lower[i] = b.lower;
        }
        return;
    }
    Bollinger probe(period, k);  // validates k
    SmaL sm(period);
    MomL mo(period);
    for (std::size_t i = 0; i < n; ++i) {
        const double mid = sm.step(x, i);
        if (!mo.step(x, i)) {
            upper[i] = middle[i] = lower[i] = kNaN;
            continue;
        }
        const double w = k * mo.pstd();
        upper[i] = mid + w;
        middle[i] = mid;
        lower[i] = mid - w;
    }
}

void zscore(const double *x, std::size_t n, std::int64_t window, double *out) {
    ZScore st(window);  // validates
    if (overlaps(x, out, n)) {
        for (std::size_t i = 0; i < n; ++i) out[i] = st.update(x[i]);
        return;
    }
    MomL mo(window);
    for (std::size_t i = 0; i < n; ++i) {
        if (!mo.step(x, i)) {
            out[i] = kNaN;
            continue;
        }
        const double sd = mo.pstd();
        out[i] = sd > 0.0 ? (x[i] - mo.mean) / sd : 0.0;
    }
}

void vwap(const double *price, const double *volume, std::size_t n, std::int64_t window,
          double *out) {
    Vwap st(window);
    for (std::size_t i = 0; i < n; ++i) {
        if (!valid_close(price[i])) throw_bad("price", "finite and > 0", price[i], &i);
        if (!valid_volume(volume[i])) throw_bad("volume", "finite and >= 0", volume[i], &i);
    }
    for (std::size_t i = 0; i < n; ++i) out[i] = st.update_unchecked(price[i], volume[i]);
}

void ofi(const double *bid_px, const double *bid_sz, const double *ask_px, const double *ask_sz,
         std::size_t n, std::int64_t window, double *out) {
    Ofi st(window);
    for (std::size_t i = 0; i < n; ++i) out[i] = st.update(bid_px[i], bid_sz[i], ask_px[i], ask_sz[i]);
}

void check_fused(const FusedParams &p) {
    check_period("ema_fast", p.ema_fast, 1);
    check_period("ema_slow", p.ema_slow, 1);
    check_period("sma", p.sma, 1);
    check_period("rsi", p.rsi, 1);
    check_period("atr", p.atr, 1);
    check_period("bb", p.bb, 1);
    check_k(p.bb_k);
}

void fused(const double *high, const double *low, const double *close, std::size_t n,
           const FusedParams &p, const FusedOut &o, bool fast) {
    check_fused(p);
    double *outs[] = {o.ema_fast, o.ema_slow, o.sma, o.rsi, o.atr, o.bb_upper, o.bb_middle, o.bb_lower};
    bool alias = false;
    for (double *q : outs) alias = alias || overlaps(q, close, n) || overlaps(q, high, n) || overlaps(q, low, n);
    if (fast && !alias) {
        fast::fused(high, low, close, n, p, o);
        return;
    }
    if (alias) {  // an output overwrites an input: the ring-buffer classes read each input once
        Ema ef(p.ema_fast), es(p.ema_slow);
        Sma sm(p.sma);
        Rsi rs(p.rsi);
        Atr at(p.atr);
        Bollinger bb(p.bb, p.bb_k);
        for (std::size_t i = 0; i < n; ++i) {
            const double h = high[i], l = low[i], c = close[i];
            const double v0 = ef.update(c), v1 = es.update(c), v2 = sm.update(c), v3 = rs.update(c);
            const double v4 = at.update(h, l, c);
            const Bands b = bb.update(c);
            o.ema_fast[i] = v0;
            o.ema_slow[i] = v1;
            o.sma[i] = v2;
            o.rsi[i] = v3;
            o.atr[i] = v4;
            o.bb_upper[i] = b.upper;
            o.bb_middle[i] = b.middle;
            o.bb_lower[i] = b.lower;
        }
        return;
    }
    EmaL ef(p.ema_fast), es(p.ema_slow);
    SmaL sm(p.sma), bsm(p.bb);
    RsiL rs(p.rsi);
    AtrL at(p.atr);
    MomL mo(p.bb);
    const double k = p.bb_k;
    for (std::size_t i = 0; i < n; ++i) {
        const double c = close[i];
        o.ema_fast[i] = ef.step(c);
        o.ema_slow[i] = es.step(c);
        o.sma[i] = sm.step(close, i);
        o.rsi[i] = rs.step(c);
        o.atr[i] = at.step(high[i], low[i], c);
        const double mid = bsm.step(close, i);
        if (mo.step(close, i)) {
            const double w = k * mo.pstd();
            o.bb_upper[i] = mid + w;
            o.bb_middle[i] = mid;
            o.bb_lower[i] = mid - w;
        } else {
            o.bb_upper[i] = o.bb_middle[i] = o.bb_lower[i] = kNaN;
        }
    }
}

}  // namespace hean
