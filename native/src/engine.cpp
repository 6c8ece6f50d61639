// The paper-trading engine (see include/hean/engine.hpp). Every method names
// the worker/engine.py method it transcribes; keep the two in step.
#include "hean/engine.hpp"
#include "hean/fill.hpp"  // the paper-fill model shared with the worker

#include <chrono>
#include <cstdint>
#include <cmath>
#include <stdexcept>

namespace hean {

namespace {
std::int64_t wall_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}
const Dec kOne{1, 0};
const Dec kZero{0, 0};
const Dec kHundred{100, 0};
const Dec kSoftRelease{8, -1};  // SOFT_BRAKE_RELEASE = 0.8
// relative margin of the log-free bounds of the impulse signal (see run())
constexpr double kLogMargin = 1e-9;
// the closes ring's capacity: the power of two >= lookback + 1
std::size_t closes_capacity(std::int64_t lookback) {
    std::size_t c = 1;
    while (c < static_cast<std::size_t>(lookback) + 1) c <<= 1;
    return c;
}
std::int64_t warm_count(const EngineParams &p) {
    std::int64_t w = p.ema_fast;
    for (std::int64_t v : {p.ema_slow, p.vol_window + 1, p.atr_period + 1, p.lookback + 1})
        if (v > w) w = v;
    return w;
}
}  // namespace

PaperEngine::Sym::Sym(const InstrumentSpec &i, const EngineParams &p, int pd, int qd)
    : inst(i),
      tick_dec{i.tick, -pd},
      step_dec{i.qty_step, -qd},
      ema_fast(p.ema_fast),
      ema_slow(p.ema_slow),
      vol(p.vol_window),
      atr(p.atr_period),
      closes(closes_capacity(p.lookback), 0.0),
      closes_mask(closes_capacity(p.lookback) - 1) {}

PaperEngine::PaperEngine(const EngineConfig &cfg) : cfg_(cfg) {
    const int pd = cfg.price_decimals, qd = cfg.qty_decimals, md = cfg.money_decimals;
    if (pd < 0 || pd > 15 || qd < 0 || qd > 15 || md < 8 || md > 26 || md < pd + qd)
        throw std::invalid_argument(
            "unsupported scales: need 0 <= price_decimals, qty_decimals <= 15 and "
            "max(8, price_decimals + qty_decimals) <= money_decimals <= 26");
    if (cfg.instruments.empty()) throw std::invalid_argument("at least one instrument is required");
    const EngineParams &p = cfg.params;
    check_period("lookback", p.lookback, 1);
    if (p.lookback > 100000) throw std::invalid_argument("lookback too large");
    for (const auto &in : cfg.instruments) {
        if (in.tick <= 0 || in.qty_step <= 0 || in.min_qty < 0)
            throw std::invalid_argument("instrument tick and qty step must be > 0");
        sym_.emplace_back(in, p, pd, qd);
    }
    money_per_pq_ = pow10_128(md - pd - qd);
    money_scale_f_ = static_cast<double>(pow10_128(md));
    sqrt_lookback_ = std::sqrt(static_cast<double>(p.lookback));
    warm_n_ = warm_count(p);
    price_scale_f_ = static_cast<double>(pow10_128(pd));
    money_per_fee_ = pow10_128(md - 8);
    slip_up_ = fill::slippage_factor(cfg.slippage_bps, 1);
    slip_down_ = fill::slippage_factor(cfg.slippage_bps, -1);
    risk_fraction_dec_ = dec_from_double_repr(p.risk_fraction);
    bool exact = true;
    cash_ = dec_to_scaled(cfg.capital, md, &exact);
    if (!exact) throw std::invalid_argument("capital has more decimals than money_decimals");
    peak_ = day_start_ = eq_ = cash_;
}

void PaperEngine::set_policy(const PolicySpec &p, bool evaluate) {
    pol_ = p;
    if (p.present) {
        soft_release_line_ = dec_mul(p.soft_dd, kSoftRelease);
        set_dd_line(dd_hard_, p.hard_dd);
        set_dd_line(dd_soft_, p.soft_dd);
        set_dd_line(dd_release_, soft_release_line_);
        bounds_peak_ = -1;
        max_daily_loss_dec_ = p.max_daily_loss;
        max_daily_loss_ = dec_to_scaled(p.max_daily_loss, cfg_.money_decimals, &max_daily_loss_exact_);
    }
    quiet_policy_ = p.present && !dd_hard_.at_zero && !dd_soft_.at_zero && max_daily_loss_exact_ &&
                    max_daily_loss_ > 0;
    if (evaluate) evaluate_risk();  // Engine.update_policy (the constructor does not evaluate)
}

void PaperEngine::update_spec(const EngineParams &np, bool paused, Dec slippage_bps, Dec spec_max_leverage) {
    check_period("lookback", np.lookback, 1);
    if (np.lookback > 100000) throw std::invalid_argument("lookback too large");
    // validate every period before changing anything
    Ema(np.ema_fast), Ema(np.ema_slow), RollingLogReturnStd(np.vol_window), Atr(np.atr_period);
    const EngineParams &op = cfg_.params;
    const bool reset = op.ema_fast != np.ema_fast || op.ema_slow != np.ema_slow ||
                       op.vol_window != np.vol_window || op.atr_period != np.atr_period ||
                       op.lookback != np.lookback;
    cfg_.params = np;
    cfg_.paused = paused;
    cfg_.slippage_bps = slippage_bps;
    cfg_.spec_max_leverage = spec_max_leverage;
    slip_up_ = fill::slippage_factor(slippage_bps, 1);
    slip_down_ = fill::slippage_factor(slippage_bps, -1);
    risk_fraction_dec_ = dec_from_double_repr(np.risk_fraction);
    sqrt_lookback_ = std::sqrt(static_cast<double>(np.lookback));
    warm_n_ = warm_count(np);
    if (reset) {  // SymbolState.reset_indicators
        for (Sym &st : sym_) {
            st.ema_fast = Ema(np.ema_fast);
            st.ema_slow = Ema(np.ema_slow);
            st.vol = RollingLogReturnStd(np.vol_window);
            st.atr = Atr(np.atr_period);
            st.closes.assign(closes_capacity(np.lookback), 0.0);
            st.closes_mask = st.closes.size() - 1;
            st.ind_n = 0;
        }
    }
}

void PaperEngine::set_quarantined(const std::vector<bool> &q) {
    n_quarantined_ = 0;
    for (std::size_t i = 0; i < sym_.size(); ++i) {
        sym_[i].quarantined = i < q.size() && q[i];
        n_quarantined_ += sym_[i].quarantined;
    }
    evaluate_risk();
}

bool PaperEngine::clear_hard_stop(std::int64_t at_us) {
    if (has_hard_stop_ && at_us > hard_stop_at_) {
        has_hard_stop_ = false;
        peak_ = equity();
        day_start_ = peak_;
        evaluate_risk();
        return true;
    }
    return false;
}

// ---- figures -----------------------------------------------------------------

void PaperEngine::refresh_equity() {
    i128 eq = cash_;
    for (const Sym &st : sym_)
        if (st.size != 0) eq += static_cast<i128>(st.mark - st.entry) * st.size * money_per_pq_;
    eq_ = eq;
}

i128 PaperEngine::gross_notional() const {
    i128 g = 0;
    for (const Sym &st : sym_)
        if (st.size != 0) g += static_cast<i128>(st.size < 0 ? -st.size : st.size) * st.mark * money_per_pq_;
    return g;
}

int PaperEngine::open_or_pending_entries() const {
    int n = 0;
    for (const Sym &st : sym_) n += st.size != 0 || (st.has_pending && !st.pending.reduce_only);
    return n;
}

i128 PaperEngine::pending_entry_notional() const {
    i128 g = 0;
    for (const Sym &st : sym_)
        if (st.size == 0 && st.has_pending && !st.pending.reduce_only && st.has_mark)
            g += static_cast<i128>(st.pending.qty) * st.mark * money_per_pq_;
    return g;
}

int PaperEngine::open_positions() const {
    int n = 0;
    for (const Sym &st : sym_) n += st.size != 0;
    return n;
}

double PaperEngine::to_double_money(i128 v) const {
    // nearest double to v / 10^md when both are exact doubles (|v| < 2^53)
    if (v > -(i128{1} << 53) && v < (i128{1} << 53))
        return static_cast<double>(static_cast<std::int64_t>(v)) / money_scale_f_;
    return dec_to_double(money_dec(v));
}

Dec PaperEngine::drawdown_percent() const {
    if (peak_ <= 0) return kHundred;
    const i128 diff = peak_ - equity();
    if (diff <= 0) return kZero;
    return dec_mul(dec_div(money_dec(diff), money_dec(peak_)), kHundred);
}

void PaperEngine::set_dd_line(DdLine &line, Dec x) {
    line.x = x;
    line.xf = dec_to_double(x);
    line.at_zero = dec_sign(x) <= 0;
    line.lo = 1;  // exact tests until refresh_dd_bounds()
    line.hi = ~(i128{1} << 127);
}

// The integer bounds of every line for the current peak (> 0): T = x * peak / 100
// in float64 (relative error < 1e-15); lo = floor(T - |T| 1e-9) - 1 and hi =
// ceil(T + |T| 1e-9) + 1. diff < lo implies dd < x and diff > hi implies dd > x
// even after the 28-digit rounding (relative 1e-27). If T is too large for i128
// the line gets lo = 1, hi = max: every diff > 0 takes the exact test.
void PaperEngine::refresh_dd_bounds() {
    bounds_peak_ = peak_;
    const double pf = (peak_ >= INT64_MIN && peak_ <= INT64_MAX)
                          ? static_cast<double>(static_cast<std::int64_t>(peak_))
                          : static_cast<double>(peak_);
    for (DdLine *line : {&dd_hard_, &dd_soft_, &dd_release_}) {
        const double t = line->xf * pf / 100.0;
        const double m = (t < 0 ? -t : t) * 1e-9;
        if (!(t - m > -1e36 && t + m < 1e36)) {  // also NaN/inf
            line->lo = 1;
            line->hi = ~(i128{1} << 127);
            continue;
        }
        line->lo = static_cast<i128>(std::floor(t - m)) - 1;
        line->hi = static_cast<i128>(std::ceil(t + m)) + 1;
    }
}

// dd >= x, where dd = max((peak - eq) / peak * 100, 0) with Python's 28-digit
// division; diff = peak - eq.
inline bool PaperEngine::dd_at_least(const DdLine &line, i128 diff) {
    if (peak_ <= 0) return dec_cmp(kHundred, line.x) >= 0;
    if (diff <= 0) return line.at_zero;
    if (peak_ != bounds_peak_) refresh_dd_bounds();
    if (diff < line.lo) return false;
    if (diff > line.hi) return true;
    return dec_cmp(dec_mul(dec_div(money_dec(diff), money_dec(peak_)), kHundred), line.x) >= 0;
}

bool PaperEngine::trading_active() const {
    if (!pol_.present || cfg_.paused || risk_state_ == RS_HARD_STOP || blocked_) return false;
    for (const Sym &st : sym_)
        if (!st.quarantined) return true;
    return false;
}

// ---- risk (Engine._evaluate_risk) --------------------------------------------------

void PaperEngine::evaluate_risk() { evaluate_risk(equity()); }

__attribute__((always_inline)) inline void PaperEngine::evaluate_risk(i128 eq) {
    // The common case, decided without the general code below: a policy whose hard,
    // soft and daily-loss lines are all > 0 (quiet_policy_), nothing quarantined, a
    // peak > 0 and a drawdown outside the uncertain band [lo, hi] of both lines it
    // is tested against (dd = 0 at or above the peak). Whenever the result would
    // latch a new HARD_STOP or change the state, the general code runs instead (it
    // reaches the same decisions and also records the transition).
    if (quiet_policy_ & (n_quarantined_ == 0) && peak_ > 0) {
        const i128 dq = peak_ - eq;
        const DdLine &soft_line = risk_state_ == RS_SOFT_BRAKE ? dd_release_ : dd_soft_;
        bool hard = false, soft = false, sure = true;
        if (dq > 0) {
            if (peak_ != bounds_peak_) refresh_dd_bounds();
            hard = dq > dd_hard_.hi;
            soft = dq > soft_line.hi;
            sure = (hard | (dq < dd_hard_.lo)) & (soft | (dq < soft_line.lo));
        }
        const bool daily = day_start_ - eq >= max_daily_loss_;
        if (sure & !((hard | daily) & !has_hard_stop_)) {
            const int state = has_hard_stop_ ? RS_HARD_STOP : soft ? RS_SOFT_BRAKE : RS_NORMAL;
            if (state == risk_state_) {
                int reasons = (hard ? RR_HARD_DD : 0) | (daily ? RR_DAILY_LOSS : 0);
                if (has_hard_stop_ && !reasons) reasons = RR_LATCHED;
                risk_reasons_ = reasons | (soft ? RR_SOFT_DD : 0);
                return;
            }
        }
    }
    evaluate_risk_full(eq);
}

void PaperEngine::evaluate_risk_full(i128 eq) {
    int reasons = 0;
    int state = RS_NORMAL;
    if (pol_.present) {
        const i128 diff = peak_ - eq;
        const DdLine &soft_line = risk_state_ == RS_SOFT_BRAKE ? dd_release_ : dd_soft_;
        bool hard, soft;
        if (diff <= 0 && peak_ > 0) {  // at (or above) the peak: dd = 0
            hard = dd_hard_.at_zero;
            soft = soft_line.at_zero;
        } else {
            hard = dd_at_least(dd_hard_, diff);
            soft = dd_at_least(soft_line, diff);
        }
        if (hard) reasons |= RR_HARD_DD;
        i128 loss = day_start_ - eq;
        if (loss < 0) loss = 0;
        bool daily;
        if (max_daily_loss_exact_) {
            daily = loss >= max_daily_loss_;
        } else {
            daily = dec_cmp(money_dec(loss), max_daily_loss_dec_) >= 0;
        }
        if (daily) reasons |= RR_DAILY_LOSS;
        if (reasons && !has_hard_stop_) {
            has_hard_stop_ = true;
            hard_stop_at_ = (now_ms_ ? now_ms_ : wall_ms()) * 1000;  // microseconds
        }
        if (has_hard_stop_) {
            state = RS_HARD_STOP;
            if (!reasons) reasons |= RR_LATCHED;
        }
        if (soft) {
            reasons |= RR_SOFT_DD;
            if (state == RS_NORMAL) state = RS_SOFT_BRAKE;
        }
    }
    if (n_quarantined_ > 0) {
        reasons |= RR_QUARANTINE;
        if (state < RS_QUARANTINE) state = RS_QUARANTINE;
    }
    if (state != risk_state_) risk_transition(state, reasons);
    risk_reasons_ = reasons;
}

void PaperEngine::risk_transition(int state, int reasons) {
    risk_events_.push_back(RiskEvent{bar_index_, static_cast<std::int8_t>(risk_state_),
                                     static_cast<std::int8_t>(state), reasons});
    const bool entering_hard_stop = state == RS_HARD_STOP;
    risk_state_ = state;
    if (entering_hard_stop) flatten_all();
}

void PaperEngine::flatten_all() {
    for (int s = 0; s < n_symbols(); ++s) {
        Sym &st = sym_[s];
        st.has_pending = false;
        if (st.size != 0)
            queue(s, st.size > 0 ? -1 : 1, st.size > 0 ? st.size : -st.size, true, F_HARD_STOP);
    }
}

// ---- orders and fills ----------------------------------------------------------------

void PaperEngine::queue(int s, int side, std::int64_t qty, bool reduce_only, int reason, Dec sd,
                        Dec td) {
    Sym &st = sym_[s];
    ++order_seq_;
    st.pending = Order{order_seq_, qty, side, reduce_only, reason, sd, td};
    st.has_pending = true;
    ++orders_sent_;
    order_times_.push_back(now_ms_);
}

void PaperEngine::fill(int s, int side, std::int64_t qty, std::int64_t ref, std::int64_t ts,
                       std::int64_t seq, int reason) {
    Sym &st = sym_[s];
    const int pd = cfg_.price_decimals, qd = cfg_.qty_decimals;
    // Engine._fill through the shared paper-fill model (hean/fill.hpp): slippage
    // against the trader rounded to the tick; fee quantized half-even to 1e-8.
    const std::int64_t price = fill::taker_fill_price(ref, side, side > 0 ? slip_up_ : slip_down_, st.inst.tick);
    const std::int64_t fee_e8 = fill::fee_e8(qty, price, pd + qd, cfg_.taker_fee);
    if (price <= 0 || qty <= 0) throw std::logic_error("fill with non-positive price or quantity");
    // Ledger.apply
    const std::int64_t signed_qty = side > 0 ? qty : -qty;
    i128 realized = 0;
    if (st.size == 0 || (st.size > 0) == (signed_qty > 0)) {
        const std::int64_t new_size = st.size + signed_qty;
        if (st.size == 0) {
            st.entry = price;  // (0 + price*qty)/qty: exact
        } else {  // average entry (never happens in the impulse engine: no pyramiding)
            const Dec num{static_cast<i128>(st.entry) * (st.size < 0 ? -st.size : st.size) +
                              static_cast<i128>(price) * qty, -pd};
            const Dec avg = dec_div(num, Dec{new_size < 0 ? -new_size : new_size, 0});
            bool exact = true;
            st.entry = static_cast<std::int64_t>(dec_to_scaled(avg, pd, &exact));
            if (!exact) throw std::logic_error("average entry price not representable at price scale");
        }
        st.size = new_size;
    } else {
        const std::int64_t abs_sz = st.size < 0 ? -st.size : st.size;
        const std::int64_t closing = qty < abs_sz ? qty : abs_sz;
        const int direction = st.size > 0 ? 1 : -1;
        realized = static_cast<i128>(price - st.entry) * closing * direction;
        const std::int64_t remaining = st.size + signed_qty;
        if (remaining == 0 || (remaining > 0) == (st.size > 0)) {
            st.size = remaining;
            if (remaining == 0) {
                st.entry = 0;
                ++closed_trades_;
                if (st.pos_realized + realized > 0) ++winning_trades_;
                st.pos_realized = 0;
            } else {
                st.pos_realized += realized;
            }
        } else {  // flipped through zero: the rest opens at the fill price
            ++closed_trades_;
            if (st.pos_realized + realized > 0) ++winning_trades_;
            st.size = remaining;
            st.entry = price;
            st.pos_realized = 0;
        }
    }
    realized_ += realized * money_per_pq_;
    fees_e8_ += fee_e8;
    cash_ += realized * money_per_pq_ - static_cast<i128>(fee_e8) * money_per_fee_;
    fills_.push_back(FillRec{ts, qty, price, fee_e8, seq, s, static_cast<std::int8_t>(side),
                             static_cast<std::int8_t>(reason), realized});
    refresh_equity();
}

// Engine._execute_pending
void PaperEngine::execute_pending(int s, const Bar &b) {
    Sym &st = sym_[s];
    if (!st.has_pending) return;
    st.has_pending = false;
    const Order o = st.pending;
    std::int64_t qty = o.qty;
    if (o.reduce_only) {
        qty = fill::reduce_only_qty(qty, st.size, o.side);
        if (qty == 0) {
            ++rejects_[J_REDUCE_ONLY_NO_POSITION];
            return;
        }
    }
    fill(s, o.side, qty, b.open, b.ts, o.seq, o.reason);
    const FillRec &f = fills_.back();
    if (o.reduce_only) {
        if (st.size == 0) {
            st.has_stop = false;
            st.cooldown_left = cfg_.params.cooldown_bars;
        }
    } else {
        const int pd = cfg_.price_decimals;
        st.stop = fill::protective_price(f.price, pd, o.stop_distance, -o.side, st.inst.tick);
        st.target = fill::protective_price(f.price, pd, o.target_distance, o.side, st.inst.tick);
        st.has_stop = true;
    }
}

// Engine._check_exits
void PaperEngine::check_exits(int s, const Bar &b) {
    Sym &st = sym_[s];
    if (st.size == 0 || !st.has_stop) return;
    const bool lng = st.size > 0;
    std::int64_t ref;
    const int hit = fill::exit_trigger(lng, b.open, b.high, b.low, st.stop, st.target, &ref);
    if (hit == 0) return;
    const int why = hit == 1 ? F_STOP_LOSS : F_TAKE_PROFIT;
    ++order_seq_;
    ++orders_sent_;
    fill(s, lng ? -1 : 1, lng ? st.size : -st.size, ref, b.ts, order_seq_, why);
    st.has_stop = false;
    st.has_pending = false;
    st.cooldown_left = cfg_.params.cooldown_bars;
}

// ---- the per-bar step (Engine.on_bar) ------------------------------------------------

// All prices > 0, low <= open, close <= high, high < 2^53 (exact as float64). low > 0
// and low <= open, close <= high imply the other positivity and ordering tests;
// non-short-circuit & keeps it to one branch.
static inline bool bar_ok(const Bar &b) {
    return (b.low > 0) & (b.low <= b.open) & (b.open <= b.high) & (b.low <= b.close) &
           (b.close <= b.high) & (b.high < (std::int64_t{1} << 53));
}

bool PaperEngine::dropped(Sym &st, const Bar &b) {
    return st.bars_seen && b.ts <= st.last_ts;
}

void PaperEngine::update_indicators(Sym &st, const Bar &b, Features *f) {
    const double scale = price_scale_f_;
    // float(Decimal) is correctly rounded; so is an IEEE division of two
    // exactly representable integers (|close| < 2^53, 10^pd <= 10^15).
    update_indicators(st, static_cast<double>(b.close) / scale, static_cast<double>(b.high) / scale,
                      static_cast<double>(b.low) / scale, f);
}

__attribute__((always_inline)) inline void PaperEngine::update_indicators(Sym &st, double c, double h, double l,
                                                                         Features *f) {
    f->fast = st.ema_fast.update(c);
    f->slow = st.ema_slow.update(c);
    // valid_bar(): c is finite and > 0. The std itself (sqrt(M2/(w-1))) is only
    // computed when needed: lazily by the built-in signal, eagerly for callbacks.
    st.vol.advance(c);
    f->atr = st.atr.update(h, l, c);
    const std::uint64_t k = static_cast<std::uint64_t>(st.ind_n++);
    st.closes[k & st.closes_mask] = c;
    // Every indicator has had the same updates; with finite inputs each is a number
    // exactly from its warm-up count on (EMA: period; volatility: window + 1 closes;
    // ATR: period + 1; the closes ring: lookback + 1), so warm is one comparison.
    f->warm = st.ind_n >= warm_n_;
    // sigma and ret are left to the callers: ret = ln(closes[-1] / closes[0]), the
    // newest over the oldest close of the ring (meaningful once warm), is computed
    // lazily by the built-in signal and eagerly for callbacks.
    f->oldest = st.closes[(k - static_cast<std::uint64_t>(cfg_.params.lookback)) & st.closes_mask];
    f->close = c;
}

int PaperEngine::entry_block(const Sym &st, bool warm) const {
    if (!pol_.present) return R_NO_POLICY;
    if (blocked_) return R_BLOCKED;
    if (cfg_.paused) return R_PAUSED;
    if (risk_state_ == RS_HARD_STOP) return R_HARD_STOP;
    if (st.quarantined) return R_QUARANTINED;
    if (risk_state_ == RS_SOFT_BRAKE && dec_sign(pol_.soft_brake_factor) == 0) return R_SOFT_BRAKE;
    if (st.has_pending) return R_PENDING;
    if (!warm) return R_WARMING_UP;
    if (st.cooldown_left > 0) return R_COOLDOWN;
    return -1;
}

// Engine._try_entry; `signal()` returns +1 / -1 / 0 (evaluated only here, as in Python).
template <class Signal>
int PaperEngine::try_entry(int s, const Features &f, Signal &&signal) {
    Sym &st = sym_[s];
    const int sig = signal();
    int side;
    if (sig > 0) {
        side = 1;
    } else if (sig < 0) {
        if (cfg_.spot) return R_SPOT_NO_SHORT;
        side = -1;
    } else {
        return R_NO_SIGNAL;
    }
    if (static_cast<std::int64_t>(order_times_.size()) >= pol_.max_orders_per_minute) {
        ++rejects_[J_ORDER_RATE];
        return R_ORDER_RATE;
    }
    if (open_or_pending_entries() >= pol_.max_open_positions) return R_MAX_POSITIONS;
    const Dec price{st.mark, -cfg_.price_decimals};
    const Dec eq = money_dec(equity());
    const Dec size_factor = risk_state_ == RS_SOFT_BRAKE ? pol_.soft_brake_factor : kOne;
    const EngineParams &p = cfg_.params;
    const Dec sd = dec_from_double_repr(p.stop_loss_atr * f.atr);
    const Dec td = dec_from_double_repr(p.take_profit_atr * f.atr);
    if (dec_sign(sd) <= 0) return R_NO_SIGNAL;
    const Dec risk_usdt = dec_mul(dec_mul(eq, risk_fraction_dec_), size_factor);
    Dec qty = dec_div(risk_usdt, sd);
    const Dec leverage = dec_min(dec_min(cfg_.spec_max_leverage, pol_.max_leverage), st.inst.max_leverage);
    const Dec room = dec_sub(dec_mul(eq, leverage), money_dec(gross_notional() + pending_entry_notional()));
    const Dec cap = dec_min(pol_.max_position_notional, room);
    if (dec_sign(cap) <= 0) return R_NOTIONAL;
    qty = dec_min(qty, dec_div(cap, price));
    // Instrument.round_qty: floor(qty / step) * step
    const i128 n = dec_floor(dec_div(qty, st.step_dec));
    const std::int64_t q_units = static_cast<std::int64_t>(n * st.inst.qty_step);
    const Dec notional{static_cast<i128>(q_units) * st.mark, -(cfg_.price_decimals + cfg_.qty_decimals)};
    if (q_units < st.inst.min_qty || dec_cmp(notional, st.inst.min_notional) < 0) {
        ++rejects_[J_MIN_ORDER];
        return R_MIN_ORDER;
    }
    queue(s, side, q_units, false, F_IMPULSE_ENTRY, sd, td);
    ++st.entry_orders;
    return -1;
}

template <class Signal>
void PaperEngine::step(int s, const Bar &b, const Features &f, Signal &&signal) {
    Sym &st = sym_[s];
    st.last_ts = b.ts;
    now_ms_ = b.ts > now_ms_ ? b.ts : now_ms_;
    ++bars_processed_;
    // day = ts // 86_400_000 (floor), cached while the bar stays in the same day
    std::int64_t day;
    if (has_day_ && b.ts >= day_lo_ && b.ts < day_lo_ + 86400000) {
        day = day_lo_day_;
    } else {
        day = b.ts >= 0 ? b.ts / 86400000 : -((-b.ts + 86399999) / 86400000);
        day_lo_ = day * 86400000;
        day_lo_day_ = day;
    }
    if (!has_day_) {
        has_day_ = true;
        day_ = day;
    }
    if (st.has_pending) execute_pending(s, b);
    if (st.size != 0 && st.has_stop) check_exits(s, b);
    if (st.size != 0) eq_ += static_cast<i128>(b.close - st.mark) * st.size * money_per_pq_;
    st.mark = b.close;
    st.has_mark = true;
    ++st.bars_seen;
    if (st.cooldown_left > 0) --st.cooldown_left;
    if (day != day_) {
        day_ = day;
        day_start_ = equity();
    }
    const i128 eq = equity();
    last_eq_ = eq;  // decide() below only queues orders: the equity after this bar
    if (eq > peak_ && !has_hard_stop_) peak_ = eq;
    evaluate_risk(eq);
    while (!order_times_.empty() && order_times_.front() <= now_ms_ - 60000) order_times_.pop_front();
    // Engine._decide
    if (st.size != 0) {
        if (f.warm && !st.has_pending && ((st.size > 0 && f.fast < f.slow) || (st.size < 0 && f.fast > f.slow)))
            queue(s, st.size > 0 ? -1 : 1, st.size > 0 ? st.size : -st.size, true, F_TREND_FLIP);
        st.last_reason = -1;
        return;
    }
    int reason = entry_block(st, f.warm);
    if (reason < 0) reason = try_entry(s, f, signal);
    st.last_reason = reason;
    if (reason >= 0) ++reasons_[reason];
}

bool PaperEngine::valid_bar(const Bar &b) {
    if (bar_ok(b)) return true;
    ++rejected_bars_;
    return false;
}

void PaperEngine::on_bar(int s, const Bar &b) {
    if (s < 0 || s >= n_symbols()) throw std::out_of_range("symbol index out of range");
    Sym &st = sym_[s];
    ++bar_index_;
    if (!valid_bar(b)) return;
    if (dropped(st, b)) {
        ++dropped_;
        return;
    }
    st.f_last_ts = b.ts;  // keep the feature-side ordering state in step
    ++st.f_bars_seen;
    Features f;
    update_indicators(st, b, &f);
    f.sigma = f.ret = kNaN;
    f.vol = &st.vol;
    const EngineParams &p = cfg_.params;
    step(s, b, f, [&]() -> int {
        // Engine._try_entry's signal, same float64 operations in the same order
        // Engine._try_entry: ret = ln(closes[-1]/closes[0]); threshold =
        // impulseThreshold * sigma * sqrt(lookback) (all float64, same order).
        // threshold >= 0 and ln is monotonic with ln(r) <= 0 for r <= 1, so the
        // log is only evaluated when its sign can pass the test.
        const double threshold = p.impulse_threshold * (std::isnan(f.sigma) ? f.vol->current() : f.sigma) * sqrt_lookback_;
        const double r = f.close / f.oldest;
        if (f.fast > f.slow) return r > 1.0 && std::log(r) > threshold ? 1 : 0;
        if (f.fast < f.slow) return r < 1.0 && std::log(r) < -threshold ? -1 : 0;
        return 0;
    });
}

bool PaperEngine::features(int s, const Bar &b, Features *f, bool with_ret, bool with_sigma,
                           const double *chl) {
    if (s < 0 || s >= n_symbols()) throw std::out_of_range("symbol index out of range");
    return features_unchecked(s, b, f, with_ret, with_sigma, chl);
}

__attribute__((always_inline)) inline bool PaperEngine::features_unchecked(int s, const Bar &b, Features *f,
                                                                           bool with_ret, bool with_sigma,
                                                                           const double *chl) {
    Sym &st = sym_[s];
    if (!bar_ok(b) || (st.f_bars_seen && b.ts <= st.f_last_ts)) {
        *f = Features{kNaN, kNaN, kNaN, kNaN, kNaN, false, 0.0, 0.0, nullptr, 0.0};
        return false;
    }
    st.f_last_ts = b.ts;
    ++st.f_bars_seen;
    if (chl) update_indicators(st, chl[0], chl[1], chl[2], f);
    else update_indicators(st, b, f);
    f->vol = &st.vol;
    if (with_sigma) {
        f->sigma = st.vol.ready() ? st.vol.current() : kNaN;
    } else {
        f->vol_m2 = st.vol.m2();  // the std is computed from it only if the signal is read
    }
    if (with_ret) f->ret = f->warm ? std::log(f->close / f->oldest) : kNaN;
    return true;
}

void PaperEngine::on_bar_signal(int s, const Bar &b, const Features &f, int entry, int bias) {
    if (s < 0 || s >= n_symbols()) throw std::out_of_range("symbol index out of range");
    Sym &st = sym_[s];
    ++bar_index_;
    if (!valid_bar(b)) return;
    if (dropped(st, b)) {
        ++dropped_;
        return;
    }
    // the exit-on-trend-flip rule reads fast/slow; map the strategy's bias onto them
    Features g = f;
    g.fast = bias > 0 ? 1.0 : 0.0;
    g.slow = bias < 0 ? 1.0 : 0.0;
    if (bias == 0) g.fast = g.slow = 0.0;
    step(s, b, g, [&]() -> int { return entry; });
}

std::size_t first_bad_symbol(const std::int32_t *sym, std::size_t n, int n_symbols) {
    // every index (as unsigned) <= the OR of all: if that is < n_symbols, all are valid
    const auto ns = static_cast<std::uint32_t>(n_symbols);
    std::uint32_t any = 0;
    for (std::size_t i = 0; i < n; ++i) any |= static_cast<std::uint32_t>(sym[i]);
    if (any < ns) return n;
    for (std::size_t i = 0; i < n; ++i)
        if (static_cast<std::uint32_t>(sym[i]) >= ns) return i;
    return n;
}

void PaperEngine::run(const std::int32_t *sym, const std::int64_t *ts, const std::int64_t *o,
                      const std::int64_t *h, const std::int64_t *l, const std::int64_t *c, std::size_t n,
                      double *equity_out) {
    if (first_bad_symbol(sym, n, n_symbols()) != n) throw std::out_of_range("symbol index out of range");
    // Per chunk: the prices to float64 in a vectorised loop, then per event the
    // indicator updates and the engine step (what on_bar() does: same operations in
    // the same order, so the same results). A separate indicator pass over the chunk
    // (features stored, then read back by the steps) measured ~3 % slower.
    constexpr std::size_t kChunk = 512;
    double chl[kChunk][3];
    const EngineParams &p = cfg_.params;
    for (std::size_t start = 0; start < n; start += kChunk) {
        const std::size_t m = n - start < kChunk ? n - start : kChunk;
        // prices to float64 first, in a loop the compiler vectorises (divpd): the same
        // correctly rounded quotients as update_indicators(Bar)
        for (std::size_t k = 0; k < m; ++k) {
            chl[k][0] = static_cast<double>(c[start + k]) / price_scale_f_;
            chl[k][1] = static_cast<double>(h[start + k]) / price_scale_f_;
            chl[k][2] = static_cast<double>(l[start + k]) / price_scale_f_;
        }
        for (std::size_t k = 0; k < m; ++k) {
            const std::size_t i = start + k;
            const Bar b{ts[i], o[i], h[i], l[i], c[i]};
            Features f;
            const bool okk = features_unchecked(sym[i], b, &f, false, false, chl[k]);
            ++bar_index_;
            if (!okk) {  // the feature pass already decided: invalid (counted) or out of order
                if (valid_bar(b)) ++dropped_;
            } else {
                step(sym[i], b, f, [&]() -> int {
                    // the sign of ln(r) decides most bars before the threshold (a
                    // division and a square root) is needed; threshold >= 0
                    const double r = f.close / f.oldest;
                    const int dir = f.fast > f.slow ? 1 : f.fast < f.slow ? -1 : 0;
                    if (dir == 0 || (dir > 0 ? !(r > 1.0) : !(r < 1.0))) return 0;
                    const double sigma = RollingLogReturnStd::std_from(f.vol_m2, p.vol_window);
                    const double threshold = p.impulse_threshold * sigma * sqrt_lookback_;
                    // ln(r) <= r - 1 and ln(r) >= (r - 1) / r for r > 0, and glibc's log
                    // is within one ulp: far from the line these bounds decide without
                    // the log (margin 1e-9 relative); near it the log decides as before
                    const double d = r - 1.0;
                    if (dir > 0) {
                        if (d < threshold * (1.0 - kLogMargin)) return 0;
                        return std::log(r) > threshold ? 1 : 0;
                    }
                    if (d >= -threshold * r * (1.0 - kLogMargin)) return 0;
                    return std::log(r) < -threshold ? -1 : 0;
                });
            }
            // step() changes the equity only before it sets last_eq_ (the decision
            // only queues orders): equity() is the equity after this event either way
            if (equity_out) equity_out[i] = to_double_money(equity());
        }
    }
}

}  // namespace hean
