//! The status page (`GET /`), built for a control room at 100 beamlines: the fleet's totals at
//! the top, then one compact row per beamline, those that need attention first (unhealthy,
//! unroutable, halted, locked, erroring), each group in natural order of ids. A row's instances
//! and capabilities open on demand (`<details>`); who halted or holds a beamline and why is in
//! the row (in full on hover).
//!
//! The filter box works without script as a form (`?filter=`: rows that do not match are
//! rendered `hidden`); the inline script filters as one types and keeps the filter in the URL.
//! Refreshing: with script, the data (`#live`) is fetched and swapped in place every
//! [`REFRESH_SECS`], keeping the filter, the focus and open `<details>`; without, a `<noscript>`
//! refresh reloads the same URL (the filter is in it). Self-contained: inline CSS and script, no
//! external assets.
//!
//! Owns the HTML; every value from outside goes through [`escape`]. What is shown is `view`'s.

mod assets;
mod row;

use std::fmt::Write as _;

use super::view::{StatusView, Totals};
use row::{halt_text, row};

/// The page refreshes its data this often (seconds).
pub const REFRESH_SECS: u32 = 5;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_string(), |r| format!("{r:.2}"))
}

/// The page of `view`, with rows not matching `filter` (see `view::matches`) hidden.
pub fn render_page(view: &StatusView, filter: &str) -> String {
    let t = &view.totals;
    let mut html = String::with_capacity(4096 + view.beamlines.len() * 1024);
    let title = if t.attention > 0 {
        format!("({}) beamline-mesh gateway", t.attention)
    } else {
        "beamline-mesh gateway".to_string()
    };
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <noscript><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"></noscript>\
         <title>{}</title><style>{}</style></head><body>\
         <header><h1>beamline-mesh gateway</h1> <p class=\"muted\">refreshes every \
         {REFRESH_SECS} s · <span id=\"refresh-note\" class=\"muted\"></span></p></header>\
         <form id=\"filter-form\" class=\"filter\" method=\"get\" action=\"/\">\
         <input type=\"search\" id=\"filter\" name=\"filter\" value=\"{}\" autocomplete=\"off\" \
         placeholder=\"filter: id, halted, locked, unhealthy, erroring, ok, a holder…\" \
         aria-label=\"filter beamlines\"> <button type=\"submit\">Filter</button> \
         <span id=\"shown\" class=\"muted\">{}</span></form><div id=\"live\">",
        escape(&title),
        assets::STYLE,
        escape(filter),
        shown(view, filter),
    );
    banners(&mut html, view);
    totals(&mut html, t);
    let _ = write!(
        html,
        "<p class=\"muted\">as of {} · rates over the last {} · discovery updates: {}</p>",
        escape(&row::hh_mm_ss(&view.as_of)),
        view.window_secs
            .map_or_else(|| "– (first sample)".to_string(), |s| format!("{s:.0} s")),
        view.discovery_updates,
    );
    if view.beamlines.is_empty() {
        html.push_str(
            "<p>No beamline registered or routed yet: agents appear here once they register.</p>",
        );
    } else {
        rows(&mut html, view, filter);
    }
    let _ = write!(
        html,
        "</div><footer class=\"muted\"><a href=\"/metrics\">/metrics</a> · \
         <a href=\"/status.json\">/status.json</a></footer>\
         <script>const REFRESH_MS={};{}</script></body></html>",
        REFRESH_SECS * 1000,
        assets::SCRIPT,
    );
    html
}

fn shown(view: &StatusView, filter: &str) -> String {
    if filter.split_whitespace().next().is_none() {
        return String::new();
    }
    let hits = (view.beamlines.iter())
        .filter(|b| super::view::matches(&b.search_text(), filter))
        .count();
    format!("showing {hits} of {}", view.beamlines.len())
}

fn banners(html: &mut String, view: &StatusView) {
    if let Some(all) = &view.fleet_halt {
        let _ = write!(
            html,
            "<div class=\"banner halt\" id=\"fleet-halt\">ALL BEAMLINES HALTED {}</div>",
            escape(&halt_text(all)),
        );
    }
    if let Some(why) = &view.control_unreadable {
        let _ = write!(
            html,
            "<div class=\"banner warn\">Halt and lock state unreadable ({}): actuating calls \
             are refused until it is read again.</div>",
            escape(why),
        );
    }
}

fn totals(html: &mut String, t: &Totals) {
    let alert = |bad: bool| if bad { "alert" } else { "" };
    let tiles = [
        ("", "beamlines", t.beamlines.to_string(), "beamlines"),
        (
            alert(t.attention > 0),
            "attention",
            t.attention.to_string(),
            "need attention",
        ),
        (
            alert(t.instances_passing < t.instances),
            "instances",
            format!("{}/{}", t.instances_passing, t.instances),
            "instances healthy",
        ),
        ("", "calls", rate(t.calls_per_sec), "calls/s"),
        (
            alert(t.errors_per_sec.is_some_and(|e| e > 0.0)),
            "errors",
            rate(t.errors_per_sec),
            "errors/s",
        ),
        (
            alert(t.halted > 0),
            "halted",
            t.halted.to_string(),
            "halted",
        ),
        (
            if t.locked > 0 { "lockd" } else { "" },
            "locked",
            t.locked.to_string(),
            "locked",
        ),
    ];
    html.push_str("<section class=\"totals\" id=\"totals\">");
    for (class, id, value, label) in tiles {
        let _ = write!(
            html,
            "<div class=\"tile {class}\" id=\"total-{id}\"><b>{value}</b><span>{label}</span></div>"
        );
    }
    html.push_str("</section>");
}

fn rows(html: &mut String, view: &StatusView, filter: &str) {
    html.push_str(
        "<table id=\"beamlines\"><colgroup><col style=\"width:7em\"><col>\
         <col style=\"width:9em\"><col style=\"width:5.5em\"><col style=\"width:5.5em\">\
         <col style=\"width:12em\"><col style=\"width:11em\"></colgroup>\
         <thead><tr><th>Beamline</th><th>Status</th><th>Instances</th><th>Calls/s</th>\
         <th>Errors/s</th><th>Card · agent</th><th>Capabilities</th></tr></thead>\
         <tbody id=\"rows\">",
    );
    let (attention, rest) = view.beamlines.split_at(view.totals.attention);
    for (id, label, rows) in [
        ("attention", "Needs attention", attention),
        ("ok", "OK", rest),
    ] {
        if rows.is_empty() {
            continue;
        }
        // A heading with no row left by the filter goes too (the script does the same).
        let shown = (rows.iter()).any(|b| super::view::matches(&b.search_text(), filter));
        let hidden = if shown { "" } else { " hidden" };
        let _ = write!(
            html,
            "<tr class=\"group\" id=\"group-{id}\"{hidden}><th colspan=\"7\">{label} ({})</th></tr>",
            rows.len()
        );
        for b in rows {
            row(html, b, filter);
        }
    }
    html.push_str("</tbody></table>");
}

#[cfg(test)]
mod tests;
