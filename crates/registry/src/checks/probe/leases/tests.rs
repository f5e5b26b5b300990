use super::*;

#[test]
fn the_value_lives_as_long_as_a_lease() {
    static LEASES: std::sync::LazyLock<Leases<&str, Mutex<u32>>> =
        std::sync::LazyLock::new(Leases::default);
    let a = LEASES.lease("t");
    *a.lock().unwrap() = 7;
    let b = LEASES.lease("t");
    assert_eq!(*b.lock().unwrap(), 7, "one value per key");
    drop(a);
    assert_eq!(LEASES.len(), 1);
    drop(b);
    assert_eq!(LEASES.len(), 0, "gone with the last lease");
    assert_eq!(*LEASES.lease("t").lock().unwrap(), 0, "made anew");
}
