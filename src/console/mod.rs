//! The web console: static assets embedded in the binary (no Node.js to
//! build or run). Plain ES modules; every piece of text from outside is
//! rendered with `textContent`, never as HTML.

use actix_web::{http::header, web, HttpResponse};

const INDEX: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const I18N_JS: &str = include_str!("i18n.js");
const APP_CSS: &str = include_str!("app.css");
const MONITORING_JS: &str = include_str!("monitoring.js");
const ALERTING_JS: &str = include_str!("alerting.js");
/// uPlot, vendored unchanged (version and licence in `vendor/README.md`).
const UPLOT_JS: &str = include_str!("vendor/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("vendor/uPlot.min.css");
const UPLOT_LICENSE: &str = include_str!("vendor/uPlot.LICENSE");

fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

pub async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("X-Frame-Options", "DENY"))
        // A window this page opens (or that opens it) from another origin
        // gets no handle on it: a dashboard page cannot navigate the console.
        .insert_header(("Cross-Origin-Opener-Policy", "same-origin"))
        .insert_header(("Referrer-Policy", "same-origin"))
        // No inline script anywhere: a strict policy is a second fence against XSS.
        .insert_header((
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'",
        ))
        .body(INDEX)
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/console", web::get().to(index))
        .route(
            "/console/app.js",
            web::get().to(|| async { asset("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/console/i18n.js",
            web::get().to(|| async { asset("text/javascript; charset=utf-8", I18N_JS) }),
        )
        .route(
            "/console/monitoring.js",
            web::get().to(|| async { asset("text/javascript; charset=utf-8", MONITORING_JS) }),
        )
        .route(
            "/console/alerting.js",
            web::get().to(|| async { asset("text/javascript; charset=utf-8", ALERTING_JS) }),
        )
        .route(
            "/console/app.css",
            web::get().to(|| async { asset("text/css; charset=utf-8", APP_CSS) }),
        )
        .route(
            "/console/vendor/uPlot.iife.min.js",
            web::get().to(|| async { asset("text/javascript; charset=utf-8", UPLOT_JS) }),
        )
        .route(
            "/console/vendor/uPlot.min.css",
            web::get().to(|| async { asset("text/css; charset=utf-8", UPLOT_CSS) }),
        )
        .route(
            "/console/vendor/uPlot.LICENSE",
            web::get().to(|| async { asset("text/plain; charset=utf-8", UPLOT_LICENSE) }),
        );
}
