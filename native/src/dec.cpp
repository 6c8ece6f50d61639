// Exact decimals for the ledger (see include/hean/dec.hpp).
#include "hean/dec.hpp"

#include <charconv>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace hean {

namespace {
struct Pow10Table {
    i128 v[39];
    Pow10Table() {
        v[0] = 1;
        for (int i = 1; i < 39; ++i) v[i] = v[i - 1] * 10;
    }
};
const Pow10Table kPow10;

i128 abs128(i128 v) { return v < 0 ? -v : v; }

[[noreturn]] void overflow() {
    throw std::overflow_error("decimal coefficient exceeds 128 bits (precision overflow)");
}

// m * 10^k exactly, or overflow.
i128 scale_up(i128 m, int k) {
    if (m == 0) return 0;
    if (k < 0 || k > 38) overflow();
    i128 r;
    if (__builtin_mul_overflow(m, kPow10.v[k], &r)) overflow();
    return r;
}

// Drop `k` trailing digits of a non-negative m with half-even rounding; `sticky`
// says there were further non-zero digits beyond m.
i128 drop_digits_half_even(i128 m, int k, bool sticky) {
    if (k <= 0) return m;
    if (k > 38) return 0;
    const i128 p = kPow10.v[k];
    i128 q = m / p;
    const i128 r = m % p;
    const i128 half = p / 2;
    if (r > half || (r == half && (sticky || (q & 1)))) ++q;
    else if (r == half && !sticky && !(q & 1)) { /* tie to even: keep */ }
    return q;
}
}  // namespace

i128 pow10_128(int k) {
    if (k < 0 || k > 38) throw std::out_of_range("pow10_128");
    return kPow10.v[k];
}

int digits128(i128 v) {
    v = abs128(v);
    int d = 1;
    while (d < 39 && v >= kPow10.v[d]) ++d;
    return d;
}

std::string i128_str(i128 v) {
    if (v == 0) return "0";
    bool neg = v < 0;
    // careful with the most negative value: work on the unsigned magnitude
    unsigned __int128 u = neg ? (unsigned __int128)(-(v + 1)) + 1 : (unsigned __int128)v;
    std::string s;
    while (u) {
        s.push_back(static_cast<char>('0' + static_cast<int>(u % 10)));
        u /= 10;
    }
    if (neg) s.push_back('-');
    return std::string(s.rbegin(), s.rend());
}

Dec dec_parse(const std::string &s) {
    std::size_t i = 0, n = s.size();
    while (i < n && s[i] == ' ') ++i;
    while (n > i && s[n - 1] == ' ') --n;
    bool neg = false;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    i128 m = 0;
    int e = 0, nd = 0;
    bool dot = false, any = false;
    for (; i < n; ++i) {
        const char c = s[i];
        if (c >= '0' && c <= '9') {
            any = true;
            if (m != 0 || c != '0') ++nd;
            if (nd > 38) throw std::invalid_argument("too many digits in decimal '" + s + "'");
            m = m * 10 + (c - '0');
            if (dot) --e;
        } else if (c == '.' && !dot) {
            dot = true;
        } else if ((c == 'e' || c == 'E') && any) {
            int ex = 0;
            auto res = std::from_chars(s.data() + i + 1 + (s[i + 1] == '+' ? 1 : 0), s.data() + n, ex);
            if (res.ec != std::errc() || res.ptr != s.data() + n)
                throw std::invalid_argument("invalid decimal '" + s + "'");
            e += ex;
            i = n;
            break;
        } else {
            throw std::invalid_argument("invalid decimal '" + s + "'");
        }
    }
    if (!any) throw std::invalid_argument("invalid decimal '" + s + "'");
    if (e < -400 || e > 400) throw std::invalid_argument("decimal exponent out of range in '" + s + "'");
    return Dec{neg ? -m : m, e};
}

std::string dec_str(Dec d) {
    std::string digits = i128_str(abs128(d.m));
    std::string sign = d.m < 0 ? "-" : "";
    if (d.e >= 0) return sign + digits + std::string(static_cast<std::size_t>(d.e), '0');
    const int frac = -d.e;
    if (static_cast<int>(digits.size()) <= frac)
        digits = std::string(static_cast<std::size_t>(frac - digits.size() + 1), '0') + digits;
    return sign + digits.substr(0, digits.size() - frac) + "." + digits.substr(digits.size() - frac);
}

Dec dec_from_double_repr(double x) {
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof(buf), x, std::chars_format::scientific);
    return dec_parse(std::string(buf, res.ptr));
}

double dec_to_double(Dec d) {
    const std::string s = i128_str(d.m) + "e" + std::to_string(d.e);
    return std::strtod(s.c_str(), nullptr);
}


int dec_cmp(Dec a, Dec b) {
    const int sa = dec_sign(a), sb = dec_sign(b);
    if (sa != sb) return sa < sb ? -1 : 1;
    if (sa == 0) return 0;
    // same sign: compare magnitudes by adjusted exponent first
    const int adj_a = digits128(a.m) + a.e, adj_b = digits128(b.m) + b.e;
    int mag;
    if (adj_a != adj_b) {
        mag = adj_a < adj_b ? -1 : 1;
    } else {
        i128 x = abs128(a.m), y = abs128(b.m);
        if (a.e > b.e) x = scale_up(x, a.e - b.e);
        else if (b.e > a.e) y = scale_up(y, b.e - a.e);
        mag = x < y ? -1 : x > y ? 1 : 0;
    }
    return sa > 0 ? mag : -mag;
}

Dec dec_round_prec(Dec a) {
    const int d = digits128(a.m);
    if (d <= kDecPrec) return a;
    const int k = d - kDecPrec;
    const bool neg = a.m < 0;
    i128 q = drop_digits_half_even(abs128(a.m), k, false);
    return Dec{neg ? -q : q, a.e + k};
}

Dec dec_add(Dec a, Dec b) {
    if (a.m == 0) return dec_round_prec(b);
    if (b.m == 0) return dec_round_prec(a);
    int e = a.e < b.e ? a.e : b.e;
    i128 x = scale_up(a.m, a.e - e), y = scale_up(b.m, b.e - e), r;
    if (__builtin_add_overflow(x, y, &r)) overflow();
    return dec_round_prec(Dec{r, e});
}

Dec dec_sub(Dec a, Dec b) { return dec_add(a, Dec{-b.m, b.e}); }

Dec dec_mul(Dec a, Dec b) {
    i128 r;
    if (__builtin_mul_overflow(a.m, b.m, &r)) overflow();
    return dec_round_prec(Dec{r, a.e + b.e});
}

Dec dec_div(Dec a, Dec b) {
    if (b.m == 0) throw std::domain_error("decimal division by zero");
    if (a.m == 0) return Dec{0, a.e - b.e};
    const bool neg = (a.m < 0) != (b.m < 0);
    const i128 A = abs128(a.m), B = abs128(b.m);
    if (B > kPow10.v[37]) overflow();  // r * 10 must not overflow
    i128 q, r;
    if ((A >> 64) == 0 && (B >> 64) == 0) {
        const auto a64 = static_cast<std::uint64_t>(A), b64 = static_cast<std::uint64_t>(B);
        q = a64 / b64;
        r = a64 % b64;
    } else {
        q = A / B;
        r = A % B;
    }
    // Long division, one decimal digit per step, until the remainder is 0 or q has
    // kDecPrec + 1 digits; done t digits at a time (r * 10^t / B), which yields the
    // same digits and remainder. t <= kDecPrec + 1 - digits(q) never overshoots the
    // digit limit (each step adds at most one digit), and B * 10^t < 10^38 keeps
    // r * 10^t inside 128 bits. If the remainder reaches 0 inside a chunk, the
    // one-digit loop would have stopped at that chunk's last non-zero digit (the
    // digit that empties the remainder is never 0): strip the zeros after it.
    int k = 0;  // digits generated after the integer part
    if (r != 0) {
        const int db = digits128(B);
        const int tmax = db >= 38 ? 1 : 38 - db;
        int dq = digits128(q);
        while (dq <= kDecPrec) {
            int t = kDecPrec + 1 - dq;
            if (t > tmax) t = tmax;
            const i128 p = kPow10.v[t];
            const i128 x = r * p;
            q = q * p + x / B;
            r = x % B;
            k += t;
            if (r == 0) {
                for (int z = 1; z < t && q % 10 == 0; ++z) {
                    q /= 10;
                    --k;
                }
                break;
            }
            dq = digits128(q);
        }
    }
    int e = a.e - b.e - k;
    const int d = digits128(q);
    if (d > kDecPrec) {
        const int drop = d - kDecPrec;
        q = drop_digits_half_even(q, drop, r != 0);
        e += drop;
    }
    return Dec{neg ? -q : q, e};
}

Dec dec_quantize(Dec a, int e) {
    if (a.e >= e) return Dec{scale_up(a.m, a.e - e), e};
    const bool neg = a.m < 0;
    const i128 q = drop_digits_half_even(abs128(a.m), e - a.e, false);
    return Dec{neg ? -q : q, e};
}

i128 dec_floor(Dec a) {
    if (a.e >= 0) return scale_up(a.m, a.e);
    if (-a.e > 38) return a.m < 0 ? -1 : 0;
    const i128 p = kPow10.v[-a.e];
    i128 q = a.m / p;
    if (a.m % p != 0 && a.m < 0) --q;
    return q;
}

i128 dec_ceil(Dec a) { return -dec_floor(Dec{-a.m, a.e}); }

i128 dec_to_scaled(Dec a, int decimals, bool *exact) {
    const int shift = a.e + decimals;
    if (shift >= 0) {
        if (exact) *exact = true;
        return scale_up(a.m, shift);
    }
    if (-shift > 38) {
        if (exact) *exact = a.m == 0;
        return 0;
    }
    const i128 p = kPow10.v[-shift];
    if (exact) *exact = a.m % p == 0;
    return a.m / p;
}

}  // namespace hean
