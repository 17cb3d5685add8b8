//! The token routes' JSON: a creation's and a search's bodies, and the answers, which show a
//! token's public facts and the token itself only in the answer to its creation.

use std::time::SystemTime;

use serde_json::{Map, Value};

use super::{Details, field, list_query, timestamp};
use crate::api::error::{ApiError, Violation};
use secretgen_core::service::{CreatedToken, NewToken, TokenPage, TokenQuery, TokenView};
use secretgen_engine::registry::InstanceId;

/// A `POST /admin/v1/tokens` body: `name` (a string), `permissions` (an array of strings) and
/// `expiry` (a duration string, optional). Only the JSON types are checked here; the rules
/// are the use case's.
pub fn new_token(object: &Map<String, Value>) -> Result<NewToken, ApiError> {
    let mut violations = Vec::new();
    let mut new = NewToken::default();
    match field(object, "name") {
        Some(Value::String(name)) => new.name = name.clone(),
        None => violations.push(Violation::new("name", "is required")),
        Some(_) => violations.push(Violation::new("name", "must be a string")),
    }
    match field(object, "permissions") {
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::String(p) => new.permissions.push(p.clone()),
                    _ => violations.push(Violation::new(
                        format!("permissions[{i}]"),
                        "must be a permission name such as \"codes.generate\"",
                    )),
                }
            }
        }
        None => violations.push(Violation::new("permissions", "is required")),
        Some(_) => violations.push(Violation::new("permissions", "must be an array of names")),
    }
    match field(object, "expiry") {
        None => {}
        Some(Value::String(expiry)) => new.expiry = Some(expiry.clone()),
        Some(_) => violations.push(Violation::new(
            "expiry",
            "must be a duration string such as \"86400s\"",
        )),
    }
    if violations.is_empty() {
        Ok(new)
    } else {
        Err(ApiError::invalid("invalid token", violations))
    }
}

/// A `POST /admin/v1/tokens/_search` body: paging only.
pub fn token_query(object: &Map<String, Value>) -> Result<TokenQuery, ApiError> {
    let mut violations = Vec::new();
    let (offset, limit, ascending) = list_query(object, &mut violations);
    if violations.is_empty() {
        Ok(TokenQuery {
            offset,
            limit,
            ascending,
        })
    } else {
        Err(ApiError::invalid("invalid search request", violations))
    }
}

/// A token's public facts: never the token or its hash.
fn token_facts(record: &TokenView) -> Value {
    let mut facts = serde_json::json!({
        "id": record.id,
        "name": record.name,
        "permissions": record.permissions,
        "creationDate": timestamp(record.created_at),
    });
    if let Some(at) = record.expires_at {
        facts["expiresAt"] = Value::String(timestamp(at));
    }
    facts
}

/// The answer to a token's creation: the token, this once.
pub fn created_token(created: &CreatedToken, instance: &InstanceId) -> Value {
    let mut answer = serde_json::json!({
        "id": created.view.id,
        "token": created.token.expose(),
        "details": Details::of(created.version, instance),
    });
    if let Some(at) = created.view.expires_at {
        answer["expiresAt"] = Value::String(timestamp(at));
    }
    answer
}

/// The answer to a token search.
pub fn token_page(page: &TokenPage) -> Value {
    serde_json::json!({
        "details": {
            "totalResult": page.total.to_string(),
            "viewTimestamp": timestamp(SystemTime::now()),
        },
        "result": page.tokens.iter().map(token_facts).collect::<Vec<_>>(),
    })
}
