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

/// One steady-state Wilder RSI step (after the first `period` changes), as
/// Rsi::update and TA-Lib's TA_RSI evaluate it: both averages scaled by `pm1` =
/// period - 1, the change `d` = close - previous close added to the gain or the
/// loss (|d| trick: exact max(d, 0) / max(-d, 0), no branch), both divided by `p` =
/// period; returns RSI in percent (0..100), 0 when both averages are 0.
/// Source: J. W. Wilder, New Concepts in Technical Trading Systems (1978), and
/// TA-Lib's ta_RSI.c (its "Cutler" flag off).
inline double wilder_rsi_step(double d, double &gain, double &loss, double p, double pm1) noexcept {
    loss *= pm1;
    gain *= pm1;
    const double ad = std::fabs(d);
    loss += 0.5 * (ad - d);
    gain += 0.5 * (d + ad);
    loss /= p;
    gain /= p;
    const double s = gain + loss;
    return s != 0.0 ? 100.0 * (gain / s) : 0.0;
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
    /// update() compiled out of line in the -O3 kernel library (what the Python
    /// binding calls; the inline update() is for other kernel code).
    double update_o3(double x) noexcept;
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

/// Recompute when M2 < kCancelGuard * (largest M2 since the last recompute).
inline constexpr double kCancelGuard = 1.0 / 256.0;

/// Rolling mean and M2 of the last `window` values; the one sliding-variance core
/// that RollingLogReturnStd, z-score and Bollinger share. Method: replace the oldest value by the newest with the sliding-window Welford
/// update; recompute exactly (two-pass over the ring) every time the ring wraps (no
/// drift beyond one window) and whenever M2 falls below kCancelGuard of its largest
/// value since the last recompute (a collapse of variance would otherwise leave a
/// large relative error in a small M2).
class RollingMoments {
public:
    explicit RollingMoments(std::int64_t window, std::int64_t lo = 1);
    /// Returns true once `window` values are in (defined inline below: hot path).
    bool update(double x) noexcept;
    void reset() noexcept;
    double mean() const noexcept { return mean_; }
    double m2() const noexcept { return m2_ > 0.0 ? m2_ : 0.0; }
    /// Population (ddof = 0) standard deviation.
    double pstd() const noexcept { return std::sqrt(m2() / static_cast<double>(window_)); }
    bool full() const noexcept { return full_; }
    std::int64_t window() const noexcept { return window_; }

private:
    void recompute() noexcept;
    std::int64_t window_;
    std::vector<double> ring_;
    std::size_t pos_ = 0;
    bool full_ = false;
    double mean_ = 0.0;
    double m2_ = 0.0;
    double m2_ref_ = 0.0;
};

/// Sample standard deviation (ddof = 1) of the last `window` log returns
/// ln(close[i] / close[i-1]); fraction per bar.
///
/// Method: a RollingMoments over the returns (ring buffer, sliding Welford update,
/// exact recompute on every wrap and when M2 collapses below 1/256 of its recent
/// maximum), std = sqrt(M2 / (window - 1)).
class RollingLogReturnStd {
public:
    explicit RollingLogReturnStd(std::int64_t window);
    /// Validates `close` (finite, > 0) and throws std::invalid_argument without
    /// changing the state if it is not.
    double update(double close);
    /// `close` must already be validated.
    double update_unchecked(double close) noexcept;
    /// update_unchecked() without computing the std (returns whether it is ready;
    /// current() then gives exactly what update_unchecked() would have returned).
    bool advance(double close) noexcept;
    /// The std from the current state: sqrt(max(M2, 0) / (window - 1)) (what
    /// update() returns once ready; meaningless before).
    double current() const noexcept { return std_from(mom_.m2(), window_); }
    /// M2 of the returns in the window (clamped at 0).
    double m2() const noexcept { return mom_.m2(); }
    /// sqrt(max(m2, 0) / (window - 1)): the std for a saved M2.
    static double std_from(double m2, std::int64_t window) noexcept {
        return std::sqrt((m2 > 0.0 ? m2 : 0.0) / static_cast<double>(window - 1));
    }
    void reset() noexcept;
    double value() const noexcept { return value_; }
    bool ready() const noexcept { return count_ > window_; }
    std::int64_t count() const noexcept { return count_; }
    std::int64_t window() const noexcept { return window_; }

private:
    std::int64_t window_;
    RollingMoments mom_;  // of the log returns
    double prev_close_ = kNaN;
    double value_ = kNaN;
    std::int64_t count_ = 0;
};


/// Wilder's average true range as computed by TA-Lib: the first value (after
/// period + 1 bars) is the mean of TR[1..period], then
/// atr = (prev * (period - 1) + TR) / period.
class Atr {
public:
    explicit Atr(std::int64_t period);
    double update(double high, double low, double close) noexcept;
    double update_o3(double high, double low, double close) noexcept;  // see Ema::update_o3
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


// ---- hot step code, inline so that the paper engine (another translation unit of
// hean_kernels, same flags) inlines exactly the same operations --------------------

inline double Ema::update(double x) noexcept {
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

inline double Atr::update(double high, double low, double close) noexcept {
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

inline bool RollingMoments::update(double x) noexcept {
    const std::size_t w = ring_.size();
    if (!full_) {
        ring_[pos_] = x;
        if (++pos_ < w) return false;
        pos_ = 0;
        full_ = true;
        recompute();
        return true;
    }
    const double n = static_cast<double>(window_);
    const double old = ring_[pos_];
    ring_[pos_] = x;
    const double delta = x - old;
    const double new_mean = mean_ + delta / n;
    m2_ += delta * ((x - new_mean) + (old - mean_));
    mean_ = new_mean;
    if (++pos_ == w) {
        pos_ = 0;
        recompute();
    } else if (m2_ < m2_ref_ * kCancelGuard) {
        recompute();
    } else {
        // the running maximum without a branch (a new maximum is frequent and random)
        m2_ref_ = m2_ > m2_ref_ ? m2_ : m2_ref_;
    }
    return true;
}

inline bool RollingLogReturnStd::advance(double close) noexcept {
    ++count_;
    if (count_ == 1) {
        prev_close_ = close;
        return false;
    }
    const double r = std::log(close / prev_close_);
    prev_close_ = close;
    return mom_.update(r);
}

inline double RollingLogReturnStd::update_unchecked(double close) noexcept {
    if (!advance(close)) return kNaN;
    value_ = current();
    return value_;
}

// ---------------------------------------------------------------------------
// Batch kernels: out[i] is what the streaming class returns for the i-th
// update. `out` may alias an input (each step reads input i before writing
// out[i]). Arguments are validated before anything is written.
// ---------------------------------------------------------------------------

/// lookahead = false: the streaming step formula (bit-identical to Ema::update
/// and TA_EMA). lookahead = true: the fast form (indicators_fast.cpp; the
/// Python default), v = (1-alpha) v + alpha x with a 4-step look-ahead,
/// ~1e-14 relative.
void ema(const double *x, std::size_t n, std::int64_t period, double *out, bool lookahead = false);

/// Throws if any close is not finite and > 0 (message names the index).
void rolling_log_return_std(const double *close, std::size_t n, std::int64_t window,
                            double *out);

/// lookahead as for ema().
void atr(const double *high, const double *low, const double *close, std::size_t n,
         std::int64_t period, double *out, bool lookahead = false);


// ---------------------------------------------------------------------------
// More indicators (SMA, RSI, rolling moments, Bollinger, VWAP, z-score, OFI)
// ---------------------------------------------------------------------------

/// Simple moving average with TA-Lib's operation order (bit-identical to
/// TA_SMA): sum += x; out = sum / period; sum -= x[i - period + 1].
class Sma {
public:
    explicit Sma(std::int64_t period);
    double update(double x) noexcept;
    void reset() noexcept;
    double value() const noexcept { return value_; }
    bool ready() const noexcept { return count_ >= period_; }
    std::int64_t count() const noexcept { return count_; }
    std::int64_t period() const noexcept { return period_; }

private:
    std::int64_t period_;
    std::vector<double> ring_;
    std::size_t pos_ = 0;
    double sum_ = 0.0;
    double value_ = kNaN;
    std::int64_t count_ = 0;
};

/// Wilder's RSI with TA-Lib's seeding and operation order (TA_RSI, default
/// compatibility): the first value (after period + 1 inputs) uses the simple
/// means of gains/losses over the first `period` changes, then
/// avg = (avg * (period - 1) + move) / period. RSI = 100 * g / (g + l), 0 when
/// g + l == 0 (TA-Lib uses |g + l| < 1e-8 there).
class Rsi {
public:
    explicit Rsi(std::int64_t period);
    double update(double x) noexcept;
    void reset() noexcept;
    double value() const noexcept { return value_; }
    bool ready() const noexcept { return count_ > period_; }
    std::int64_t count() const noexcept { return count_; }
    std::int64_t period() const noexcept { return period_; }

private:
    std::int64_t period_;
    double prev_ = kNaN;
    double gain_ = 0.0;
    double loss_ = 0.0;
    double value_ = kNaN;
    std::int64_t count_ = 0;
};


struct Bands {
    double upper, middle, lower;
};

/// Bollinger bands: middle = SMA(period) (TA-Lib-identical), width k times
/// the population standard deviation (ddof = 0, as Bollinger and TA_BBANDS)
/// of the same window computed by RollingMoments (TA-Lib uses sum of squares,
/// which cancels catastrophically on prices; the two agree to ~1e-9).
class Bollinger {
public:
    Bollinger(std::int64_t period, double k);
    Bands update(double x) noexcept;
    void reset() noexcept;
    Bands value() const noexcept { return value_; }
    bool ready() const noexcept { return sma_.ready(); }
    std::int64_t count() const noexcept { return sma_.count(); }
    std::int64_t period() const noexcept { return sma_.period(); }
    double k() const noexcept { return k_; }

private:
    Sma sma_;
    RollingMoments mom_;
    double k_;
    Bands value_{kNaN, kNaN, kNaN};
};

/// z-score of x against the last `window` values (including x):
/// (x - mean) / pstd, ddof = 0; 0 when pstd == 0.
class ZScore {
public:
    explicit ZScore(std::int64_t window);
    double update(double x) noexcept;
    void reset() noexcept;
    double value() const noexcept { return value_; }
    bool ready() const noexcept { return mom_.full(); }
    std::int64_t count() const noexcept { return count_; }
    std::int64_t window() const noexcept { return mom_.window(); }

private:
    RollingMoments mom_;
    double value_ = kNaN;
    std::int64_t count_ = 0;
};

/// Exact-ish rolling sums of one or two series: running add/subtract with an
/// exact recompute (fresh summation over the ring) every `window` updates, so
/// drift never accumulates beyond one window.
class RollingSum2 {
public:
    explicit RollingSum2(std::int64_t window, std::int64_t lo = 1);
    bool update(double a, double b) noexcept;
    void reset() noexcept;
    double a() const noexcept { return sa_; }
    double b() const noexcept { return sb_; }
    bool full() const noexcept { return full_; }
    std::int64_t window() const noexcept { return window_; }

private:
    std::int64_t window_;
    std::vector<double> ra_, rb_;
    std::size_t pos_ = 0;
    bool full_ = false;
    double sa_ = 0.0, sb_ = 0.0;
};

/// Rolling volume-weighted average price over the last `window` bars:
/// sum(price * volume) / sum(volume); NaN while sum(volume) == 0 or warming up.
/// price finite > 0 and volume finite >= 0, else std::invalid_argument.
class Vwap {
public:
    explicit Vwap(std::int64_t window);
    double update(double price, double volume);
    double update_unchecked(double price, double volume) noexcept;
    void reset() noexcept;
    double value() const noexcept { return value_; }
    bool ready() const noexcept { return sums_.full(); }
    std::int64_t count() const noexcept { return count_; }
    std::int64_t window() const noexcept { return sums_.window(); }

private:
    RollingSum2 sums_;
    double value_ = kNaN;
    std::int64_t count_ = 0;
};

/// Order-flow imbalance of Cont, Kukanov & Stoikov (2014), "The price impact
/// of order book events", J. Financial Econometrics 12(1): per top-of-book
/// update n, e_n = 1{Pb_n >= Pb_{n-1}} qb_n - 1{Pb_n <= Pb_{n-1}} qb_{n-1}
///             - 1{Pa_n <= Pa_{n-1}} qa_n + 1{Pa_n >= Pa_{n-1}} qa_{n-1};
/// the output is the sum of e over the last `window` updates (NaN for the
/// first `window` inputs). Units: base-coin size.
class Ofi {
public:
    explicit Ofi(std::int64_t window);
    double update(double bid_px, double bid_sz, double ask_px, double ask_sz) noexcept;
    void reset() noexcept;
    double value() const noexcept { return value_; }
    bool ready() const noexcept { return sums_.full(); }
    std::int64_t count() const noexcept { return count_; }
    std::int64_t window() const noexcept { return sums_.window(); }

private:
    RollingSum2 sums_;
    double pb_ = kNaN, qb_ = kNaN, pa_ = kNaN, qa_ = kNaN;
    double value_ = kNaN;
    std::int64_t count_ = 0;
};

/// lookahead = true (the fast form, indicators_fast.cpp): running sum
/// S += x[i] - x[i-period] with a 4-step look-ahead and an exact re-summation
/// every max(1024, period) outputs (not TA-Lib's bits). rsi: likewise.
void sma(const double *x, std::size_t n, std::int64_t period, double *out, bool lookahead = false);
void rsi(const double *x, std::size_t n, std::int64_t period, double *out, bool lookahead = false);
/// fast = true (indicators_fast.cpp): sliding Welford with 1/period, re-summed
/// every multiple of period >= 128 outputs, ~1e-14 relative, not bit-identical.
void bollinger(const double *x, std::size_t n, std::int64_t period, double k, double *upper,
               double *middle, double *lower, bool fast = false);
void zscore(const double *x, std::size_t n, std::int64_t window, double *out);
/// Throws if a price is not finite > 0 or a volume not finite >= 0 (names the index).
void vwap(const double *price, const double *volume, std::size_t n, std::int64_t window,
          double *out);
void ofi(const double *bid_px, const double *bid_sz, const double *ask_px, const double *ask_sz,
         std::size_t n, std::int64_t window, double *out);

/// Parameters of the fused pass (periods in bars).
struct FusedParams {
    std::int64_t ema_fast = 20, ema_slow = 100, sma = 20, rsi = 14, atr = 14, bb = 20;
    double bb_k = 2.0;
};
/// Outputs of the fused pass; every pointer is an array of n doubles.
struct FusedOut {
    double *ema_fast, *ema_slow, *sma, *rsi, *atr, *bb_upper, *bb_middle, *bb_lower;
};
void check_fused(const FusedParams &p);
/// Which compiled form the fast batch kernels use: "avx2" or "baseline" (x86-64
/// SSE2). Chosen on first use from the CPU (environment HEAN_NATIVE_ISA=baseline
/// forces the baseline). Both forms give identical bits.
const char *batch_isa();
/// Select "avx2", "baseline" or "auto"; false (nothing changed) for an unknown
/// name or "avx2" on a CPU without AVX2.
bool set_batch_isa(const char *name);
/// One sweep over (high, low, close) computing EMA fast/slow, SMA, RSI, ATR and
/// Bollinger; each output is bit-identical to the single-indicator kernel.
/// fast = true: one sweep in blocks of 16384 bars running each indicator's
/// fast form over the block; ~1e-14 relative.
void fused(const double *high, const double *low, const double *close, std::size_t n,
           const FusedParams &p, const FusedOut &out, bool fast = false);

}  // namespace hean
