// Exact decimal arithmetic for the paper ledger (no binary floating point).
//
// `Dec` is a 128-bit signed coefficient times a power of ten. It reproduces
// Python's `decimal` module in its default context (28 significant digits,
// ROUND_HALF_EVEN) for the operations the worker's engine uses: + - * are exact
// (rounded to 28 digits only if a result would exceed them, as Python does),
// `div` is the correctly rounded 28-digit quotient, `quantize` rounds half-even.
// Values whose coefficient would overflow 128 bits raise std::overflow_error.
//
// The hot paths of the engine use plain fixed-point integers (prices in units
// of 10^-price_decimals, quantities in 10^-qty_decimals, money in
// 10^-money_decimals); `Dec` is for the rare steps (order sizing, fill
// pricing, drawdown ties) whose Python counterpart divides Decimals.
#pragma once

#include <cstdint>
#include <string>

namespace hean {

using i128 = __int128;

struct Dec {
    i128 m = 0;  // coefficient
    int e = 0;   // exponent: value = m * 10^e
};

inline constexpr int kDecPrec = 28;

/// 10^k for 0 <= k <= 38.
i128 pow10_128(int k);
int digits128(i128 v);  // decimal digits of |v| (0 -> 1)

/// Parse "123.45", "-0.001", "1E+2", "5e-05". Throws std::invalid_argument.
Dec dec_parse(const std::string &s);
/// Plain decimal string ("-123.45", "0.000001"), accepted by Python's Decimal().
std::string dec_str(Dec d);
/// Decimal(repr(x)) for a finite double: the shortest round-trip digits.
Dec dec_from_double_repr(double x);
/// Nearest double (via strtod of the exact string: correctly rounded).
double dec_to_double(Dec d);
inline Dec dec_int(i128 v, int e = 0) { return Dec{v, e}; }

inline int dec_sign(Dec a) { return a.m > 0 ? 1 : a.m < 0 ? -1 : 0; }
int dec_cmp(Dec a, Dec b);
Dec dec_round_prec(Dec a);  // to 28 significant digits, half-even
Dec dec_add(Dec a, Dec b);
Dec dec_sub(Dec a, Dec b);
Dec dec_mul(Dec a, Dec b);
/// a / b rounded to 28 significant digits, half-even (Python's Decimal division).
/// Throws std::domain_error on division by zero.
Dec dec_div(Dec a, Dec b);
/// Round to exponent `e` (Decimal.quantize(Decimal('1e<e>')), half-even).
Dec dec_quantize(Dec a, int e);
i128 dec_floor(Dec a);
i128 dec_ceil(Dec a);
/// value * 10^decimals as an integer; sets *exact = false if it is not one
/// (the result is then truncated toward zero).
i128 dec_to_scaled(Dec a, int decimals, bool *exact);
inline Dec dec_min(Dec a, Dec b) { return dec_cmp(b, a) < 0 ? b : a; }

std::string i128_str(i128 v);

}  // namespace hean
