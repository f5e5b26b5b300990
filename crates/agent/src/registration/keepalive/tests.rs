//! Every transition of the keep-alive, on explicit instants: what it calls, when it wakes, and
//! which lines it asks for.

use std::time::Duration;

use tokio::time::Instant;

use super::*;

const EVERY: Duration = Duration::from_secs(4);

fn failed(unreachable: bool) -> Outcome {
    Outcome::Failed { unreachable }
}

#[test]
fn it_registers_first_then_checks_every_period_and_says_registered_once() {
    let t0 = Instant::now();
    let mut k = Keepalive::new(EVERY);
    assert_eq!(k.call(), Call::Register);
    let (wake, note) = k.on_result(t0, Outcome::Present, 0.0);
    assert_eq!((wake, note), (Wake::At(t0 + EVERY), Some(Note::Registered)));
    assert_eq!(k.call(), Call::Check);
    let t1 = t0 + EVERY;
    assert_eq!(
        k.on_result(t1, Outcome::Present, 0.0),
        (Wake::At(t1 + EVERY), None)
    );
    assert_eq!(k.call(), Call::Check);
}

#[test]
fn the_jitter_adds_up_to_a_quarter_of_the_period_and_is_clamped() {
    let t0 = Instant::now();
    let mut k = Keepalive::new(EVERY);
    for (jitter, extra) in [
        (0.0, Duration::ZERO),
        (0.5, Duration::from_millis(500)),
        (1.0, Duration::from_secs(1)),
        (7.0, Duration::from_secs(1)),
        (-1.0, Duration::ZERO),
        (f64::NAN, Duration::ZERO),
    ] {
        let (wake, _) = k.on_result(t0, Outcome::Present, jitter);
        assert_eq!(wake, Wake::At(t0 + EVERY + extra), "jitter {jitter}");
    }
}

#[test]
fn a_registration_gone_is_registered_again_at_once() {
    let t0 = Instant::now();
    let mut k = Keepalive::new(EVERY);
    k.on_result(t0, Outcome::Present, 0.0);
    assert_eq!(
        k.on_result(t0, Outcome::Gone, 0.9),
        (Wake::Now, Some(Note::Disappeared))
    );
    assert_eq!(k.call(), Call::Register);
    assert_eq!(
        k.on_result(t0, Outcome::Present, 0.0),
        (Wake::At(t0 + EVERY), Some(Note::Registered))
    );
}

#[test]
fn an_outage_is_noted_once_and_its_end_says_registered() {
    let t0 = Instant::now();
    let mut k = Keepalive::new(EVERY);
    k.on_result(t0, Outcome::Present, 0.0);
    let mut now = t0;
    for i in 0..3 {
        let note = (i == 0).then_some(Note::Failing);
        assert_eq!(
            k.on_result(now, failed(true), 0.0),
            (Wake::At(now + EVERY), note)
        );
        // After Consul was unreachable the registration is made again, not assumed.
        assert_eq!(k.call(), Call::Register);
        now += EVERY;
    }
    assert_eq!(
        k.on_result(now, Outcome::Present, 0.0),
        (Wake::At(now + EVERY), Some(Note::Registered))
    );
    // A later outage is a new one, noted again.
    assert_eq!(k.on_result(now, failed(true), 0.0).1, Some(Note::Failing));
}

#[test]
fn a_failure_with_consul_reachable_keeps_checking_and_recovers_quietly() {
    let t0 = Instant::now();
    let mut k = Keepalive::new(EVERY);
    k.on_result(t0, Outcome::Present, 0.0);
    assert_eq!(
        k.on_result(t0, failed(false), 0.0),
        (Wake::At(t0 + EVERY), Some(Note::Failing))
    );
    assert_eq!(k.call(), Call::Check);
    // Still registered all along: nothing to say when the checks work again.
    assert_eq!(
        k.on_result(t0, Outcome::Present, 0.0),
        (Wake::At(t0 + EVERY), None)
    );
}

#[test]
fn a_first_registration_that_fails_keeps_registering() {
    let t0 = Instant::now();
    let mut k = Keepalive::new(EVERY);
    assert_eq!(k.on_result(t0, failed(false), 0.0).1, Some(Note::Failing));
    assert_eq!(k.call(), Call::Register);
    assert_eq!(k.on_result(t0, failed(true), 0.0).1, None);
    assert_eq!(k.call(), Call::Register);
}
