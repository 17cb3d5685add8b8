//! The admin console (SPEC section 11): a page of plain HTML, CSS and JavaScript modules in
//! `console/`, embedded in the binary at build time and served under `/console/`. It talks
//! to the same JSON API as every other client, with the token the admin pastes (kept in the
//! tab's session storage). Every answer carries a Content-Security-Policy that allows only
//! this origin's own files and API: no inline script or style, no other host.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::error::ApiError;

/// Only this origin: its files and its API; nothing inline, no frames, no forms posted away.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The console's files: name, content type, content. The page loads `app.js`, which
/// imports the other modules by relative URL.
const FILES: [(&str, &str, &str); 5] = [
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../console/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/app.js"),
    ),
    (
        "common.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/common.js"),
    ),
    (
        "verify.js",
        "text/javascript; charset=utf-8",
        include_str!("../../console/verify.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../console/style.css"),
    ),
];

/// One of the console's files, with the headers every console answer carries.
fn file(name: &str) -> Option<HttpResponse> {
    let (_, content_type, body) = FILES.iter().find(|(n, _, _)| *n == name)?;
    Some(
        HttpResponse::Ok()
            .insert_header((header::CONTENT_TYPE, HeaderValue::from_static(content_type)))
            .insert_header((
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CONTENT_SECURITY_POLICY),
            ))
            .insert_header((
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .insert_header((
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ))
            .insert_header((header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
            // A new binary may serve new files: always ask.
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
            .body(*body),
    )
}

/// `GET /console/`: the page.
pub async fn index() -> HttpResponse {
    file("index.html").unwrap_or_else(|| HttpResponse::InternalServerError().finish())
}

/// `GET /console/{file}`: its scripts and style sheet; 404 for anything else.
pub async fn asset(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    file(&name).ok_or_else(|| ApiError::not_found(req.path()))
}
