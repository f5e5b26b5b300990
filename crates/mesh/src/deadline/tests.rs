use super::*;

#[test]
fn the_mesh_answers_a_little_before_the_callers_deadline() {
    let us = Duration::from_micros;
    let ms = Duration::from_millis;
    // Under 20 µs: over on arrival.
    assert_eq!(answer_by(Duration::ZERO), Duration::ZERO);
    assert_eq!(answer_by(us(1)), Duration::ZERO);
    assert_eq!(answer_by(us(20)), Duration::ZERO);
    // At least 20 µs sooner, a twentieth in between, at most 5 ms sooner.
    assert_eq!(answer_by(us(100)), us(80));
    assert_eq!(answer_by(ms(10)), us(9_500));
    assert_eq!(answer_by(ms(300)), ms(295));
    assert_eq!(
        answer_by(Duration::from_secs(60)),
        Duration::from_secs(60) - ms(5)
    );
}
