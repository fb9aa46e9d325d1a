//! The agent's log line parser: `logship::to_line` (which calls
//! `parse_line`, hence `parse_time` and `level_index`) on one line's bytes,
//! as the tailer hands them over.

use crate::engine::{Outcome, Rng, Target};
use emqxee_agent::logship::{parse_line, parse_time, to_line, MAX_FIELDS, MAX_LINE, MAX_RAW_TEXT};
use serde_json::Value;

pub const TARGET: Target = Target {
    name: "logline",
    about: "logship::to_line/parse_line: no panic; level 0..8; texts bounded by the input and the caps; a text line keeps its text; fields a JSON object",
    seeds,
    dict: DICT,
    structured: Some(structured),
    max_len: 2048,
    check,
};

/// Latest time a timestamp can name: 9999-12-31T23:59:60.999999 at the
/// largest offset the parser reads (−99:99), in µs.
const LAST_TIME_US: u64 = (253_402_300_800 + 99 * 3600 + 99 * 60) * 1_000_000;

fn check(input: &[u8]) -> Outcome {
    // The tailer splits on '\n'; a line never holds one.
    let bytes = input.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = to_line(bytes, 1, 0);
    let text = String::from_utf8_lossy(bytes);
    let t = text.trim_end_matches('\r');
    if line.level > 7 {
        return Err(format!("level {} out of 0..8", line.level));
    }
    // A line keeps its text (cut at the cap, on a char boundary).
    if !text.starts_with(line.raw.as_str()) || line.raw.len() > MAX_RAW_TEXT {
        return Err("raw is not the line's text".into());
    }
    if line.raw.len() < text.len() && text.len() <= MAX_RAW_TEXT {
        return Err("raw was cut below the cap".into());
    }
    if line.message.len() > MAX_LINE || line.fields.len() > MAX_FIELDS {
        return Err("message or fields past their bounds".into());
    }
    // Whatever a line holds, what the agent ships passes the server's bounds.
    let batch = ecp_protocol::Frame::LogBatch(ecp_protocol::LogBatch {
        batch: 1,
        node: "emqx@n".into(),
        lines: vec![line.clone()],
    });
    if let Err(v) = ecp_protocol::limits::check_from_agent(&batch) {
        return Err(format!("the server would refuse the line: {v}"));
    }
    // Bounded by the input: JSON re-serialisation may grow a number
    // (`1e15` → `1000000000000000.0`) or escape a control character
    // (`\u0001`), never by more than six times.
    if line.message.len() + line.fields.len() > 6 * t.len() + 16 {
        return Err(format!(
            "message {} + fields {} bytes from a {}-byte line",
            line.message.len(),
            line.fields.len(),
            t.len()
        ));
    }
    let is_json = t.trim_end().starts_with('{')
        && matches!(serde_json::from_str(t.trim_end()), Ok(Value::Object(_)));
    let fields_ok = line.fields.is_empty()
        || line.fields.len() + 3 >= MAX_FIELDS
        || matches!(serde_json::from_str(&line.fields), Ok(Value::Object(_)));
    if !fields_ok {
        return Err(format!("fields are not a JSON object: {:?}", line.fields));
    }
    if !is_json {
        // Text: the message is a piece of the line, and so is every field value.
        if !t.contains(line.message.as_str()) {
            return Err(format!("message {:?} is not in the line", line.message));
        }
        if let Ok(Value::Object(m)) = serde_json::from_str::<Value>(&line.fields) {
            for (k, v) in &m {
                let ok = v.as_str().is_some_and(|v| t.contains(v)) && t.contains(k.as_str());
                if !ok {
                    return Err(format!("field {k}: {v} is not in the line"));
                }
            }
        }
        if line.time_us > 0 {
            let head = t.split(" [").next().unwrap_or_default();
            if parse_time(head).is_some_and(|us| us > LAST_TIME_US) {
                return Err(format!("time {} past year 9999", line.time_us));
            }
        }
    }
    // Re-parsing the message alone must not panic either (messages are
    // shown and searched as text later).
    let _ = parse_line(&line.message);
    Ok(u64::from(line.level)
        | u64::from(is_json) << 3
        | u64::from(line.time_us > 0) << 4
        | u64::from(!line.fields.is_empty()) << 5
        | u64::from(line.message.len() == t.len()) << 6
        | (line.message.len().min(3) as u64) << 7)
}

const DICT: &[&[u8]] = &[
    b" [",
    b"] ",
    b"msg: ",
    b", ",
    b": ",
    b"T",
    b"Z",
    b"+01:00",
    b"-00:00",
    b"+99:99",
    b".568980",
    b"2024-03-20T11:08:39",
    b"2020-02-18 16:10:03.872",
    b"9999-12-31T23:59:60",
    b"0000-01-01T00:00:00",
    b"1710929319568980",
    b"18446744073709551615",
    b"[warning]",
    b"[emergency]",
    b"[WARN]",
    b"[err]",
    b"warn",
    b"emerg",
    b"crit",
    b"{",
    b"}",
    b"\"time\":",
    b"\"level\":",
    b"\"msg\":",
    b"\"error\"",
    b"null",
    b"1e15",
    b"\\u0001",
    b"\\ud800",
    b"\r",
    b"tag: AUTHZ",
    b"clientid: ",
];

pub fn seeds() -> Vec<Vec<u8>> {
    [
        // v5 text, RFC 3339 with µs and offset, structured `key: value`.
        "2024-03-20T11:08:39.568980+01:00 [warning] tag: AUTHZ, clientid: client1, msg: cannot_publish_to_topic_due_to_not_authorized, peername: 127.0.0.1:47860, username: user1, topic: republish-event/1, reason: not_authorized",
        "2024-03-26T11:52:19.777087+00:00 [warning] msg: log_events_throttled_during_last_period, period: 1 minutes, dropped: #{authorization_permission_denied => 4}",
        // v5 text, epoch µs (timestamp_format = epoch).
        "1710929319568980 [error] clientid: c1, msg: boom, reason: {shutdown,normal}",
        // v5 format-string log and v4 text (RFC 3339).
        "2024-03-26T11:52:19.777087Z [info] client1@127.0.0.1:5000 subscribed to t/1",
        "2022-06-21T10:01:02.123456+08:00 [warning] client1@127.0.0.1:51234 [MQTT] dropped qos0 message",
        // Pre-4.2 date form.
        "2020-02-18 16:10:03.872 [debug] <<\"mqttjs_9e49354bb3\">>@127.0.0.1:57105 [MQTT/WS] SEND CONNACK(Q0, R0, D0, AckFlags=0, ReasonCode=0)",
        "2020-02-18 16:10:08.474 [warning] [Alarm Handler] New Alarm: system_memory_high_watermark, Alarm Info: []",
        // JSON formatter: epoch number, RFC 3339 string, a non-string msg.
        r#"{"time":1710929319568980,"level":"error","msg":"boom","clientid":"c1","pid":"<0.1.0>","mfa":"emqx:f/1","line":42}"#,
        r#"{"time":"2024-03-20T11:08:39.568980+01:00","level":"warning","msg":"authorization_permission_denied","topic":"t/1"}"#,
        r#"{"time":1710929319568980,"level":"notice","msg":{"report":"x","n":1.5e15}}"#,
        // What emqx-sim writes.
        "2024-01-01T00:00:00.000001Z [info] msg: simulated event 1, node: emqx@node1.emqxcl, seq: 1",
        // A continuation, a Windows line end, nothing.
        "    {badarg,[{erlang,binary_to_atom,2}]}",
        "2024-03-20T11:08:39Z [critical] msg: x\r",
        "",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// Recomposes a line from a timestamp, a level and a body, each drawn from
/// the forms EMQX writes and their near misses; or half of one line and
/// half of another.
fn structured(rng: &mut Rng, base: &[u8]) -> Option<Vec<u8>> {
    if rng.one_in(6) {
        let a = base.len();
        let cut = rng.below(a + 1);
        let mut out = base[..cut].to_vec();
        let other = seeds();
        let o = rng.pick(&other);
        out.extend_from_slice(&o[rng.below(o.len() + 1)..]);
        return Some(out);
    }
    let d = |rng: &mut Rng, n: usize| -> String {
        (0..n)
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect()
    };
    let mut s = String::new();
    if rng.one_in(4) {
        // JSON line.
        let mut m = serde_json::Map::new();
        let time = match rng.below(4) {
            0 => serde_json::json!(rng.next_u64() >> rng.below(64)),
            1 => serde_json::json!(format!("2024-03-20T11:08:39.{}+01:00", {
                let n = rng.below(9);
                d(rng, n)
            })),
            2 => serde_json::json!(1.5e15),
            _ => {
                let n = 1 + rng.below(21);
                Value::String(d(rng, n))
            }
        };
        m.insert("time".into(), time);
        m.insert(
            "level".into(),
            serde_json::json!(rng.pick(&["error", "WARN", "emergency", "x", ""])),
        );
        let msg = match rng.below(3) {
            0 => serde_json::json!("boom"),
            1 => serde_json::json!({"a": [1e15, -0.0, "\u{1}"]}),
            _ => serde_json::json!(null),
        };
        m.insert("msg".into(), msg);
        if rng.one_in(2) {
            m.insert("clientid".into(), serde_json::json!("c\"1\u{7}"));
        }
        return serde_json::to_vec(&Value::Object(m)).ok();
    }
    match rng.below(6) {
        0 => s.push_str(&format!(
            "{}-{}-{}T{}:{}:{}",
            d(rng, 4),
            d(rng, 2),
            d(rng, 2),
            d(rng, 2),
            d(rng, 2),
            d(rng, 2)
        )),
        1 => s.push_str(&format!("2024-03-20 11:08:{}.{}", d(rng, 2), d(rng, 3))),
        2 => s.push_str(&{
            let n = 1 + rng.below(22);
            d(rng, n)
        }),
        3 => {}
        _ => s.push_str("2024-03-20T11:08:39"),
    }
    if rng.one_in(2) {
        s.push('.');
        s.push_str(&{
            let n = rng.below(10);
            d(rng, n)
        });
    }
    s.push_str(rng.pick::<&str>(&[
        "", "Z", "z", "+01:00", "-12:30", "+1", "+ab:cd", "+01:", "é",
    ]));
    s.push_str(rng.pick::<&str>(&[" [", " [", " [", "[", " "]));
    s.push_str(rng.pick::<&str>(&[
        "debug",
        "info",
        "notice",
        "warning",
        "error",
        "critical",
        "alert",
        "emergency",
        "WARN",
        "err",
        "crit",
        "emerg",
        "trace",
        "",
        " info ",
    ]));
    s.push_str(rng.pick::<&str>(&["] ", "] ", "]", " ] "]));
    for _ in 0..rng.below(5) {
        let k = rng.pick(&["msg", "tag", "clientid", "", "a b", "peername", "msg"]);
        let v = rng.pick(&["x", "", "a, b: c", "msg: y", "é\u{1}\"", "#{a => 1}"]);
        s.push_str(&format!("{k}: {v}, "));
    }
    s.push_str(rng.pick::<&str>(&["", "msg: tail", "free text", ", "]));
    Some(s.into_bytes())
}
