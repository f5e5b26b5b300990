use super::*;

fn sorted(ids: &[&str]) -> Vec<String> {
    let mut all: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    all.sort_by(|a, b| natural_cmp(a, b));
    all
}

#[test]
fn numeric_parts_compare_as_numbers() {
    assert_eq!(
        sorted(&["10.1.1", "2.1.1", "5.3.10", "5.3.2", "12.0.1", "5.3.1"]),
        ["2.1.1", "5.3.1", "5.3.2", "5.3.10", "10.1.1", "12.0.1"]
    );
}

#[test]
fn text_ignores_case_and_the_order_is_total() {
    assert_eq!(
        sorted(&["BL-10", "bl-9", "BL-9", "7a", "a7", "007"]),
        ["007", "7a", "a7", "BL-9", "bl-9", "BL-10"]
    );
    assert_eq!(natural_cmp("5.3.1", "5.3.1"), Ordering::Equal);
    assert_eq!(natural_cmp("5.3", "5.3.1"), Ordering::Less);
    // Longer than u64: still by value.
    assert_eq!(
        natural_cmp("99999999999999999999999", "100000000000000000000000"),
        Ordering::Less
    );
}
