// nanobind bindings: the extension module `hean._native` (NB_DOMAIN hean).
//
// The kernels live in the static library `hean_kernels` (-O3); this file only
// converts arguments, allocates numpy outputs and releases the GIL around the
// batch loops. Full user documentation lives in hean.indicators.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "hean/indicators.hpp"

namespace nb = nanobind;
using namespace nb::literals;

void bind_engine(nb::module_ &m);
void bind_book(nb::module_ &m);
void bind_market(nb::module_ &m);
void bind_fill(nb::module_ &m);

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

void ema_into(const In &x, std::int64_t period, Out &out, bool exact) {
    hean::check_period("period", period, 1);
    const std::size_t n = x.shape(0);
    check_out(out, "x", n);
    nb::gil_scoped_release release;
    hean::ema(x.data(), n, period, out.data(), !exact);
}

NpOut ema(const In &x, std::int64_t period, bool exact) {
    hean::check_period("period", period, 1);
    const std::size_t n = x.shape(0);
    NpOut out = np_empty(n);
    {
        nb::gil_scoped_release release;
        hean::ema(x.data(), n, period, out.data(), !exact);
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

void atr_into(const In &high, const In &low, const In &close, std::int64_t period, Out &out,
              bool exact) {
    hean::check_period("period", period, 1);
    const std::size_t n = check_hlc(high, low, close);
    check_out(out, "high", n);
    nb::gil_scoped_release release;
    hean::atr(high.data(), low.data(), close.data(), n, period, out.data(), !exact);
}

NpOut atr(const In &high, const In &low, const In &close, std::int64_t period, bool exact) {
    hean::check_period("period", period, 1);
    const std::size_t n = check_hlc(high, low, close);
    NpOut out = np_empty(n);
    {
        nb::gil_scoped_release release;
        hean::atr(high.data(), low.data(), close.data(), n, period, out.data(), !exact);
    }
    return out;
}


// -- more indicators -----------------------------------------------------------

template <class F>
NpOut unary_new(const In &x, F &&f) {
    const std::size_t n = x.shape(0);
    NpOut out = np_empty(n);
    {
        nb::gil_scoped_release release;
        f(x.data(), n, out.data());
    }
    return out;
}

NpOut sma(const In &x, std::int64_t period, bool exact) {
    hean::check_period("period", period, 1);
    return unary_new(x, [&](const double *a, std::size_t n, double *o) { hean::sma(a, n, period, o, !exact); });
}
void sma_into(const In &x, std::int64_t period, Out &out, bool exact) {
    hean::check_period("period", period, 1);
    check_out(out, "x", x.shape(0));
    nb::gil_scoped_release release;
    hean::sma(x.data(), x.shape(0), period, out.data(), !exact);
}
NpOut rsi(const In &x, std::int64_t period, bool exact) {
    hean::check_period("period", period, 1);
    return unary_new(x, [&](const double *a, std::size_t n, double *o) { hean::rsi(a, n, period, o, !exact); });
}
void rsi_into(const In &x, std::int64_t period, Out &out, bool exact) {
    hean::check_period("period", period, 1);
    check_out(out, "x", x.shape(0));
    nb::gil_scoped_release release;
    hean::rsi(x.data(), x.shape(0), period, out.data(), !exact);
}
NpOut zscore(const In &x, std::int64_t window) {
    hean::check_period("window", window, 2);
    return unary_new(x, [&](const double *a, std::size_t n, double *o) { hean::zscore(a, n, window, o); });
}
void zscore_into(const In &x, std::int64_t window, Out &out) {
    hean::check_period("window", window, 2);
    check_out(out, "x", x.shape(0));
    nb::gil_scoped_release release;
    hean::zscore(x.data(), x.shape(0), window, out.data());
}

nb::tuple bollinger(const In &x, std::int64_t period, double k, bool exact) {
    hean::Bollinger probe(period, k);  // validates
    const std::size_t n = x.shape(0);
    NpOut u = np_empty(n), m = np_empty(n), l = np_empty(n);
    {
        nb::gil_scoped_release release;
        hean::bollinger(x.data(), n, period, k, u.data(), m.data(), l.data(), !exact);
    }
    return nb::make_tuple(u, m, l);
}
void bollinger_into(const In &x, std::int64_t period, double k, Out &upper, Out &middle,
                    Out &lower, bool exact) {
    hean::Bollinger probe(period, k);
    const std::size_t n = x.shape(0);
    check_out(upper, "x", n);
    check_out(middle, "x", n);
    check_out(lower, "x", n);
    nb::gil_scoped_release release;
    hean::bollinger(x.data(), n, period, k, upper.data(), middle.data(), lower.data(), !exact);
}

NpOut vwap(const In &price, const In &volume, std::int64_t window) {
    hean::check_period("window", window, 1);
    const std::size_t n = price.shape(0);
    hean::check_same_length("volume", volume.shape(0), "price", n);
    NpOut out = np_empty(n);
    {
        nb::gil_scoped_release release;
        hean::vwap(price.data(), volume.data(), n, window, out.data());
    }
    return out;
}
void vwap_into(const In &price, const In &volume, std::int64_t window, Out &out) {
    hean::check_period("window", window, 1);
    const std::size_t n = price.shape(0);
    hean::check_same_length("volume", volume.shape(0), "price", n);
    check_out(out, "price", n);
    nb::gil_scoped_release release;
    hean::vwap(price.data(), volume.data(), n, window, out.data());
}

std::size_t check_book4(const In &bp, const In &bs, const In &ap, const In &as) {
    const std::size_t n = bp.shape(0);
    hean::check_same_length("bid_sz", bs.shape(0), "bid_px", n);
    hean::check_same_length("ask_px", ap.shape(0), "bid_px", n);
    hean::check_same_length("ask_sz", as.shape(0), "bid_px", n);
    return n;
}
NpOut ofi(const In &bp, const In &bs, const In &ap, const In &as, std::int64_t window) {
    hean::check_period("window", window, 1);
    const std::size_t n = check_book4(bp, bs, ap, as);
    NpOut out = np_empty(n);
    {
        nb::gil_scoped_release release;
        hean::ofi(bp.data(), bs.data(), ap.data(), as.data(), n, window, out.data());
    }
    return out;
}
void ofi_into(const In &bp, const In &bs, const In &ap, const In &as, std::int64_t window,
              Out &out) {
    hean::check_period("window", window, 1);
    const std::size_t n = check_book4(bp, bs, ap, as);
    check_out(out, "bid_px", n);
    nb::gil_scoped_release release;
    hean::ofi(bp.data(), bs.data(), ap.data(), as.data(), n, window, out.data());
}

static const char *kFusedNames[] = {"ema_fast", "ema_slow", "sma", "rsi", "atr",
                                    "bb_upper", "bb_middle", "bb_lower"};

hean::FusedParams fused_params(std::int64_t ema_fast, std::int64_t ema_slow, std::int64_t sma_p,
                               std::int64_t rsi_p, std::int64_t atr_p, std::int64_t bb,
                               double bb_k) {
    hean::FusedParams p;
    p.ema_fast = ema_fast;
    p.ema_slow = ema_slow;
    p.sma = sma_p;
    p.rsi = rsi_p;
    p.atr = atr_p;
    p.bb = bb;
    p.bb_k = bb_k;
    hean::check_fused(p);
    return p;
}

nb::dict fused(const In &high, const In &low, const In &close, std::int64_t ema_fast,
               std::int64_t ema_slow, std::int64_t sma_p, std::int64_t rsi_p, std::int64_t atr_p,
               std::int64_t bb, double bb_k, bool exact) {
    const hean::FusedParams p = fused_params(ema_fast, ema_slow, sma_p, rsi_p, atr_p, bb, bb_k);
    const std::size_t n = check_hlc(high, low, close);
    NpOut o[8] = {np_empty(n), np_empty(n), np_empty(n), np_empty(n),
                  np_empty(n), np_empty(n), np_empty(n), np_empty(n)};
    hean::FusedOut fo{o[0].data(), o[1].data(), o[2].data(), o[3].data(),
                      o[4].data(), o[5].data(), o[6].data(), o[7].data()};
    {
        nb::gil_scoped_release release;
        hean::fused(high.data(), low.data(), close.data(), n, p, fo, !exact);
    }
    nb::dict d;
    for (int i = 0; i < 8; ++i) d[kFusedNames[i]] = o[i];
    return d;
}

void fused_into(const In &high, const In &low, const In &close, std::int64_t ema_fast,
                std::int64_t ema_slow, std::int64_t sma_p, std::int64_t rsi_p, std::int64_t atr_p,
                std::int64_t bb, double bb_k, nb::dict out, bool exact) {
    const hean::FusedParams p = fused_params(ema_fast, ema_slow, sma_p, rsi_p, atr_p, bb, bb_k);
    const std::size_t n = check_hlc(high, low, close);
    double *ptr[8];
    for (int i = 0; i < 8; ++i) {
        if (!out.contains(kFusedNames[i]))
            throw std::invalid_argument(std::string("out is missing the key '") + kFusedNames[i] + "'");
        Out a;
        if (!nb::try_cast<Out>(out[kFusedNames[i]], a, false) || !a.is_valid())
            throw std::invalid_argument(std::string("out['") + kFusedNames[i] + "'] must be a writable C-contiguous float64 array");
        check_out(a, "high", n);
        ptr[i] = a.data();
    }
    hean::FusedOut fo{ptr[0], ptr[1], ptr[2], ptr[3], ptr[4], ptr[5], ptr[6], ptr[7]};
    nb::gil_scoped_release release;
    hean::fused(high.data(), low.data(), close.data(), n, p, fo, !exact);
}

std::string repr_value(double v) { return hean::format_double(v); }

// Bollinger as bound to Python: the kernel state plus the tuple update() returned
// last. When the caller has dropped that tuple (we hold its only reference) it is
// refilled and returned again instead of allocating a new tuple and three floats,
// as CPython's own zip() and enumerate() reuse their result tuples; a float inside
// it is overwritten only if the tuple holds its only reference, so no Python code
// can observe the change. Allocation was most of update()'s cost from Python.
struct PyBollinger : hean::Bollinger {
    using hean::Bollinger::Bollinger;
    PyBollinger(const PyBollinger &) = delete;
    PyBollinger &operator=(const PyBollinger &) = delete;
    ~PyBollinger() { Py_XDECREF(last); }
    PyObject *last = nullptr;
};

nb::object bands_tuple(PyBollinger &b, const hean::Bands &v) {
    const double vals[3] = {v.upper, v.middle, v.lower};
    PyObject *t = b.last;
    if (t && Py_REFCNT(t) == 1) {
        for (Py_ssize_t i = 0; i < 3; ++i) {
            PyObject *old = PyTuple_GET_ITEM(t, i);
            if (Py_REFCNT(old) == 1 && PyFloat_CheckExact(old)) {
                reinterpret_cast<PyFloatObject *>(old)->ob_fval = vals[i];
            } else {
                PyObject *f = PyFloat_FromDouble(vals[i]);
                if (!f) throw nb::python_error();
                PyTuple_SET_ITEM(t, i, f);
                Py_DECREF(old);
            }
        }
        return nb::borrow(t);
    }
    PyObject *nt = PyTuple_New(3);
    if (!nt) throw nb::python_error();
    for (Py_ssize_t i = 0; i < 3; ++i) {
        PyObject *f = PyFloat_FromDouble(vals[i]);
        if (!f) {
            Py_DECREF(nt);
            throw nb::python_error();
        }
        PyTuple_SET_ITEM(nt, i, f);
    }
    Py_XDECREF(b.last);
    b.last = nt;
    return nb::borrow(nt);
}

// ---- update(x) from Python: a METH_O method ------------------------------------------
// nanobind's general dispatch (argument conversion, overload and keyword handling)
// costs about as much as the indicator step itself. The one-argument update()
// methods are installed as plain METH_O method descriptors instead: CPython's
// method descriptor checks that `self` is an instance of the class, the argument
// is read as a float (float or int, else TypeError as for any float parameter) and
// kernel exceptions become ValueError as nanobind would map them. The stub for
// these methods comes from native/stubgen-patterns.txt.
template <class T, double (T::*Fn)(double)>
PyObject *update_o(PyObject *self, PyObject *arg) noexcept {
    double x;
    if (PyFloat_CheckExact(arg)) {
        x = PyFloat_AS_DOUBLE(arg);
    } else {
        x = PyFloat_AsDouble(arg);
        if (x == -1.0 && PyErr_Occurred()) return nullptr;
    }
    if (!nb::inst_ready(nb::handle(self))) {
        PyErr_SetString(PyExc_TypeError, "update(): the object is not initialized");
        return nullptr;
    }
    T *p = nb::inst_ptr<T>(nb::handle(self));
    try {
        return PyFloat_FromDouble((p->*Fn)(x));
    } catch (const std::invalid_argument &e) {
        PyErr_SetString(PyExc_ValueError, e.what());
    } catch (const std::exception &e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return nullptr;
}

PyObject *bollinger_update_o(PyObject *self, PyObject *arg) noexcept {
    double x;
    if (PyFloat_CheckExact(arg)) {
        x = PyFloat_AS_DOUBLE(arg);
    } else {
        x = PyFloat_AsDouble(arg);
        if (x == -1.0 && PyErr_Occurred()) return nullptr;
    }
    if (!nb::inst_ready(nb::handle(self))) {
        PyErr_SetString(PyExc_TypeError, "update(): the object is not initialized");
        return nullptr;
    }
    PyBollinger *b = nb::inst_ptr<PyBollinger>(nb::handle(self));
    try {
        return bands_tuple(*b, b->update(x)).release().ptr();
    } catch (nb::python_error &e) {
        e.restore();
    } catch (const std::exception &e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return nullptr;
}

/// Install `def` (static storage) as method `update` of the bound class `cls`.
void set_fast_update(nb::handle cls, PyMethodDef *def) {
    PyObject *descr = PyDescr_NewMethod(reinterpret_cast<PyTypeObject *>(cls.ptr()), def);
    if (!descr || PyObject_SetAttrString(cls.ptr(), "update", descr) != 0) {
        Py_XDECREF(descr);
        throw nb::python_error();
    }
    Py_DECREF(descr);
}

PyMethodDef kEmaUpdate = {"update", reinterpret_cast<PyCFunction>(&update_o<hean::Ema, &hean::Ema::update_o3>), METH_O,
                          "update($self, x, /)\n--\n\nFeed one value; returns the EMA, NaN until ready."};
PyMethodDef kVolUpdate = {"update",
                          reinterpret_cast<PyCFunction>(&update_o<hean::RollingLogReturnStd, &hean::RollingLogReturnStd::update>),
                          METH_O,
                          "update($self, close, /)\n--\n\nFeed one close (finite, > 0, else ValueError and the state "
                          "is unchanged); returns the std, NaN until ready."};
PyMethodDef kSmaUpdate = {"update", reinterpret_cast<PyCFunction>(&update_o<hean::Sma, &hean::Sma::update>), METH_O,
                          "update($self, x, /)\n--\n\nFeed one value; returns the SMA, NaN until ready."};
PyMethodDef kRsiUpdate = {"update", reinterpret_cast<PyCFunction>(&update_o<hean::Rsi, &hean::Rsi::update>), METH_O,
                          "update($self, x, /)\n--\n\nFeed one value; returns RSI in [0, 100], NaN until ready."};
PyMethodDef kZUpdate = {"update", reinterpret_cast<PyCFunction>(&update_o<hean::ZScore, &hean::ZScore::update>), METH_O,
                        "update($self, x, /)\n--\n\nFeed one value; returns the z-score, NaN until ready."};
PyMethodDef kBbUpdate = {"update", reinterpret_cast<PyCFunction>(&bollinger_update_o), METH_O,
                         "update($self, x, /)\n--\n\nFeed one value; returns (upper, middle, lower), NaN until ready."};

}  // namespace

NB_MODULE(_native, m) {
    m.doc() =
        "hean native indicator kernels (C++, nanobind). Use hean.indicators, which "
        "documents units and formulas; hean.indicators.reference is the pure-Python "
        "reference with identical semantics.";

    m.attr("MAX_PERIOD") = hean::kMaxPeriod;

    // ---- batch -------------------------------------------------------------
    m.def("batch_isa", []() { return std::string(hean::batch_isa()); },
          "The compiled form the fast batch kernels run: 'avx2' or 'baseline' (x86-64 "
          "SSE2); chosen from the CPU on first use (HEAN_NATIVE_ISA=baseline forces the "
          "baseline). Both give identical bits.");
    m.def("set_batch_isa", [](const std::string &name) {
              if (!hean::set_batch_isa(name.c_str()))
                  throw std::invalid_argument("isa must be one of 'avx2' (on a CPU with AVX2), "
                                              "'baseline', 'auto', got '" + name + "'");
          }, "isa"_a,
          "Select the fast batch kernels' compiled form: 'avx2', 'baseline' or 'auto' "
          "(the CPU's best). ValueError for another name or 'avx2' without CPU support.");
    m.def("ema", &ema, "x"_a, "period"_a, "exact"_a = false,
          "EMA of x (TA-Lib seeding). Returns a new float64 array of len(x); NaN for "
          "indices < period-1, out[period-1] = mean(x[:period]), then "
          "out[i] = out[i-1] + alpha*(x[i]-out[i-1]), alpha = 2/(period+1). "
          "period in [1, MAX_PERIOD]. Default: the fast form ((1-alpha)*v + alpha*x with a "
          "4-step look-ahead; ~1e-14 relative from the streaming "
          "EMA). exact=True: the streaming formula, bit-identical to EMA.update and TA_EMA.");
    m.def("ema_into", &ema_into, "x"_a, "period"_a, "out"_a.noconvert(), "exact"_a = false,
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

    m.def("atr", &atr, "high"_a, "low"_a, "close"_a, "period"_a, "exact"_a = false,
          "Wilder's ATR as TA-Lib computes it. TR[i] = max(high[i]-low[i], "
          "|high[i]-close[i-1]|, |low[i]-close[i-1]|) for i >= 1; out[period] = "
          "mean(TR[1..period]); then out[i] = (out[i-1]*(period-1) + TR[i]) / period; "
          "NaN before index period. period in [1, MAX_PERIOD]. Default: the fast form "
          "(c*v + TR/period with a 4-step look-ahead; ~1e-14 relative); exact=True: the "
          "streaming formula, bit-identical to ATR.update.");
    m.def("atr_into", &atr_into, "high"_a, "low"_a, "close"_a, "period"_a, "out"_a.noconvert(),
          "exact"_a = false,
          "Like atr() but writes into `out` (writable C-contiguous float64, same length "
          "as high; may alias an input).");

    // ---- streaming ---------------------------------------------------------
    nb::class_<hean::Ema>(m, "EMA",
                          "Streaming EMA with TA-Lib seeding; update(x) returns exactly what "
                          "ema() returns at the same index (NaN until `period` values).")
        .def(nb::init<std::int64_t>(), "period"_a)
        .def("update", &hean::Ema::update_o3, "x"_a,
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
        .def("update", &hean::Atr::update_o3, "high"_a, "low"_a, "close"_a,
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

    // ---- more batch kernels --------------------------------------------------
    m.def("sma", &sma, "x"_a, "period"_a, "exact"_a = false,
          "Simple moving average, TA-Lib operation order (bit-identical to TA_SMA). x: "
          "float64 (n,); returns float64 (n,), units of x; NaN for i < period-1; "
          "out[i] = mean(x[i-period+1..i]) via a running sum. period in [1, MAX_PERIOD]. "
          "Default: S += x[i]-x[i-period] with a 4-step look-ahead, re-summed exactly every "
          "max(1024, period) outputs (~1e-15 relative); exact=True: TA-Lib's running sum, "
          "bit-identical to SMA.update and TA_SMA.");
    m.def("sma_into", &sma_into, "x"_a, "period"_a, "out"_a.noconvert(), "exact"_a = false,
          "sma() written into `out` (writable C-contiguous float64 of len(x)).");
    m.def("rsi", &rsi, "x"_a, "period"_a, "exact"_a = false,
          "Wilder's RSI (TA_RSI seeding and operation order). x: float64 (n,); returns "
          "float64 (n,) in [0, 100]; NaN for i < period; seed = simple means of gains and "
          "losses over the first `period` changes, then avg = (avg*(period-1)+move)/period; "
          "RSI = 100*g/(g+l), 0 when g+l == 0. Source: Wilder (1978); TA-Lib TA_RSI. "
          "Default: the averages as c*avg + move/period with a 4-step look-ahead (~1e-14 "
          "relative); exact=True: bit-identical to RSI.update.");
    m.def("rsi_into", &rsi_into, "x"_a, "period"_a, "out"_a.noconvert(), "exact"_a = false,
          "rsi() written into `out` (writable C-contiguous float64 of len(x)).");
    m.def("bollinger", &bollinger, "x"_a, "period"_a, "k"_a = 2.0, "exact"_a = false,
          "Bollinger bands. x: float64 (n,); returns (upper, middle, lower), each float64 "
          "(n,), units of x. middle = sma(x, period) (TA-Lib-identical); width = k * "
          "population std (ddof=0) of the same window (sliding Welford + exact recompute). "
          "NaN for i < period-1. k in [0, 1000]. Source: J. Bollinger, Bollinger on "
          "Bollinger Bands (2001); TA-Lib TA_BBANDS (MA type SMA). Default: the same sliding "
          "Welford update with multiplications by 1/period, middle = the Welford mean "
          "(~1e-14 relative); exact=True: bit-identical to Bollinger.update.");
    m.def("bollinger_into", &bollinger_into, "x"_a, "period"_a, "k"_a, "upper"_a.noconvert(),
          "middle"_a.noconvert(), "lower"_a.noconvert(), "exact"_a = false,
          "bollinger() written into three caller arrays.");
    m.def("zscore", &zscore, "x"_a, "window"_a,
          "Rolling z-score: (x[i] - mean) / pstd over x[i-window+1..i] (ddof=0); 0 when "
          "the std is 0; NaN for i < window-1. Dimensionless. window in [2, MAX_PERIOD].");
    m.def("zscore_into", &zscore_into, "x"_a, "window"_a, "out"_a.noconvert(),
          "zscore() written into `out`.");
    m.def("vwap", &vwap, "price"_a, "volume"_a, "window"_a,
          "Rolling volume-weighted average price over the last `window` bars: "
          "sum(price*volume)/sum(volume); NaN for i < window-1 and while the window's "
          "volume is 0. price: float64 (n,) finite > 0 (e.g. typical price (h+l+c)/3); "
          "volume: float64 (n,) finite >= 0 (base coin). Running sums with an exact "
          "recompute every `window` bars. window in [1, MAX_PERIOD].");
    m.def("vwap_into", &vwap_into, "price"_a, "volume"_a, "window"_a, "out"_a.noconvert(),
          "vwap() written into `out`.");
    m.def("ofi", &ofi, "bid_px"_a, "bid_sz"_a, "ask_px"_a, "ask_sz"_a, "window"_a,
          "Order-flow imbalance (Cont, Kukanov & Stoikov 2014) of top-of-book updates: "
          "e[i] = 1{Pb[i]>=Pb[i-1]}qb[i] - 1{Pb[i]<=Pb[i-1]}qb[i-1] - 1{Pa[i]<=Pa[i-1]}qa[i] "
          "+ 1{Pa[i]>=Pa[i-1]}qa[i-1]; out[i] = sum of e over the last `window` updates "
          "(NaN for i < window). Inputs float64 (n,) each; units of size (base coin).");
    m.def("ofi_into", &ofi_into, "bid_px"_a, "bid_sz"_a, "ask_px"_a, "ask_sz"_a, "window"_a,
          "out"_a.noconvert(), "ofi() written into `out`.");
    m.def("fused", &fused, "high"_a, "low"_a, "close"_a, "ema_fast"_a = 20, "ema_slow"_a = 100,
          "sma"_a = 20, "rsi"_a = 14, "atr"_a = 14, "bb"_a = 20, "bb_k"_a = 2.0, "exact"_a = false,
          "One sweep over (high, low, close) float64 (n,) computing ema(close, ema_fast), "
          "ema(close, ema_slow), sma(close, sma), rsi(close, rsi), atr(high, low, close, atr) "
          "and bollinger(close, bb, bb_k); returns a dict of float64 (n,) arrays keyed "
          "ema_fast, ema_slow, sma, rsi, atr, bb_upper, bb_middle, bb_lower. Default: one "
          "sweep in blocks of 4096 bars running each indicator's fast form (state carried "
          "between blocks), ~1e-14 relative; exact=True: one loop of the streaming step code, "
          "each output bit-identical to the exact single-indicator kernel.");
    m.def("fused_into", &fused_into, "high"_a, "low"_a, "close"_a, "ema_fast"_a, "ema_slow"_a,
          "sma"_a, "rsi"_a, "atr"_a, "bb"_a, "bb_k"_a, "out"_a, "exact"_a = false,
          "fused() written into a dict of caller arrays with the same keys.");

    // ---- more streaming ------------------------------------------------------
    nb::class_<hean::Sma>(m, "SMA", "Streaming SMA; update(x) == sma()[i] bit for bit.")
        .def(nb::init<std::int64_t>(), "period"_a)
        .def("update", &hean::Sma::update, "x"_a, "Feed one value; returns the SMA, NaN until ready.")
        .def("reset", &hean::Sma::reset)
        .def_prop_ro("value", &hean::Sma::value)
        .def_prop_ro("ready", &hean::Sma::ready)
        .def_prop_ro("count", &hean::Sma::count)
        .def_prop_ro("period", &hean::Sma::period);
    nb::class_<hean::Rsi>(m, "RSI", "Streaming Wilder RSI; update(x) == rsi()[i] bit for bit.")
        .def(nb::init<std::int64_t>(), "period"_a)
        .def("update", &hean::Rsi::update, "x"_a, "Feed one value; returns RSI in [0, 100], NaN until ready.")
        .def("reset", &hean::Rsi::reset)
        .def_prop_ro("value", &hean::Rsi::value)
        .def_prop_ro("ready", &hean::Rsi::ready)
        .def_prop_ro("count", &hean::Rsi::count)
        .def_prop_ro("period", &hean::Rsi::period);
    nb::class_<PyBollinger>(m, "Bollinger",
                            "Streaming Bollinger bands; update(x) returns (upper, middle, lower) "
                            "== bollinger() at the same index bit for bit.")
        .def(nb::init<std::int64_t, double>(), "period"_a, "k"_a = 2.0)
        .def("update", [](PyBollinger &b, double x) { return bands_tuple(b, b.update(x)); }, "x"_a,
             nb::sig("def update(self, x: float) -> tuple[float, float, float]"),
             "Feed one value; returns (upper, middle, lower), NaN until ready.")
        .def("reset", [](PyBollinger &b) { b.reset(); })
        .def_prop_ro("value", [](const PyBollinger &b) {
            const hean::Bands v = b.value();
            return std::make_tuple(v.upper, v.middle, v.lower);
        })
        .def_prop_ro("ready", [](const PyBollinger &b) { return b.ready(); })
        .def_prop_ro("count", [](const PyBollinger &b) { return b.count(); })
        .def_prop_ro("period", [](const PyBollinger &b) { return b.period(); })
        .def_prop_ro("k", [](const PyBollinger &b) { return b.k(); });
    nb::class_<hean::ZScore>(m, "ZScore", "Streaming rolling z-score; update(x) == zscore()[i].")
        .def(nb::init<std::int64_t>(), "window"_a)
        .def("update", &hean::ZScore::update, "x"_a)
        .def("reset", &hean::ZScore::reset)
        .def_prop_ro("value", &hean::ZScore::value)
        .def_prop_ro("ready", &hean::ZScore::ready)
        .def_prop_ro("count", &hean::ZScore::count)
        .def_prop_ro("window", &hean::ZScore::window);
    nb::class_<hean::Vwap>(m, "VWAP", "Streaming rolling VWAP; update(price, volume) == vwap()[i]. "
                                      "Invalid price/volume raise ValueError, state unchanged.")
        .def(nb::init<std::int64_t>(), "window"_a)
        .def("update", &hean::Vwap::update, "price"_a, "volume"_a)
        .def("reset", &hean::Vwap::reset)
        .def_prop_ro("value", &hean::Vwap::value)
        .def_prop_ro("ready", &hean::Vwap::ready)
        .def_prop_ro("count", &hean::Vwap::count)
        .def_prop_ro("window", &hean::Vwap::window);
    nb::class_<hean::Ofi>(m, "OFI", "Streaming order-flow imbalance; update(bid_px, bid_sz, ask_px, "
                                    "ask_sz) == ofi()[i].")
        .def(nb::init<std::int64_t>(), "window"_a)
        .def("update", &hean::Ofi::update, "bid_px"_a, "bid_sz"_a, "ask_px"_a, "ask_sz"_a)
        .def("reset", &hean::Ofi::reset)
        .def_prop_ro("value", &hean::Ofi::value)
        .def_prop_ro("ready", &hean::Ofi::ready)
        .def_prop_ro("count", &hean::Ofi::count)
        .def_prop_ro("window", &hean::Ofi::window);

    // the fast update() paths (see update_o above) replace nanobind's methods
    set_fast_update(m.attr("EMA"), &kEmaUpdate);
    set_fast_update(m.attr("RollingLogReturnStd"), &kVolUpdate);
    set_fast_update(m.attr("SMA"), &kSmaUpdate);
    set_fast_update(m.attr("RSI"), &kRsiUpdate);
    set_fast_update(m.attr("ZScore"), &kZUpdate);
    set_fast_update(m.attr("Bollinger"), &kBbUpdate);

    bind_engine(m);
    bind_book(m);
    bind_market(m);
    bind_fill(m);
}
