//! First start: the default org and project, and the first system admin.

use crate::auth;
use crate::store::{SharedStore, StoreError};
use ecp_actors::model::*;

pub const DEFAULT_ORG: &str = "default";
pub const DEFAULT_PROJECT: &str = "default";

pub async fn run(store: &SharedStore) -> Result<(), crate::StartError> {
    let now = now_ms();
    if store.org(DEFAULT_ORG).await?.is_none() {
        store
            .put_org(&OrgRecord {
                id: DEFAULT_ORG.into(),
                name: "default".into(),
                created_at: now,
            })
            .await?;
    }
    if store.project(DEFAULT_PROJECT).await?.is_none() {
        store
            .put_project(&ProjectRecord {
                id: DEFAULT_PROJECT.into(),
                org_id: DEFAULT_ORG.into(),
                name: "default".into(),
                created_at: now,
            })
            .await?;
    }
    if store.user_count().await? == 0 {
        let username = std::env::var("ECP_ADMIN_USERNAME")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "admin".into());
        let (password, generated) = match std::env::var("ECP_ADMIN_PASSWORD")
            .ok()
            .filter(|s| !s.is_empty())
        {
            Some(p) => (p, false),
            None => {
                let (secret, _) = auth::new_secret("");
                // Groups of hex with dashes, plus "a1": letters, digits, symbols.
                let p = format!("{}-{}-{}-a1", &secret[..6], &secret[6..12], &secret[12..18]);
                (p, true)
            }
        };
        create_admin(store, &username, &password)
            .await
            .map_err(|e| {
                crate::StartError::Unsupported(format!("cannot create the first admin: {e}"))
            })?;
        if generated {
            // Printed once, on the terminal only: never through the log.
            eprintln!("\n  ecp: created system admin {username:?} with password {password}\n  (set ECP_ADMIN_PASSWORD to choose it; it is not shown again)\n");
        }
        tracing::info!(username = %username, "created the first system admin");
    }
    Ok(())
}

/// Creates a system admin; the error says what to fix.
pub async fn create_admin(
    store: &SharedStore,
    username: &str,
    password: &str,
) -> Result<(), String> {
    crate::validate::username(username)?;
    crate::login_guard::password_rules(password)?;
    let hash = auth::hash_password(password.to_string())
        .await
        .map_err(|e| e.to_string())?;
    store
        .create_user(&UserRecord {
            id: uuid::Uuid::new_v4().simple().to_string(),
            username: username.to_string(),
            password_hash: hash,
            system_admin: true,
            created_at: now_ms(),
        })
        .await
        .map_err(|e| match e {
            StoreError::Exists => format!("user {username:?} already exists"),
            other => other.to_string(),
        })
}
