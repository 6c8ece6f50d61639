// hean native indicator kernels (see include/hean/indicators.hpp).
//
// Compiled into the static library `hean_kernels` with -O3 and
// -ffp-contract=off (no FMA contraction, no fast-math), so every floating-point
// operation happens exactly as written, in the same order as the pure-Python
// reference in src/hean/indicators/reference.py.
#include "hean/indicators.hpp"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
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

double Ema::update(double x) noexcept {
    ++count_;
    if (count_ < period_) {
        sum_ += x;
        return kNaN;
    }
    if (count_ == period_) {
        sum_ += x;
        value_ = sum_ / static_cast<double>(period_);
        return value_;
    }
    value_ = value_ + alpha_ * (x - value_);
    return value_;
}

void Ema::reset() noexcept {
    sum_ = 0.0;
    value_ = kNaN;
    count_ = 0;
}

// ---------------------------------------------------------------------------
// Rolling standard deviation of log returns
// ---------------------------------------------------------------------------

RollingLogReturnStd::RollingLogReturnStd(std::int64_t window) : window_(window) {
    check_period("window", window, 2);
    ring_.assign(static_cast<std::size_t>(window), 0.0);
}

void RollingLogReturnStd::recompute() noexcept {
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

double RollingLogReturnStd::update(double close) {
    if (!valid_close(close)) throw_bad_close(close, nullptr);
    return update_unchecked(close);
}

double RollingLogReturnStd::update_unchecked(double close) noexcept {
    ++count_;
    if (count_ == 1) {
        prev_close_ = close;
        return kNaN;
    }
    const double r = std::log(close / prev_close_);
    prev_close_ = close;
    const std::size_t w = ring_.size();

    if (!full_) {
        ring_[pos_] = r;
        if (++pos_ < w) return kNaN;
        pos_ = 0;
        full_ = true;
        recompute();
    } else {
        const double n = static_cast<double>(window_);
        const double old = ring_[pos_];
        ring_[pos_] = r;
        const double delta = r - old;
        const double new_mean = mean_ + delta / n;
        m2_ += delta * ((r - new_mean) + (old - mean_));
        mean_ = new_mean;
        if (++pos_ == w) {
            pos_ = 0;
            recompute();
        } else if (m2_ < m2_ref_ * kCancelGuard) {
            recompute();
        } else if (m2_ > m2_ref_) {
            m2_ref_ = m2_;
        }
    }
    const double m2 = m2_ > 0.0 ? m2_ : 0.0;
    value_ = std::sqrt(m2 / static_cast<double>(window_ - 1));
    return value_;
}

void RollingLogReturnStd::reset() noexcept {
    std::fill(ring_.begin(), ring_.end(), 0.0);
    pos_ = 0;
    full_ = false;
    prev_close_ = kNaN;
    mean_ = 0.0;
    m2_ = 0.0;
    m2_ref_ = 0.0;
    value_ = kNaN;
    count_ = 0;
}

// ---------------------------------------------------------------------------
// ATR (Wilder)
// ---------------------------------------------------------------------------

Atr::Atr(std::int64_t period) : period_(period) { check_period("period", period, 1); }

double Atr::update(double high, double low, double close) noexcept {
    ++count_;
    if (count_ == 1) {
        prev_close_ = close;
        return kNaN;
    }
    const double tr = true_range(high, low, prev_close_);
    prev_close_ = close;
    const std::int64_t n_tr = count_ - 1;
    if (n_tr < period_) {
        sum_ += tr;
        return kNaN;
    }
    const double p = static_cast<double>(period_);
    if (n_tr == period_) {
        sum_ += tr;
        value_ = sum_ / p;
        return value_;
    }
    value_ = (value_ * (p - 1.0) + tr) / p;
    return value_;
}

void Atr::reset() noexcept {
    sum_ = 0.0;
    prev_close_ = kNaN;
    value_ = kNaN;
    count_ = 0;
}

// ---------------------------------------------------------------------------
// Batch kernels
// ---------------------------------------------------------------------------

void ema(const double *x, std::size_t n, std::int64_t period, double *out) {
    Ema st(period);
    for (std::size_t i = 0; i < n; ++i) out[i] = st.update(x[i]);
}

void rolling_log_return_std(const double *close, std::size_t n, std::int64_t window,
                            double *out) {
    RollingLogReturnStd st(window);
    for (std::size_t i = 0; i < n; ++i)
        if (!valid_close(close[i])) throw_bad_close(close[i], &i);
    for (std::size_t i = 0; i < n; ++i) out[i] = st.update_unchecked(close[i]);
}

void atr(const double *high, const double *low, const double *close, std::size_t n,
         std::int64_t period, double *out) {
    Atr st(period);
    for (std::size_t i = 0; i < n; ++i) out[i] = st.update(high[i], low[i], close[i]);
}

}  // namespace hean
