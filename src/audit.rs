//! The audit log: who did what to which object, with what result. Writing
//! an audit record never fails the operation it records (a failure is logged).

use crate::AppState;
use actix_web::HttpRequest;
use ecp_actors::model::AuditRecord;

/// Who acted.
pub enum Actor<'a> {
    User(&'a ecp_actors::model::UserRecord),
    Agent {
        id: &'a str,
    },
    /// A login attempt names the user it tried.
    Login {
        username: &'a str,
    },
}

/// What was acted on.
pub struct Object<'a> {
    pub kind: &'a str,
    pub id: &'a str,
    pub name: &'a str,
    pub org_id: &'a str,
    pub project_id: &'a str,
}

impl<'a> Object<'a> {
    pub fn cluster(c: &'a ecp_actors::model::ClusterRecord) -> Object<'a> {
        Object {
            kind: "cluster",
            id: &c.id,
            name: &c.name,
            org_id: &c.org_id,
            project_id: &c.project_id,
        }
    }
    pub fn org(o: &'a ecp_actors::model::OrgRecord) -> Object<'a> {
        Object {
            kind: "org",
            id: &o.id,
            name: &o.name,
            org_id: &o.id,
            project_id: "",
        }
    }
    pub fn project(p: &'a ecp_actors::model::ProjectRecord) -> Object<'a> {
        Object {
            kind: "project",
            id: &p.id,
            name: &p.name,
            org_id: &p.org_id,
            project_id: &p.id,
        }
    }
    pub fn none() -> Object<'static> {
        Object {
            kind: "",
            id: "",
            name: "",
            org_id: "",
            project_id: "",
        }
    }
}

/// A user's action that succeeded.
pub async fn ok(
    state: &AppState,
    req: &HttpRequest,
    user: &ecp_actors::model::UserRecord,
    action: &str,
    object: Object<'_>,
    details: &str,
) {
    record(state, req, Actor::User(user), action, object, "ok", details).await
}

pub async fn record(
    state: &AppState,
    req: &HttpRequest,
    actor: Actor<'_>,
    action: &str,
    object: Object<'_>,
    result: &str,
    details: &str,
) {
    let (actor_id, actor_name) = match actor {
        Actor::User(u) => (format!("user:{}", u.id), u.username.clone()),
        Actor::Agent { id } => (
            format!("agent:{id}"),
            format!("agent {}", &id[..id.len().min(8)]),
        ),
        Actor::Login { username } => (
            "anonymous".to_string(),
            username.chars().take(100).collect(),
        ),
    };
    let address = crate::client_ip::of_request(req, &state.trusted_proxies).to_string();
    let mut rec = AuditRecord::new(&actor_id, &actor_name, action, result, &address, details);
    rec.object_type = object.kind.to_string();
    rec.object_id = object.id.to_string();
    rec.object_name = object.name.to_string();
    rec.org_id = object.org_id.to_string();
    rec.project_id = object.project_id.to_string();
    if let Err(e) = state.deps.store.append_audit(&rec).await {
        tracing::error!(error = %e, action, "audit record not written");
    }
}
