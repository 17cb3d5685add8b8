//! The token use cases (SPEC section 6): create, list and revoke tokens. A caller grants only
//! permissions it holds; a revoked token is refused from the moment the answer is sent (the
//! table of known tokens is read again before answering), and on every replica within the
//! time the store's push takes.

use std::sync::Arc;
use std::time::SystemTime;

use super::{Error, Grant, Operation, Service, Subject, Violation};
use crate::store::{Author, Event, StoreErrorKind, TokenRecord};
use crate::token::{self, Permission, RequestField, Token, TokenRequest};
use secretgen_engine::registry::Version;

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

impl NewToken {
    /// The token asked for, every rule it breaks reported at once: what
    /// [`Service::create_token`] checks first, for a caller that must refuse before it
    /// touches anything (the command line, before it creates a store).
    pub fn check(&self) -> Result<TokenRequest, Error> {
        let names: Vec<&str> = self.permissions.iter().map(String::as_str).collect();
        TokenRequest::check(&self.name, &names, self.expiry.as_deref()).map_err(|errors| {
            Error::Invalid {
                message: "invalid token",
                violations: errors
                    .into_iter()
                    .map(|(field, e)| Violation {
                        subject: match field {
                            RequestField::Name => Subject::TokenName,
                            RequestField::Permissions => Subject::TokenPermissions,
                            RequestField::Expiry => Subject::TokenExpiry,
                        },
                        description: e.to_string(),
                    })
                    .collect(),
            }
        })
    }
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
    pub tokens: Vec<TokenView>,
}

/// A token as the use cases show it: its public facts. The store's row has its hash too,
/// which never leaves the core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenView {
    /// A public identifier, safe to show and log.
    pub id: String,
    /// Its name; changes made with it are recorded under it.
    pub name: String,
    /// Its permissions' names.
    pub permissions: Vec<String>,
    /// When it was created.
    pub created_at: SystemTime,
    /// When it stops being accepted; `None` for never.
    pub expires_at: Option<SystemTime>,
    /// The id of the token that created it; `None` when the server or the command line did.
    pub created_by: Option<String>,
}

impl From<TokenRecord> for TokenView {
    fn from(record: TokenRecord) -> TokenView {
        TokenView {
            id: record.id,
            name: record.name,
            permissions: record.permissions,
            created_at: record.created_at,
            expires_at: record.expires_at,
            created_by: record.created_by,
        }
    }
}

/// A token just created: the token itself, to be shown this once, its facts, and the
/// version of its `token.added` event in the log.
#[derive(Debug)]
pub struct CreatedToken {
    /// The token (zeroed on drop, redacted in `Debug`).
    pub token: Token,
    /// Its public facts.
    pub view: TokenView,
    /// Its event's sequence and time.
    pub version: Version,
}

/// A revocation: the tokens revoked (the one asked for first, then those it created,
/// nearest first) and the version of the last of their events.
#[derive(Debug)]
pub struct Revoked {
    /// The ids revoked.
    pub ids: Vec<String>,
    /// The last event's sequence and time.
    pub version: Version,
}

/// The version of `event` in the log: a token event is made and changed at once.
fn version_of(event: &Event) -> Version {
    Version {
        sequence: event.sequence,
        creation_date: event.created_at,
        change_date: event.created_at,
    }
}

impl Service {
    /// Creates a token with `new`'s name, permissions and expiry; returns it (to be shown
    /// once) with its facts. Every rule broken is reported at once (400); a
    /// permission the caller does not hold is refused (403). The token works on this server
    /// when the call returns.
    pub async fn create_token(
        &self,
        grant: &Grant<ManageTokens>,
        new: NewToken,
    ) -> Result<CreatedToken, Error> {
        let request = new.check()?;
        let principal = grant.principal();
        if let Some(&missing) = request.permissions().iter().find(|p| !principal.may(**p)) {
            return Err(Error::PermissionDenied(missing));
        }
        let token = Token::generate()
            .map_err(|_| Error::Internal("the random source failed; no token was made"))?;
        let record = request
            .record(
                &token,
                principal.token_id().map(|id| (id, principal.expires_at)),
            )
            .map_err(|_| Error::Internal("the random source failed; no token was made"))?;
        let store = Arc::clone(self.control.store());
        let stored = record.clone();
        let creator = grant.principal().name.clone();
        let added = tokio::task::spawn_blocking(move || store.add_token(&stored, &creator))
            .await
            .map_err(|_| Error::Internal("the call was interrupted"))?;
        let event = match added {
            Err(e) if e.kind() == StoreErrorKind::NameTaken => {
                return Err(Error::AlreadyExists {
                    message: "a live token already has this name",
                    violation: crate::service::error::Violation {
                        subject: Subject::TokenName,
                        description: token::TokenError::NameTaken.to_string(),
                    },
                });
            }
            other => other.map_err(|e| {
                Error::store(
                    e,
                    "the store cannot record the token",
                    "the store is damaged",
                )
            })?,
        };
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
        Ok(CreatedToken {
            token,
            version: version_of(&event),
            view: TokenView::from(record),
        })
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
        let tokens = tokens.into_iter().map(TokenView::from);
        let limit = match query.limit {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let tokens = tokens
            .skip(usize::try_from(query.offset).unwrap_or(usize::MAX))
            .take(limit)
            .collect();
        Ok(TokenPage { total, tokens })
    }

    /// Revokes the token `id` and every token it created, recursively: refused on this
    /// server from the moment this returns, and by every replica once the store's push
    /// reaches it. Returns the ids revoked, the token's first. An unknown id is `NotFound`; a
    /// token that holds a permission the caller lacks is refused (403): a token may revoke
    /// only what it could have made. Its descendants hold no more than it does.
    pub async fn revoke_token(
        &self,
        grant: &Grant<ManageTokens>,
        id: &str,
    ) -> Result<Revoked, Error> {
        let not_found = || {
            Error::NotFound(format!(
                "no token {:?}",
                id.chars().take(64).collect::<String>()
            ))
        };
        let store = Arc::clone(self.control.store());
        let owned = id.to_owned();
        let target = self
            .blocking(
                move || store.token(&owned),
                "the token store cannot be read",
            )
            .await?
            .ok_or_else(not_found)?;
        let principal = grant.principal();
        if let Some(missing) = target
            .permissions
            .iter()
            .filter_map(|p| Permission::from_name(p))
            .find(|p| !principal.may(*p))
        {
            return Err(Error::PermissionDenied(missing));
        }
        let store = Arc::clone(self.control.store());
        let owned = id.to_owned();
        let by = Author {
            name: principal.name.clone(),
            token_id: principal.token_id().map(str::to_owned),
        };
        let events = self
            .blocking(
                move || store.remove_token(&owned, &by),
                "the store cannot revoke the token",
            )
            .await?;
        if events.is_empty() {
            return Err(not_found());
        }
        let revoked: Vec<String> = events
            .iter()
            .filter_map(|e| match &e.change {
                crate::store::Change::Token(facts) => Some(facts.token_id.clone()),
                crate::store::Change::Config(_) | crate::store::Change::Unlock(_) => None,
            })
            .collect();
        self.tokens.forget(&revoked).await;
        for token_id in &revoked {
            self.metrics.token_revoked();
            tracing::info!(token_id = %token_id, revoked_with = %id, by = %principal.name, "token revoked");
        }
        let version = version_of(events.last().expect("a revocation writes an event"));
        Ok(Revoked {
            ids: revoked,
            version,
        })
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
            .map_err(|e| Error::store(e, what, "the store is damaged"))
    }
}
