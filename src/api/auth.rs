//! `Authorization: Bearer <token>`: the token's text, for the service to admit
//! ([`secretgen_core::service::Service::admit`]). The parsing is the service's, shared with gRPC.

use actix_web::HttpRequest;
use actix_web::http::header;

use super::error::ApiError;

/// The token of `req`'s `Authorization: Bearer` header; 401 without one.
pub fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    Ok(secretgen_core::service::tokens::bearer(value)?)
}
