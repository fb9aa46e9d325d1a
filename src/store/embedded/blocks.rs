//! Blocks of metric points, as the embedded store keeps a tier of a
//! cluster's series: a run of points, oldest first, under a key time no
//! later than its first point. A point is a varint of its time's distance
//! from the previous point's (the first one's from the key), then
//! [`Point::pack`] (self-delimiting, see [`Point::packed_len`]).
//!
//! Blocks are bounded by size, not by span: points are appended to the
//! newest block until it holds [`BLOCK_BYTES`], then the next point begins a
//! new block keyed by its own time. An append so rewrites at most a few KiB
//! whatever the collection interval, and a block's key never changes (cut
//! at the front, it keeps its key). Pure functions; the store does the
//! reading and writing.

use ecp_actors::model::Millis;
use ecp_actors::series::{read_varint, varint, Point};

/// A block takes no more points once it holds this many bytes (about 80
/// samples of 13 metrics): a full block (at most one point more, and its
/// key) fills one 4 KiB redb page alone, so the per-key and B-tree costs
/// vanish and pages are not left half empty (2 KB blocks, which two do not
/// quite fit in a page, took 70 % more pages), and an append rewrites one
/// page, as it would for any row.
pub(super) const BLOCK_BYTES: usize = 3_800;

/// One point of a block, still packed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Entry<'a> {
    pub at: Millis,
    pub packed: &'a [u8],
}

impl Entry<'_> {
    pub fn point(&self) -> Option<Point> {
        Point::unpack(self.at, self.packed)
    }
}

/// The points of the block keyed `start`, oldest first; `None` when the
/// bytes are not a block.
pub(super) fn entries(start: Millis, mut bytes: &[u8]) -> Option<Vec<Entry<'_>>> {
    let mut out = Vec::new();
    let mut at = start;
    while !bytes.is_empty() {
        at = at.checked_add(read_varint(&mut bytes)?)?;
        let n = Point::packed_len(bytes)?;
        let (packed, rest) = bytes.split_at(n);
        out.push(Entry { at, packed });
        bytes = rest;
    }
    Some(out)
}

/// The block keyed `start` holding `entries` (in time order, none before
/// `start`).
pub(super) fn encode(start: Millis, entries: &[Entry<'_>]) -> Vec<u8> {
    let size: usize = entries.iter().map(|e| e.packed.len() + 3).sum();
    let mut out = Vec::with_capacity(size);
    let mut prev = start;
    for e in entries {
        varint(&mut out, e.at.saturating_sub(prev));
        out.extend_from_slice(e.packed);
        prev = e.at;
    }
    out
}

/// `old` and `new` (both in time order) merged in time order, a new entry
/// replacing an old one at the same time; with how many times are new.
pub(super) fn merge<'a>(old: &[Entry<'a>], new: &[Entry<'a>]) -> (Vec<Entry<'a>>, usize) {
    let mut out = Vec::with_capacity(old.len() + new.len());
    let (mut i, mut j, mut added) = (0, 0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if o.at < n.at => {
                out.push(*o);
                i += 1;
            }
            (Some(o), Some(n)) if o.at == n.at => {
                out.push(*n);
                i += 1;
                j += 1;
            }
            (_, Some(n)) => {
                out.push(*n);
                added += 1;
                j += 1;
            }
            (Some(o), None) => {
                out.push(*o);
                i += 1;
            }
            (None, None) => break,
        }
    }
    (out, added)
}

/// The bytes [`encode`] writes for `e` after a point at `prev`.
pub(super) fn entry_len(prev: Millis, e: &Entry<'_>) -> usize {
    let bits = 64 - e.at.saturating_sub(prev).leading_zeros() as usize;
    bits.div_ceil(7).max(1) + e.packed.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ecp_protocol::MetricSample;

    fn point(at: Millis, v: f64) -> Point {
        Point::from_sample(&MetricSample {
            at_ms: at,
            values: vec![("connections".into(), v), ("topics".into(), v / 4.0)],
        })
        .expect("point")
    }

    #[test]
    fn a_block_round_trips_and_rejects_what_it_did_not_write() {
        let start = 1_700_000_000_000;
        let points: Vec<Point> = [(0, 1.0), (15_000, 2.5), (30_000, 3.0), (3_600_000, 7.0)]
            .iter()
            .map(|&(d, v)| point(start + 500 + d, v))
            .collect();
        let packed: Vec<Vec<u8>> = points.iter().map(Point::pack).collect();
        let e: Vec<Entry> = points
            .iter()
            .zip(&packed)
            .map(|(p, b)| Entry {
                at: p.at,
                packed: b,
            })
            .collect();
        let bytes = encode(start, &e);
        let back = entries(start, &bytes).expect("a block");
        assert_eq!(back, e);
        let unpacked: Vec<Point> = back.iter().map(|e| e.point().expect("point")).collect();
        assert_eq!(unpacked, points);
        // The packed values and the distances: 500 ms and 15 s in two
        // bytes each, 57 min in four.
        assert_eq!(
            bytes.len(),
            packed.iter().map(Vec::len).sum::<usize>() + 2 + 2 + 2 + 4
        );
        let mut prev = start;
        let sizes: usize = e
            .iter()
            .map(|x| {
                let n = entry_len(prev, x);
                prev = x.at;
                n
            })
            .sum();
        assert_eq!(sizes, bytes.len(), "entry_len is what encode writes");
        assert_eq!(
            entry_len(
                5,
                &Entry {
                    at: 5,
                    packed: &[0]
                }
            ),
            2
        );
        assert_eq!(entries(start, &[]), Some(vec![]));
        assert_eq!(entries(start, &bytes[..bytes.len() - 1]), None, "cut");
        assert_eq!(entries(start, &[0x80]), None, "a lone varint");
        assert_eq!(
            entries(u64::MAX, &bytes),
            None,
            "times past the end of time"
        );
    }

    #[test]
    fn a_merge_keeps_time_order_and_replaces_equal_times() {
        let (a, b, c) = (
            point(10, 1.0).pack(),
            point(20, 2.0).pack(),
            point(30, 3.0).pack(),
        );
        fn e(at: Millis, packed: &[u8]) -> Entry<'_> {
            Entry { at, packed }
        }
        let old = [e(10, &a), e(30, &c)];
        let (out, added) = merge(&old, &[e(20, &b), e(30, &a), e(40, &b)]);
        assert_eq!(added, 2);
        assert_eq!(out, [e(10, &a), e(20, &b), e(30, &a), e(40, &b)]);
        let (out, added) = merge(&old, &[]);
        assert_eq!((out.as_slice(), added), (&old[..], 0));
        let (out, added) = merge(&[], &old);
        assert_eq!((out.as_slice(), added), (&old[..], 2));
    }
}
