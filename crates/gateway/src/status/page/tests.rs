//! The page: everything from outside is escaped (a `<script>` in a halt reason stays text),
//! totals at the top, attention first, the filter box and its script, no external assets, a
//! refresh with and without script.

use super::*;
use crate::status::view::{
    finish, state, BeamlineView, CapabilityView, CardView, HaltView, InstanceView, LockView,
};

fn instance(id: &str, passing: bool) -> InstanceView {
    InstanceView {
        id: id.into(),
        address: "10.0.0.1:5000\"".into(),
        healthy: false,
        passing,
        routable: false,
        sdk_version: String::new(),
        card_revision: String::new(),
        enforces_halt: false,
    }
}

fn beamline(id: &str) -> BeamlineView {
    let mut b = BeamlineView::new(id.into(), state::IDLE);
    b.instances = vec![
        instance(&format!("{id}-a"), true),
        instance(&format!("{id}-b"), true),
    ];
    b
}

fn view(mut beamlines: Vec<BeamlineView>) -> StatusView {
    let totals = finish(&mut beamlines);
    StatusView {
        as_of: "2026-12-05T14:02:07.250Z".into(),
        window_secs: Some(30.0),
        discovery_updates: 3,
        totals,
        fleet_halt: None,
        control_unreadable: None,
        beamlines,
    }
}

const XSS: &str = "<script>alert(1)</script>";

#[test]
fn escape_covers_the_html_specials() {
    assert_eq!(
        escape(r#"<a href="x">'&'</a>"#),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
    );
}

#[test]
fn what_users_typed_is_escaped_everywhere() {
    let mut halted = beamline("5.3.1");
    halted.halt = Some(HaltView {
        by: format!("eve{XSS}"),
        reason: XSS.into(),
        since: Some("2026-12-05T14:02:07Z".into()),
        all: false,
    });
    let mut locked = beamline("6.0.1");
    locked.lock = Some(LockView {
        holder: "\"><img src=x onerror=alert(1)>".into(),
        note: XSS.into(),
        since: None,
        expires: Some("2026-12-05T16:02:07Z".into()),
    });
    locked.card = Some(CardView {
        card_revision: XSS.into(),
        agent_version: XSS.into(),
        capabilities: vec![CapabilityView {
            name: XSS.into(),
            description: XSS.into(),
            actuating: true,
        }],
    });
    locked.card_error = Some(XSS.into());
    locked.instances[0].id = XSS.into();
    let mut v = view(vec![halted, locked]);
    v.fleet_halt = Some(HaltView {
        by: XSS.into(),
        reason: XSS.into(),
        since: None,
        all: true,
    });
    v.control_unreadable = Some(XSS.into());
    let html = render_page(&v, XSS);
    // The page's own script is the only one.
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(!html.contains("<img"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(html.contains("held by &quot;&gt;&lt;img"), "{html}");
    assert!(html.contains("10.0.0.1:5000&quot;"));
    assert!(
        html.contains("value=\"&lt;script&gt;"),
        "the filter box's value: {html}"
    );
    assert!(html.contains("by eve&lt;script&gt;alert(1)&lt;/script&gt; at 12-05 14:02 UTC"));
    assert!(html.contains("until 12-05 16:02 UTC"), "{html}");
}

#[test]
fn totals_lead_and_attention_rows_come_first() {
    let mut halted = beamline("10.1.1");
    halted.halt = Some(HaltView {
        by: "alice".into(),
        reason: "sample on fire".into(),
        since: None,
        all: false,
    });
    let mut busy = beamline("3.0.1");
    busy.calls_per_sec = Some(1.25);
    busy.errors_per_sec = Some(0.0);
    let v = view(vec![beamline("2.1.1"), halted, busy]);
    let html = render_page(&v, "");
    let at = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("no {needle} in {html}"))
    };
    assert!(at("id=\"totals\"") < at("id=\"beamlines\""));
    assert!(html.contains("<b>3</b><span>beamlines</span>"), "{html}");
    assert!(
        html.contains("<b>6/6</b><span>instances healthy</span>"),
        "{html}"
    );
    assert!(html.contains("<b>1.25</b><span>calls/s</span>"), "{html}");
    assert!(html.contains("<b>1</b><span>halted</span>"), "{html}");
    assert!(at("group-attention") < at("data-beamline=\"10.1.1\""));
    assert!(at("data-beamline=\"10.1.1\"") < at("group-ok"));
    assert!(at("group-ok") < at("data-beamline=\"2.1.1\""));
    assert!(at("data-beamline=\"2.1.1\"") < at("data-beamline=\"3.0.1\""));
    assert!(html.contains("sample on fire"));
    assert!(html.contains("<title>(1) beamline-mesh gateway</title>"));
    assert!(html.contains("as of 14:02:07 UTC"), "{html}");
    assert!(html.contains("<span class=\"ok\">2/2</span> healthy"));
}

#[test]
fn the_page_is_self_contained_filters_and_refreshes_with_or_without_script() {
    let mut row = beamline("5.3.1");
    row.card = Some(CardView {
        card_revision: "rev-1".into(),
        agent_version: "1.0.0".into(),
        capabilities: vec![
            CapabilityView {
                name: "move_motor".into(),
                description: "moves".into(),
                actuating: true,
            },
            CapabilityView {
                name: "read_pv".into(),
                description: "reads".into(),
                actuating: false,
            },
        ],
    });
    let html = render_page(&view(vec![row]), "");
    assert!(html.contains("<noscript><meta http-equiv=\"refresh\" content=\"5\"></noscript>"));
    assert!(html.contains("setTimeout(refresh,REFRESH_MS)"));
    assert!(html.contains("<input type=\"search\" id=\"filter\" name=\"filter\""));
    assert!(
        html.contains("<summary>2 · 1 actuating</summary>"),
        "{html}"
    );
    assert!(html.contains("<span class=\"b ro\">read-only</span> reads"));
    assert!(html.contains("<details data-key=\"i 5.3.1\">"));
    assert!(
        !html.contains("http://") && !html.contains("https://") && !html.contains("@import"),
        "no external assets"
    );
    assert!(!html.contains(" hidden>"), "no filter, nothing hidden");
}

#[test]
fn an_instance_passing_in_consul_that_the_balancer_does_not_use_says_so() {
    let mut row = beamline("5.3.1");
    row.state = state::NOT_ROUTABLE;
    let html = render_page(&view(vec![row]), "");
    assert!(html.contains("passing in Consul, not routable"), "{html}");
    // Idle (no balancer until the first call): passing is all there is to say.
    let html = render_page(&view(vec![beamline("5.3.1")]), "");
    assert!(!html.contains("not routable"), "{html}");
}
