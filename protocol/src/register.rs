//! `POST /api/clusters/agents/emqxee/register`: the body the agent sends and
//! the answer it gets (PRODUCT §4), as JSON in camelCase. The server checks
//! every text (length, no control characters) in `src/api/agents.rs`; the
//! bounds below are documented in the OpenAPI (feature `openapi`).
//!
//! Compatibility: new fields are optional (`#[serde(default)]`), so an
//! older agent's body still parses, and unknown fields are ignored.

use serde::{Deserialize, Serialize};

/// What the agent saw of EMQX when it registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterEmqx {
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub version: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub edition: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 255))]
    pub cluster_name: String,
    #[serde(default)]
    pub nodes: Vec<String>,
    /// The EMQX node this agent runs beside.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 255))]
    pub local_node: String,
}

/// Whether the agent ships EMQX's log files, and from where.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct RegisterLogCollection {
    pub enabled: bool,
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub dir: String,
}

/// The register body. Texts are at most their `maxLength`, without control
/// characters; required ones are not blank (else 400 `INVALID_FIELD`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterRequest {
    /// The registration token (`ecpr_…`); a longer or unknown one is 401.
    #[cfg_attr(feature = "openapi", schema(max_length = 256))]
    pub registration_token: String,
    /// The agent's own stable instance id: makes the call idempotent.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub node_id: String,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub agent_version: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 255))]
    pub hostname: String,
    /// The host's machine id (binary installs); empty in Kubernetes.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 128))]
    pub machine_id: String,
    pub emqx: RegisterEmqx,
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 500))]
    pub dashboard_url: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 500))]
    pub api_url: String,
    #[serde(default)]
    pub log_collection: RegisterLogCollection,
}

/// The answer to a registration.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterResponse {
    /// The agent's credential for connect/unregister (shown once).
    pub token: String,
    pub cluster_id: String,
    pub agent_id: String,
    pub heartbeat_interval_secs: u32,
    pub report_interval_secs: u32,
}

// Debug without the secrets: these values end up in logs and panics.

impl std::fmt::Debug for RegisterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterRequest")
            .field("registration_token", &"<redacted>")
            .field("node_id", &self.node_id)
            .field("agent_version", &self.agent_version)
            .field("hostname", &self.hostname)
            .field("machine_id", &self.machine_id)
            .field("emqx", &self.emqx)
            .field("dashboard_url", &self.dashboard_url)
            .field("api_url", &self.api_url)
            .field("log_collection", &self.log_collection)
            .finish()
    }
}

impl std::fmt::Debug for RegisterResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterResponse")
            .field("token", &"<redacted>")
            .field("cluster_id", &self.cluster_id)
            .field("agent_id", &self.agent_id)
            .field("heartbeat_interval_secs", &self.heartbeat_interval_secs)
            .field("report_interval_secs", &self.report_interval_secs)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> RegisterRequest {
        RegisterRequest {
            registration_token: "ecpr_secret".into(),
            node_id: "inst-1".into(),
            agent_version: "0.1.0".into(),
            hostname: "h".into(),
            machine_id: "m".into(),
            emqx: RegisterEmqx {
                version: "5.6.0".into(),
                edition: "Enterprise".into(),
                cluster_name: "emqxcl".into(),
                nodes: vec!["emqx@a".into()],
                local_node: "emqx@a".into(),
            },
            dashboard_url: "http://127.0.0.1:18083".into(),
            api_url: "http://127.0.0.1:18083".into(),
            log_collection: RegisterLogCollection {
                enabled: true,
                dir: "/opt/emqx/log".into(),
            },
        }
    }

    #[test]
    fn the_request_is_camel_case_as_in_the_product_contract() {
        let v = serde_json::to_value(request()).expect("json");
        assert_eq!(
            v,
            json!({
                "registrationToken": "ecpr_secret",
                "nodeId": "inst-1",
                "agentVersion": "0.1.0",
                "hostname": "h",
                "machineId": "m",
                "emqx": {"version": "5.6.0", "edition": "Enterprise", "clusterName": "emqxcl",
                         "nodes": ["emqx@a"], "localNode": "emqx@a"},
                "dashboardUrl": "http://127.0.0.1:18083",
                "apiUrl": "http://127.0.0.1:18083",
                "logCollection": {"enabled": true, "dir": "/opt/emqx/log"}
            })
        );
        let back: RegisterRequest = serde_json::from_value(v).expect("parse");
        assert_eq!(back, request());
    }

    #[test]
    fn optional_fields_default_and_unknown_fields_are_ignored() {
        let r: RegisterRequest = serde_json::from_value(json!({
            "registrationToken": "t", "nodeId": "n", "agentVersion": "1",
            "emqx": {"version": "5.6.0", "localNode": "emqx@a"},
            "dashboardUrl": "http://x", "fromTheFuture": 1
        }))
        .expect("parse");
        assert_eq!(r.hostname, "");
        assert_eq!(r.machine_id, "");
        assert_eq!(r.api_url, "");
        assert_eq!(r.log_collection, RegisterLogCollection::default());
        assert!(r.emqx.nodes.is_empty() && r.emqx.edition.is_empty());
        let partial: RegisterLogCollection =
            serde_json::from_value(json!({"enabled": true})).expect("parse");
        assert_eq!(partial.dir, "");
    }

    #[test]
    fn required_fields_are_required() {
        for missing in [
            "registrationToken",
            "nodeId",
            "agentVersion",
            "emqx",
            "dashboardUrl",
        ] {
            let mut v = serde_json::to_value(request()).expect("json");
            v.as_object_mut().expect("object").remove(missing);
            assert!(
                serde_json::from_value::<RegisterRequest>(v).is_err(),
                "{missing}"
            );
        }
        for missing in ["version", "localNode"] {
            let mut v = serde_json::to_value(request()).expect("json");
            v["emqx"].as_object_mut().expect("object").remove(missing);
            assert!(
                serde_json::from_value::<RegisterRequest>(v).is_err(),
                "emqx.{missing}"
            );
        }
    }

    #[test]
    fn the_response_is_camel_case() {
        let r = RegisterResponse {
            token: "ecpa_x".into(),
            cluster_id: "c".into(),
            agent_id: "a".into(),
            heartbeat_interval_secs: 10,
            report_interval_secs: 5,
        };
        let v = serde_json::to_value(&r).expect("json");
        assert_eq!(
            v,
            json!({"token": "ecpa_x", "clusterId": "c", "agentId": "a",
                   "heartbeatIntervalSecs": 10, "reportIntervalSecs": 5})
        );
        assert_eq!(
            serde_json::from_value::<RegisterResponse>(v).expect("parse"),
            r
        );
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let shown = format!("{:?}", request());
        assert!(
            !shown.contains("ecpr_secret") && shown.contains("inst-1"),
            "{shown}"
        );
        let r = RegisterResponse {
            token: "ecpa_secret".into(),
            cluster_id: "c".into(),
            agent_id: "a".into(),
            heartbeat_interval_secs: 1,
            report_interval_secs: 1,
        };
        assert!(!format!("{r:?}").contains("ecpa_secret"));
    }
}
