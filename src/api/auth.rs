//! `Authorization: Bearer <token>`: the token is hashed, looked up by its hash (cached after
//! the first request, so tokens created beside a running server work at once), and the
//! stored hash compared in constant time. Only the token's name and id ever reach a log.

use std::sync::Arc;

use actix_web::HttpRequest;
use actix_web::http::header;
use dashmap::DashMap;

use super::error::ApiError;
use crate::store::{Store, StoreErrorKind};
use crate::token::{self, Permission};

/// Who is asking: a stored token's public facts.
#[derive(Debug)]
pub struct Principal {
    /// The token's id (public).
    pub id: String,
    /// The token's name, recorded as the creator of its changes.
    pub name: String,
    /// The token's hash, for the constant-time comparison.
    hash: [u8; 32],
    permissions: Vec<Permission>,
}

impl Principal {
    /// Whether the token carries `permission`.
    pub fn may(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }
}

/// Checks bearer tokens against the store.
#[derive(Debug)]
pub struct Authenticator {
    store: Arc<dyn Store>,
    /// Known tokens by hash. Only found tokens are cached; tokens cannot be revoked yet.
    known: DashMap<[u8; 32], Arc<Principal>>,
}

impl Authenticator {
    /// An authenticator over the tokens of `store`.
    pub fn new(store: Arc<dyn Store>) -> Authenticator {
        Authenticator {
            store,
            known: DashMap::new(),
        }
    }

    /// The principal of `req`'s bearer token if it carries `permission`; 401 without a
    /// known token, 403 without the permission.
    pub fn require(
        &self,
        req: &HttpRequest,
        permission: Permission,
    ) -> Result<Arc<Principal>, ApiError> {
        let presented = bearer(req)?;
        let hash = token::hash(presented);
        let principal = match self.known.get(&hash) {
            Some(p) => Arc::clone(&p),
            None => self.load(&hash)?,
        };
        // The lookup went by hash; the final word is a comparison that does not depend on
        // where two hashes differ.
        if !token::hashes_equal(&principal.hash, &hash) {
            return Err(unknown_token());
        }
        if !principal.may(permission) {
            return Err(ApiError::permission_denied(permission.name()));
        }
        Ok(principal)
    }

    fn load(&self, hash: &[u8; 32]) -> Result<Arc<Principal>, ApiError> {
        let record = self.store.token_by_hash(hash).map_err(|e| match e.kind() {
            StoreErrorKind::Corrupt => ApiError::internal("the token store is damaged"),
            _ => ApiError::unavailable("the token store cannot be read"),
        })?;
        let Some(record) = record else {
            return Err(unknown_token());
        };
        let principal = Arc::new(Principal {
            id: record.id,
            name: record.name,
            hash: record.hash,
            permissions: record
                .permissions
                .iter()
                .filter_map(|p| Permission::from_name(p))
                .collect(),
        });
        self.known.insert(*hash, Arc::clone(&principal));
        Ok(principal)
    }
}

fn unknown_token() -> ApiError {
    ApiError::unauthenticated("the token is not known")
}

/// The token of an `Authorization: Bearer` header.
fn bearer(req: &HttpRequest) -> Result<&str, ApiError> {
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
