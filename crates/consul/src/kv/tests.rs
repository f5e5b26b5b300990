use super::*;

#[test]
fn key_paths_keep_separators_and_encode_segments() {
    assert_eq!(
        key_path("beamline-mesh/halt/5.3.1"),
        "/v1/kv/beamline-mesh/halt/5.3.1"
    );
    assert_eq!(key_path("a b/c?d"), "/v1/kv/a%20b/c%3Fd");
    assert_eq!(key_path("beamline-mesh/"), "/v1/kv/beamline-mesh/");
}

#[test]
fn values_are_decoded_from_base64_and_a_null_value_is_empty() {
    let wire = vec![
        WireEntry {
            key: "k".to_string(),
            value: Some("aGVsbG8=".to_string()),
            create_index: 1,
            modify_index: 2,
        },
        WireEntry {
            key: "folder/".to_string(),
            value: None,
            create_index: 3,
            modify_index: 3,
        },
    ];
    let entries = decode("read", wire).unwrap();
    assert_eq!(entries[0].value, b"hello");
    assert_eq!(entries[0].modify_index, 2);
    assert!(entries[1].value.is_empty());
    let bad = vec![WireEntry {
        key: "k".to_string(),
        value: Some("***".to_string()),
        create_index: 1,
        modify_index: 1,
    }];
    assert!(decode("read", bad)
        .unwrap_err()
        .to_string()
        .contains("not base64"));
}
