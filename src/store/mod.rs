//! Store back ends. The actors' part of the interface is
//! `ecp_actors::store::ActorStore` (clusters, tokens, logs, audit); the
//! server adds tenancy ([`TenancyStore`]) and holds the whole as [`Store`].

pub mod embedded;
pub mod redis;
pub mod redis_coord;

pub use ecp_actors::store::*;

use async_trait::async_trait;
use ecp_actors::model::{Membership, OrgRecord, ProjectRecord, UserRecord};
use std::sync::Arc;

/// Users with their sessions and passwords, orgs, projects and
/// memberships: only the server uses them.
#[async_trait]
pub trait TenancyStore: Send + Sync + 'static {
    async fn user_count(&self) -> StoreResult<u64>;
    /// Fails with `Exists` if the username is taken.
    async fn create_user(&self, user: &UserRecord) -> StoreResult<()>;
    async fn user(&self, id: &str) -> StoreResult<Option<UserRecord>>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>>;
    async fn put_org(&self, org: &OrgRecord) -> StoreResult<()>;
    async fn org(&self, id: &str) -> StoreResult<Option<OrgRecord>>;
    async fn orgs(&self) -> StoreResult<Vec<OrgRecord>>;
    async fn put_project(&self, project: &ProjectRecord) -> StoreResult<()>;
    async fn project(&self, id: &str) -> StoreResult<Option<ProjectRecord>>;
    async fn projects(&self, org_id: &str) -> StoreResult<Vec<ProjectRecord>>;
    /// Ends a user's console/API sessions (`TokenKind::Session` tokens, kept
    /// in a per-user index written together with each token), except the
    /// one hashed `except`; returns how many ended.
    async fn delete_user_sessions(
        &self,
        user_id: &str,
        except: Option<&TokenHash>,
    ) -> StoreResult<u64>;
    /// Stores a user's new password hash and, in the same step, ends every
    /// session of that user except `keep_session`; returns how many ended.
    /// `NotFound` if the user does not exist.
    async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
        keep_session: Option<&TokenHash>,
    ) -> StoreResult<u64>;
    async fn delete_org(&self, id: &str) -> StoreResult<()>;
    async fn delete_project(&self, id: &str) -> StoreResult<()>;
    async fn users(&self) -> StoreResult<Vec<UserRecord>>;
    /// Removes a user, its name binding, its memberships and its sessions.
    async fn delete_user(&self, id: &str) -> StoreResult<()>;
    /// Sets (replaces) a membership.
    async fn put_membership(&self, m: &Membership) -> StoreResult<()>;
    /// Removes a membership. Removing an org membership (`project_id`
    /// empty) also removes the user's project memberships in that org, in
    /// the same step: a project member is always an org member.
    async fn remove_membership(
        &self,
        user_id: &str,
        org_id: &str,
        project_id: &str,
    ) -> StoreResult<()>;
    async fn memberships(&self, user_id: &str) -> StoreResult<Vec<Membership>>;
}

/// Everything a back end stores; both back ends implement it.
pub trait Store: ActorStore + TenancyStore {}

impl<T: ActorStore + TenancyStore + ?Sized> Store for T {}

pub type SharedStore = Arc<dyn Store>;
