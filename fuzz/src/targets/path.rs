//! `ecp_protocol::path::check_tail`: the dashboard path check that runs
//! before the server routes anything on a path and before the agent builds
//! the URL it replays. What it accepts must not climb above its root in any
//! reading: an independent decoder (percent-escapes undone until stable,
//! `/` and `\` as separators, `;` parameters dropped) and the WHATWG URL
//! parser (`url`, as reqwest and browsers resolve) both keep it inside.

use crate::engine::{fnv, Outcome, Rng, Target};
use ecp_protocol::path::{check_tail, PathError};

pub const TARGET: Target = Target {
    name: "path",
    about: "path::check_tail: no panic; what passes is visible ASCII from one '/', and neither an independent decoder nor the WHATWG URL parser resolves it above its root",
    seeds,
    dict: DICT,
    structured: Some(structured),
    max_len: 512,
    check,
};

const DICT: &[&[u8]] = &[
    b"..",
    b".",
    b"/",
    b"\\",
    b"%2e",
    b"%2E",
    b"%2f",
    b"%2F",
    b"%5c",
    b"%5C",
    b"%25",
    b"%252e",
    b"%00",
    b";",
    b"?",
    b"#",
    b"//",
    b"/..",
    b"/.",
    b"%2e%2e",
    b".%2e",
    b"api/v4/routes/",
    b"@",
];

fn seeds() -> Vec<Vec<u8>> {
    [
        "/",
        "/index.html",
        "/static/js/app.1a2b.js",
        "/api/v4/routes/t%2F1",
        "/api/v4/clients/a%2Fb%2Fc?_page=1&_limit=20",
        "/api/v5/monitor?latest=3600",
        "/..",
        "/a/../b",
        "/%2e%2e/x",
        "/.%2E/x",
        "/a/..%2fb",
        "/a%2F%2e%2e%2Fb",
        "/a/..%5cb",
        "/%252e%252e/x",
        "/..;/x",
        "//evil.example/x",
        "/a\\b",
        "/a%00b",
        "@evil.example/x",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect()
}

/// Builds a path from pieces that matter to the check.
fn structured(rng: &mut Rng, _base: &[u8]) -> Option<Vec<u8>> {
    const PIECES: &[&str] = &[
        "a", "api", "v4", ".", "..", "%2e", "%2E", "%2e%2e", ".%2e", "%2f", "%2F", "%5c", "%25",
        "%252e", ";x", "t%2F1", "", "%00", "?q=..", "%",
    ];
    let mut out = String::from("/");
    for i in 0..=rng.below(8) {
        if i > 0 {
            out.push(if rng.below(6) == 0 { '\\' } else { '/' });
        }
        for _ in 0..=rng.below(3) {
            out.push_str(PIECES[rng.below(PIECES.len())]);
        }
    }
    Some(out.into_bytes())
}

/// Every reading of the path's segments that some server might make.
fn climbs(path: &str) -> bool {
    let mut cur = path.as_bytes().to_vec();
    for _ in 0..8 {
        let next = ecp_protocol::path::percent_decode(&cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    cur.split(|&b| b == b'/' || b == b'\\').any(|piece| {
        let name = piece.split(|&b| b == b';').next().unwrap_or(piece);
        name == b"." || name == b".."
    })
}

fn check(input: &[u8]) -> Outcome {
    let Ok(tail) = std::str::from_utf8(input) else {
        return Ok(1);
    };
    match check_tail(tail) {
        Ok(()) => {
            if !tail.starts_with('/') || tail.starts_with("//") {
                return Err(format!("accepted a path not from one '/': {tail:?}"));
            }
            if tail
                .bytes()
                .any(|b| !(0x21..=0x7e).contains(&b) || b == b'#' || b == b'\\')
            {
                return Err(format!("accepted a path with a stray byte: {tail:?}"));
            }
            let path = tail.split_once('?').map_or(tail, |(p, _)| p);
            if climbs(path) {
                return Err(format!("accepted a dot segment: {tail:?}"));
            }
            let url = url::Url::parse(&format!("http://h/root{tail}"))
                .map_err(|e| format!("accepted what the URL parser refuses: {tail:?}: {e}"))?;
            if url.host_str() != Some("h")
                || !(url.path() == "/root" || url.path().starts_with("/root/"))
            {
                return Err(format!("{tail:?} resolves to {url} outside its root"));
            }
            Ok(2 + (tail.matches('%').count().min(8) as u64))
        }
        Err(e) => {
            Ok(16 + fnv(format!("{:?}", std::mem::discriminant::<PathError>(&e)).as_bytes()) % 64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_hold_the_properties() {
        for s in seeds() {
            assert!(check(&s).is_ok(), "{:?}", String::from_utf8_lossy(&s));
        }
        assert!(climbs("/a/%252e%252e"));
        assert!(!climbs("/a/..b"));
    }
}
