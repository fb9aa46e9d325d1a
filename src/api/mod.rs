//! HTTP API: routes, request/response shapes and the OpenAPI document.

pub mod account;
pub mod agents;
pub mod alerting;
pub mod audit;
pub mod clusters;
pub mod dashboard;
pub mod download;
pub mod events;
pub mod logs;
pub mod monitoring;
pub mod ops;
pub mod orgs;
pub mod tenancy;
pub mod views;

use crate::error::{json_error, path_error, query_error};
use crate::AppState;
use actix_web::web;
use utoipa::OpenApi;

/// Registers every route. Used by `main` and by tests alike.
pub fn routes(cfg: &mut web::ServiceConfig, state: web::Data<AppState>) {
    let limit = state.config.server.max_body_bytes;
    cfg.app_data(state)
        .app_data(
            web::JsonConfig::default()
                .limit(limit)
                .error_handler(|e, _| json_error(e)),
        )
        .app_data(web::QueryConfig::default().error_handler(|e, _| query_error(e)))
        .app_data(web::PathConfig::default().error_handler(|e, _| path_error(e)))
        .app_data(web::PayloadConfig::default().limit(limit))
        .configure(crate::console::routes)
        .route("/healthz", web::get().to(ops::healthz))
        .route("/readyz", web::get().to(ops::readyz))
        .route("/metrics", web::get().to(ops::metrics))
        .route("/api/version", web::get().to(ops::version))
        .route("/api/openapi.json", web::get().to(ops::openapi))
        .route("/api/account/login", web::post().to(account::login))
        .route("/api/account/logout", web::post().to(account::logout))
        .route(
            "/api/account/logout-all",
            web::post().to(account::logout_all),
        )
        .route(
            "/api/account/password",
            web::post().to(account::change_password),
        )
        .route("/api/account/profile", web::get().to(account::profile))
        .route("/api/events", web::get().to(events::stream))
        .route("/api/audit/operations", web::get().to(audit::operations))
        .route("/api/orgs", web::get().to(orgs::list_orgs))
        .route("/api/orgs", web::post().to(tenancy::create_org))
        .route(
            "/api/orgs/{org_id}/projects",
            web::post().to(tenancy::create_project),
        )
        .route(
            "/api/orgs/{org_id}/members/{user_id}",
            web::put().to(tenancy::org_member),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/members/{user_id}",
            web::put().to(tenancy::project_member),
        )
        .route("/api/users", web::post().to(tenancy::create_user))
        .route("/api/users", web::get().to(tenancy::list_users))
        .route(
            "/api/users/{user_id}",
            web::delete().to(tenancy::delete_user),
        )
        .route("/api/users/{user_id}", web::get().to(tenancy::get_user))
        .route("/api/orgs/{org_id}", web::put().to(tenancy::update_org))
        .route("/api/orgs/{org_id}", web::delete().to(tenancy::delete_org))
        .route(
            "/api/orgs/{org_id}/projects/{project_id}",
            web::put().to(tenancy::update_project),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}",
            web::delete().to(tenancy::delete_project),
        )
        .route(
            "/api/orgs/{org_id}/projects",
            web::get().to(orgs::list_projects),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/logs",
            web::get().to(logs::project_logs),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/overview",
            web::get().to(monitoring::overview),
        )
        .service(
            web::scope("/api/orgs/{org_id}/projects/{project_id}/clusters")
                .route("", web::get().to(clusters::list))
                .route("", web::post().to(clusters::create))
                .route("/{cluster_id}", web::get().to(clusters::get))
                .route("/{cluster_id}", web::put().to(clusters::edit))
                .route("/{cluster_id}", web::delete().to(clusters::delete))
                .route(
                    "/{cluster_id}/registration-tokens",
                    web::post().to(clusters::issue_token),
                )
                .route(
                    "/{cluster_id}/registration-tokens",
                    web::delete().to(clusters::revoke_tokens),
                )
                .route(
                    "/{cluster_id}/setup-instructions",
                    web::get().to(clusters::setup_instructions),
                )
                .route("/{cluster_id}/agents", web::get().to(clusters::agents))
                .route(
                    "/{cluster_id}/agents/{agent_id}",
                    web::delete().to(clusters::revoke_agent),
                )
                .route("/{cluster_id}/events", web::get().to(clusters::events))
                .route("/{cluster_id}/logs", web::get().to(logs::logs))
                .route("/{cluster_id}/metrics", web::get().to(monitoring::metrics))
                .route("/{cluster_id}/alarms", web::get().to(monitoring::alarms))
                .route(
                    "/{cluster_id}/dashboard-sessions",
                    web::post().to(dashboard::open_session),
                )
                .route("/{cluster_id}/transfer", web::post().to(clusters::transfer)),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/alert-rules",
            web::get().to(alerting::list_rules),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/alert-rules",
            web::post().to(alerting::create_rule),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/alert-rules/{rule_id}",
            web::put().to(alerting::update_rule),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/alert-rules/{rule_id}",
            web::delete().to(alerting::delete_rule),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/notification-channels",
            web::get().to(alerting::list_channels),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/notification-channels",
            web::post().to(alerting::create_channel),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/notification-channels/{channel_id}",
            web::put().to(alerting::update_channel),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/notification-channels/{channel_id}",
            web::delete().to(alerting::delete_channel),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/notification-channels/{channel_id}/test",
            web::post().to(alerting::test_channel),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/notification-channels/{channel_id}/deliveries",
            web::get().to(alerting::deliveries),
        )
        .route(
            "/api/orgs/{org_id}/projects/{project_id}/alerts",
            web::get().to(alerting::alerts),
        )
        .route(
            "/api/clusters/agents/emqxee/register",
            web::post().to(agents::register),
        )
        .route(
            "/api/clusters/agents/emqxee/connect",
            web::get().to(agents::connect),
        )
        .route(
            "/api/clusters/agents/emqxee/unregister",
            web::post().to(agents::unregister),
        )
        .service(
            web::resource([
                "/api/emqxee/dashboard/{cluster_id}",
                "/api/emqxee/dashboard/{cluster_id}/{tail:.*}",
            ])
            .app_data(web::PayloadConfig::default().limit(dashboard::MAX_BODY))
            .route(web::route().to(dashboard::proxy_api)),
        )
        .service(
            web::resource(crate::peers::PEER_PATH)
                .app_data(web::PayloadConfig::default().limit(dashboard::MAX_BODY))
                .route(web::route().to(dashboard::peer_tunnel)),
        )
        .configure(dashboard::site_routes)
        .route(
            "/dl/emqx/agents/binaries/emqxee-agent-linux-{arch}",
            web::get().to(download::agent_binary),
        )
        .default_service(web::to(ops::not_found));
}

#[derive(OpenApi)]
#[openapi(
    info(title = "ecp — control plane for EMQX clusters", description = "REST API of the ecp server. Errors are `{code, message}`."),
    paths(
        ops::healthz, ops::readyz, ops::version,
        account::login, account::logout, account::profile, account::logout_all, account::change_password,
        orgs::list_orgs, orgs::list_projects,
        tenancy::create_org, tenancy::create_project, tenancy::create_user, tenancy::org_member, tenancy::project_member,
        tenancy::update_org, tenancy::delete_org, tenancy::update_project, tenancy::delete_project, dashboard::proxy_api, dashboard::open_session, logs::logs, logs::project_logs, tenancy::list_users, tenancy::get_user, tenancy::delete_user,
        clusters::transfer,
        clusters::list, clusters::create, clusters::get, clusters::edit, clusters::delete,
        clusters::issue_token, clusters::revoke_tokens, clusters::setup_instructions,
        clusters::agents, clusters::revoke_agent, clusters::events,
        agents::register, agents::connect, agents::unregister,
        events::stream,
        audit::operations,
        download::agent_binary,
        monitoring::metrics, monitoring::alarms, monitoring::overview,
        alerting::list_rules, alerting::create_rule, alerting::update_rule, alerting::delete_rule,
        alerting::list_channels, alerting::create_channel, alerting::update_channel, alerting::delete_channel,
        alerting::test_channel, alerting::deliveries, alerting::alerts,
    ),
    components(schemas(crate::error::ErrorBody)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
