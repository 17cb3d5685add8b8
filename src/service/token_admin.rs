//! The token use cases (SPEC section 6): create, list and revoke tokens. A caller grants only
//! permissions it holds; a revoked token is refused from the moment the answer is sent (the
//! table of known tokens is read again before answering), and on every replica within the
//! time the store's push takes.

use std::sync::Arc;
use std::time::Duration;

use super::{Error, Grant, Operation, Service, Subject, Violation};
use crate::store::{Event, TokenRecord};
use crate::token::{self, Permission, Token};

/// Create and revoke tokens.
#[derive(Debug)]
pub enum ManageTokens {}

impl Operation for ManageTokens {
    const PERMISSION: Permission = Permission::IamWrite;
    const RATE_LIMITED: bool = false;
}

/// List tokens.
#[derive(Debug)]
pub enum ReadTokens {}

impl Operation for ReadTokens {
    const PERMISSION: Permission = Permission::IamRead;
    const RATE_LIMITED: bool = false;
}

/// What a new token is to be: as a transport read it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewToken {
    /// Its name (1 to 200 characters, no control characters).
    pub name: String,
    /// Permission names as given; each must be known and held by the caller.
    pub permissions: Vec<String>,
    /// Its lifetime (a protobuf JSON duration, `"86400s"`); `None` for never.
    pub expiry: Option<String>,
}

/// A paged listing of tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenQuery {
    /// Tokens to skip.
    pub offset: u64,
    /// Most tokens to return; 0 for all.
    pub limit: u64,
    /// Oldest first (the default); `false` for newest first.
    pub ascending: bool,
}

impl Default for TokenQuery {
    fn default() -> TokenQuery {
        TokenQuery {
            offset: 0,
            limit: 0,
            ascending: true,
        }
    }
}

/// A page of tokens: their public facts, never a secret or a hash.
#[derive(Debug)]
pub struct TokenPage {
    /// How many tokens there are, before paging.
    pub total: u64,
    /// The page, by creation date (then id).
    pub tokens: Vec<TokenRecord>,
}

impl Service {
    /// Creates a token with `new`'s name, permissions and expiry; returns it (to be shown
    /// once) with its stored record. Every rule broken is reported at once (400); a
    /// permission the caller does not hold is refused (403). The token works on this server
    /// when the call returns.
    pub async fn create_token(
        &self,
        grant: &Grant<ManageTokens>,
        new: NewToken,
    ) -> Result<(Token, TokenRecord, Event), Error> {
        let mut violations = Vec::new();
        if let Err(e) = token::check_name(&new.name) {
            violations.push(Violation {
                subject: Subject::TokenName,
                description: e.to_string(),
            });
        }
        let mut permissions = Vec::new();
        if new.permissions.is_empty() {
            violations.push(Violation {
                subject: Subject::TokenPermissions,
                description: token::TokenError::NoPermission.to_string(),
            });
        }
        for name in &new.permissions {
            match Permission::from_name(name) {
                Some(p) if !permissions.contains(&p) => permissions.push(p),
                Some(_) => {}
                None => violations.push(Violation {
                    subject: Subject::TokenPermissions,
                    description: token::TokenError::UnknownPermission(
                        name.chars().take(64).collect(),
                    )
                    .to_string(),
                }),
            }
        }
        let expires_in: Option<Duration> = match new.expiry.as_deref() {
            None => None,
            Some(text) => match token::parse_expiry(text) {
                Ok(d) => Some(d),
                Err(e) => {
                    violations.push(Violation {
                        subject: Subject::TokenExpiry,
                        description: e.to_string(),
                    });
                    None
                }
            },
        };
        if !violations.is_empty() {
            return Err(Error::Invalid {
                message: "invalid token",
                violations,
            });
        }
        permissions.sort();
        if let Some(&missing) = permissions.iter().find(|p| !grant.principal().may(**p)) {
            return Err(Error::PermissionDenied(missing));
        }
        let token = Token::generate()
            .map_err(|_| Error::Internal("the random source failed; no token was made"))?;
        let record = token::record(&token, &new.name, &permissions, expires_in)
            .map_err(|_| Error::Internal("the random source failed; no token was made"))?;
        let store = Arc::clone(self.control.store());
        let stored = record.clone();
        let creator = grant.principal().name.clone();
        let event = self
            .blocking(
                move || store.add_token(&stored, &creator),
                "the store cannot record the token",
            )
            .await?;
        if let Err(e) = self.tokens.reload_now().await {
            // The token is stored: the unknown-token path will find it.
            tracing::warn!(error = %e, "cannot read the tokens again after a creation");
        }
        self.metrics.token_created();
        tracing::info!(
            token_id = %record.id,
            name = %record.name,
            by = %grant.principal().name,
            "token created"
        );
        Ok((token, record, event))
    }

    /// The tokens, paged, oldest first unless asked otherwise.
    pub async fn list_tokens(
        &self,
        _: &Grant<ReadTokens>,
        query: TokenQuery,
    ) -> Result<TokenPage, Error> {
        let store = Arc::clone(self.control.store());
        let mut tokens = self
            .blocking(move || store.tokens(), "the token store cannot be read")
            .await?;
        tokens.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        if !query.ascending {
            tokens.reverse();
        }
        let total = tokens.len() as u64;
        let limit = match query.limit {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let tokens = tokens
            .into_iter()
            .skip(usize::try_from(query.offset).unwrap_or(usize::MAX))
            .take(limit)
            .collect();
        Ok(TokenPage { total, tokens })
    }

    /// Revokes the token `id`: refused on this server from the moment this returns, and by
    /// every replica once the store's push reaches it. An unknown id is `NotFound`.
    pub async fn revoke_token(
        &self,
        grant: &Grant<ManageTokens>,
        id: &str,
    ) -> Result<Event, Error> {
        let store = Arc::clone(self.control.store());
        let owned = id.to_owned();
        let creator = grant.principal().name.clone();
        let removed = self
            .blocking(
                move || store.remove_token(&owned, &creator),
                "the store cannot revoke the token",
            )
            .await?;
        let Some(event) = removed else {
            return Err(Error::NotFound(format!(
                "no token {:?}",
                id.chars().take(64).collect::<String>()
            )));
        };
        self.tokens.forget(id).await;
        self.metrics.token_revoked();
        tracing::info!(token_id = %id, by = %grant.principal().name, "token revoked");
        Ok(event)
    }

    /// Runs a store call on a blocking thread; its failure becomes `Unavailable` (or
    /// `Internal` for a damaged store) with `what` as the message.
    async fn blocking<T: Send + 'static>(
        &self,
        call: impl FnOnce() -> Result<T, crate::store::StoreError> + Send + 'static,
        what: &'static str,
    ) -> Result<T, Error> {
        tokio::task::spawn_blocking(call)
            .await
            .map_err(|_| Error::Internal("the call was interrupted"))?
            .map_err(|e| Error::store(&e, what, "the store is damaged"))
    }
}
