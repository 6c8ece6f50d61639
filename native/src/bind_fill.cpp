// nanobind bindings of the paper-fill model (include/hean/fill.hpp), the code
// the replay loop (PaperEngine) and the live worker's paper fills share. Python
// users go through hean.engine.fill, which converts Decimals to scaled integers
// exactly; these take integers and decimal strings.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>

#include "hean/dec.hpp"
#include "hean/fill.hpp"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

int check_side(int side, const char *name) {
    if (side != 1 && side != -1)
        throw std::invalid_argument(std::string(name) + " must be 1 (Buy) or -1 (Sell), got " + std::to_string(side));
    return side;
}

hean::Dec dec_arg(const std::string &s, const char *name) {
    try {
        return hean::dec_parse(s);
    } catch (const std::exception &) {
        throw std::invalid_argument(std::string(name) + " must be a finite decimal string, got '" + s + "'");
    }
}

}  // namespace

void bind_fill(nb::module_ &m) {
    m.def("fill_taker_price",
          [](std::int64_t ref, int side, const std::string &slippage_bps, std::int64_t tick) {
              const hean::Dec bps = dec_arg(slippage_bps, "slippage_bps");
              return hean::fill::taker_fill_price(ref, check_side(side, "side"),
                                                  hean::fill::slippage_factor(bps, side), tick);
          },
          "ref"_a, "side"_a, "slippage_bps"_a, "tick"_a,
          "Price of a paper market (taker) fill: ``ref`` worsened by ``slippage_bps`` basis points\n"
          "(a decimal string) against the trader and rounded to the tick against the trader (up for\n"
          "side 1 = Buy, down for side -1 = Sell). ``ref``, ``tick`` and the result are int64 prices\n"
          "in one unit 10^-d of the caller's choice. Equals Python's\n"
          "``Instrument.round_price(ref * (1 +/- Decimal(bps) * Decimal('0.0001')), 'up'/'down')``\n"
          "(default decimal context) for every input. ValueError: side not +/-1, tick <= 0, bad\n"
          "decimal, result outside int64. Source: include/hean/fill.hpp.");
    m.def("fill_maker_price", [](std::int64_t limit_price) { return hean::fill::maker_fill_price(limit_price); },
          "limit_price"_a,
          "Price of a paper maker fill: a resting limit order fills at its own price (int64, no slippage).");
    m.def("fill_fee_e8",
          [](std::int64_t qty, std::int64_t price, int pq_decimals, const std::string &rate) {
              return hean::fill::fee_e8(qty, price, pq_decimals, dec_arg(rate, "rate"));
          },
          "qty"_a, "price"_a, "pq_decimals"_a, "rate"_a,
          "Fee of a fill in units of 1e-8 USDT: ``qty * price * rate`` quantized to 1e-8 half-even\n"
          "(Python's ``Decimal.quantize(Decimal('0.00000001'))`` in the default context). ``qty`` in\n"
          "10^-qd, ``price`` in 10^-pd, ``pq_decimals`` = pd + qd (0..38), ``rate`` a fraction of\n"
          "notional as a decimal string (e.g. '0.00055'). ValueError if the fee does not fit int64.");
    m.def("fill_reduce_only_qty",
          [](std::int64_t qty, std::int64_t position, int side) {
              return hean::fill::reduce_only_qty(qty, position, check_side(side, "side"));
          },
          "qty"_a, "position"_a, "side"_a,
          "Quantity a reduce-only order of ``qty`` on ``side`` (1 Buy, -1 Sell) fills against the\n"
          "signed ``position`` (same units): min(qty, |position|) if it reduces it, else 0\n"
          "(rejected as REDUCE_ONLY_NO_POSITION).");
    m.def("fill_protective_price",
          [](std::int64_t price, int price_decimals, const std::string &distance, int direction, std::int64_t tick) {
              return hean::fill::protective_price(price, price_decimals, dec_arg(distance, "distance"),
                                                  check_side(direction, "direction"), tick);
          },
          "price"_a, "price_decimals"_a, "distance"_a, "direction"_a, "tick"_a,
          "A stop-loss/take-profit level ``distance`` USDT (decimal string) from ``price`` (int64 in\n"
          "10^-price_decimals), rounded to the tick away from ``price``: direction 1 gives\n"
          "ceil((price + distance)/tick)*tick, -1 floor((price - distance)/tick)*tick. For an entry\n"
          "filled on ``side``: stop = direction -side, target = direction +side. Equals Python's\n"
          "``Instrument.round_price(price -/+ distance, 'down'/'up')`` for every input.");
    m.def("fill_exit_trigger",
          [](bool long_position, std::int64_t open, std::int64_t high, std::int64_t low, std::int64_t stop,
             std::int64_t target) {
              std::int64_t ref = 0;
              const int hit = hean::fill::exit_trigger(long_position, open, high, low, stop, target, &ref);
              return std::make_tuple(hit, ref);
          },
          "long_position"_a, "open"_a, "high"_a, "low"_a, "stop"_a, "target"_a,
          "Stop-loss/take-profit check of one candle (int64 prices, one unit): returns (hit, ref) with\n"
          "hit 0 (none), 1 (stop-loss, checked first) or 2 (take-profit) and ref the exit fill's\n"
          "reference price (the level, or the open on a gap through it).");
}
