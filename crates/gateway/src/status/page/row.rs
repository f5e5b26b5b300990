//! One beamline's row of the status page: id, status badges with who and why, instances
//! (`<details>`), rates, card and capabilities (`<details>`).
//!
//! Owns the cells' HTML; every value from outside goes through [`escape`].

use std::fmt::Write as _;

use super::{escape, rate};
use crate::status::view::{self, Attention, BeamlineView, HaltView, InstanceView, LockView};

pub(super) fn row(html: &mut String, b: &BeamlineView, filter: &str) {
    let search = b.search_text();
    let hidden = if view::matches(&search, filter) {
        ""
    } else {
        " hidden"
    };
    let class = if b.attention.is_empty() {
        "row"
    } else {
        "row att"
    };
    let id = escape(&b.beamline);
    let _ = write!(
        html,
        "<tr class=\"{class}\" data-beamline=\"{id}\" data-search=\"{}\"{hidden}>\
         <td class=\"id\">{id}</td><td class=\"st\">",
        escape(&search),
    );
    status_cell(html, b);
    html.push_str("</td><td>");
    instances_cell(html, b);
    let totals = format!(
        "{} calls, {} errors since the gateway started",
        b.calls_total, b.errors_total
    );
    let errors = if b.errors_per_sec.is_some_and(|e| e > 0.0) {
        " bad"
    } else {
        ""
    };
    let _ = write!(
        html,
        "</td><td class=\"num\" title=\"{totals}\">{}</td>\
         <td class=\"num{errors}\" title=\"{totals}\">{}</td><td>",
        rate(b.calls_per_sec),
        rate(b.errors_per_sec),
    );
    card_cell(html, b);
    html.push_str("</td><td>");
    capabilities_cell(html, b);
    html.push_str("</td></tr>");
}

fn status_cell(html: &mut String, b: &BeamlineView) {
    if b.attention.is_empty() {
        html.push_str("<span class=\"b ok\">ok</span>");
    }
    for a in &b.attention {
        let word = a.word();
        let title = match a {
            Attention::Halted => b.halt.as_ref().map(halt_text),
            Attention::Locked => b.lock.as_ref().map(lock_text),
            _ => Some(b.state.to_string()),
        }
        .unwrap_or_default();
        let _ = write!(
            html,
            "<span class=\"b {word}\" title=\"{}\">{word}</span>",
            escape(&title)
        );
    }
    let why: Vec<String> = (b.attention.iter())
        .filter_map(|a| match a {
            Attention::Unhealthy if b.instances.is_empty() => {
                Some(format!("no instance ({})", b.state))
            }
            Attention::Unhealthy => Some(format!(
                "{} of {} instances passing",
                b.passing(),
                b.instances.len()
            )),
            Attention::Unroutable => Some(b.state.to_string()),
            Attention::Halted => b.halt.as_ref().map(halt_text),
            Attention::Locked => b.lock.as_ref().map(lock_text),
            // The errors/s column says it.
            Attention::Erroring => None,
        })
        .collect();
    if !why.is_empty() {
        let why = escape(&why.join(" · "));
        let _ = write!(html, " <span class=\"why\" title=\"{why}\">{why}</span>");
    }
}

/// "by alice since 14:02 UTC: reason" (the full time in the page's JSON).
pub(super) fn halt_text(h: &HaltView) -> String {
    let scope = if h.all { "(all) " } else { "" };
    format!(
        "{scope}by {}{}: {}",
        h.by,
        h.since.as_deref().map(at).unwrap_or_default(),
        h.reason
    )
}

fn lock_text(l: &LockView) -> String {
    let until = (l.expires.as_deref())
        .map(|e| format!(" until {}", hh_mm(e)))
        .unwrap_or_default();
    format!("held by {}{until}: {}", l.holder, l.note)
}

fn at(rfc3339: &str) -> String {
    format!(" at {}", hh_mm(rfc3339))
}

/// "2026-12-05T14:02:07Z" as "12-05 14:02 UTC"; other text as it is.
fn hh_mm(rfc3339: &str) -> String {
    match (rfc3339.get(5..10), rfc3339.get(11..16)) {
        (Some(day), Some(time)) if rfc3339.as_bytes().get(10) == Some(&b'T') => {
            format!("{day} {time} UTC")
        }
        _ => rfc3339.to_string(),
    }
}

/// "2026-12-05T14:02:07.5Z" as "14:02:07 UTC"; other text as it is.
pub(super) fn hh_mm_ss(rfc3339: &str) -> String {
    match rfc3339.get(11..19) {
        Some(time) if rfc3339.as_bytes().get(10) == Some(&b'T') => format!("{time} UTC"),
        _ => rfc3339.to_string(),
    }
}

fn instances_cell(html: &mut String, b: &BeamlineView) {
    let passing = b.passing();
    let class = if passing == b.instances.len() && passing > 0 {
        "ok"
    } else {
        "bad"
    };
    let _ = write!(
        html,
        "<details data-key=\"i {}\"><summary><span class=\"{class}\">{passing}/{}</span> \
         healthy</summary><ul>",
        escape(&b.beamline),
        b.instances.len(),
    );
    if b.instances.is_empty() {
        let _ = write!(html, "<li>none ({})</li>", escape(b.state));
    }
    for i in &b.instances {
        instance(html, i, b.state);
    }
    html.push_str("</ul></details>");
}

fn instance(html: &mut String, i: &InstanceView, state: &str) {
    let (class, health) = match (i.healthy, i.passing) {
        (true, _) => ("ok", "healthy"),
        // Idle: no balancer to route through yet, and nothing wrong with that.
        (false, true) if state == view::state::IDLE => ("ok", "passing"),
        (false, true) => ("bad", "passing in Consul, not routable"),
        (false, false) => ("bad", "unhealthy"),
    };
    let _ = write!(
        html,
        "<li><code>{}</code> at <code>{}</code> <span class=\"{class}\">{health}</span>",
        escape(&i.id),
        escape(&i.address),
    );
    if !i.sdk_version.is_empty() {
        let _ = write!(html, " · sdk {}", escape(&i.sdk_version));
    }
    if !i.sdk_version.is_empty() && !i.enforces_halt {
        html.push_str(" · <span class=\"bad\">too old to halt itself</span>");
    }
    html.push_str("</li>");
}

fn card_cell(html: &mut String, b: &BeamlineView) {
    match &b.card {
        Some(card) => {
            let revision = escape(&card.card_revision);
            let short: String = card.card_revision.chars().take(10).collect();
            let _ = write!(
                html,
                "<span title=\"card revision {revision}\">{}</span> · {}",
                if short.is_empty() {
                    "–".to_string()
                } else {
                    escape(&short)
                },
                escape(&card.agent_version),
            );
        }
        None if b.card_error.is_some() => {}
        None => html.push_str("<span class=\"muted\">–</span>"),
    }
    if let Some(error) = &b.card_error {
        let _ = write!(
            html,
            " <span class=\"bad\" title=\"{}\">card error</span>",
            escape(error)
        );
    }
}

fn capabilities_cell(html: &mut String, b: &BeamlineView) {
    let Some(card) = &b.card else {
        html.push_str("<span class=\"muted\" title=\"no card learnt yet\">–</span>");
        return;
    };
    let actuating = card.capabilities.iter().filter(|c| c.actuating).count();
    let _ = write!(
        html,
        "<details data-key=\"c {}\"><summary>{} · {actuating} actuating</summary><ul>",
        escape(&b.beamline),
        card.capabilities.len(),
    );
    for c in &card.capabilities {
        let (class, kind) = if c.actuating {
            ("act", "actuating")
        } else {
            ("ro", "read-only")
        };
        let _ = write!(
            html,
            "<li><code>{}</code> <span class=\"b {class}\">{kind}</span> {}</li>",
            escape(&c.name),
            escape(&c.description),
        );
    }
    html.push_str("</ul></details>");
}
