// The paper-trading engine of one TradingStrategy in C++: indicators -> impulse
// strategy -> Risk Governor -> next-open market fills with slippage -> exact
// ledger. It is a transcription of worker/engine.py (hean.worker.engine.Engine),
// step for step, so that a replay produces the same fills (timestamps, sides,
// quantities, prices, fees), the same risk transitions and the same counters.
//
// Numbers:
//  * prices are int64 in units of 10^-price_decimals (one global scale),
//  * quantities int64 in units of 10^-qty_decimals,
//  * money (cash, PnL, equity) int128 in units of 10^-money_decimals,
//  * fees int64 in units of 1e-8 USDT (the engine quantizes fees to 1e-8),
//  * the steps where Python divides Decimals (sizing, slippage rounding,
//    drawdown ties) use hean::Dec with Python's 28-digit half-even semantics,
//  * indicators and the signal are float64 exactly as in Python (same kernels,
//    same operation order, no FMA contraction).
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "hean/dec.hpp"
#include "hean/indicators.hpp"

namespace hean {

enum Reason : int {
    R_NO_POLICY = 0, R_PAUSED, R_HARD_STOP, R_QUARANTINED, R_SOFT_BRAKE, R_WARMING_UP,
    R_COOLDOWN, R_NO_SIGNAL, R_SPOT_NO_SHORT, R_ORDER_RATE, R_MAX_POSITIONS, R_NOTIONAL,
    R_MIN_ORDER, R_PENDING, R_BLOCKED, R_COUNT
};
enum Reject : int { J_ORDER_RATE = 0, J_MIN_ORDER, J_REDUCE_ONLY_NO_POSITION, J_COUNT };
enum FillReason : int { F_IMPULSE_ENTRY = 0, F_TREND_FLIP, F_STOP_LOSS, F_TAKE_PROFIT, F_HARD_STOP };
enum RiskState : int { RS_NORMAL = 0, RS_SOFT_BRAKE = 1, RS_QUARANTINE = 2, RS_HARD_STOP = 3 };
// risk reason bits
enum : int { RR_SOFT_DD = 1, RR_HARD_DD = 2, RR_DAILY_LOSS = 4, RR_QUARANTINE = 8, RR_LATCHED = 16 };

struct EngineParams {
    std::int64_t ema_fast = 20, ema_slow = 100, vol_window = 60, lookback = 5, atr_period = 14;
    double impulse_threshold = 3.0, stop_loss_atr = 8.0, take_profit_atr = 16.0,
           risk_fraction = 0.005;
    std::int64_t cooldown_bars = 30;
};

struct InstrumentSpec {
    std::int64_t tick = 1;      // price units
    std::int64_t qty_step = 1;  // qty units
    std::int64_t min_qty = 0;   // qty units
    Dec min_notional;           // USDT
    Dec max_leverage;
};

struct PolicySpec {
    bool present = false;
    Dec soft_dd, hard_dd, max_daily_loss, max_leverage, max_position_notional, soft_brake_factor;
    std::int64_t max_open_positions = 5, max_orders_per_minute = 60;
};

struct EngineConfig {
    int price_decimals = 2, qty_decimals = 3, money_decimals = 8;
    bool spot = false;
    Dec capital, spec_max_leverage, slippage_bps, taker_fee;
    bool paused = false;
    EngineParams params;
    std::vector<InstrumentSpec> instruments;
};

struct Bar {
    std::int64_t ts, open, high, low, close;  // ms; price units
};

/// Indicator values of one bar (what a strategy sees).
struct Features {
    double fast, slow, sigma, atr, ret;  // ret = ln(close / close[lookback bars ago])
    bool warm;
    double close, oldest;  // close and close[lookback bars ago] (float64)
    const RollingLogReturnStd *vol;  // for the lazily computed sigma
    double vol_m2;                   // M2 after this bar (batched path)
};

struct FillRec {
    std::int64_t ts, qty, price, fee_e8, seq;
    std::int32_t sym;
    std::int8_t side;    // +1 Buy, -1 Sell
    std::int8_t reason;  // FillReason
    i128 realized;       // price*qty units
};

struct RiskEvent {
    std::int64_t bar_index;
    std::int8_t old_state, new_state;
    std::int32_t reasons;
};

/// Index of the first symbol index outside [0, n_symbols), or n if all are inside
/// (an OR of all indices the compiler vectorises, then an exact scan only if that
/// OR is not already below n_symbols).
std::size_t first_bad_symbol(const std::int32_t *sym, std::size_t n, int n_symbols);

class PaperEngine {
public:
    explicit PaperEngine(const EngineConfig &cfg);

    // ---- control (between bars) -------------------------------------------
    void set_policy(const PolicySpec &p, bool evaluate = true);
    void set_paused(bool paused) { cfg_.paused = paused; }
    /// Engine.update_spec: new params, paused, slippage and spec leverage; the
    /// indicators are rebuilt (warm up again) only if a period changed.
    void update_spec(const EngineParams &params, bool paused, Dec slippage_bps, Dec spec_max_leverage);
    /// Engine.blocked_reason (e.g. MARKET_DATA_STALE): entries blocked, counted as R_BLOCKED.
    void set_blocked(bool blocked) { blocked_ = blocked; }
    void set_quarantined(const std::vector<bool> &q);
    /// at_us: the annotation's time in epoch microseconds; returns true if the
    /// latched stop was older and is cleared (Engine.clear_hard_stop).
    bool clear_hard_stop(std::int64_t at_us);

    // ---- per bar ----------------------------------------------------------------
    /// The built-in impulse strategy: updates the indicators and decides.
    void on_bar(int sym, const Bar &b);
    /// Phase 1 of the callback path: whether the bar would be dropped, and
    /// the indicators after it (updates the indicator state).
    bool features(int sym, const Bar &b, Features *f, bool with_ret = true, bool with_sigma = true,
                  const double *chl = nullptr);
    /// The built-in strategy over a merged stream (what on_bar() per event does);
    /// equity_out (may be null) receives the equity after each event (USDT, float64).
    void run(const std::int32_t *sym, const std::int64_t *ts, const std::int64_t *o, const std::int64_t *h,
             const std::int64_t *l, const std::int64_t *c, std::size_t n, double *equity_out);
    /// Phase 2: the same step as on_bar with features computed by features()
    /// and the strategy's decision: entry +1 long / -1 short / 0 none; bias
    /// +1 trend up (exit shorts) / -1 down (exit longs) / 0 none.
    void on_bar_signal(int sym, const Bar &b, const Features &f, int entry, int bias);

    // ---- figures ----------------------------------------------------------------
    /// cash + unrealized PnL at the current marks (money units); kept up to date
    /// incrementally (exact integers): refreshed after every fill, moved by
    /// (new mark - old mark) * size on every mark change.
    i128 equity() const { return eq_; }
    i128 cash() const { return cash_; }
    i128 realized() const { return realized_; }
    std::int64_t fees_e8() const { return fees_e8_; }
    i128 peak() const { return peak_; }
    Dec drawdown_percent() const;
    int risk_state() const { return risk_state_; }
    int risk_reasons() const { return risk_reasons_; }
    std::int64_t position(int s) const { return sym_[s].size; }
    std::int64_t entry_price(int s) const { return sym_[s].entry; }
    std::int64_t mark(int s) const { return sym_[s].mark; }
    bool has_mark(int s) const { return sym_[s].has_mark; }
    std::int64_t stop_price(int s) const { return sym_[s].has_stop ? sym_[s].stop : 0; }
    std::int64_t target_price(int s) const { return sym_[s].has_stop ? sym_[s].target : 0; }
    bool has_stop(int s) const { return sym_[s].has_stop; }
    bool has_pending(int s) const { return sym_[s].has_pending; }
    int last_reason(int s) const { return sym_[s].last_reason; }
    std::int64_t entry_orders(int s) const { return sym_[s].entry_orders; }
    int n_symbols() const { return static_cast<int>(sym_.size()); }
    int open_positions() const;
    bool trading_active() const;

    const std::vector<FillRec> &fills() const { return fills_; }
    const std::vector<RiskEvent> &risk_events() const { return risk_events_; }
    const std::int64_t *reasons() const { return reasons_; }
    const std::int64_t *rejects() const { return rejects_; }
    std::int64_t dropped_out_of_order() const { return dropped_; }
    /// Bars with a non-positive price, low > high or open/close outside
    /// [low, high] (the Python engine relies on the loader to drop these).
    std::int64_t rejected_bars() const { return rejected_bars_; }
    std::int64_t bars_processed() const { return bars_processed_; }
    std::int64_t orders_sent() const { return orders_sent_; }
    std::int64_t order_seq() const { return order_seq_; }
    std::int64_t closed_trades() const { return closed_trades_; }
    std::int64_t winning_trades() const { return winning_trades_; }
    std::int64_t now_ms() const { return now_ms_; }
    bool hard_stop_latched() const { return has_hard_stop_; }
    std::int64_t hard_stop_at_us() const { return hard_stop_at_; }
    const EngineConfig &config() const { return cfg_; }
    double to_double_money(i128 v) const;
    Dec money_dec(i128 v) const { return Dec{v, -cfg_.money_decimals}; }

private:
    struct Order {
        std::int64_t seq = 0, qty = 0;
        int side = 0;
        bool reduce_only = false;
        int reason = 0;
        Dec stop_distance, target_distance;
    };
    struct Sym {
        InstrumentSpec inst;
        Dec tick_dec, step_dec;
        Ema ema_fast, ema_slow;
        RollingLogReturnStd vol;
        Atr atr;
        // ring of the last lookback+1 closes: capacity a power of two (closes_mask + 1),
        // close number k (0-based since the indicators were (re)built) at k & closes_mask
        std::vector<double> closes;
        std::uint64_t closes_mask = 0;
        std::int64_t ind_n = 0;  // indicator updates since the indicators were (re)built
        std::int64_t bars_seen = 0, cooldown_left = 0;
        bool has_stop = false;
        std::int64_t stop = 0, target = 0;
        bool has_pending = false;
        Order pending;
        bool has_mark = false;
        std::int64_t mark = 0;
        std::int64_t entry_orders = 0;
        int last_reason = R_WARMING_UP;
        bool quarantined = false;
        std::int64_t last_ts = -1;
        // ledger position
        std::int64_t size = 0, entry = 0;
        i128 pos_realized = 0;  // price*qty units
        // callback path: feature-side ordering state
        std::int64_t f_bars_seen = 0, f_last_ts = -1;
        Sym(const InstrumentSpec &i, const EngineParams &p, int pd, int qd);
    };

    template <class Signal>
    void step(int sym, const Bar &b, const Features &f, Signal &&signal);
    void update_indicators(Sym &st, const Bar &b, Features *f);
    void update_indicators(Sym &st, double close, double high, double low, Features *f);
    bool features_unchecked(int sym, const Bar &b, Features *f, bool with_ret, bool with_sigma, const double *chl);
    bool dropped(Sym &st, const Bar &b);
    bool valid_bar(const Bar &b);
    void execute_pending(int s, const Bar &b);
    void check_exits(int s, const Bar &b);
    void fill(int s, int side, std::int64_t qty, std::int64_t ref, std::int64_t ts, std::int64_t seq,
              int reason);
    void queue(int s, int side, std::int64_t qty, bool reduce_only, int reason, Dec sd = Dec{},
               Dec td = Dec{});
    void evaluate_risk();
    void evaluate_risk(i128 eq);
    void evaluate_risk_full(i128 eq);  // evaluate_risk() without its fast path
    __attribute__((noinline)) void risk_transition(int state, int reasons);
    void flatten_all();
    /// One drawdown line of the Risk Governor (hard, soft, soft-brake release):
    /// dd >= x with dd = (diff / peak) * 100 in Python's 28-digit arithmetic. That
    /// is monotonic in diff = peak - equity, so for a given peak it is decided by
    /// two integer bounds (computed from float64 with a 1e-9 relative margin when
    /// the peak changes); only a diff between them takes the exact decimal test.
    struct DdLine {
        Dec x;
        double xf = 0;
        bool at_zero = false;  // the answer for diff <= 0 (x <= 0)
        i128 lo = 1, hi = ~(i128{1} << 127);  // diff < lo: false; diff > hi: true (for bounds_peak_)
    };
    void set_dd_line(DdLine &line, Dec x);
    bool dd_at_least(const DdLine &line, i128 diff);
    void refresh_dd_bounds();
    int entry_block(const Sym &st, bool warm) const;
    template <class Signal>
    int try_entry(int s, const Features &f, Signal &&signal);
    i128 gross_notional() const;
    void refresh_equity();  // eq_ from cash_ and the positions
    // entries sent but not filled yet count against maxOpenPositions and leverage
    int open_or_pending_entries() const;
    i128 pending_entry_notional() const;

    EngineConfig cfg_;
    PolicySpec pol_;
    std::vector<Sym> sym_;
    i128 money_per_pq_ = 1;   // money units per (price unit * qty unit)
    i128 money_per_fee_ = 1;  // money units per 1e-8
    double money_scale_f_ = 1e8, price_scale_f_ = 100, sqrt_lookback_ = 1;
    // indicator updates after which every indicator has a value (the strategy is warm):
    // max(emaFast, emaSlow, volatilityWindow + 1, atrPeriod + 1, lookback + 1)
    std::int64_t warm_n_ = 1;
    std::int64_t day_lo_ = 0;      // first ms of the day of the last bar
    std::int64_t day_lo_day_ = 0;  // day_lo_ / 86400000
    Dec slip_up_, slip_down_, soft_release_line_;
    DdLine dd_hard_, dd_soft_, dd_release_;
    i128 bounds_peak_ = -1;  // the peak the DdLine bounds were computed for (-1: none)
    bool quiet_policy_ = false;  // a policy with hard, soft and daily-loss lines all > 0
    i128 max_daily_loss_ = 0;
    bool max_daily_loss_exact_ = true;
    Dec max_daily_loss_dec_;
    Dec risk_fraction_dec_;

    i128 cash_ = 0, realized_ = 0, peak_ = 0, day_start_ = 0, last_eq_ = 0;
    i128 eq_ = 0;  // equity(): cash_ + sum over positions of (mark - entry) * size * money_per_pq_
    int n_quarantined_ = 0;
    std::int64_t fees_e8_ = 0;
    bool has_day_ = false, blocked_ = false;
    std::int64_t day_ = 0;
    int risk_state_ = RS_NORMAL, risk_reasons_ = 0;
    bool has_hard_stop_ = false;
    std::int64_t hard_stop_at_ = 0;
    std::deque<std::int64_t> order_times_;
    std::int64_t order_seq_ = 0, orders_sent_ = 0, now_ms_ = 0, bars_processed_ = 0, dropped_ = 0,
                 rejected_bars_ = 0;
    std::int64_t closed_trades_ = 0, winning_trades_ = 0;
    std::int64_t reasons_[R_COUNT] = {};
    std::int64_t rejects_[J_COUNT] = {};
    std::vector<FillRec> fills_;
    std::vector<RiskEvent> risk_events_;
    std::int64_t bar_index_ = -1;  // index of the bar being processed (for risk events)
};

}  // namespace hean
