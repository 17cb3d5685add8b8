//! `Authorization: Bearer <token>`: the token's text, for the service to admit
//! ([`crate::service::Service::admit`]). Only HTTP's own part of authentication lives here.

use actix_web::HttpRequest;
use actix_web::http::header;

use super::error::ApiError;

/// The token of `req`'s `Authorization: Bearer` header; 401 without one.
pub fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthenticated("no token: send Authorization: Bearer <token>"))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated("the Authorization header is not ASCII"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::unauthenticated("use Authorization: Bearer <token>"))?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(ApiError::unauthenticated(
            "use Authorization: Bearer <token>",
        ));
    }
    Ok(token)
}
