//! The agent's parsers of EMQX's monitoring answers (`emqxee_agent::metrics`),
//! called the way the collector calls them on each answer's JSON (v4: the
//! `data` of the envelope).
//!
//! An input is the answers separated by NUL bytes: v5 `monitor_current`,
//! `nodes`, `license`, `alarms?activated=true`, `alarms?activated=false`;
//! v4 `stats`, `metrics` (an earlier and a later reading), `nodes`,
//! `monitor/current_metrics`, `alarms`, `license`.

use crate::engine::{Outcome, Rng, Target};
use crate::json;
use ecp_protocol::limits::check_from_agent;
use ecp_protocol::metrics::{metric_index, METRICS};
use ecp_protocol::{encode, Frame, MetricSample, MetricsBatch};
use emqxee_agent::emqx::MAX_NODES;
use emqxee_agent::metrics::{
    fill, license, ordered, rates, snapshot, v4_alarms, v4_counters, v4_current_metrics, v4_nodes,
    v4_stats, v5_alarms, v5_last_page, v5_monitor_current, v5_nodes, Values,
};
use serde_json::{json, Value};
use std::collections::BTreeSet;

const MAX_LEN: usize = 16 * 1024;

pub const TARGET: Target = Target {
    name: "emqx-metrics",
    about: "the metrics and alarm parsers on any JSON: no panic; every value a known metric, finite and not negative; the sample and the alarm snapshot within the protocol's bounds and a frame",
    seeds,
    dict: DICT,
    structured: Some(structured),
    max_len: MAX_LEN,
    check,
};

fn check(input: &[u8]) -> Outcome {
    let d = json::docs(input);
    let doc = |i: usize| -> Value {
        d.get(i)
            .and_then(|b| serde_json::from_slice(b).ok())
            .unwrap_or(Value::Null)
    };
    let mut values: Values = v5_monitor_current(&doc(0));
    values.extend(v5_nodes(&doc(1)));
    fill(&mut values, license(&doc(2)));
    values.extend(v4_stats(&doc(5)));
    values.extend(rates(&v4_counters(&doc(6)), &v4_counters(&doc(7)), 15.0));
    let mut seen = BTreeSet::new();
    values.extend(v4_nodes(&doc(8), &mut seen));
    fill(&mut values, v4_current_metrics(&doc(9)));
    fill(&mut values, license(&doc(11)));
    if seen.len() > MAX_NODES {
        return Err(format!("{} nodes remembered", seen.len()));
    }
    for (name, v) in &values {
        if metric_index(name).is_none() {
            return Err(format!("{name:?} is not a metric"));
        }
        if !v.is_finite() || *v < 0.0 {
            return Err(format!("{name} = {v}"));
        }
    }
    let sample = Frame::Metrics(MetricsBatch {
        batch: 1,
        samples: vec![MetricSample {
            at_ms: u64::MAX,
            values: ordered(values.clone()),
        }],
    });
    check_from_agent(&sample).map_err(|e| format!("the sample breaks a bound: {e}"))?;
    let _ = v5_last_page(&doc(4), 1000);
    let mut active = v5_alarms(&doc(3));
    let mut gone = v5_alarms(&doc(4));
    let (a4, g4) = v4_alarms(&doc(10));
    active.extend(a4);
    gone.extend(g4);
    let (snap, _) = snapshot(active, gone, u64::MAX);
    let classes =
        (snap.active.len().min(3) as u64) << 1 | (snap.deactivated.len().min(3) as u64) << 3;
    let frame = Frame::Alarms(snap);
    check_from_agent(&frame).map_err(|e| format!("the alarms break a bound: {e}"))?;
    encode(&frame).map_err(|e| format!("the alarms do not fit a frame: {e}"))?;
    let present = METRICS
        .iter()
        .enumerate()
        .filter(|(_, m)| values.iter().any(|(n, _)| n == m.name))
        .fold(0u64, |acc, (i, _)| acc | 1 << i);
    Ok(1 | classes | present << 5)
}

const DICT: &[&[u8]] = &[
    b"\"data\"",
    b"\"meta\"",
    b"\"hasnext\"",
    b"\"count\"",
    b"\"node\"",
    b"\"name\"",
    b"\"message\"",
    b"\"details\"",
    b"\"activate_at\"",
    b"\"deactivate_at\"",
    b"\"infinity\"",
    b"\"activated\"",
    b"\"stats\"",
    b"\"metrics\"",
    b"\"expiry_at\"",
    b"18446744073709551615",
    b"-1",
    b"1e400",
    b"1.7976931348623157e308",
    b"null",
    b"[]",
    b"{}",
    b"\\ud83d",
    &[json::SEP],
];

const KEYS: &[&str] = &[
    "connections",
    "live_connections",
    "received_msg_rate",
    "license_quota",
    "node_status",
    "max_connections",
    "expiry_at",
    "data",
    "meta",
    "hasnext",
    "count",
    "node",
    "name",
    "message",
    "details",
    "activate_at",
    "deactivate_at",
    "activated",
    "stats",
    "metrics",
    "connections.count",
    "topics.count",
    "messages.received",
    "messages.dropped",
    "received",
];

const STRINGS: &[&str] = &[
    "running",
    "Running",
    "stopped",
    "infinity",
    "2295-10-27",
    "2295-10-27 00:00:00",
    "2021-10-25T11:52:52.548+08:00",
    "2021-10-25T11:52:52Z",
    "9999-99-99T99:99:99+99:99",
    "2021-10-25T11:52:52.548+",
    "emqx@node1.emqxcl",
    "high_cpu_usage",
    "é𝄞\u{0}",
    "",
];

fn structured(rng: &mut Rng, base: &[u8]) -> Option<Vec<u8>> {
    json::mutate(rng, base, KEYS, STRINGS, MAX_LEN)
}

/// Answers in EMQX's shapes (as `emqx-sim` gives them), Enterprise and
/// open source.
pub fn seeds() -> Vec<Vec<u8>> {
    let current = json!({"received_msg_rate": 300, "sent_msg_rate": 270, "dropped_msg_rate": 30,
        "subscriptions": 6000, "topics": 3000, "connections": 3000, "live_connections": 3000,
        "retained_msg_count": 3, "shared_subscriptions": 300, "license_quota": 10000});
    let nodes = json!([{"node": "emqx@node1.emqxcl", "node_status": "running", "role": "core"},
        {"node": "emqx@node2.emqxcl", "node_status": "stopped", "role": "core"}]);
    let lic5 = json!({"max_connections": 10000, "expiry_at": "2295-10-27", "type": "trial"});
    let alarm5 = json!({"data": [{"node": "emqx@node1.emqxcl", "name": "high_cpu_usage",
        "message": "95% cpu usage", "details": {"usage": 95}, "duration": 1000,
        "activate_at": "2021-10-25T11:52:52.548+08:00"}],
        "meta": {"page": 1, "limit": 1000, "hasnext": false, "count": 1}});
    let gone5 = json!({"data": [{"node": "emqx@node1.emqxcl", "name": "partition", "message": "m",
        "details": {}, "duration": 5, "activate_at": "2021-10-25T11:52:52.548+08:00",
        "deactivate_at": "2021-10-25T11:52:53.000+08:00"}],
        "meta": {"page": 1, "limit": 1000, "hasnext": true, "count": 2500}});
    let stats4 = json!([{"node": "emqx@node1.emqxcl", "stats": {"connections.count": 1000,
        "live_connections.count": 1000, "subscriptions.count": 2000, "topics.count": 3000,
        "retained.count": 3, "subscriptions.shared.count": 300}}]);
    let metrics4 = |r: u64| {
        json!([{"node": "emqx@node1.emqxcl", "metrics": {"messages.received": r,
        "messages.sent": r, "messages.dropped": r / 10}}])
    };
    let nodes4 = json!([{"node": "emqx@node1.emqxcl", "node_status": "Running"}]);
    let cur4 = json!({"connection": 3000, "live_connection": 3000, "received": 300, "sent": 270,
        "subscription": 6000});
    let alarms4 = json!([{"node": "emqx@node1.emqxcl", "alarms": [
        {"name": "high_system_memory_usage", "message": "m", "details": {"high_watermark": 70},
         "activate_at": 1_635_133_972_548_123u64, "deactivate_at": "infinity", "activated": true,
         "duration": 5},
        {"name": "x", "message": "", "details": {}, "activate_at": 1_000_000u64,
         "deactivate_at": 2_000_000u64, "activated": false, "duration": 1}]}]);
    let lic4 = json!({"max_connections": 10000, "expiry_at": "2295-10-27 00:00:00"});
    let null = Value::Null;
    vec![
        json::input(&[
            current.clone(),
            nodes.clone(),
            lic5,
            alarm5.clone(),
            gone5.clone(),
        ]),
        // Open source v5: no quota, no licence (a 404 body).
        json::input(&[
            json!({"connections": 1, "received_msg_rate": 0}),
            nodes,
            json!({"code": "NOT_FOUND", "message": "Request Path Not Found"}),
            alarm5,
            gone5,
        ]),
        json::input(&[
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
            stats4.clone(),
            metrics4(1000),
            metrics4(4000),
            nodes4.clone(),
            cur4,
            alarms4.clone(),
            lic4,
        ]),
        // Open source v4, and a node whose counters were reset.
        json::input(&[
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
            null.clone(),
            stats4,
            metrics4(4000),
            metrics4(10),
            nodes4,
            json!({"code": 404, "message": "Not Found"}),
            alarms4,
            null,
        ]),
    ]
}
