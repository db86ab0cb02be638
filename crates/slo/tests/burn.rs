//! Burn rates and alert states with synthetic time: error patterns crafted to cross each
//! threshold pair of the SRE workbook's table give exactly the expected states.

use causeway_model::Sli;
use causeway_slo::{Ledger, Objective, Severity, Tally, evaluate};

const MINUTE: i64 = 60_000;
/// A Monday, so minutes line up with clock minutes.
const T0: i64 = 1_767_571_200_000;

/// A 99.9% SLO over 30 days: a budget of 0.1%.
fn objective() -> Objective {
    Objective { name: "ordering-success".into(), sli: Sli::EventSuccess { context: "ordering".into() }, target: 0.999, window_minutes: 30 * 1_440 }
}

/// Fills `minutes` minutes from `from` (in minutes after T0) with 1,000 verdicts a minute, `bad`
/// of them bad.
fn traffic(ledger: &mut Ledger, o: &Objective, from: i64, minutes: i64, bad: u64) {
    for m in from..from + minutes {
        ledger.record_tally(T0 + m * MINUTE, Tally { good: 1_000 - bad, bad }, o.minutes_kept());
    }
}

/// The time at the end of minute `m` after T0.
fn at(m: i64) -> i64 {
    T0 + m * MINUTE + MINUTE - 1
}

#[test]
fn nothing_judged_burns_nothing_and_leaves_the_budget_whole() {
    let o = objective();
    let e = evaluate(&o, &Ledger::default(), at(0));
    assert_eq!(e.sli, None);
    assert_eq!(e.budget_remaining, 1.0);
    assert!(e.burn_rates.iter().all(|(_, b)| *b == 0.0));
    assert_eq!(e.alert, None);
}

#[test]
fn a_fast_burn_pages_on_the_one_hour_pair() {
    let o = objective();
    let mut l = Ledger::default();
    // Three days of clean traffic, then an hour at 2% bad: 20× the budget.
    traffic(&mut l, &o, 0, 3 * 1_440, 0);
    traffic(&mut l, &o, 3 * 1_440, 60, 20);
    let e = evaluate(&o, &l, at(3 * 1_440 + 59));
    assert!((e.burn_rate("5m") - 20.0).abs() < 1e-9, "{:?}", e.burn_rates);
    assert!((e.burn_rate("1h") - 20.0).abs() < 1e-9, "{:?}", e.burn_rates);
    assert_eq!(e.alert, Some(Severity::Page));
    let pairs: Vec<(&str, &str)> = e.firing.iter().map(|r| (r.long, r.short)).collect();
    assert_eq!(pairs, [("1h", "5m")], "{:?}", e.burn_rates);
}

#[test]
fn a_burst_that_has_passed_pages_no_one() {
    // Long window hot, short window cool: the hour burned at 20×, the last five minutes clean.
    let o = objective();
    let mut l = Ledger::default();
    traffic(&mut l, &o, 0, 1_440, 0);
    traffic(&mut l, &o, 1_440, 55, 22);
    traffic(&mut l, &o, 1_440 + 55, 5, 0);
    let e = evaluate(&o, &l, at(1_440 + 59));
    assert!(e.burn_rate("1h") > 14.4, "{:?}", e.burn_rates);
    assert_eq!(e.burn_rate("5m"), 0.0);
    assert!(!e.firing.iter().any(|r| r.long == "1h"), "{:?}", e.firing);
}

#[test]
fn a_six_hour_burn_pages_on_the_second_pair() {
    // 0.7% bad for six hours: 7×, over 6 but under 14.4.
    let o = objective();
    let mut l = Ledger::default();
    traffic(&mut l, &o, 0, 360, 7);
    let e = evaluate(&o, &l, at(359));
    let pairs: Vec<(&str, &str, Severity)> = e.firing.iter().map(|r| (r.long, r.short, r.severity)).collect();
    // 7× over a day's and three days' windows too (all the traffic there is), so both tickets fire.
    assert_eq!(pairs, [("6h", "30m", Severity::Page), ("1d", "2h", Severity::Ticket), ("3d", "6h", Severity::Ticket)]);
    assert_eq!(e.alert, Some(Severity::Page));
}

#[test]
fn a_slow_burn_files_a_ticket_and_pages_no_one() {
    // A day at 0.4% bad (4×) after two clean days: over 3 on 1d and 2h, under 6 everywhere.
    let o = objective();
    let mut l = Ledger::default();
    traffic(&mut l, &o, 0, 2 * 1_440, 0);
    traffic(&mut l, &o, 2 * 1_440, 1_440, 4);
    let e = evaluate(&o, &l, at(3 * 1_440 - 1));
    assert!((e.burn_rate("1d") - 4.0).abs() < 1e-9 && (e.burn_rate("2h") - 4.0).abs() < 1e-9, "{:?}", e.burn_rates);
    let pairs: Vec<(&str, &str)> = e.firing.iter().map(|r| (r.long, r.short)).collect();
    // Three days at 4/3 also cross 1× on 3d and 6h.
    assert_eq!(pairs, [("1d", "2h"), ("3d", "6h")], "{:?}", e.burn_rates);
    assert_eq!(e.alert, Some(Severity::Ticket));
}

#[test]
fn the_slowest_burn_crosses_only_the_three_day_pair() {
    // 0.15% bad for three days: 1.5×, over 1 but under 3.
    let o = objective();
    let mut l = Ledger::default();
    for m in 0..3 * 1_440 {
        l.record_tally(T0 + m * MINUTE, Tally { good: 1_997, bad: 3 }, o.minutes_kept());
    }
    let e = evaluate(&o, &l, at(3 * 1_440 - 1));
    let pairs: Vec<(&str, &str)> = e.firing.iter().map(|r| (r.long, r.short)).collect();
    assert_eq!(pairs, [("3d", "6h")], "{:?}", e.burn_rates);
    assert_eq!(e.alert, Some(Severity::Ticket));
}

#[test]
fn a_ticket_pair_needs_its_short_window_too() {
    // A bad day that ended three hours ago: 1d hot, 2h clean.
    let o = objective();
    let mut l = Ledger::default();
    traffic(&mut l, &o, 0, 1_440, 5);
    traffic(&mut l, &o, 1_440, 180, 0);
    let e = evaluate(&o, &l, at(1_440 + 179));
    assert!(e.burn_rate("1d") > 3.0, "{:?}", e.burn_rates);
    assert_eq!(e.burn_rate("2h"), 0.0);
    assert!(!e.firing.iter().any(|r| r.long == "1d"), "{:?}", e.firing);
}

#[test]
fn the_budget_is_spent_in_proportion_over_the_slo_window() {
    let o = Objective { window_minutes: 1_440, ..objective() };
    let mut l = Ledger::default();
    // Half the budget: 0.05% bad over the day.
    for m in 0..1_440 {
        l.record_tally(T0 + m * MINUTE + 59_999, Tally { good: 1_999, bad: 1 }, o.minutes_kept());
    }
    let e = evaluate(&o, &l, at(1_439));
    assert!((e.budget_remaining - 0.5).abs() < 1e-9, "{}", e.budget_remaining);
    assert!((e.sli.unwrap() - 0.9995).abs() < 1e-12);
    // A day later with nothing judged since, the window holds nothing: the budget is whole again.
    let e = evaluate(&o, &l, at(2 * 1_440 + 10));
    assert_eq!((e.window.total(), e.budget_remaining), (0, 1.0));
}

#[test]
fn late_evidence_is_filed_by_event_time_and_old_minutes_are_forgotten() {
    let o = objective();
    let mut l = Ledger::default();
    l.record(T0 + 10 * MINUTE, false, o.minutes_kept());
    // A bad verdict for minute 3 arrives after minute 10's.
    l.record(T0 + 3 * MINUTE, false, o.minutes_kept());
    assert_eq!(l.window(at(3), 1).bad, 1);
    assert_eq!(l.window(at(10), 8).bad, 2);
    // Forty days on, the minutes past the 30-day window are gone; the totals stay.
    l.record(T0 + 40 * 1_440 * MINUTE, true, o.minutes_kept());
    assert_eq!(l.window(at(40 * 1_440), 40 * 1_440 + 1), Tally { good: 1, bad: 0 });
    assert_eq!(l.totals(), Tally { good: 1, bad: 2 });
}
