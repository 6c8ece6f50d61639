// nanobind bindings: the extension module `hean._native` (NB_DOMAIN hean).
//
// The kernels live in the static library `hean_kernels` (-O3); this file only
// converts arguments, allocates numpy outputs and releases the GIL around the
// batch loops. Full user documentation lives in hean.indicators.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "hean/indicators.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

// Inputs: 1-D, C-contiguous float64 on the CPU (nanobind converts other float
// dtypes / strides with a copy). Read-only arrays are accepted.
using In = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
// `out`: any shape so that a wrong shape is a ValueError naming `out` rather
// than a TypeError; must be writable, float64, C-contiguous (never converted:
// the binding uses .noconvert() so results cannot land in a temporary copy).
using Out = nb::ndarray<double, nb::c_contig, nb::device::cpu>;
// Returned arrays: numpy.ndarray, allocated by numpy.empty (see FIELD-NOTES:
// numpy's allocator avoids the page-fault cost of C++ new[]).
using NpOut = nb::ndarray<nb::numpy, double, nb::ndim<1>, nb::c_contig>;

NpOut np_empty(std::size_t n) {
    nb::object arr = nb::module_::import_("numpy").attr("empty")(n, "float64");
    return nb::cast<NpOut>(arr);
}

void check_out(const Out &out, const char *ref_name, std::size_t n) {
    if (out.ndim() != 1) {
        std::string shape = "(";
        for (std::size_t i = 0; i < out.ndim(); ++i) {
            if (i) shape += ", ";
            shape += std::to_string(out.shape(i));
        }
        shape += ")";
        throw std::invalid_argument("out must be 1-D with length " + std::to_string(n) +
                                    " (the length of " + ref_name + "), got shape " + shape);
    }
    hean::check_out_length(out.shape(0), ref_name, n);
}

// -- EMA ---------------------------------------------------------------------

void ema_into(const In &x, std::int64_t period, Out &out) {
    hean::check_period("period", period, 1);
    const std::size_t n = x.shape(0);
    check_out(out, "x", n);
    nb::gil_scoped_release release;
    hean::ema(x.data(), n, period, out.data());
}

NpOut ema(const In &x, std::int64_t period) {
    hean::check_period("period", period, 1);
    const std::size_t n = x.shape(0);
    NpOut out = np_empty(n);
    {
        nb::gil_scoped_release release;
        hean::ema(x.data(), n, period, out.data());
    }
    return out;
}

// -- rolling std of log returns ----------------------------------------------

void rolling_log_return_std_into(const In &close, std::int64_t window, Out &out) {
    hean::check_period("window", window, 2);
    const std::size_t n = close.shape(0);
    check_out(out, "close", n);
    nb::gil_scoped_release release;
    hean::rolling_log_return_std(close.data(), n, window, out.data());
}

NpOut rolling_log_return_std(const In &close, std::int64_t window) {
    hean::check_period("window", window, 2);
    const std::size_t n = close.shape(0);
    NpOut out = np_empty(n);
    {
        nb::gil_scoped_release release;
        hean::rolling_log_return_std(close.data(), n, window, out.data());
    }
    return out;
}

// -- ATR -----------------------------------------------------------------------

std::size_t check_hlc(const In &high, const In &low, const In &close) {
    const std::size_t n = high.shape(0);
    hean::check_same_length("low", low.shape(0), "high", n);
    hean::check_same_length("close", close.shape(0), "high", n);
    return n;
}

void atr_into(const In &high, const In &low, const In &close, std::int64_t period, Out &out) {
    hean::check_period("period", period, 1);
    const std::size_t n = check_hlc(high, low, close);
    check_out(out, "high", n);
    nb::gil_scoped_release release;
    hean::atr(high.data(), low.data(), close.data(), n, period, out.data());
}

NpOut atr(const In &high, const In &low, const In &close, std::int64_t period) {
    hean::check_period("period", period, 1);
    const std::size_t n = check_hlc(high, low, close);
    NpOut out = np_empty(n);
    {
        nb::gil_scoped_release release;
        hean::atr(high.data(), low.data(), close.data(), n, period, out.data());
    }
    return out;
}

std::string repr_value(double v) { return hean::format_double(v); }

}  // namespace

NB_MODULE(_native, m) {
    m.doc() =
        "hean native indicator kernels (C++, nanobind). Use hean.indicators, which "
        "documents units and formulas; hean.indicators.reference is the pure-Python "
        "reference with identical semantics.";

    m.attr("MAX_PERIOD") = hean::kMaxPeriod;

    // ---- batch -------------------------------------------------------------
    m.def("ema", &ema, "x"_a, "period"_a,
          "EMA of x (TA-Lib seeding). Returns a new float64 array of len(x); NaN for "
          "indices < period-1, out[period-1] = mean(x[:period]), then "
          "out[i] = out[i-1] + alpha*(x[i]-out[i-1]), alpha = 2/(period+1). "
          "period in [1, MAX_PERIOD].");
    m.def("ema_into", &ema_into, "x"_a, "period"_a, "out"_a.noconvert(),
          "Like ema() but writes into `out` (writable C-contiguous float64, same "
          "length as x; may be x itself).");

    m.def("rolling_log_return_std", &rolling_log_return_std, "close"_a, "window"_a,
          "Sample std (ddof=1) of the last `window` log returns ln(close[i]/close[i-1]), "
          "fraction per bar. Returns a new float64 array of len(close); NaN for indices "
          "< window. close must be finite and > 0. window in [2, MAX_PERIOD]. "
          "Method: ring buffer + sliding Welford update, exact two-pass recompute "
          "every `window` returns and whenever M2 falls below 1/256 of its largest "
          "value since the last recompute.");
    m.def("rolling_log_return_std_into", &rolling_log_return_std_into, "close"_a, "window"_a,
          "out"_a.noconvert(),
          "Like rolling_log_return_std() but writes into `out` (writable C-contiguous "
          "float64, same length as close; may be close itself).");

    m.def("atr", &atr, "high"_a, "low"_a, "close"_a, "period"_a,
          "Wilder's ATR as TA-Lib computes it. TR[i] = max(high[i]-low[i], "
          "|high[i]-close[i-1]|, |low[i]-close[i-1]|) for i >= 1; out[period] = "
          "mean(TR[1..period]); then out[i] = (out[i-1]*(period-1) + TR[i]) / period; "
          "NaN before index period. period in [1, MAX_PERIOD].");
    m.def("atr_into", &atr_into, "high"_a, "low"_a, "close"_a, "period"_a, "out"_a.noconvert(),
          "Like atr() but writes into `out` (writable C-contiguous float64, same length "
          "as high; may alias an input).");

    // ---- streaming ---------------------------------------------------------
    nb::class_<hean::Ema>(m, "EMA",
                          "Streaming EMA with TA-Lib seeding; update(x) returns exactly what "
                          "ema() returns at the same index (NaN until `period` values).")
        .def(nb::init<std::int64_t>(), "period"_a)
        .def("update", &hean::Ema::update, "x"_a,
             "Feed one value; returns the EMA, NaN until ready.")
        .def("reset", &hean::Ema::reset, "Forget all values (back to the constructed state).")
        .def_prop_ro("value", &hean::Ema::value, "Latest EMA, NaN until ready.")
        .def_prop_ro("ready", &hean::Ema::ready, "True once `period` values were fed.")
        .def_prop_ro("count", &hean::Ema::count, "Number of values fed since reset.")
        .def_prop_ro("period", &hean::Ema::period)
        .def("__repr__", [](const hean::Ema &s) {
            return "EMA(period=" + std::to_string(s.period()) +
                   ", count=" + std::to_string(s.count()) + ", value=" + repr_value(s.value()) +
                   ")";
        });

    nb::class_<hean::RollingLogReturnStd>(
        m, "RollingLogReturnStd",
        "Streaming sample std (ddof=1) of the last `window` log returns, fraction per bar; "
        "update(close) returns exactly what rolling_log_return_std() returns at the same "
        "index (NaN until window+1 closes). Ring buffer + sliding Welford update with an "
        "exact two-pass recompute every `window` returns and whenever M2 falls below "
        "1/256 of its largest value since the last recompute.")
        .def(nb::init<std::int64_t>(), "window"_a)
        .def("update", &hean::RollingLogReturnStd::update, "close"_a,
             "Feed one close (finite, > 0, else ValueError and the state is unchanged); "
             "returns the std, NaN until ready.")
        .def("reset", &hean::RollingLogReturnStd::reset,
             "Forget all closes (back to the constructed state).")
        .def_prop_ro("value", &hean::RollingLogReturnStd::value,
                     "Latest std, NaN until ready.")
        .def_prop_ro("ready", &hean::RollingLogReturnStd::ready,
                     "True once window+1 closes were fed.")
        .def_prop_ro("count", &hean::RollingLogReturnStd::count,
                     "Number of closes fed since reset.")
        .def_prop_ro("window", &hean::RollingLogReturnStd::window)
        .def("__repr__", [](const hean::RollingLogReturnStd &s) {
            return "RollingLogReturnStd(window=" + std::to_string(s.window()) +
                   ", count=" + std::to_string(s.count()) + ", value=" + repr_value(s.value()) +
                   ")";
        });

    nb::class_<hean::Atr>(m, "ATR",
                          "Streaming Wilder ATR (TA-Lib); update(high, low, close) returns "
                          "exactly what atr() returns at the same index (NaN until "
                          "period+1 bars).")
        .def(nb::init<std::int64_t>(), "period"_a)
        .def("update", &hean::Atr::update, "high"_a, "low"_a, "close"_a,
             "Feed one bar; returns the ATR (price units), NaN until ready.")
        .def("reset", &hean::Atr::reset, "Forget all bars (back to the constructed state).")
        .def_prop_ro("value", &hean::Atr::value, "Latest ATR, NaN until ready.")
        .def_prop_ro("ready", &hean::Atr::ready, "True once period+1 bars were fed.")
        .def_prop_ro("count", &hean::Atr::count, "Number of bars fed since reset.")
        .def_prop_ro("period", &hean::Atr::period)
        .def("__repr__", [](const hean::Atr &s) {
            return "ATR(period=" + std::to_string(s.period()) +
                   ", count=" + std::to_string(s.count()) + ", value=" + repr_value(s.value()) +
                   ")";
        });
}
