//! Recording and exposition: calls counted with their labels, label escaping and capping, the
//! text formats, the mesh's gauges read at scrape time.

use super::*;
use crate::tests::{mesh, value};
use beamline_contract::beamline::BeamlineId;

fn end<'a>(
    label: &'a str,
    method: &'a str,
    capability: Option<&'a str>,
    code: Code,
) -> CallEnd<'a> {
    CallEnd {
        beamline_label: label,
        method,
        capability,
        code,
        duration: Duration::from_millis(3),
        reached_agent: true,
    }
}

#[tokio::test]
async fn calls_are_counted_with_their_labels_and_latency() {
    let metrics = GatewayMetrics::new();
    let label = metrics.call_started(Some("5.3.1"));
    metrics.call_ended(&end(&label, "Execute", Some("scan"), Code::Ok));
    let label = metrics.call_started(Some("5.3.1"));
    metrics.call_ended(&end(&label, "Execute", Some("nonsense"), Code::NotFound));
    let label = metrics.call_started(None);
    metrics.call_ended(&end(&label, "Bogus", None, Code::InvalidArgument));
    let text = metrics.render(&mesh());
    let calls = "beamline_gateway_calls_total";
    assert_eq!(
        value(
            &text,
            &format!(r#"{calls}{{beamline="5.3.1",method="Execute",capability="scan",code="OK"}}"#)
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!(
                r#"{calls}{{beamline="5.3.1",method="Execute",capability="_other",code="NOT_FOUND"}}"#
            )
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &text,
            &format!(
                r#"{calls}{{beamline="",method="_other",capability="",code="INVALID_ARGUMENT"}}"#
            )
        ),
        Some(1.0)
    );
    let buckets = r#"beamline_gateway_call_duration_seconds_bucket{le="#;
    assert!(
        text.contains(&format!(
            r#"{buckets}"0.0001",beamline="5.3.1",method="Execute"}} 0"#
        )),
        "{text}"
    );
    assert!(text.contains(&format!(
        r#"{buckets}"0.005",beamline="5.3.1",method="Execute"}} 2"#
    )));
    assert!(text.contains(&format!(
        r#"{buckets}"600.0",beamline="5.3.1",method="Execute"}} 2"#
    )));
    assert_eq!(
        value(
            &text,
            r#"beamline_gateway_in_flight_calls{beamline="5.3.1"}"#
        ),
        Some(0.0)
    );
    assert!(text.contains("# TYPE beamline_gateway_calls counter"));
    assert!(text.ends_with("# EOF\n"));
    let totals = metrics.totals();
    assert_eq!(
        totals["5.3.1"],
        CallTotals {
            calls: 2,
            errors: 1
        }
    );
    assert!(!totals.contains_key(""));
}

#[tokio::test]
async fn label_values_are_escaped() {
    let metrics = GatewayMetrics::new();
    let label = metrics.call_started(Some("5.3.1"));
    metrics.call_ended(&end(&label, "Execute", Some("a\"b\\c\nd"), Code::Ok));
    let text = metrics.render(&mesh());
    assert!(text.contains(r#"capability="a\"b\\c\nd""#), "{text}");
}

#[tokio::test]
async fn the_0_0_4_format_names_counters_with_total_and_has_no_eof() {
    let metrics = GatewayMetrics::new();
    let label = metrics.call_started(Some("5.3.1"));
    metrics.call_ended(&end(&label, "Describe", None, Code::Ok));
    let text = metrics.render_prometheus(&mesh());
    assert!(
        text.contains("# TYPE beamline_gateway_calls_total counter\n"),
        "{text}"
    );
    assert!(text.contains("# HELP beamline_gateway_calls_total Calls through"));
    assert!(text.contains("# TYPE beamline_gateway_call_duration_seconds histogram\n"));
    assert!(
        text.contains("# TYPE beamline_gateway_in_flight_calls gauge\n"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
}

#[tokio::test]
async fn instances_and_discovery_come_from_the_mesh_at_scrape_time() {
    let mesh = mesh();
    mesh.warm(&BeamlineId::parse("5.3.1").unwrap()).unwrap();
    let text = GatewayMetrics::new().render(&mesh);
    assert_eq!(
        value(&text, r#"beamline_gateway_instances{beamline="5.3.1"}"#),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"beamline_gateway_healthy_instances{beamline="5.3.1"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&text, "beamline_gateway_discovery_updates_total"),
        Some(0.0)
    );
}

#[tokio::test]
async fn beamline_labels_are_capped() {
    let metrics = GatewayMetrics::new();
    for i in 0..MAX_BEAMLINES {
        assert_eq!(
            metrics.beamline_label(Some(&format!("b{i}"))),
            format!("b{i}")
        );
    }
    assert_eq!(metrics.beamline_label(Some("one-more")), OTHER);
    assert_eq!(metrics.beamline_label(Some("b7")), "b7");
}
