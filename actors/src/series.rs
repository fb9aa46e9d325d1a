//! Metric time series: what is kept, how a sample is packed, which samples
//! an append keeps and which 5-minute roll-ups it closes, and how a range is
//! cut into a chart's steps. Pure functions; both stores call them.
//!
//! Two tiers per cluster: *raw* samples at the collection interval for
//! [`RAW_RETENTION_MS`] and 5-minute *roll-ups* (the mean of each metric over
//! the bucket) for [`ROLLUP_RETENTION_MS`]. A cluster's samples are kept in
//! strictly increasing time, at least `min_spacing` apart (so the raw tier
//! of a cluster holds at most `RAW_RETENTION_MS / min_spacing` samples, even
//! from an agent that sends a thousand samples a second), and a bucket's
//! roll-up is written once, when the first sample after it arrives: a later
//! sample for a closed bucket cannot be accepted, so roll-ups never change.

use crate::model::Millis;
use ecp_protocol::metrics::{metric_index, METRICS};
use ecp_protocol::MetricSample;
use serde::{Deserialize, Serialize};

/// Raw samples are kept for 24 hours.
pub const RAW_RETENTION_MS: Millis = 24 * 3_600_000;
/// Roll-ups are kept for 30 days.
pub const ROLLUP_RETENTION_MS: Millis = 30 * 24 * 3_600_000;
/// The roll-up bucket: 5 minutes.
pub const BUCKET_MS: Millis = 300_000;
/// Samples further in the future than this (the agent's clock is wrong, or
/// it lies) are refused.
pub const MAX_FUTURE_MS: Millis = 5 * 60_000;
/// Hard caps per cluster and tier, whatever the spacing (both back ends
/// trim to them; at the usual spacing, time trims first).
pub const RAW_CAP: u64 = 24 * 3_600;
pub const ROLLUP_CAP: u64 = ROLLUP_RETENTION_MS / BUCKET_MS;

/// The two tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Raw,
    Rollup,
}

/// One stored point: a time and a value per metric of [`METRICS`] (by
/// index; `None` when not collected).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub at: Millis,
    pub values: Vec<Option<f64>>,
}

impl Point {
    /// The value of metric `name`, if collected.
    pub fn get(&self, name: &str) -> Option<f64> {
        metric_index(name).and_then(|i| self.values.get(i).copied().flatten())
    }

    /// Keeps the known metrics of a sample, finite and not negative; a
    /// repeated name keeps its first value. `None` when nothing is left.
    pub fn from_sample(s: &MetricSample) -> Option<Point> {
        let mut values = vec![None; METRICS.len()];
        let mut any = false;
        for (name, v) in &s.values {
            let Some(i) = metric_index(name) else {
                continue;
            };
            if values[i].is_none() && v.is_finite() && *v >= 0.0 {
                values[i] = Some(*v);
                any = true;
            }
        }
        any.then_some(Point {
            at: s.at_ms,
            values,
        })
    }

    /// Packs the values (not the time, which is the key): a varint bitmask
    /// of the metrics present, then each value as a varint `2n` for a whole
    /// number n < 2^52, else the byte 1 and the f64's 8 bytes.
    pub fn pack(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        let mut mask = 0u64;
        for (i, v) in self.values.iter().enumerate().take(64) {
            if v.is_some() {
                mask |= 1 << i;
            }
        }
        varint(&mut out, mask);
        for v in self.values.iter().take(64).flatten() {
            if v.fract() == 0.0 && *v >= 0.0 && *v < (1u64 << 52) as f64 {
                varint(&mut out, (*v as u64) << 1);
            } else {
                out.push(1);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// The length of the packed point at the start of `bytes` (packed
    /// points are self-delimiting, so a store can concatenate them); `None`
    /// when they do not start with a whole one.
    pub fn packed_len(bytes: &[u8]) -> Option<usize> {
        let mut rest = bytes;
        let mask = read_varint(&mut rest)?;
        for _ in 0..mask.count_ones() {
            if rest.first() == Some(&1) {
                rest = rest.get(9..)?;
            } else {
                read_varint(&mut rest)?;
            }
        }
        Some(bytes.len() - rest.len())
    }

    /// The inverse of [`Point::pack`]; `None` for bytes it did not write.
    pub fn unpack(at: Millis, mut bytes: &[u8]) -> Option<Point> {
        let mask = read_varint(&mut bytes)?;
        let mut values = vec![None; METRICS.len()];
        for i in 0..64usize {
            if mask & (1 << i) == 0 {
                continue;
            }
            let v = if bytes.first() == Some(&1) {
                let raw: [u8; 8] = bytes.get(1..9)?.try_into().ok()?;
                bytes = &bytes[9..];
                f64::from_le_bytes(raw)
            } else {
                let n = read_varint(&mut bytes)?;
                (n >> 1) as f64
            };
            // A metric of a newer build: skipped.
            if let Some(slot) = values.get_mut(i) {
                *slot = Some(v);
            }
        }
        bytes.is_empty().then_some(Point { at, values })
    }
}

/// Appends `n` as a LEB128 varint (7 bits a byte, low first).
pub fn varint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Reads a varint written by [`varint`] off the front of `bytes`.
pub fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// The start of the 5-minute bucket holding `at`.
pub fn bucket_of(at: Millis) -> Millis {
    at - at % BUCKET_MS
}

/// What an append writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppendPlan {
    /// New raw points, in time order.
    pub raw: Vec<Point>,
    /// Roll-ups of the buckets these points closed, in time order (`at` is
    /// the bucket's start).
    pub rollups: Vec<Point>,
    /// Samples refused (too old, in the future, out of order, too close).
    pub refused: usize,
}

/// Decides an append of `samples` (in the order sent) to a cluster whose
/// newest stored raw point is `last` and whose stored raw points in the
/// still-open bucket of `last` are `open` (oldest first; empty when
/// `last` is `None`). Kept: known metrics, times after `last` by at least
/// `min_spacing`, not older than the raw retention, not beyond
/// [`MAX_FUTURE_MS`]. Each bucket a kept point leaves behind is rolled up.
pub fn plan_append(
    last: Option<Millis>,
    open: &[Point],
    samples: &[MetricSample],
    min_spacing: Millis,
    now: Millis,
) -> AppendPlan {
    let mut plan = AppendPlan::default();
    let mut last = last;
    let mut bucket: Vec<Point> = open.to_vec();
    for s in samples {
        let fresh = s.at_ms.saturating_add(RAW_RETENTION_MS) > now
            && s.at_ms <= now.saturating_add(MAX_FUTURE_MS);
        let spaced = last.is_none_or(|l| s.at_ms >= l.saturating_add(min_spacing.max(1)));
        let Some(p) = Point::from_sample(s).filter(|_| fresh && spaced) else {
            plan.refused += 1;
            continue;
        };
        if let Some(first) = bucket.first() {
            if bucket_of(first.at) != bucket_of(p.at) {
                plan.rollups.push(mean(bucket_of(first.at), &bucket));
                bucket.clear();
            }
        }
        last = Some(p.at);
        bucket.push(p.clone());
        plan.raw.push(p);
    }
    plan
}

/// The mean of each metric over `points` (a metric missing from some points
/// is the mean of those that have it).
pub fn mean(at: Millis, points: &[Point]) -> Point {
    let mut sum = vec![0.0f64; METRICS.len()];
    let mut n = vec![0u32; METRICS.len()];
    for p in points {
        for (i, v) in p.values.iter().enumerate().take(METRICS.len()) {
            if let Some(v) = v {
                sum[i] += v;
                n[i] += 1;
            }
        }
    }
    Point {
        at,
        values: sum
            .iter()
            .zip(&n)
            .map(|(s, &n)| (n > 0).then(|| s / f64::from(n)))
            .collect(),
    }
}

/// Which tier answers a range: raw when it starts within the raw retention
/// and the step is finer than a bucket, else the roll-ups.
pub fn tier_for(since: Millis, step_ms: Millis, now: Millis) -> Tier {
    if since.saturating_add(RAW_RETENTION_MS) >= now && step_ms < BUCKET_MS {
        Tier::Raw
    } else {
        Tier::Rollup
    }
}

/// One metric's points for a chart: `[time, value]`, one per step that has
/// data (the mean of the step's points; the time is the step's start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<(Millis, f64)>,
}

/// Cuts `points` (time order) into steps of `step_ms` from `since`, one
/// series per name in `names` (names must be known; see
/// [`ecp_protocol::metrics::metric_index`]). A step of 0 keeps every point.
pub fn downsample(points: &[Point], names: &[&str], since: Millis, step_ms: Millis) -> Vec<Series> {
    names
        .iter()
        .map(|name| {
            let idx = metric_index(name);
            let mut out: Vec<(Millis, f64)> = Vec::new();
            let mut cur: Option<(Millis, f64, u32)> = None;
            for p in points {
                let Some(v) = idx.and_then(|i| p.values.get(i).copied().flatten()) else {
                    continue;
                };
                let slot = match p.at.saturating_sub(since).checked_div(step_ms) {
                    Some(n) => since + n * step_ms,
                    None => p.at,
                };
                match &mut cur {
                    Some((t, s, n)) if *t == slot => {
                        *s += v;
                        *n += 1;
                    }
                    _ => {
                        if let Some((t, s, n)) = cur.take() {
                            out.push((t, s / f64::from(n)));
                        }
                        cur = Some((slot, v, 1));
                    }
                }
            }
            if let Some((t, s, n)) = cur {
                out.push((t, s / f64::from(n)));
            }
            Series {
                name: (*name).to_string(),
                points: out,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Millis, conns: f64) -> MetricSample {
        MetricSample {
            at_ms: at,
            values: vec![("connections".into(), conns)],
        }
    }

    const NOW: Millis = 1_700_000_100_000;

    #[test]
    fn packing_round_trips_whole_and_fractional_values() {
        let mut values = vec![None; METRICS.len()];
        values[0] = Some(3_000.0);
        values[2] = Some(12.5);
        values[4] = Some(0.0);
        values[10] = Some(1_893_456_000.0);
        let p = Point { at: 7, values };
        let bytes = p.pack();
        assert!(bytes.len() < 20, "{} bytes", bytes.len());
        assert_eq!(Point::unpack(7, &bytes), Some(p));
        assert_eq!(Point::unpack(7, &[0xff]), None, "truncated varint");
        assert_eq!(Point::unpack(7, &[0x01, 0x01, 0x00]), None, "truncated f64");
        assert_eq!(Point::packed_len(&bytes), Some(bytes.len()));
        let mut two = bytes.clone();
        two.extend_from_slice(&bytes);
        assert_eq!(
            Point::packed_len(&two),
            Some(bytes.len()),
            "self-delimiting"
        );
        assert_eq!(Point::packed_len(&bytes[..bytes.len() - 1]), None);
        assert_eq!(Point::packed_len(&[]), None);
        let mut extra = Point::from_sample(&sample(1, 1.0)).expect("point").pack();
        extra.push(0);
        assert_eq!(Point::unpack(1, &extra), None, "trailing bytes");
    }

    #[test]
    fn unknown_negative_and_non_finite_values_are_dropped() {
        let s = MetricSample {
            at_ms: 1,
            values: vec![
                ("connections".into(), f64::NAN),
                ("topics".into(), -1.0),
                ("made_up".into(), 5.0),
                ("subscriptions".into(), 4.0),
                ("subscriptions".into(), 9.0),
            ],
        };
        let p = Point::from_sample(&s).expect("one value is fine");
        assert_eq!(p.get("connections"), None);
        assert_eq!(p.get("topics"), None);
        assert_eq!(p.get("subscriptions"), Some(4.0));
        let none = MetricSample {
            at_ms: 1,
            values: vec![("made_up".into(), 5.0)],
        };
        assert_eq!(Point::from_sample(&none), None);
    }

    #[test]
    fn an_append_keeps_order_spacing_and_freshness() {
        let t = NOW - 60_000;
        let plan = plan_append(
            Some(t),
            &[],
            &[
                sample(t, 1.0),                       // replayed: not after last
                sample(t + 1_000, 1.0),               // too close
                sample(t + 15_000, 2.0),              // kept
                sample(t + 10_000, 1.0),              // out of order
                sample(NOW - RAW_RETENTION_MS, 1.0),  // too old
                sample(NOW + MAX_FUTURE_MS + 1, 1.0), // from the future
                sample(t + 30_000, 3.0),              // kept
            ],
            7_500,
            NOW,
        );
        let kept: Vec<Millis> = plan.raw.iter().map(|p| p.at).collect();
        assert_eq!(kept, vec![t + 15_000, t + 30_000]);
        assert_eq!(plan.refused, 5);
    }

    #[test]
    fn a_bucket_is_rolled_up_once_when_the_next_begins() {
        let b0 = bucket_of(NOW - 3_600_000);
        let open = vec![
            Point::from_sample(&sample(b0 + 15_000, 10.0)).expect("p"),
            Point::from_sample(&sample(b0 + 30_000, 20.0)).expect("p"),
        ];
        // Still in the same bucket: nothing closes.
        let plan = plan_append(
            Some(b0 + 30_000),
            &open,
            &[sample(b0 + 45_000, 30.0)],
            1_000,
            NOW,
        );
        assert!(plan.rollups.is_empty());
        // Two buckets later: b0 closes with the mean of its three points,
        // then b0+5min (one point) closes too.
        let mut open3 = open.clone();
        open3.push(plan.raw[0].clone());
        let plan = plan_append(
            Some(b0 + 45_000),
            &open3,
            &[
                sample(b0 + BUCKET_MS + 1_000, 100.0),
                sample(b0 + 2 * BUCKET_MS, 7.0),
            ],
            1_000,
            NOW,
        );
        let rolled: Vec<(Millis, Option<f64>)> = plan
            .rollups
            .iter()
            .map(|p| (p.at, p.get("connections")))
            .collect();
        assert_eq!(
            rolled,
            vec![(b0, Some(20.0)), (b0 + BUCKET_MS, Some(100.0))]
        );
    }

    #[test]
    fn ranges_pick_a_tier_and_steps_average() {
        assert_eq!(tier_for(NOW - 3_600_000, 15_000, NOW), Tier::Raw);
        assert_eq!(tier_for(NOW - 3_600_000, BUCKET_MS, NOW), Tier::Rollup);
        assert_eq!(tier_for(NOW - 7 * 86_400_000, 60_000, NOW), Tier::Rollup);
        let pts: Vec<Point> = [(0, 1.0), (10, 3.0), (60, 5.0), (130, 7.0)]
            .iter()
            .map(|&(at, v)| Point::from_sample(&sample(1_000 + at, v)).expect("p"))
            .collect();
        let s = downsample(&pts, &["connections", "topics"], 1_000, 60);
        assert_eq!(s[0].points, vec![(1_000, 2.0), (1_060, 5.0), (1_120, 7.0)]);
        assert!(s[1].points.is_empty(), "topics were not collected");
        let every = downsample(&pts, &["connections"], 1_000, 0);
        assert_eq!(every[0].points.len(), 4);
    }
}
