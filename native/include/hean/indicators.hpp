// hean native indicator kernels.
//
// One streaming state class per indicator; the batch kernels are loops over the
// very same `update` code (defined in indicators.cpp, compiled once, -O3,
// -ffp-contract=off), so batch and streaming results are bit-identical.
//
// Errors are reported with std::invalid_argument, which nanobind translates to
// Python's ValueError. Nothing in this library depends on Python.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace hean {

/// Largest accepted period/window (bounds the ring buffer at 8 MB).
inline constexpr std::int64_t kMaxPeriod = 1000000;

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

/// Throws std::invalid_argument("<name> must be an integer in [<lo>, kMaxPeriod], got <value>").
void check_period(const char *name, std::int64_t value, std::int64_t lo);

/// Throws std::invalid_argument("<name> must have the same length as <ref_name> (<ref_len>), got <len>").
void check_same_length(const char *name, std::size_t len, const char *ref_name,
                       std::size_t ref_len);

/// Throws std::invalid_argument("out must have length <n> (the length of <ref_name>), got <len>").
void check_out_length(std::size_t out_len, const char *ref_name, std::size_t n);

/// True when `close` is usable as a price: finite and > 0.
inline bool valid_close(double close) noexcept {
    // NaN fails `close > 0.0`; +inf fails `close <= max`.
    return close > 0.0 && close <= std::numeric_limits<double>::max();
}

/// Formats a double the way Python's repr() does for ordinary values
/// ("5.0", "-1.5", "nan", "inf", "1e-05").
std::string format_double(double v);

/// TA-Lib's true range: max(high-low, |high-prev_close|, |low-prev_close|),
/// evaluated with the same comparison chain as TA-Lib's TRANGE.
inline double true_range(double high, double low, double prev_close) noexcept {
    double greatest = high - low;
    const double v2 = std::fabs(prev_close - high);
    if (v2 > greatest) greatest = v2;
    const double v3 = std::fabs(low - prev_close);
    if (v3 > greatest) greatest = v3;
    return greatest;
}

// ---------------------------------------------------------------------------
// Streaming state
// ---------------------------------------------------------------------------

/// Exponential moving average, TA-Lib seeding: the first value (after `period`
/// inputs) is the simple mean of those inputs, then
/// ema = prev + alpha * (x - prev), alpha = 2 / (period + 1).
class Ema {
public:
    explicit Ema(std::int64_t period);
    double update(double x) noexcept;
    void reset() noexcept;
    double value() const noexcept { return value_; }
    bool ready() const noexcept { return count_ >= period_; }
    std::int64_t count() const noexcept { return count_; }
    std::int64_t period() const noexcept { return period_; }

private:
    std::int64_t period_;
    double alpha_;
    double sum_ = 0.0;
    double value_ = kNaN;
    std::int64_t count_ = 0;
};

/// Sample standard deviation (ddof = 1) of the last `window` log returns
/// ln(close[i] / close[i-1]); fraction per bar.
///
/// Method: the returns live in a ring buffer; mean and M2 are updated with the
/// sliding-window Welford update (replace the oldest return by the newest) and
/// recomputed exactly (two-pass over the ring)
///  * every time the ring wraps, i.e. every `window` returns, so rounding drift
///    never accumulates beyond one window, and
///  * whenever M2 falls below 1/256 of its largest value since the last
///    recompute (cancellation guard: a sliding update's rounding error scales
///    with the M2 it started from, so a collapse of volatility would otherwise
///    leave a large relative error in a small M2).
class RollingLogReturnStd {
public:
    explicit RollingLogReturnStd(std::int64_t window);
    /// Validates `close` (finite, > 0) and throws std::invalid_argument without
    /// changing the state if it is not.
    double update(double close);
    /// `close` must already be validated.
    double update_unchecked(double close) noexcept;
    void reset() noexcept;
    double value() const noexcept { return value_; }
    bool ready() const noexcept { return count_ > window_; }
    std::int64_t count() const noexcept { return count_; }
    std::int64_t window() const noexcept { return window_; }

private:
    void recompute() noexcept;

    std::int64_t window_;
    std::vector<double> ring_;
    std::size_t pos_ = 0;
    bool full_ = false;
    double prev_close_ = kNaN;
    double mean_ = 0.0;
    double m2_ = 0.0;
    double m2_ref_ = 0.0;  // largest M2 since the last exact recompute
    double value_ = kNaN;
    std::int64_t count_ = 0;
};

/// Recompute when M2 < kCancelGuard * (largest M2 since the last recompute).
inline constexpr double kCancelGuard = 1.0 / 256.0;

/// Wilder's average true range as computed by TA-Lib: the first value (after
/// period + 1 bars) is the mean of TR[1..period], then
/// atr = (prev * (period - 1) + TR) / period.
class Atr {
public:
    explicit Atr(std::int64_t period);
    double update(double high, double low, double close) noexcept;
    void reset() noexcept;
    double value() const noexcept { return value_; }
    bool ready() const noexcept { return count_ > period_; }
    std::int64_t count() const noexcept { return count_; }
    std::int64_t period() const noexcept { return period_; }

private:
    std::int64_t period_;
    double sum_ = 0.0;
    double prev_close_ = kNaN;
    double value_ = kNaN;
    std::int64_t count_ = 0;
};

// ---------------------------------------------------------------------------
// Batch kernels: out[i] is what the streaming class returns for the i-th
// update. `out` may alias an input (each step reads input i before writing
// out[i]). Arguments are validated before anything is written.
// ---------------------------------------------------------------------------

void ema(const double *x, std::size_t n, std::int64_t period, double *out);

/// Throws if any close is not finite and > 0 (message names the index).
void rolling_log_return_std(const double *close, std::size_t n, std::int64_t window,
                            double *out);

void atr(const double *high, const double *low, const double *close, std::size_t n,
         std::int64_t period, double *out);

}  // namespace hean
