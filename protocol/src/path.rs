//! Dashboard paths: the part of a proxied URL after a cluster's dashboard
//! prefix, exactly as the browser sent it. Checked once, by the server
//! before its policy decision and before it routes anything on the path,
//! and again by the agent before it builds the URL it replays against
//! EMQX. A path that any parser on the way could resolve upwards (a dot
//! segment, also percent-encoded, in any case, or hidden behind an encoded
//! separator) is refused rather than normalised, so that no two parsers can
//! disagree about where it points.

/// Longest accepted path with its query.
pub const MAX_TAIL_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("the path must start with a single '/'")]
    NotAbsolute,
    #[error("the path has a dot segment ('.' or '..', also percent-encoded)")]
    DotSegment,
    #[error("the path has a backslash")]
    Backslash,
    #[error("the path has a space, a control character, '#', a non-ASCII byte or an encoded NUL")]
    BadByte,
    #[error("the path is longer than {MAX_TAIL_BYTES} bytes")]
    TooLong,
}

/// Checks a dashboard path (`/…`, optionally `?query`): visible ASCII only,
/// starting with exactly one `/`, and no segment that is `.` or `..` once
/// percent-escapes are undone (repeatedly, so `%252e` counts) and encoded
/// separators (`%2F`, `%5C`) are taken as separators.
pub fn check_tail(tail: &str) -> Result<(), PathError> {
    if tail.len() > MAX_TAIL_BYTES {
        return Err(PathError::TooLong);
    }
    let bytes = tail.as_bytes();
    if bytes.first() != Some(&b'/') || matches!(bytes.get(1), Some(b'/')) {
        return Err(PathError::NotAbsolute);
    }
    for &b in bytes {
        match b {
            b'\\' => return Err(PathError::Backslash),
            b'#' => return Err(PathError::BadByte),
            0x21..=0x7e => {}
            _ => return Err(PathError::BadByte),
        }
    }
    let path = tail.split_once('?').map_or(tail, |(p, _)| p);
    for segment in path.split('/') {
        check_segment(segment.as_bytes())?;
    }
    Ok(())
}

/// One raw segment: decoded until stable, then split on `/` and `\`.
fn check_segment(raw: &[u8]) -> Result<(), PathError> {
    let mut cur = raw.to_vec();
    // Four rounds undo any realistic multiple encoding; anything still
    // holding an escape after that is refused as suspicious.
    for _ in 0..4 {
        let next = percent_decode(&cur);
        if next == cur {
            break;
        }
        cur = next;
    }
    if cur.contains(&0) {
        return Err(PathError::BadByte);
    }
    if percent_decode(&cur) != cur {
        return Err(PathError::BadByte);
    }
    for piece in cur.split(|&b| b == b'/' || b == b'\\') {
        // `..;x` is `..` to servers that take `;` as a parameter separator.
        let name = piece.split(|&b| b == b';').next().unwrap_or(piece);
        if name == b"." || name == b".." {
            return Err(PathError::DotSegment);
        }
    }
    Ok(())
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Undoes one round of `%XX` escapes; malformed escapes stay as they are.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' && i + 2 < input.len() {
            if let (Some(h), Some(l)) = (hex(input[i + 1]), hex(input[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_dashboard_paths_pass() {
        for ok in [
            "/",
            "/index.html",
            "/static/js/app.1a2b.js",
            "/api/v4/routes/t%2F1",
            "/api/v4/clients/a%2Fb%2Fc?_page=1&_limit=20",
            "/api/v5/monitor?latest=3600",
            "/api/v4/routes/%23",
            "/a//b",
            "/..x/x..",
            "/.well-known/x",
            "/?q=../../etc",
            "/api/v4/topic-metrics/a%252Fb",
        ] {
            assert_eq!(check_tail(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn dot_segments_are_refused_in_every_spelling() {
        for bad in [
            "/..",
            "/../x",
            "/a/../b",
            "/a/./b",
            "/.",
            "/%2e%2e/x",
            "/%2E%2E/x",
            "/%2e%2E/x",
            "/.%2e/x",
            "/%2e./x",
            "/a/..%2fb",
            "/a/..%2Fb",
            "/a%2f..%2fb",
            "/a%2F%2e%2e%2Fb",
            "/a/..%5cb",
            "/a/%5c..%5cb",
            "/%252e%252e/x",
            "/%25252e%25252e/x",
            "/..;/x",
            "/a/.;jsessionid=1/b",
        ] {
            assert_eq!(check_tail(bad), Err(PathError::DotSegment), "{bad}");
        }
    }

    #[test]
    fn other_ambiguities_are_refused() {
        assert_eq!(check_tail(""), Err(PathError::NotAbsolute));
        assert_eq!(check_tail("x"), Err(PathError::NotAbsolute));
        assert_eq!(check_tail("@evil.example/x"), Err(PathError::NotAbsolute));
        assert_eq!(check_tail("//evil.example/x"), Err(PathError::NotAbsolute));
        assert_eq!(check_tail("/a\\b"), Err(PathError::Backslash));
        assert_eq!(check_tail("/a b"), Err(PathError::BadByte));
        assert_eq!(check_tail("/a\nb"), Err(PathError::BadByte));
        assert_eq!(check_tail("/a#b"), Err(PathError::BadByte));
        assert_eq!(check_tail("/a\u{e9}"), Err(PathError::BadByte));
        assert_eq!(check_tail("/a%00b"), Err(PathError::BadByte));
        assert_eq!(check_tail("/a%2500b"), Err(PathError::BadByte));
        let long = format!("/{}", "a".repeat(MAX_TAIL_BYTES));
        assert_eq!(check_tail(&long), Err(PathError::TooLong));
    }

    #[test]
    fn decoding_is_one_round_and_keeps_malformed_escapes() {
        assert_eq!(percent_decode(b"a%2Fb"), b"a/b");
        assert_eq!(percent_decode(b"%252e"), b"%2e");
        assert_eq!(percent_decode(b"%zz%2"), b"%zz%2");
        assert_eq!(percent_decode(b"%"), b"%");
        assert_eq!(percent_decode(b"%41"), b"A");
    }
}
