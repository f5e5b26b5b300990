//! Unit tests of the descriptor limit: raising the soft limit and fitting the cap under it.

#[test]
fn the_soft_limit_reaches_the_hard_one() {
    let (_, after) = super::raise_nofile_limit().unwrap();
    let (soft, hard) = super::nofile_limit().unwrap();
    assert_eq!((soft, after), (hard, hard));
}

#[test]
fn the_cap_fits_under_the_descriptor_limit_less_the_kept_ones() {
    assert_eq!(super::fit_cap(4096, 1_048_576, 64), 4096);
    assert_eq!(super::fit_cap(4096, 256, 64), 192);
    assert_eq!(super::fit_cap(4096, 10, 64), 1);
    assert_eq!(super::fit_cap(5, 256, 64), 5);
}
