use super::digest_of;

#[test]
fn strips_only_the_trailing_newline() {
    // sha256("abc")
    let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    assert_eq!(digest_of("abc").unwrap(), abc);
    assert_eq!(digest_of("abc\n").unwrap(), abc);
    assert_eq!(digest_of("abc\r\n").unwrap(), abc);
    assert_ne!(digest_of(" abc\n").unwrap(), abc);
    assert_ne!(digest_of("abc\n\n").unwrap(), abc);
}

#[test]
fn empty_key_is_an_error() {
    assert!(digest_of("").is_err());
    assert!(digest_of("\n").is_err());
}
