use super::{chain, io_cause};

#[derive(Debug, thiserror::Error)]
#[error("cannot reach Consul")]
struct Outer(#[source] Middle);

#[derive(Debug, thiserror::Error)]
#[error("error sending request: {0}")]
struct Middle(#[source] std::io::Error);

#[test]
fn every_cause_is_said_and_a_repeated_one_once() {
    let error = Outer(Middle(std::io::Error::from_raw_os_error(24)));
    let text = chain(&error);
    assert!(
        text.starts_with("cannot reach Consul: error sending request: "),
        "{text}"
    );
    // Middle's own text already ends with the OS error's: it is not repeated.
    assert_eq!(text.matches("os error 24").count(), 1, "{text}");
    assert_eq!(io_cause(&error).and_then(|e| e.raw_os_error()), Some(24));
}
