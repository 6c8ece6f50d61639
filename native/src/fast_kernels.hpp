// Internal: the fast batch kernels (indicators_fast.cpp), called by the batch
// entry points in indicators.cpp after argument validation. Not installed.
#pragma once

#include <cstddef>
#include <cstdint>

#include "hean/indicators.hpp"

namespace hean::fast {

// Arguments are already validated. Outputs must not overlap the inputs, except
// that RSI accepts out == x (in place).
void ema(const double *x, std::size_t n, std::int64_t period, double *out);
void rsi(const double *x, std::size_t n, std::int64_t period, double *out);
void sma(const double *x, std::size_t n, std::int64_t period, double *out);
void atr(const double *high, const double *low, const double *close, std::size_t n, std::int64_t period,
         double *out);
void bollinger(const double *x, std::size_t n, std::int64_t period, double k, double *upper,
               double *middle, double *lower);
void fused(const double *high, const double *low, const double *close, std::size_t n,
           const FusedParams &p, const FusedOut &o);

}  // namespace hean::fast
