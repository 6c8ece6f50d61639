// hean native indicator kernels: the fast batch forms (the default batch forms).
//
// Each kernel evaluates the same formula as the streaming class of the same
// name with a different operation order, so the results differ from the
// streaming (exact) forms only by rounding: ~1e-14 relative of the input's
// scale, tested at 1e-12 (the bound). How:
//
//  * The first-order linear recurrences v[i] = c v[i-1] + u[i] (EMA, Wilder's
//    RSI gain/loss averages, ATR) run with a 4-step look-ahead,
//    v[i+k] = c^k v[i-1] + s_k, s_1 = u_i, s_k = c s_{k-1} + u_{i+k-1}, so the
//    serial dependency chain advances four elements per multiply-add; RSI's
//    gain and loss chains share one 2-lane vector.
//  * EMA, SMA and ATR stream from the inputs straight to `out` (their loops
//    are light; a steady stream of loads overlaps memory best), ATR with four
//    true ranges per vector step. RSI and Bollinger work in blocks of kB bars:
//    a vectorisable pre-pass (gains and losses / p), the serial part (the
//    recurrence; Welford's update), a vectorisable post-pass (RSI's
//    100 g/(g+l), Bollinger's k sqrt(M2/p) and bands), with a software
//    prefetch of the next block so memory traffic does not come in bursts.
//  * Outputs of >= 4 MiB are written with non-temporal stores (SSE2
//    movntpd) where the kernel writes whole lines (RSI, ATR, Bollinger): no
//    read-for-ownership traffic, the inputs stay cached. Block boundaries
//    depend on the index only, so results never depend on `out`'s alignment.
//  * Every kernel is compiled twice, for the x86-64 baseline (SSE2) and with
//    AVX2 (GCC/Clang target attribute); the AVX2 form is picked at run time
//    when the CPU has it (set_batch_isa() / HEAN_NATIVE_ISA=baseline force the
//    baseline). Both forms perform the same IEEE operations in the same order
//    (vectorisation here never reassociates; -ffp-contract=off forbids FMA),
//    so they give identical bits; the tests check both.
//  * Work is checked in chunks: a chunk whose final state is not finite (a
//    NaN/inf input) is redone with the exact step formula, which then runs to
//    the end, so NaN/inf outputs are the streaming classes'.
//
// Outputs must not overlap the inputs (the callers in indicators.cpp run the
// exact forms then), except RSI, which reads each block (and carries x[i-1])
// before writing it, so `out` may be `x`.
#include "fast_kernels.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "hean/indicators.hpp"

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define HEAN_X86 1
#include <emmintrin.h>
#define HEAN_AVX2 __attribute__((target("avx2")))
#endif
#if defined(__GNUC__) || defined(__clang__)
#define HEAN_AI __attribute__((always_inline)) inline
#else
#define HEAN_AI inline
#endif

namespace hean::fast {
namespace {

constexpr std::size_t kB = 512;              // elements per inner block (4 KiB per buffer)
constexpr std::size_t kNtMin = std::size_t{1} << 19;  // outputs >= 4 MiB: non-temporal stores
constexpr std::size_t kFusedBlock = 16384;   // bars per sweep block of the fused pass (3 x 128 KiB of inputs)

inline bool want_nt(std::size_t n, const double *out) {
    return n >= kNtMin && (reinterpret_cast<std::uintptr_t>(out) & 7u) == 0;
}

inline void fence(bool nt) {
#ifdef HEAN_X86
    if (nt) _mm_sfence();
#else
    (void)nt;
#endif
}

// dst[0..m) = src[0..m); when nt (dst 8-byte aligned) the whole 64-byte lines
// with non-temporal stores (a partial line written that way costs a
// read-modify-write in the memory controller), the partial lines at either
// end with ordinary stores.
HEAN_AI void put(double *dst, const double *src, std::size_t m, bool nt) {
#ifdef HEAN_X86
    if (nt) {
        std::size_t k = 0;
        const std::size_t head = ((64u - (reinterpret_cast<std::uintptr_t>(dst) & 63u)) & 63u) / 8u;
        for (; k < head && k < m; ++k) dst[k] = src[k];
        for (; k + 8 <= m; k += 8) {
            _mm_stream_pd(dst + k, _mm_loadu_pd(src + k));
            _mm_stream_pd(dst + k + 2, _mm_loadu_pd(src + k + 2));
            _mm_stream_pd(dst + k + 4, _mm_loadu_pd(src + k + 4));
            _mm_stream_pd(dst + k + 6, _mm_loadu_pd(src + k + 6));
        }
        for (; k < m; ++k) dst[k] = src[k];
        return;
    }
#else
    (void)nt;
#endif
    std::memcpy(dst, src, m * sizeof(double));
}

// Elements in the next block: at most kB. Blocks depend on the index only, never
// on the address of `out`, so results do not depend on the output's alignment.
inline std::size_t block_len(const double *, std::size_t i, std::size_t b) { return std::min(kB, b - i); }

HEAN_AI void prefetch(const double *p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 3);
#else
    (void)p;
#endif
}

// out[0..3] = (a, b, c, d); non-temporal when nt (out 16-byte aligned)
HEAN_AI void store4(double *out, double a, double b, double c, double d, bool nt) {
#ifdef HEAN_X86
    if (nt) {
        _mm_stream_pd(out, _mm_set_pd(b, a));
        _mm_stream_pd(out + 2, _mm_set_pd(d, c));
        return;
    }
#else
    (void)nt;
#endif
    out[0] = a;
    out[1] = b;
    out[2] = c;
    out[3] = d;
}

struct Pow4 {
    double c, c2, c3, c4;
    explicit Pow4(double c_) : c(c_), c2(c_ * c_), c3(c2 * c_), c4(c2 * c2) {}
};

// w[k] = v_k with v_k = c v_{k-1} + u[k], v_{-1} = v; returns the last v.
// pre(k) runs once per 4 elements (software prefetch of the next block's inputs,
// so that memory traffic overlaps the serial chain instead of coming in bursts).
template <class Pre>
HEAN_AI double rec4(double v, const Pow4 &P, const double *u, double *w, std::size_t m, Pre &&pre) {
    std::size_t k = 0;
    for (; k + 4 <= m; k += 4) {
        pre(k);
        const double s2 = P.c * u[k] + u[k + 1];
        const double s3 = P.c * s2 + u[k + 2];
        const double s4 = P.c * s3 + u[k + 3];
        w[k] = P.c * v + u[k];
        w[k + 1] = P.c2 * v + s2;
        w[k + 2] = P.c3 * v + s3;
        v = P.c4 * v + s4;
        w[k + 3] = v;
    }
    for (; k < m; ++k) {
        v = P.c * v + u[k];
        w[k] = v;
    }
    return v;
}

// ---- EMA ----------------------------------------------------------------------
// EMA, ATR and SMA stream straight from the inputs to `out` (no block buffers:
// their loops are light enough that memory access is the bound, and a steady
// stream of loads overlaps it best), in chunks of kB outputs so that a
// non-finite state can be caught and the chunk redone with the exact formula.
struct EmaK {
    std::size_t p;
    double alpha, sum = 0.0, v = kNaN;
    Pow4 P;
    bool exact = false;  // after a non-finite input: the streaming formula from there on
    explicit EmaK(std::int64_t period)
        : p(static_cast<std::size_t>(period)), alpha(2.0 / (static_cast<double>(period) + 1.0)),
          P(1.0 - alpha) {}
    HEAN_AI void run(const double *x, std::size_t i, std::size_t b, double *out) {
        for (; i < b && i + 1 < p; ++i) {
            sum += x[i];
            out[i] = kNaN;
        }
        if (i < b && i + 1 == p) {
            sum += x[i];
            v = sum / static_cast<double>(p);
            out[i++] = v;
        }
        const double a = alpha, c = P.c, c2 = P.c2, c3 = P.c3, c4 = P.c4;
        double vv = v;
        while (i < b && !exact) {
            const std::size_t e = std::min(b, i + kB);
            const double v0 = vv;
            std::size_t j = i;
            for (; j + 4 <= e; j += 4) {
                const double u0 = a * x[j], u1 = a * x[j + 1], u2 = a * x[j + 2], u3 = a * x[j + 3];
                const double s2 = c * u0 + u1, s3 = c * s2 + u2, s4 = c * s3 + u3;
                out[j] = c * vv + u0;
                out[j + 1] = c2 * vv + s2;
                out[j + 2] = c3 * vv + s3;
                vv = c4 * vv + s4;
                out[j + 3] = vv;
            }
            for (; j < e; ++j) {
                vv = c * vv + a * x[j];
                out[j] = vv;
            }
            if (!std::isfinite(vv)) {  // a non-finite input in this chunk: redo it exactly
                vv = v0;
                exact = true;
                break;
            }
            i = e;
        }
        for (; i < b; ++i) {  // the streaming formula (NaN/inf behave as in EMA.update)
            vv = vv + a * (x[i] - vv);
            out[i] = vv;
        }
        v = vv;
    }
};

// ---- RSI (Wilder) -----------------------------------------------------------------
typedef double v2d __attribute__((vector_size(16)));

struct RsiK {
    std::size_t p;
    double pd, c, inv, gain = 0.0, loss = 0.0, prev = kNaN;
    bool exact = false;  // after a non-finite input: the streaming formula from there on
    explicit RsiK(std::int64_t period)
        : p(static_cast<std::size_t>(period)), pd(static_cast<double>(period)), c((pd - 1.0) / pd),
          inv(1.0 / pd) {}
    HEAN_AI void run(const double *x, std::size_t i, std::size_t b, double *out, bool nt) {
        for (; i < b && i <= p; ++i) {  // warm-up and seed: simple means of the first p changes
            if (i == 0) {
                prev = x[0];
                out[0] = kNaN;
                continue;
            }
            const double d = x[i] - prev, ad = std::fabs(d);
            prev = x[i];
            loss += 0.5 * (ad - d);
            gain += 0.5 * (d + ad);
            if (i < p) {
                out[i] = kNaN;
            } else {
                loss /= pd;
                gain /= pd;
                const double s = gain + loss;
                out[i] = s != 0.0 ? 100.0 * (gain / s) : 0.0;
            }
        }
        if (i >= b) return;
        // (gain, loss) = c (gain, loss) + (max(d,0), max(-d,0))/p, both lanes at once
        alignas(64) double ug[2 * kB + 24], G[kB + 40], L[kB + 56], w[kB + 24];
        const v2d c1 = {c, c}, c2 = c1 * c1, c3 = c2 * c1, c4 = c2 * c2;
        v2d v = {gain, loss};
        double pv = prev;
        while (i < b && !exact) {
            const std::size_t m = block_len(out, i, b);
            const double *xb = x + i;
            // (d + |d|)/2 and (|d| - d)/2 are exactly max(d, 0) and max(-d, 0)
            {
                const double d = xb[0] - pv, ad = std::fabs(d);
                ug[0] = (0.5 * (d + ad)) * inv;
                ug[1] = (0.5 * (ad - d)) * inv;
            }
            for (std::size_t k = 1; k < m; ++k) {
                const double d = xb[k] - xb[k - 1], ad = std::fabs(d);
                ug[2 * k] = (0.5 * (d + ad)) * inv;
                ug[2 * k + 1] = (0.5 * (ad - d)) * inv;
            }
            const v2d v0 = v;
            const double pv0 = pv;
            pv = xb[m - 1];
            std::size_t k = 0;
            const std::size_t nx = i + m, last = b - 1;  // prefetch the next block
            for (; k + 4 <= m; k += 4) {
                prefetch(x + std::min(nx + k, last));
                v2d u0, u1, u2, u3;
                std::memcpy(&u0, ug + 2 * k, 16);
                std::memcpy(&u1, ug + 2 * k + 2, 16);
                std::memcpy(&u2, ug + 2 * k + 4, 16);
                std::memcpy(&u3, ug + 2 * k + 6, 16);
                const v2d s2 = c1 * u0 + u1, s3 = c1 * s2 + u2, s4 = c1 * s3 + u3;
                const v2d w0 = c1 * v + u0, w1 = c2 * v + s2, w2 = c3 * v + s3;
                v = c4 * v + s4;
                G[k] = w0[0];
                L[k] = w0[1];
                G[k + 1] = w1[0];
                L[k + 1] = w1[1];
                G[k + 2] = w2[0];
                L[k + 2] = w2[1];
                G[k + 3] = v[0];
                L[k + 3] = v[1];
            }
            for (; k < m; ++k) {
                v2d u0;
                std::memcpy(&u0, ug + 2 * k, 16);
                v = c1 * v + u0;
                G[k] = v[0];
                L[k] = v[1];
            }
            if (!(std::isfinite(v[0]) && std::isfinite(v[1]))) {  // redo this block exactly
                v = v0;
                pv = pv0;
                exact = true;
                break;
            }
            // RSI = 100 g/(g+l), 0 when g+l == 0 (then g == +0: g, l >= +0, so
            // dividing by s + 1 = 1 instead gives the same 0 without a branch)
            for (std::size_t q = 0; q < m; ++q) {
                const double g = G[q], s = g + L[q];
                w[q] = 100.0 * (g / (s + static_cast<double>(s == 0.0)));
            }
            put(out + i, w, m, nt);
            i += m;
        }
        double g = v[0], l = v[1];
        const double pd_ = pd, pm1 = pd - 1.0;
        for (; i < b; ++i) {  // the streaming formula (NaN/inf behave as in RSI.update)
            const double d = x[i] - pv;
            pv = x[i];
            out[i] = wilder_rsi_step(d, g, l, pd_, pm1);
        }
        gain = g;
        loss = l;
        prev = pv;
    }
};

// ---- ATR (Wilder) -----------------------------------------------------------------
typedef double v4d __attribute__((vector_size(32)));
typedef long long v4i __attribute__((vector_size(32)));
// fabs of four lanes: clear the sign bits (a macro: a function taking v4d by value
// would change the ABI between the baseline and the AVX2 compilation)
#define HEAN_VABS(v) \
    reinterpret_cast<v4d>(reinterpret_cast<v4i>(v) & \
                          v4i{0x7fffffffffffffffLL, 0x7fffffffffffffffLL, 0x7fffffffffffffffLL, 0x7fffffffffffffffLL})
struct AtrK {
    std::size_t p;
    double pd, inv, sum = 0.0, v = kNaN, prev = kNaN;
    Pow4 P;
    bool exact = false;  // after a non-finite true range: the streaming formula from there on
    explicit AtrK(std::int64_t period)
        : p(static_cast<std::size_t>(period)), pd(static_cast<double>(period)), inv(1.0 / pd),
          P((pd - 1.0) / pd) {}
    HEAN_AI void run(const double *h, const double *l, const double *c, std::size_t i, std::size_t b,
                     double *out, bool nt) {
        for (; i < b && i <= p; ++i) {
            if (i == 0) {
                prev = c[0];
                out[0] = kNaN;
                continue;
            }
            sum += true_range(h[i], l[i], prev);
            prev = c[i];
            if (i < p) {
                out[i] = kNaN;
            } else {
                v = sum / pd;
                out[i] = v;
            }
        }
        const double iv = inv, k1 = P.c, k2 = P.c2, k3 = P.c3, k4 = P.c4;
        double vv = v;
        // non-temporal stores need 16-byte alignment: the groups of 4 start at i
        nt = nt && (reinterpret_cast<std::uintptr_t>(out + i) & 15u) == 0;
        while (i < b && !exact) {
            const std::size_t e = std::min(b, i + kB);
            const double v0 = vv;
            std::size_t j = i;
            for (; j + 4 <= e; j += 4) {
                // four true ranges at once: the same comparison chain as true_range()
                v4d hh, ll, pc;
                std::memcpy(&hh, h + j, 32);
                std::memcpy(&ll, l + j, 32);
                std::memcpy(&pc, c + j - 1, 32);
                v4d g = hh - ll;
                const v4d a2 = HEAN_VABS(pc - hh), a3 = HEAN_VABS(ll - pc);
                g = a2 > g ? a2 : g;
                g = a3 > g ? a3 : g;
                const v4d uu = g * iv;
                const double u0 = uu[0], u1 = uu[1], u2 = uu[2], u3 = uu[3];
                const double s2 = k1 * u0 + u1, s3 = k1 * s2 + u2, s4 = k1 * s3 + u3;
                const double w0 = k1 * vv + u0, w1 = k2 * vv + s2, w2 = k3 * vv + s3;
                vv = k4 * vv + s4;
                store4(out + j, w0, w1, w2, vv, nt);
            }
            for (; j < e; ++j) {
                vv = k1 * vv + true_range(h[j], l[j], c[j - 1]) * iv;
                out[j] = vv;
            }
            if (!std::isfinite(vv)) {  // redo this chunk exactly
                vv = v0;
                exact = true;
                break;
            }
            i = e;
        }
        double pc = i > 0 ? c[i - 1] : prev;
        const double pm1 = pd - 1.0;
        for (; i < b; ++i) {  // the streaming formula (NaN/inf behave as in ATR.update)
            const double tr = true_range(h[i], l[i], pc);
            pc = c[i];
            vv = (vv * pm1 + tr) / pd;
            out[i] = vv;
        }
        v = vv;
    }
};

// ---- SMA ----------------------------------------------------------------------------
// S[i] = S[i-1] + (x[i] - x[i-p]) with a 4-step look-ahead, the window re-summed
// exactly every max(1024, p) outputs (at most one extra add per output).
struct SmaK {
    std::size_t p, every, left = 0;
    double pd, sum = 0.0;
    bool exact = false;  // after a non-finite input: TA-Lib's running sum from there on
    explicit SmaK(std::int64_t period)
        : p(static_cast<std::size_t>(period)), every(std::max<std::size_t>(1024, p)),
          pd(static_cast<double>(period)) {}
    HEAN_AI void run(const double *x, std::size_t i, std::size_t b, double *out) {
        for (; i < b && i + 1 < p; ++i) out[i] = kNaN;
        double s = sum;
        const double q = pd;
        while (i < b && !exact) {
            if (left == 0) {
                double t = 0.0;
                for (std::size_t j = i + 1 - p; j <= i; ++j) t += x[j];
                s = t;
                out[i++] = s / q;
                left = every - 1;
                continue;
            }
            const std::size_t e = i + std::min(std::min(kB, b - i), left);
            const double s0 = s;
            std::size_t j = i;
            for (; j + 4 <= e; j += 4) {
                const double d0 = x[j] - x[j - p], d1 = x[j + 1] - x[j + 1 - p];
                const double d2 = x[j + 2] - x[j + 2 - p], d3 = x[j + 3] - x[j + 3 - p];
                const double s1 = d0 + d1, s2 = s1 + d2, s3 = s2 + d3;
                out[j] = (s + d0) / q;
                out[j + 1] = (s + s1) / q;
                out[j + 2] = (s + s2) / q;
                s += s3;
                out[j + 3] = s / q;
            }
            for (; j < e; ++j) {
                s += x[j] - x[j - p];
                out[j] = s / q;
            }
            if (!std::isfinite(s)) {  // a non-finite input in this chunk: redo it exactly
                (void)s0;
                exact = true;
                // TA-Lib's running sum before step i: x[i-p+1 .. i-1]
                s = 0.0;
                for (std::size_t k = i + 1 - p; k < i; ++k) s += x[k];
                break;
            }
            left -= e - i;
            i = e;
        }
        for (; i < b; ++i) {  // TA-Lib's order (NaN/inf behave as in SMA.update)
            s += x[i];
            out[i] = s / q;
            s -= x[i + 1 - p];
        }
        sum = s;
    }
};

// ---- Bollinger ------------------------------------------------------------------
// Sliding Welford update of the window's mean and M2 with multiplications by
// 1/p, an exact two-pass re-summation every multiple of p >= 128 outputs and
// whenever M2 drops below kCancelGuard of its largest value since the last
// one; middle = the Welford mean; the bands k sqrt(M2/p) in a vectorised pass.
struct BbK {
    std::size_t w, every, until;
    double inv, k, mean = 0.0, m2 = 0.0, m2_ref = 0.0;
    // after a non-finite input: the streaming class from there on
    std::unique_ptr<Bollinger> exact;
    BbK(std::int64_t window, double k_)
        : w(static_cast<std::size_t>(window)), every(w * ((127 + w) / w)), until(every),
          inv(1.0 / static_cast<double>(window)), k(k_) {}
    HEAN_AI void recompute(const double *x, std::size_t i) {  // window x[i+1-w .. i]
        const double *v = x + (i + 1 - w);
        double sum = 0.0;
        for (std::size_t j = 0; j < w; ++j) sum += v[j];
        const double mn = sum * inv;
        double q = 0.0;
        for (std::size_t j = 0; j < w; ++j) {
            const double d = v[j] - mn;
            q += d * d;
        }
        mean = mn;
        m2 = m2_ref = q;
    }
    HEAN_AI void run(const double *x, std::size_t i, std::size_t b, double *upper, double *middle,
                     double *lower, bool nt) {
        for (; i < b && i + 1 < w; ++i) upper[i] = middle[i] = lower[i] = kNaN;
        alignas(64) double mb[kB + 24], qb[kB + 40], ub[kB + 56], lb[kB + 72];
        while (i < b && !exact) {
            const std::size_t m = block_len(upper, i, b);
            double mn = mean, q = m2, qr = m2_ref;
            bool bad = false;  // a non-finite state: only a re-summation clears it
            const std::size_t nx = i + m, last = b - 1;  // prefetch the next block
            for (std::size_t t = 0; t < m; ++t) {
                const std::size_t j = i + t;
                if ((t & 7) == 0) prefetch(x + std::min(nx + t, last));
                if (j + 1 == w || --until == 0) {
                    bad = bad || !(std::isfinite(mn) && std::isfinite(q));
                    recompute(x, j);
                    mn = mean;
                    q = m2;
                    qr = m2_ref;
                    until = every;
                } else {
                    const double xi = x[j], old = x[j - w];
                    const double delta = xi - old;
                    const double nm = mn + delta * inv;
                    q += delta * ((xi - nm) + (old - mn));
                    mn = nm;
                    if (q < qr * kCancelGuard) {
                        bad = bad || !(std::isfinite(mn) && std::isfinite(qr));
                        recompute(x, j);
                        mn = mean;
                        q = m2;
                        qr = m2_ref;
                    } else {
                        qr = std::max(qr, q);
                    }
                }
                mb[t] = mn;
                qb[t] = q;
            }
            if (bad || !(std::isfinite(mn) && std::isfinite(q))) {
                // a non-finite input in this block: redo it with the streaming class,
                // primed with the w-1 values before it (NaN/inf then behave as in
                // Bollinger.update, whose running-sum middle band keeps them)
                exact = std::make_unique<Bollinger>(static_cast<std::int64_t>(w), k);
                for (std::size_t j = i + 1 - w; j < i; ++j) exact->update(x[j]);
                break;
            }
            mean = mn;
            m2 = q;
            m2_ref = qr;
            const double kk = k, iv = inv;
            for (std::size_t t = 0; t < m; ++t) {
                const double qq = qb[t];
                const double wd = kk * std::sqrt((qq > 0.0 ? qq : 0.0) * iv);
                ub[t] = mb[t] + wd;
                lb[t] = mb[t] - wd;
            }
            put(upper + i, ub, m, nt);
            put(middle + i, mb, m, nt);
            put(lower + i, lb, m, nt);
            i += m;
        }
        if (exact) {
            for (; i < b; ++i) {
                const Bands r = exact->update(x[i]);
                upper[i] = r.upper;
                middle[i] = r.middle;
                lower[i] = r.lower;
            }
        }
    }
};

// ---- entry points, compiled for the baseline and for AVX2 -----------------------
HEAN_AI void ema_impl(const double *x, std::size_t n, std::int64_t period, double *out) {
    EmaK st(period);
    st.run(x, 0, n, out);
}
HEAN_AI void rsi_impl(const double *x, std::size_t n, std::int64_t period, double *out) {
    const bool nt = want_nt(n, out);
    RsiK st(period);
    st.run(x, 0, n, out, nt);
    fence(nt);
}
HEAN_AI void atr_impl(const double *h, const double *l, const double *c, std::size_t n,
                      std::int64_t period, double *out) {
    const bool nt = want_nt(n, out);
    AtrK st(period);
    st.run(h, l, c, 0, n, out, nt);
    fence(nt);
}
HEAN_AI void sma_impl(const double *x, std::size_t n, std::int64_t period, double *out) {
    SmaK st(period);
    st.run(x, 0, n, out);
}
HEAN_AI void bollinger_impl(const double *x, std::size_t n, std::int64_t period, double k,
                            double *upper, double *middle, double *lower) {
    const bool nt = want_nt(n, upper) && want_nt(n, middle) && want_nt(n, lower);
    BbK st(period, k);
    st.run(x, 0, n, upper, middle, lower, nt);
    fence(nt);
}
HEAN_AI void fused_impl(const double *high, const double *low, const double *close, std::size_t n,
                        const FusedParams &fp, const FusedOut &o) {
    const double *outs[] = {o.ema_fast, o.ema_slow, o.sma, o.rsi, o.atr, o.bb_upper, o.bb_middle, o.bb_lower};
    bool nt = true;
    for (const double *q : outs) nt = nt && want_nt(n, q);
    EmaK e1(fp.ema_fast), e2(fp.ema_slow);
    SmaK sm(fp.sma);
    RsiK rs(fp.rsi);
    AtrK at(fp.atr);
    BbK bb(fp.bb, fp.bb_k);
    // one sweep: the inputs of a block (3 x 128 KiB) stay in L2 while every
    // indicator runs over it; each indicator's state carries over.
    for (std::size_t a = 0; a < n; a += kFusedBlock) {
        const std::size_t b = std::min(n, a + kFusedBlock);
        e1.run(close, a, b, o.ema_fast);
        e2.run(close, a, b, o.ema_slow);
        sm.run(close, a, b, o.sma);
        rs.run(close, a, b, o.rsi, nt);
        at.run(high, low, close, a, b, o.atr, nt);
        bb.run(close, a, b, o.bb_upper, o.bb_middle, o.bb_lower, nt);
    }
    fence(nt);
}

#define HEAN_TWICE(name, params, args)                          \
    void name##_base params { name##_impl args; }               \
    HEAN_AVX2 void name##_avx2 params { name##_impl args; }

#ifdef HEAN_X86
HEAN_TWICE(ema, (const double *x, std::size_t n, std::int64_t p, double *o), (x, n, p, o))
HEAN_TWICE(rsi, (const double *x, std::size_t n, std::int64_t p, double *o), (x, n, p, o))
HEAN_TWICE(sma, (const double *x, std::size_t n, std::int64_t p, double *o), (x, n, p, o))
HEAN_TWICE(atr, (const double *h, const double *l, const double *c, std::size_t n, std::int64_t p, double *o),
           (h, l, c, n, p, o))
HEAN_TWICE(bollinger,
           (const double *x, std::size_t n, std::int64_t p, double k, double *u, double *m, double *l),
           (x, n, p, k, u, m, l))
HEAN_TWICE(fused,
           (const double *h, const double *l, const double *c, std::size_t n, const FusedParams &fp,
            const FusedOut &o),
           (h, l, c, n, fp, o))
#endif

// 0 = baseline, 1 = AVX2; -1 = not decided yet
std::atomic<int> g_isa{-1};

bool cpu_has_avx2() {
#ifdef HEAN_X86
    return __builtin_cpu_supports("avx2");
#else
    return false;
#endif
}

int isa() {
    int v = g_isa.load(std::memory_order_relaxed);
    if (v >= 0) return v;
    const char *env = std::getenv("HEAN_NATIVE_ISA");
    v = (env && std::strcmp(env, "baseline") == 0) ? 0 : (cpu_has_avx2() ? 1 : 0);
    g_isa.store(v, std::memory_order_relaxed);
    return v;
}

}  // namespace

}  // namespace hean::fast

namespace hean {
const char *batch_isa() { return fast::isa() == 1 ? "avx2" : "baseline"; }

bool set_batch_isa(const char *name) {
    if (std::strcmp(name, "baseline") == 0) {
        fast::g_isa.store(0);
        return true;
    }
    if (std::strcmp(name, "avx2") == 0) {
        if (!fast::cpu_has_avx2()) return false;
        fast::g_isa.store(1);
        return true;
    }
    if (std::strcmp(name, "auto") == 0) {
        fast::g_isa.store(-1);
        fast::isa();
        return true;
    }
    return false;
}
}  // namespace hean

namespace hean::fast {

#ifdef HEAN_X86
#define HEAN_DISPATCH(name, args) \
    do {                          \
        if (isa() == 1)           \
            name##_avx2 args;     \
        else                      \
            name##_base args;     \
    } while (0)
#else
#define HEAN_DISPATCH(name, args) name##_impl args
#endif

void ema(const double *x, std::size_t n, std::int64_t period, double *out) {
    HEAN_DISPATCH(ema, (x, n, period, out));
}
void rsi(const double *x, std::size_t n, std::int64_t period, double *out) {
    HEAN_DISPATCH(rsi, (x, n, period, out));
}
void sma(const double *x, std::size_t n, std::int64_t period, double *out) {
    HEAN_DISPATCH(sma, (x, n, period, out));
}
void atr(const double *high, const double *low, const double *close, std::size_t n, std::int64_t period,
         double *out) {
    HEAN_DISPATCH(atr, (high, low, close, n, period, out));
}
void bollinger(const double *x, std::size_t n, std::int64_t period, double k, double *upper,
               double *middle, double *lower) {
    HEAN_DISPATCH(bollinger, (x, n, period, k, upper, middle, lower));
}
void fused(const double *high, const double *low, const double *close, std::size_t n,
           const FusedParams &p, const FusedOut &o) {
    HEAN_DISPATCH(fused, (high, low, close, n, p, o));
}

}  // namespace hean::fast
