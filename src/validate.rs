//! Input rules as plain functions (PRODUCT.md §2).

/// Cluster names: 1–200 characters; letters of any script, digits, space,
/// `-`, `_`; no leading or trailing space.
pub fn cluster_name(name: &str) -> Result<(), String> {
    entity_name(name, 200, "cluster name")
}

/// Org and project names: the same characters, 1–50.
pub fn org_or_project_name(name: &str) -> Result<(), String> {
    entity_name(name, 50, "name")
}

fn entity_name(name: &str, max: usize, what: &str) -> Result<(), String> {
    let len = name.chars().count();
    if len == 0 {
        return Err(format!("{what} is required"));
    }
    if len > max {
        return Err(format!(
            "{what} is {len} characters long; at most {max} are allowed"
        ));
    }
    if name.starts_with(' ') || name.ends_with(' ') {
        return Err(format!("{what} must not start or end with a space"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "{what} contains {bad:?}; only letters, digits, spaces, '-' and '_' are allowed"
        ));
    }
    Ok(())
}

/// Usernames: 1–64 characters, no spaces or control characters.
pub fn username(u: &str) -> Result<(), String> {
    let n = u.chars().count();
    if n == 0 || n > 64 || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("a username needs 1 to 64 characters without spaces".into());
    }
    Ok(())
}

/// A service address is empty or an http(s) URL without spaces.
pub fn service_address(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    if s.len() > 500 {
        return Err("service address is longer than 500 characters".into());
    }
    let ok = (s.starts_with("http://") || s.starts_with("https://"))
        && s.len() > "https://".len()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "service address {s:?} must be an http:// or https:// URL"
        ))
    }
}

pub fn description(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if n > 1000 {
        return Err(format!(
            "description is {n} characters long; at most 1000 are allowed"
        ));
    }
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err("description contains control characters".into());
    }
    Ok(())
}

/// Minimum supported EMQX versions: v4 ≥ 4.4.6, v5 ≥ 5.6.0.
pub fn emqx_version(v: &str) -> Result<(), String> {
    ecp_protocol::check_emqx_version(v)
        .map_err(|required| format!("EMQX {v} is not supported: {required} is required (ECP manages v4 from 4.4.6 and v5 from 5.6.0)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names() {
        assert!(cluster_name("prod-east_1 cluster").is_ok());
        assert!(cluster_name("生产集群 一号").is_ok(), "CJK accepted");
        assert!(cluster_name(&"a".repeat(200)).is_ok());
        assert!(
            cluster_name(&"集".repeat(200)).is_ok(),
            "characters, not bytes"
        );
        let e = cluster_name("").expect_err("empty");
        assert!(e.contains("required"));
        let e = cluster_name(&"a".repeat(201)).expect_err("201");
        assert!(e.contains("201"), "{e}");
        assert!(cluster_name(" lead").expect_err("lead").contains("space"));
        assert!(cluster_name("trail ").expect_err("trail").contains("space"));
        for bad in ["a/b", "a.b", "a<b", "a\tb", "x'y", "emoji😀"] {
            let e = cluster_name(bad).expect_err(bad);
            assert!(e.contains("only letters"), "{bad}: {e}");
        }
    }

    #[test]
    fn org_names_are_shorter() {
        assert!(org_or_project_name(&"a".repeat(50)).is_ok());
        assert!(org_or_project_name(&"a".repeat(51)).is_err());
    }

    #[test]
    fn versions() {
        for ok in [
            "4.4.6", "4.4.19", "e4.4.6", "5.6.0", "5.8.1", "e5.6.0", "v5.7.2", "6.0.0",
        ] {
            assert!(emqx_version(ok).is_ok(), "{ok}");
        }
        for bad in ["4.4.5", "4.3.20", "5.5.1", "5.0.0", "3.0", "x", ""] {
            assert!(emqx_version(bad).is_err(), "{bad}");
        }
        let e = emqx_version("5.5.1").expect_err("old");
        assert!(
            e.contains("5.5.1") && e.contains("5.6.0") && e.contains("4.4.6"),
            "{e}"
        );
    }

    #[test]
    fn service_addresses() {
        assert!(service_address("").is_ok());
        assert!(service_address("http://10.0.0.1:18083").is_ok());
        assert!(service_address("ftp://x").is_err());
        assert!(service_address("http://a b").is_err());
        assert!(service_address("javascript:alert(1)").is_err());
    }
}
