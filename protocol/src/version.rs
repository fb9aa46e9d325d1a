//! The EMQX versions the product supports (v4 ≥ 4.4.6, v5 ≥ 5.6.0), shared
//! by the server (which refuses registrations) and the agent (which checks
//! before registering and reports `unsupported_version`).

/// `Err(required)` names what is required, e.g. "5.6.0 or later".
/// Accepts `e5.6.0`, `v5.6.0`, `5.6.1-patch.1`; anything unparsable is unsupported.
pub fn check_emqx_version(version: &str) -> Result<(), &'static str> {
    let core = version.trim().trim_start_matches(['v', 'e']);
    let core = core.split(['-', '+']).next().unwrap_or("");
    let parts: Option<Vec<u32>> = core.split('.').map(|p| p.parse().ok()).collect();
    let any = "4.4.6 or later (v4) or 5.6.0 or later (v5)";
    let Some(n) = parts.filter(|n| n.len() >= 2) else {
        return Err(any);
    };
    let v = (n[0], n[1], n.get(2).copied().unwrap_or(0));
    match v.0 {
        4 if v >= (4, 4, 6) => Ok(()),
        4 => Err("4.4.6 or later"),
        5 if v >= (5, 6, 0) => Ok(()),
        5 => Err("5.6.0 or later"),
        m if m > 5 => Ok(()),
        _ => Err(any),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_and_refused() {
        for ok in [
            "4.4.6",
            "4.4.19",
            "e4.4.6",
            "5.6.0",
            "5.8.1",
            "e5.6.0",
            "v5.7.2",
            "5.6.1-patch.1",
            "6.0.0",
        ] {
            assert_eq!(check_emqx_version(ok), Ok(()), "{ok}");
        }
        assert_eq!(check_emqx_version("4.4.5"), Err("4.4.6 or later"));
        assert_eq!(check_emqx_version("5.5.1"), Err("5.6.0 or later"));
        for bad in ["4.3.20", "5.0.0", "3.0", "x", "", "5.6.0<img>"] {
            assert!(check_emqx_version(bad).is_err(), "{bad}");
        }
    }
}
