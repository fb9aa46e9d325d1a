//! Who may do what, decided in one place. Roles nest: system admin ⊃ org
//! admin (inside the org) ⊃ project admin (inside the project) ⊃ viewer
//! (read-only on the projects it belongs to). Anything the caller may not
//! see answers 404, exactly like something that does not exist.

use crate::error::ApiError;
use ecp_actors::model::{Membership, ProjectRecord, Role, UserRecord};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
}

#[derive(Debug, Clone)]
pub struct Access {
    pub user: UserRecord,
    pub memberships: Vec<Membership>,
}

impl Access {
    pub fn org_admin(&self, org: &str) -> bool {
        self.user.system_admin
            || self
                .memberships
                .iter()
                .any(|m| m.org_id == org && m.project_id.is_empty() && m.role == Role::Admin)
    }

    /// The caller's role on a project, if any. A project role counts only
    /// together with a membership of its org (PRODUCT §2), also for records
    /// left over from before org removal took project roles along.
    pub fn project_role(&self, org: &str, project: &str) -> Option<Role> {
        if self.org_admin(org) {
            return Some(Role::Admin);
        }
        if !self.member_of_org(org) {
            return None;
        }
        self.memberships
            .iter()
            .find(|m| m.org_id == org && m.project_id == project)
            .map(|m| m.role)
    }

    /// Whether the caller sees the org at all (admin or member of it).
    pub fn sees_org(&self, org: &str) -> bool {
        self.user.system_admin || self.member_of_org(org)
    }

    pub fn member_of_org(&self, org: &str) -> bool {
        self.memberships
            .iter()
            .any(|m| m.org_id == org && m.project_id.is_empty())
    }

    /// 404 unless the caller sees the project; 403 for a viewer that writes.
    pub fn require(&self, project: &ProjectRecord, need: Need) -> Result<Role, ApiError> {
        match self.project_role(&project.org_id, &project.id) {
            None => Err(ApiError::not_found("project")),
            Some(Role::Viewer) if need == Need::Write => Err(ApiError::new(
                actix_web::http::StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "viewers are read-only in this project",
            )),
            Some(role) => Ok(role),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(system_admin: bool, ms: &[(&str, &str, Role)]) -> Access {
        Access {
            user: UserRecord {
                id: "u".into(),
                username: "u".into(),
                password_hash: String::new(),
                system_admin,
                created_at: 0,
            },
            memberships: ms
                .iter()
                .map(|(o, p, r)| Membership {
                    user_id: "u".into(),
                    org_id: o.to_string(),
                    project_id: p.to_string(),
                    role: *r,
                })
                .collect(),
        }
    }

    #[test]
    fn roles_nest() {
        let sys = access(true, &[]);
        let org_admin = access(false, &[("A", "", Role::Admin)]);
        let proj_admin = access(false, &[("A", "", Role::Viewer), ("A", "p1", Role::Admin)]);
        let viewer = access(false, &[("A", "", Role::Viewer), ("A", "p1", Role::Viewer)]);
        let other = access(false, &[("B", "", Role::Admin)]);
        assert_eq!(sys.project_role("A", "p2"), Some(Role::Admin));
        assert_eq!(org_admin.project_role("A", "p2"), Some(Role::Admin));
        assert_eq!(proj_admin.project_role("A", "p1"), Some(Role::Admin));
        assert_eq!(
            proj_admin.project_role("A", "p2"),
            None,
            "an org viewer sees only its projects"
        );
        assert_eq!(viewer.project_role("A", "p1"), Some(Role::Viewer));
        assert_eq!(other.project_role("A", "p1"), None);
        assert!(!other.sees_org("A") && other.sees_org("B"));
    }

    #[test]
    fn a_project_role_without_the_org_membership_counts_for_nothing() {
        let leftover = access(false, &[("A", "p1", Role::Admin)]);
        assert_eq!(leftover.project_role("A", "p1"), None);
        let member = access(false, &[("A", "", Role::Viewer), ("A", "p1", Role::Admin)]);
        assert_eq!(member.project_role("A", "p1"), Some(Role::Admin));
    }
}
