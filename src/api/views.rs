//! API shapes built from stored records (camelCase, RFC 3339 times).

use ecp_actors::model::*;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn rfc3339(ms: Millis) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReasonView {
    /// `agent_offline`, `emqx_unreachable`, `emqx_auth_failed`, `nodes_stopped`,
    /// `unsupported_version` or `agent_error`.
    #[schema(value_type = String)]
    pub code: ReasonCode,
    pub message: String,
    pub since: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DashboardView {
    pub available: bool,
    /// How it opens: "tunnel" (through ECP: `POST …/dashboard-sessions`
    /// gives the URL) or "address" (the service address, `url`).
    pub via: Option<String>,
    pub url: Option<String>,
    /// Why the dashboard cannot be entered, when it cannot.
    pub why: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeView {
    pub name: String,
    pub running: bool,
    pub version: Option<String>,
    pub connections: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    pub id: String,
    pub org_id: String,
    pub project_id: String,
    pub name: String,
    pub description: String,
    pub service_address: String,
    /// `created`, `registering`, `running`, `deleting` or `abnormal`.
    #[schema(value_type = String)]
    pub status: Status,
    pub reason: Option<ReasonView>,
    #[schema(value_type = Option<Object>)]
    pub emqx: Option<EmqxInfo>,
    #[schema(value_type = Object)]
    pub nodes: NodeCounts,
    #[schema(value_type = Object)]
    pub connections: ConnectionCounts,
    #[schema(value_type = Object)]
    pub agents: AgentCounts,
    pub dashboard: DashboardView,
    /// EMQX nodes as the agents last reported them.
    #[schema(value_type = Vec<Object>)]
    pub node_list: Vec<NodeView>,
    pub started_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub revision: u64,
}

impl ClusterView {
    pub fn from_record(c: &ClusterRecord) -> ClusterView {
        ClusterView {
            id: c.id.clone(),
            org_id: c.org_id.clone(),
            project_id: c.project_id.clone(),
            name: c.name.clone(),
            description: c.description.clone(),
            service_address: c.service_address.clone(),
            status: c.status,
            reason: c.reason.as_ref().map(|r| ReasonView {
                code: r.code,
                message: r.message.clone(),
                since: rfc3339(r.since),
            }),
            emqx: c.emqx.clone(),
            nodes: c.nodes,
            connections: c.connections,
            agents: c.agents,
            dashboard: dashboard(c),
            node_list: c
                .node_list
                .iter()
                .map(|n| NodeView {
                    name: n.name.clone(),
                    running: n.running,
                    version: n.version.clone(),
                    connections: n.connections,
                })
                .collect(),
            started_at: c.started_at.map(rfc3339),
            created_at: rfc3339(c.created_at),
            updated_at: rfc3339(c.updated_at),
            revision: c.revision,
        }
    }
}

/// Whether "Enter Dashboard" can work, and why not (PRODUCT.md §7).
pub fn dashboard(c: &ClusterRecord) -> DashboardView {
    let no = |why: &str| DashboardView {
        available: false,
        via: None,
        url: None,
        why: Some(why.to_string()),
    };
    if c.status == Status::Deleting {
        return no("the cluster is being deleted");
    }
    let major = c.emqx.as_ref().and_then(|e| {
        e.version
            .trim_start_matches(['v', 'e'])
            .split('.')
            .next()
            .and_then(|m| m.parse::<u32>().ok())
    });
    let tunnel = || DashboardView {
        available: true,
        via: Some("tunnel".into()),
        url: None,
        why: None,
    };
    match major {
        None => no("no agent has reported the EMQX version yet; register a node first"),
        Some(4) => {
            if c.agents.online == 0 {
                no("no agent is connected: v4 dashboards open through the agent's session; check that agents can reach cluster.agent.url")
            } else {
                tunnel()
            }
        }
        Some(_) => {
            if c.service_address.is_empty() {
                // Beyond ECP: without an address, the tunnel serves v5 too.
                if c.agents.online > 0 {
                    tunnel()
                } else {
                    no("set the cluster's service address (Edit) to open the v5 dashboard, or connect an agent to open it through ECP")
                }
            } else {
                DashboardView {
                    available: true,
                    via: Some("address".into()),
                    url: Some(c.service_address.clone()),
                    why: None,
                }
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterList {
    pub data: Vec<ClusterView>,
    pub total: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub revision: u64,
    pub at: String,
    #[schema(value_type = String)]
    pub from: Status,
    #[schema(value_type = String)]
    pub to: Status,
    pub reason: Option<ReasonView>,
    pub cause: String,
}

impl EventView {
    pub fn from_event(e: &ClusterEvent) -> EventView {
        EventView {
            revision: e.revision,
            at: rfc3339(e.at),
            from: e.from,
            to: e.to,
            reason: e.reason.as_ref().map(|r| ReasonView {
                code: r.code,
                message: r.message.clone(),
                since: rfc3339(r.since),
            }),
            cause: e.cause.clone(),
        }
    }
}

/// What live consoles receive on `GET /api/events`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum ChangeView {
    Upserted {
        cluster: Box<ClusterView>,
    },
    #[serde(rename_all = "camelCase")]
    Removed {
        cluster_id: String,
        org_id: String,
        project_id: String,
        revision: u64,
    },
}

impl ChangeView {
    pub fn from_change(c: &ClusterChange) -> ChangeView {
        match c {
            ClusterChange::Upserted { cluster } => ChangeView::Upserted {
                cluster: Box::new(ClusterView::from_record(cluster)),
            },
            ClusterChange::Removed {
                cluster_id,
                org_id,
                project_id,
                revision,
            } => ChangeView::Removed {
                cluster_id: cluster_id.clone(),
                org_id: org_id.clone(),
                project_id: project_id.clone(),
                revision: *revision,
            },
        }
    }
}
