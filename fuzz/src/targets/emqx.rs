//! The agent's parsers of EMQX answers, v5 and v4, called the way
//! `Emqx::observe_v5` / `observe_v4` call them after each HTTP 2xx: body
//! text → `v5_json` / `v4_data` → `parse_v5` / `parse_v4`.
//!
//! An input is the answer bodies separated by NUL bytes: v5 nodes, stats,
//! cluster, license; v4 nodes, brokers, stats, license, and the node names
//! seen before (the agent's `state/seen-nodes`, a JSON array).

use crate::engine::{fnv, Outcome, Rng, Target};
use crate::json;
use ecp_protocol::{encode, Frame, Health, Report};
use emqxee_agent::emqx::{
    check_version, parse_v4, parse_v5, v4_data, v5_json, EmqxError, Observation, MAX_NODES,
    MAX_TEXT,
};
use serde_json::Value;
use std::collections::BTreeSet;

const MAX_LEN: usize = 8 * 1024;

pub const V5: Target = Target {
    name: "emqx-v5",
    about: "v5_json + parse_v5 on any bytes: no panic; an error is Malformed (AgentError health); a report is consistent, bounded and fits a frame",
    seeds: seeds_v5,
    dict: DICT,
    structured: Some(structured),
    max_len: MAX_LEN,
    check: check_v5,
};

pub const V4: Target = Target {
    name: "emqx-v4",
    about: "v4_data + parse_v4 on any bytes: no panic; an error is Malformed (AgentError health); a report is consistent, bounded and fits a frame",
    seeds: seeds_v4,
    dict: DICT,
    structured: Some(structured),
    max_len: MAX_LEN,
    check: check_v4,
};

fn text(doc: Option<&&[u8]>) -> String {
    String::from_utf8_lossy(doc.copied().unwrap_or_default()).into_owned()
}

fn check_v5(input: &[u8]) -> Outcome {
    let d = json::docs(input);
    let res = (|| {
        let nodes = v5_json("/api/v5/nodes", &text(d.first()))?;
        let stats = v5_json("/api/v5/stats", &text(d.get(1)))?;
        let cluster = v5_json("/api/v5/cluster", &text(d.get(2)))?;
        // As observe_v5: a license answer that is not JSON means "no license API".
        let license = v5_json("/api/v5/license", &text(d.get(3))).ok();
        parse_v5(&nodes, &stats, &cluster, license.as_ref())
    })();
    verdict(res, true)
}

fn check_v4(input: &[u8]) -> Outcome {
    let d = json::docs(input);
    let mut seen: BTreeSet<String> = serde_json::from_str::<Vec<String>>(&text(d.get(4)))
        .map(|v| v.into_iter().collect())
        .unwrap_or_default();
    let res = (|| {
        let nodes = v4_data("/api/v4/nodes", &text(d.first()))?;
        let brokers = v4_data("/api/v4/brokers", &text(d.get(1)))?;
        let stats = v4_data("/api/v4/stats", &text(d.get(2)))?;
        let license = v4_data("/api/v4/license", &text(d.get(3))).ok();
        parse_v4(&nodes, &brokers, &stats, license.as_ref(), &mut seen)
    })();
    if seen.len() > MAX_NODES && res.is_ok() {
        return Err(format!("{} nodes remembered", seen.len()));
    }
    verdict(res, false)
}

/// The properties shared by both flavours.
fn verdict(res: Result<Observation, EmqxError>, v5: bool) -> Outcome {
    let obs = match res {
        Ok(o) => o,
        Err(EmqxError::Malformed(m)) => {
            let h = EmqxError::Malformed(m).health();
            let Health::AgentError { message } = &h else {
                return Err(format!("a malformed answer gave {h:?}"));
            };
            if message.len() > 1024 {
                return Err(format!("error message of {} bytes", message.len()));
            }
            fits(&h, &[], None)?;
            return Ok(fnv(message.get(..24).unwrap_or(message).as_bytes()) | 1);
        }
        Err(e) => return Err(format!("parsing gave a non-parse error: {e:?}")),
    };
    if v5 && obs.nodes.is_empty() {
        return Err("a v5 report without nodes".into());
    }
    if obs.nodes.len() > MAX_NODES {
        return Err(format!("{} nodes in one report", obs.nodes.len()));
    }
    let texts = obs
        .nodes
        .iter()
        .flat_map(|n| [Some(&n.name), n.version.as_ref(), n.role.as_ref()])
        .chain(
            obs.emqx
                .iter()
                .flat_map(|e| [Some(&e.version), Some(&e.edition), Some(&e.cluster_name)]),
        )
        .chain([obs.local_node.as_ref()])
        .flatten();
    for t in texts {
        if t.len() > MAX_TEXT {
            return Err(format!("a text of {} bytes in a report", t.len()));
        }
    }
    let stopped: Vec<&String> = obs
        .nodes
        .iter()
        .filter(|n| !n.running)
        .map(|n| &n.name)
        .collect();
    let version = obs.emqx.as_ref().map(|e| e.version.as_str()).unwrap_or("");
    let consistent = match &obs.health {
        Health::UnsupportedVersion { found, .. } => {
            found == version && check_version(found).is_err()
        }
        Health::NodesStopped { nodes } => {
            check_version(version).is_ok()
                && !nodes.is_empty()
                && nodes.iter().eq(stopped.iter().copied())
        }
        Health::Healthy => check_version(version).is_ok() && stopped.is_empty(),
        other => return Err(format!("parsing gave {other:?}")),
    };
    if !consistent {
        return Err(format!(
            "health {:?} does not follow from version {version:?} and stopped {stopped:?}",
            obs.health
        ));
    }
    fits(&obs.health, &obs.nodes, obs.emqx.clone())?;
    let h = match obs.health {
        Health::Healthy => 2,
        Health::NodesStopped { .. } => 4,
        _ => 6,
    };
    Ok(h | (obs.nodes.len().min(4) as u64) << 3
        | u64::from(obs.local_node.is_some()) << 6
        | u64::from(obs.connections.is_some_and(|c| c.max.is_some())) << 7
        | u64::from(obs.connections.is_some_and(|c| c.current > 0)) << 8)
}

/// The report the agent would send encodes within the frame limit.
fn fits(
    health: &Health,
    nodes: &[ecp_protocol::NodeStatus],
    emqx: Option<ecp_protocol::EmqxSummary>,
) -> Result<(), String> {
    let frame = Frame::Report(Report {
        seq: u64::MAX,
        observed_at_ms: u64::MAX,
        health: health.clone(),
        emqx,
        nodes: nodes.to_vec(),
        connections: None,
    });
    encode(&frame)
        .map(|_| ())
        .map_err(|e| format!("the report does not fit a frame: {e}"))
}

const DICT: &[&[u8]] = &[
    b"\"node\"",
    b"\"node_status\"",
    b"\"running\"",
    b"\"Running\"",
    b"\"stopped\"",
    b"\"version\"",
    b"\"5.6.0\"",
    b"\"4.4.6\"",
    b"\"uptime\"",
    b"\"connections\"",
    b"\"connections.count\"",
    b"\"max_connections\"",
    b"\"code\"",
    b"\"data\"",
    b"\"message\"",
    b"\"self\"",
    b"\"sysdescr\"",
    b"18446744073709551615",
    b"-9223372036854775808",
    b"1e400",
    b"1.7976931348623157e308",
    b" days, ",
    b" hours",
    b" seconds",
    b"null",
    b"[]",
    b"{}",
    b"\\u0000",
    b"\\ud83d",
    &[json::SEP],
];

/// Keys the JSON mutator adds or renames to.
const KEYS: &[&str] = &[
    "node",
    "node_status",
    "version",
    "edition",
    "role",
    "uptime",
    "connections",
    "connections.count",
    "live_connections.count",
    "max_connections",
    "name",
    "self",
    "code",
    "data",
    "message",
    "sysdescr",
    "stats",
];

/// Strings the JSON mutator uses: the values EMQX's fields take, and near misses.
const STRINGS: &[&str] = &[
    "running",
    "Running",
    "stopped",
    "Stopped",
    "core",
    "replicant",
    "Enterprise",
    "Opensource",
    "EMQ X Enterprise",
    "EMQX Broker",
    "5.6.0",
    "5.5.1",
    "4.4.6",
    "4.4.5",
    "e5.6.0",
    "v5.7.2",
    "5.6.1-patch.1",
    "6",
    "5.",
    ".",
    "4294967296.0.0",
    "emqx@127.0.0.1",
    "emqx@",
    "@",
    "2 days, 19 hours, 41 minutes, 47 seconds",
    "1 hours, 2 minutes, 3 seconds",
    "18446744073709551615 days",
    "213503982334602 days",
    "1 days, 18446744073709551615 seconds",
    "18446744073709551615",
    "1e400",
    "-1",
    "é𝄞\u{0}",
    "",
];

fn structured(rng: &mut Rng, base: &[u8]) -> Option<Vec<u8>> {
    json::mutate(rng, base, KEYS, STRINGS, MAX_LEN)
}

/// v5 answers in EMQX's shapes (bare values): running and stopped core
/// nodes, a replicant, the aggregated stats, the cluster, the license.
pub fn seeds_v5() -> Vec<Vec<u8>> {
    use serde_json::json;
    let running = |n: &str, role: &str| {
        json!({"node": n, "node_status": "running", "role": role, "version": "5.6.0",
            "edition": "Enterprise", "uptime": 5_120_000, "connections": 7, "live_connections": 7,
            "cluster_sessions": 7, "load1": 2.66, "load5": 2.66, "load15": 2.66, "max_fds": 1024,
            "memory_total": "512.00M", "memory_used": "256.00M", "otp_release": "26.2.1/14.2.1",
            "process_available": 2_097_152, "process_used": 1024, "sys_path": "/opt/emqx",
            "log_path": "/opt/emqx/log"})
    };
    let stopped = json!({"node": "emqx@node3.emqxcl", "node_status": "stopped", "role": "core"});
    let stats = json!({"channels.count": 7, "channels.max": 7, "connections.count": 7,
        "connections.max": 7, "live_connections.count": 7, "live_connections.max": 7,
        "sessions.count": 7, "sessions.max": 7, "topics.count": 0, "topics.max": 0,
        "retained.count": 3, "retained.max": 3});
    let cluster = json!({"name": "emqxcl", "nodes": ["emqx@node1.emqxcl", "emqx@node2.emqxcl"],
        "self": "emqx@node1.emqxcl"});
    let license = json!({"customer": "Foo", "customer_type": 10, "deployment": "bar",
        "email": "contact@foo.com", "expiry": false, "expiry_at": "2295-10-27",
        "max_connections": 10, "start_at": "2022-01-11", "type": "trial"});
    vec![
        json::input(&[
            json!([
                running("emqx@node1.emqxcl", "core"),
                running("emqx@node2.emqxcl", "core")
            ]),
            stats.clone(),
            cluster.clone(),
            license.clone(),
        ]),
        json::input(&[
            json!([running("emqx@node1.emqxcl", "core"), stopped]),
            stats.clone(),
            cluster.clone(),
            license,
        ]),
        // Open source: no license API (a 404 body), an older version.
        {
            let mut n = running("emqx@node1.emqxcl", "replicant");
            n["edition"] = json!("Opensource");
            n["version"] = json!("5.5.1");
            let mut d = json::input(&[json!([n]), stats, cluster]);
            d.push(json::SEP);
            d.extend_from_slice(br#"{"code":"NOT_FOUND","message":"Request Path Not Found"}"#);
            d
        },
        // Not what /nodes answers.
        json::input(&[json!([]), json!({}), json!({})]),
        b"{\"code\":\"BAD_TOKEN\",\"message\":\"Get a token by POST /login\"}".to_vec(),
    ]
}

/// v4 answers in EMQX's shapes: the `{code, data}` envelope, stopped nodes
/// dropped from `/nodes`, uptime as text, an error on HTTP 200.
pub fn seeds_v4() -> Vec<Vec<u8>> {
    use serde_json::json;
    let node = |n: &str| {
        json!({"version": "4.4.6", "uptime": "2 days, 19 hours, 41 minutes, 47 seconds",
            "process_used": 315, "process_available": 2_097_152, "otp_release": "R21/10.3.5",
            "node_status": "Running", "node": n, "memory_used": "96.75M", "memory_total": "118.27M",
            "max_fds": 10240, "load5": "2.60", "load15": "2.65", "load1": "2.31", "connections": 4})
    };
    let broker = |n: &str| {
        json!({"version": "4.4.6", "uptime": "4 hours, 21 minutes, 19 seconds",
            "sysdescr": "EMQ X Enterprise", "otp_release": "R21/10.3.5", "node_status": "Running",
            "node": n, "datetime": "2024-02-19 15:27:24"})
    };
    let stats = |n: &str| {
        json!({"node": n, "stats": {"connections.count": 4, "connections.max": 4,
            "channels.count": 4, "sessions.count": 4, "topics.count": 0, "retained.count": 3,
            "routes.count": 0}})
    };
    let ok = |data: Value| json!({"code": 0, "data": data});
    let license = ok(json!({"customer": "Sim", "max_connections": 1000,
        "expiry_at": "2295-10-27 00:00:00", "type": "trial"}));
    let (a, b) = ("emqx@node1.emqxcl", "emqx@node2.emqxcl");
    vec![
        json::input(&[
            ok(json!([node(a), node(b)])),
            ok(json!([broker(a), broker(b)])),
            ok(json!([stats(a), stats(b)])),
            license.clone(),
            json!([a, b]),
        ]),
        // node2 stopped: gone from every list, remembered in seen.
        json::input(&[
            ok(json!([node(a)])),
            ok(json!([broker(a)])),
            ok(json!([stats(a)])),
            license,
            json!([a, b]),
        ]),
        // Open source (no license), and an error answer on HTTP 200.
        json::input(&[
            ok(json!([node(a)])),
            ok(json!([{"sysdescr": "EMQX Broker", "node": a}])),
            ok(json!([stats(a)])),
            json!({"code": 404, "message": "Not Found"}),
            json!([]),
        ]),
        json::input(&[json!({"code": 102, "message": "unknown node"})]),
        json::input(&[json!({"message": "no code at all"})]),
    ]
}
