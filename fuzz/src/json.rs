//! Structure-aware mutation of JSON documents: the input is one or more
//! documents separated by a NUL byte (JSON text never holds a raw NUL); one
//! document is parsed, its tree changed in one to four places, and written
//! back. Trees stay valid JSON, so the parsers under test get past
//! `serde_json` and into their own logic far more often than with bytes.

use crate::engine::Rng;
use serde_json::{json, Map, Value};

pub const SEP: u8 = 0;

/// Splits an input into its documents.
pub fn docs(input: &[u8]) -> Vec<&[u8]> {
    input.split(|b| *b == SEP).collect()
}

/// Joins documents into one input.
pub fn join(docs: &[Vec<u8>]) -> Vec<u8> {
    docs.join(&[SEP][..])
}

/// Documents as one input (seeds).
pub fn input(parts: &[Value]) -> Vec<u8> {
    let v: Vec<Vec<u8>> = parts
        .iter()
        .map(|p| serde_json::to_vec(p).unwrap_or_default())
        .collect();
    join(&v)
}

/// Mutates one document of `input`; `None` when it is not JSON.
/// Growth (long lists, long strings) stays within `max_len` bytes.
pub fn mutate(
    rng: &mut Rng,
    input: &[u8],
    keys: &[&str],
    strings: &[&str],
    max_len: usize,
) -> Option<Vec<u8>> {
    let mut parts: Vec<Vec<u8>> = docs(input).into_iter().map(<[u8]>::to_vec).collect();
    let i = rng.below(parts.len());
    let mut v: Value = serde_json::from_slice(&parts[i]).ok()?;
    let room = max_len.saturating_sub(input.len());
    for _ in 0..1 + rng.below(4) {
        let depth = rng.below(6);
        change(rng, &mut v, depth, keys, strings, room);
    }
    parts[i] = if rng.one_in(4) {
        serde_json::to_vec_pretty(&v).ok()?
    } else {
        serde_json::to_vec(&v).ok()?
    };
    // Now and then drop or add a document.
    if rng.one_in(32) && parts.len() > 1 {
        parts.pop();
    } else if rng.one_in(32) {
        parts.push(b"{}".to_vec());
    }
    Some(join(&parts))
}

/// Walks down `depth` levels (at most) and changes the node found there.
fn change(
    rng: &mut Rng,
    v: &mut Value,
    depth: usize,
    keys: &[&str],
    strings: &[&str],
    room: usize,
) {
    if depth > 0 {
        match v {
            Value::Array(a) if !a.is_empty() => {
                let i = rng.below(a.len());
                return change(rng, &mut a[i], depth - 1, keys, strings, room);
            }
            Value::Object(m) if !m.is_empty() => {
                let i = rng.below(m.len());
                if let Some((_, child)) = m.iter_mut().nth(i) {
                    return change(rng, child, depth - 1, keys, strings, room);
                }
            }
            _ => {}
        }
    }
    match v {
        Value::Array(a) if !a.is_empty() && rng.one_in(2) => match rng.below(4) {
            0 => {
                a.remove(rng.below(a.len()));
            }
            1 => {
                // Many copies of one element: long lists.
                let e = a[rng.below(a.len())].clone();
                let size = e.to_string().len() + 1;
                let times = (1 + rng.skewed(11)).min(room / size);
                a.extend(std::iter::repeat_n(e, times));
            }
            2 => a.reverse(),
            _ => {
                let e = scalar(rng, strings);
                a.insert(rng.below(a.len() + 1), e);
            }
        },
        Value::Object(m) if rng.one_in(2) => match rng.below(4) {
            0 if !m.is_empty() => {
                let k = m.keys().nth(rng.below(m.len())).cloned();
                if let Some(k) = k {
                    m.remove(&k);
                }
            }
            1 if !m.is_empty() => {
                // Rename a key (to a known one, often).
                let k = m.keys().nth(rng.below(m.len())).cloned();
                if let Some(k) = k {
                    if let Some(x) = m.remove(&k) {
                        m.insert(rng.pick(keys).to_string(), x);
                    }
                }
            }
            _ => {
                let x = if rng.one_in(4) {
                    container(rng, strings)
                } else {
                    scalar(rng, strings)
                };
                m.insert(rng.pick(keys).to_string(), x);
            }
        },
        Value::String(s) if rng.one_in(2) => {
            match rng.below(4) {
                0 => s.push_str(rng.pick::<&str>(strings)),
                1 => {
                    let cut = rng.below(s.len() + 1);
                    let cut = (0..=cut)
                        .rev()
                        .find(|i| s.is_char_boundary(*i))
                        .unwrap_or(0);
                    s.truncate(cut);
                }
                2 => *s = s.repeat((1 + rng.skewed(10)).min(room / s.len().max(1)).max(1)),
                _ => {
                    let digits: String = (0..1 + rng.below(25))
                        .map(|_| char::from(b'0' + rng.below(10) as u8))
                        .collect();
                    s.insert_str(0, &digits);
                }
            };
        }
        _ => {
            *v = if rng.one_in(5) {
                container(rng, strings)
            } else {
                scalar(rng, strings)
            }
        }
    }
}

fn container(rng: &mut Rng, strings: &[&str]) -> Value {
    match rng.below(4) {
        0 => json!([]),
        1 => json!({}),
        2 => Value::Array(vec![scalar(rng, strings)]),
        _ => {
            let mut m = Map::new();
            m.insert(rng.pick(strings).to_string(), scalar(rng, strings));
            Value::Object(m)
        }
    }
}

/// A value from the edges: type changes, number limits, known strings.
fn scalar(rng: &mut Rng, strings: &[&str]) -> Value {
    match rng.below(20) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(false),
        3 => json!(0),
        4 => json!(-1),
        5 => json!(u64::MAX),
        6 => json!(i64::MIN),
        7 => json!(1.5),
        8 => json!(1e300),
        9 => json!(-1e300),
        10 => json!(u64::MAX as f64 * 2.0),
        11 => json!(rng.next_u64()),
        12 => json!(rng.next_u64() >> rng.below(64)),
        13 => json!(u64::MAX.to_string()),
        14 => json!("x".repeat(1 + rng.skewed(13))),
        _ => json!(rng.pick(strings)),
    }
}
