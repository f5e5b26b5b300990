use super::*;
use CheckStatus::{Critical, Passing, Warning};

fn limits(success: u32, warning: u32, critical: u32) -> Limits {
    Limits {
        success_before_passing: success,
        failures_before_warning: warning,
        failures_before_critical: critical,
    }
}

fn feed(t: &mut Thresholds, limits: Limits, outcomes: &[CheckStatus]) -> Vec<Transition> {
    outcomes.iter().map(|&o| t.on_result(limits, o)).collect()
}

#[test]
fn without_thresholds_every_result_applies_at_once() {
    let mut t = Thresholds::default();
    let got = feed(&mut t, limits(0, 0, 0), &[Passing, Critical, Warning]);
    assert_eq!(
        got,
        [
            Transition::Become(Passing),
            Transition::Become(Critical),
            Transition::Become(Warning)
        ]
    );
}

#[test]
fn successes_count_up_to_passing() {
    let mut t = Thresholds::default();
    let got = feed(
        &mut t,
        limits(3, 0, 0),
        &[Passing, Passing, Passing, Passing],
    );
    assert_eq!(
        got,
        [
            Transition::Hold,
            Transition::Hold,
            Transition::Become(Passing),
            Transition::Become(Passing)
        ]
    );
}

#[test]
fn failures_count_up_to_critical() {
    let mut t = Thresholds::default();
    let got = feed(&mut t, limits(0, 0, 3), &[Critical, Critical, Critical]);
    assert_eq!(
        got,
        [
            Transition::Hold,
            Transition::Hold,
            Transition::Become(Critical)
        ]
    );
}

#[test]
fn failures_pass_through_warning_before_critical() {
    let mut t = Thresholds::default();
    let got = feed(&mut t, limits(0, 2, 4), &[Critical; 4]);
    assert_eq!(
        got,
        [
            Transition::Hold,
            Transition::Become(Warning),
            Transition::Become(Warning),
            Transition::Become(Critical)
        ]
    );
}

#[test]
fn a_success_resets_the_failure_count() {
    let mut t = Thresholds::default();
    let l = limits(0, 0, 2);
    assert_eq!(t.on_result(l, Critical), Transition::Hold);
    assert_eq!(t.on_result(l, Passing), Transition::Become(Passing));
    assert_eq!(
        t.on_result(l, Critical),
        Transition::Hold,
        "counting from 1"
    );
    assert_eq!(t.on_result(l, Critical), Transition::Become(Critical));
}

#[test]
fn a_failure_resets_the_success_count() {
    let mut t = Thresholds::default();
    let l = limits(2, 0, 5);
    assert_eq!(t.on_result(l, Passing), Transition::Hold);
    assert_eq!(t.on_result(l, Critical), Transition::Hold);
    assert_eq!(t.on_result(l, Passing), Transition::Hold, "counting from 1");
    assert_eq!(t.on_result(l, Passing), Transition::Become(Passing));
}

#[test]
fn a_warning_outcome_counts_as_a_success_of_its_own_status() {
    let mut t = Thresholds::default();
    let l = limits(2, 0, 1);
    assert_eq!(t.on_result(l, Warning), Transition::Hold);
    assert_eq!(t.on_result(l, Warning), Transition::Become(Warning));
    assert_eq!(t.on_result(l, Critical), Transition::Become(Critical));
}

#[test]
fn counts_saturate_instead_of_wrapping() {
    let mut t = Thresholds {
        successes: 0,
        failures: u32::MAX,
    };
    let l = limits(0, 0, u32::MAX);
    assert_eq!(t.on_result(l, Critical), Transition::Become(Critical));
}
