//! The gateway's metrics listener as a scraper sees it: a GET bounded by a timeout, so a silent
//! listener fails the test instead of hanging it, and a minimal Prometheus text parser.
//!
//! Reads and parses only; it must not start the listener or decide what counts are expected.

use std::collections::BTreeMap;

use crate::support::deadline::REQUEST_TIMEOUT;

/// GET `url` (timeout [`REQUEST_TIMEOUT`]); status, content type and body.
pub async fn http_get(url: &str) -> (u16, String, String) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("build reqwest client");
    let resp = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body: {e:?}"));
    (status, content_type, body)
}

/// One sample of the Prometheus text format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the Prometheus text exposition format (comments skipped, label values unescaped);
/// panics naming the line it cannot parse.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| parse_sample(line).unwrap_or_else(|| panic!("bad metrics line {line:?}")))
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = line[..name_end].to_string();
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end;
        loop {
            while chars
                .peek()
                .is_some_and(|(_, c)| *c == ',' || c.is_whitespace())
            {
                chars.next();
            }
            if let Some(&(i, '}')) = chars.peek() {
                end = i + 1;
                break;
            }
            let mut key = String::new();
            for (_, c) in chars.by_ref() {
                if c == '=' {
                    break;
                }
                key.push(c);
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    c => value.push(c),
                }
            }
            labels.insert(key.trim().to_string(), value);
        }
        rest = &after[end..];
    }
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// Per metric name, the sum of the samples that `pred` selects.
pub fn sums_by_name(samples: &[Sample], pred: impl Fn(&Sample) -> bool) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for s in samples.iter().filter(|s| pred(s)) {
        *sums.entry(s.name.clone()).or_insert(0.0) += s.value;
    }
    sums
}
