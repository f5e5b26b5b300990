use super::*;

#[test]
fn beamlines_sort_naturally() {
    let mut ids = vec!["12.3.1", "5.3.1", "7.0.1", "5.3", "5-3-1", "BL2", "BL10"];
    ids.sort_by(|a, b| natural_cmp(a, b));
    assert_eq!(
        ids,
        vec!["5-3-1", "5.3", "5.3.1", "7.0.1", "12.3.1", "BL2", "BL10"]
    );
}

#[test]
fn the_table_aligns_columns() {
    let rows = vec![Beamline {
        beamline: "5.3.1".into(),
        service: "beamline-5-3-1".into(),
        instances: vec![
            InstanceRow {
                id: "a".into(),
                address: "127.0.0.1:1".into(),
                status: CheckStatus::Passing,
            },
            InstanceRow {
                id: "b".into(),
                address: "127.0.0.1:2".into(),
                status: CheckStatus::Critical,
            },
        ],
    }];
    let text = table(&rows);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("BEAMLINE"));
    assert!(lines[1].contains("1/2") && lines[1].ends_with("passing"));
    assert!(lines[2].ends_with("critical"));
    let col = lines[0].find("INSTANCE").unwrap();
    assert_eq!(lines[2].find('b'), Some(col));
}

#[test]
fn the_table_escapes_what_consul_holds() {
    let rows = vec![Beamline {
        beamline: "5.3.1\u{1b}[2J".into(),
        service: "beamline-5-3-1".into(),
        instances: vec![InstanceRow {
            id: "a\rforged".into(),
            address: "127.0.0.1:1\u{1b}]0;title\u{7}".into(),
            status: CheckStatus::Passing,
        }],
    }];
    let text = table(&rows);
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
    assert!(text.contains("5.3.1\\u{1b}[2J"), "{text}");
    assert!(text.contains("a\\rforged"), "{text}");
    assert_eq!(text.lines().count(), 2, "{text}");
}
