//! Access tokens (SPEC section 6): made here, shown once, stored only as a SHA-256 hash.
//!
//! A token is `sg_` followed by 43 characters of `A-Za-z0-9` drawn by secretgen's own
//! engine: 256 bits, exactly uniform. With that much entropy a plain SHA-256 is the right
//! hash (nothing to guess, so nothing to slow down); tokens are looked up by it (see
//! [`crate::service::tokens`] for why no constant-time comparison is needed).

use std::fmt;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::store::{TokenRecord, truncate_to_micros};
use secretgen_engine::config::{ConfigDraft, GeneratorConfig};
use secretgen_engine::generator::Generator;
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::rng::EntropyError;

/// What every token starts with, so that scanners can recognise a leaked one.
pub const PREFIX: &str = "sg_";

/// Random characters after the prefix: 43 of 62 give 256 bits.
const RANDOM_CHARS: i64 = 43;

/// The longest token name.
pub const MAX_NAME_LEN: usize = 200;

/// The longest a token may live: 999,999,999 s (nearly 32 years), nine digits.
pub const MAX_EXPIRY: Duration = Duration::from_secs(999_999_999);

/// Who the log records as the author of a token command's change (`secretgen token …`).
pub const COMMAND_LINE_CREATOR: &str = "command line";

/// The name of the token made or given on a first start.
pub const BOOTSTRAP_TOKEN_NAME: &str = "bootstrap-admin";

/// The names the server records as authors itself: the defaults' (`system`), the token
/// commands' (`command line`) and the first admin token's (`bootstrap-admin`). No token
/// made through the API or the command line may take one (compared without regard to case
/// or surrounding spaces), so that nothing in the log can pass for the server's own.
pub const RESERVED_NAMES: [&str; 3] = [
    crate::control::SYSTEM_CREATOR,
    COMMAND_LINE_CREATOR,
    BOOTSTRAP_TOKEN_NAME,
];

/// What a token allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Read generator configurations.
    IamRead,
    /// Change generator configurations.
    IamWrite,
    /// Generate codes.
    CodesGenerate,
    /// Issue codes for a subject (SPEC section 12).
    CodesIssue,
    /// Verify a subject's code.
    CodesVerify,
}

impl Permission {
    /// Every permission.
    pub const ALL: [Permission; 5] = [
        Permission::IamRead,
        Permission::IamWrite,
        Permission::CodesGenerate,
        Permission::CodesIssue,
        Permission::CodesVerify,
    ];

    /// The permission's name, e.g. `iam.read`.
    pub const fn name(self) -> &'static str {
        match self {
            Permission::IamRead => "iam.read",
            Permission::IamWrite => "iam.write",
            Permission::CodesGenerate => "codes.generate",
            Permission::CodesIssue => "codes.issue",
            Permission::CodesVerify => "codes.verify",
        }
    }

    /// The permission named `name`.
    pub fn from_name(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.name() == name)
    }

    /// A comma-separated list of names, each known, at least one; repeats are merged.
    pub fn parse_list(list: &str) -> Result<Vec<Permission>, TokenError> {
        let mut permissions = Vec::new();
        for name in list.split(',').map(str::trim) {
            let p = Permission::from_name(name)
                .ok_or_else(|| TokenError::UnknownPermission(name.chars().take(64).collect()))?;
            if !permissions.contains(&p) {
                permissions.push(p);
            }
        }
        permissions.sort();
        Ok(permissions)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a token, its name or its permissions were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// A permission name that is not one of [`Permission::ALL`] (its first 64 characters).
    #[error(
        "unknown permission {0:?}: use iam.read, iam.write, codes.generate, codes.issue, codes.verify"
    )]
    UnknownPermission(String),
    /// No permission at all.
    #[error("a token needs at least one permission")]
    NoPermission,
    /// A name that is blank or longer than [`MAX_NAME_LEN`].
    #[error("a token name is 1 to {MAX_NAME_LEN} characters")]
    NameLength,
    /// A name with a control character.
    #[error("a token name has no control characters")]
    NameControl,
    /// One of [`RESERVED_NAMES`].
    #[error("the names system, command line and bootstrap-admin are the server's own")]
    NameReserved,
    /// The name of a live token.
    #[error("a live token already has this name")]
    NameTaken,
    /// A given token of the wrong size or with characters that are not printable ASCII.
    #[error("a token is 32 to 512 printable ASCII characters without spaces")]
    GivenShape,
    /// The operating system's random source failed.
    #[error("the operating system's random source failed")]
    Entropy,
    /// An expiry that is not a duration of whole seconds from 1 s to [`MAX_EXPIRY`].
    #[error(
        "a token's expiry is a duration of whole seconds such as \"86400s\", from 1s to \
         999999999s"
    )]
    Expiry,
}

/// A token's lifetime from its protobuf JSON duration (`"86400s"`): whole seconds, 1 s to
/// [`MAX_EXPIRY`].
pub fn parse_expiry(text: &str) -> Result<Duration, TokenError> {
    match crate::protojson::duration(text) {
        Some((false, Some(d))) if d.subsec_nanos() == 0 && d.as_secs() >= 1 && d <= MAX_EXPIRY => {
            Ok(d)
        }
        _ => Err(TokenError::Expiry),
    }
}

/// A token in clear: shown once to whoever created it, never stored, never logged.
/// `Debug` hides it and its memory is zeroed when it is dropped.
pub struct Token(Zeroizing<String>);

impl Token {
    /// A new random token.
    pub fn generate() -> Result<Token, EntropyError> {
        let config = GeneratorConfig::new(&ConfigDraft {
            length: secretgen_engine::config::CodeLength::new(RANDOM_CHARS),
            include_lower_letters: true,
            include_upper_letters: true,
            include_digits: true,
            ..ConfigDraft::new(GeneratorType::AppSecret)
        })
        .expect("43 alphanumeric characters carry 256 bits");
        let code = Generator::new(&config).generate()?;
        let mut token = Zeroizing::new(String::with_capacity(PREFIX.len() + code.len()));
        token.push_str(PREFIX);
        token.push_str(code.expose());
        Ok(Token(token))
    }

    /// A token given from outside (a bootstrap token), checked for length.
    pub fn from_given(token: &str) -> Result<Token, TokenError> {
        if token.len() < 32 || token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::GivenShape);
        }
        Ok(Token(Zeroizing::new(token.to_owned())))
    }

    /// The token, to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Its SHA-256, what the store keeps.
    pub fn hash(&self) -> [u8; 32] {
        hash(&self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// SHA-256 of `token`.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Checks a token's name: 1 to 200 characters, no control characters.
pub fn check_name(name: &str) -> Result<(), TokenError> {
    if name.trim().is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(TokenError::NameLength);
    }
    if name.chars().any(char::is_control) {
        return Err(TokenError::NameControl);
    }
    Ok(())
}

/// What a new token's request asks for, once every rule is checked: see [`TokenRequest::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    name: String,
    permissions: Vec<Permission>,
    expires_in: Option<Duration>,
}

/// What a rule of a new token is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestField {
    /// The name.
    Name,
    /// The permissions.
    Permissions,
    /// The expiry.
    Expiry,
}

impl TokenRequest {
    /// The rules of a new token, the one place the API and the command line check them:
    /// a name of 1 to [`MAX_NAME_LEN`] characters without control characters that is none of
    /// [`RESERVED_NAMES`]; at least one permission, each known (repeats merged); an expiry,
    /// when given, of whole seconds from 1 s to [`MAX_EXPIRY`]. Every rule broken is
    /// returned at once. (That the name is free among live tokens is checked by the store,
    /// in the transaction that stores the token.)
    pub fn check(
        name: &str,
        permissions: &[&str],
        expiry: Option<&str>,
    ) -> Result<TokenRequest, Vec<(RequestField, TokenError)>> {
        let mut violations = Vec::new();
        if let Err(e) = check_new_name(name) {
            violations.push((RequestField::Name, e));
        }
        if permissions.is_empty() {
            violations.push((RequestField::Permissions, TokenError::NoPermission));
        }
        let mut granted = Vec::new();
        for name in permissions {
            match Permission::from_name(name) {
                Some(p) if !granted.contains(&p) => granted.push(p),
                Some(_) => {}
                None => violations.push((
                    RequestField::Permissions,
                    TokenError::UnknownPermission(name.chars().take(64).collect()),
                )),
            }
        }
        granted.sort();
        let expires_in = match expiry.map(parse_expiry).transpose() {
            Ok(d) => d,
            Err(e) => {
                violations.push((RequestField::Expiry, e));
                None
            }
        };
        if !violations.is_empty() {
            return Err(violations);
        }
        Ok(TokenRequest {
            name: name.to_owned(),
            permissions: granted,
            expires_in,
        })
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The permissions, sorted, without repeats.
    pub fn permissions(&self) -> &[Permission] {
        &self.permissions
    }

    /// The lifetime asked for; `None` for never.
    pub fn expires_in(&self) -> Option<Duration> {
        self.expires_in
    }

    /// The record to store for `token`, made by the token `creator` (its id and expiry) or
    /// by the command line (`None`). A token made by another expires no later than its
    /// creator: a later expiry, or none, is cut to the creator's (as Vault caps a child
    /// token's TTL at its parent's); the answer shows the expiry it got.
    pub fn record(
        &self,
        token: &Token,
        creator: Option<(&str, Option<SystemTime>)>,
    ) -> Result<TokenRecord, TokenError> {
        let mut record = record(token, &self.name, &self.permissions, self.expires_in)?;
        if let Some((id, creator_expires_at)) = creator {
            record.created_by = Some(id.to_owned());
            if let Some(limit) = creator_expires_at {
                record.expires_at = Some(record.expires_at.map_or(limit, |at| at.min(limit)));
            }
        }
        Ok(record)
    }
}

/// Checks the name of a token a person creates: [`check_name`], and none of
/// [`RESERVED_NAMES`].
pub fn check_new_name(name: &str) -> Result<(), TokenError> {
    check_name(name)?;
    let name = name.trim();
    if RESERVED_NAMES.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(TokenError::NameReserved);
    }
    Ok(())
}

/// The record to store for `token`, which expires `expires_in` from now (never when `None`),
/// made by no token.
pub fn record(
    token: &Token,
    name: &str,
    permissions: &[Permission],
    expires_in: Option<Duration>,
) -> Result<TokenRecord, TokenError> {
    check_name(name)?;
    if permissions.is_empty() {
        return Err(TokenError::NoPermission);
    }
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|_| TokenError::Entropy)?;
    let created_at = truncate_to_micros(SystemTime::now());
    Ok(TokenRecord {
        id: format!("tok_{:016x}", u64::from_le_bytes(id)),
        name: name.to_owned(),
        hash: token.hash(),
        permissions: permissions.iter().map(|p| p.name().to_owned()).collect(),
        created_at,
        expires_at: expires_in.map(|d| created_at + d),
        created_by: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_alphanumeric_and_differ() {
        let a = Token::generate().unwrap();
        let b = Token::generate().unwrap();
        assert_eq!(a.expose().len(), 46);
        assert!(a.expose().starts_with(PREFIX));
        assert!(a.expose()[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(a.expose(), b.expose());
        assert_eq!(format!("{a:?}"), "Token(<redacted>)");
    }

    #[test]
    fn a_token_hashes_to_the_sha256_of_its_text() {
        let a = Token::generate().unwrap();
        assert_eq!(a.hash(), hash(a.expose()));
        let b = Token::generate().unwrap();
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn permission_lists_are_checked() {
        assert_eq!(
            Permission::parse_list("iam.write, iam.read,iam.read").unwrap(),
            vec![Permission::IamRead, Permission::IamWrite]
        );
        assert_eq!(
            Permission::parse_list("iam.read,admin"),
            Err(TokenError::UnknownPermission("admin".into()))
        );
        assert_eq!(
            Permission::parse_list(""),
            Err(TokenError::UnknownPermission(String::new()))
        );
    }

    #[test]
    fn a_request_reports_every_broken_rule_and_a_child_expires_with_its_creator() {
        let errors = TokenRequest::check("system", &[], Some("0s")).unwrap_err();
        assert_eq!(
            errors,
            [
                (RequestField::Name, TokenError::NameReserved),
                (RequestField::Permissions, TokenError::NoPermission),
                (RequestField::Expiry, TokenError::Expiry),
            ]
        );
        let request = TokenRequest::check("ci", &["iam.read", "iam.read"], None).unwrap();
        assert_eq!(request.permissions(), [Permission::IamRead]);
        let token = Token::generate().unwrap();
        let soon = SystemTime::now() + Duration::from_secs(5);
        let child = request.record(&token, Some(("tok_1", Some(soon)))).unwrap();
        assert_eq!(child.expires_at, Some(soon));
        assert_eq!(child.created_by.as_deref(), Some("tok_1"));
        let day = TokenRequest::check("ci", &["iam.read"], Some("86400s")).unwrap();
        assert_eq!(
            day.record(&token, Some(("tok_1", Some(soon))))
                .unwrap()
                .expires_at,
            Some(soon)
        );
        let free = day.record(&token, Some(("tok_1", None))).unwrap();
        assert!(free.expires_at.unwrap() > soon);
        assert_eq!(day.record(&token, None).unwrap().created_by, None);
    }

    #[test]
    fn expiries_are_whole_seconds_up_to_nine_digits() {
        assert_eq!(parse_expiry("86400s"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_expiry("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_expiry("999999999s"), Ok(MAX_EXPIRY));
        for bad in ["0s", "1.5s", "-5s", "1000000000s", "86400", "1d", ""] {
            assert_eq!(parse_expiry(bad), Err(TokenError::Expiry), "{bad}");
        }
    }

    #[test]
    fn names_and_given_tokens_are_checked() {
        assert_eq!(check_name("ci"), Ok(()));
        assert_eq!(check_name(" "), Err(TokenError::NameLength));
        assert_eq!(check_name("a\nb"), Err(TokenError::NameControl));
        assert_eq!(check_name(&"x".repeat(201)), Err(TokenError::NameLength));
        assert_eq!(
            Token::from_given("short").unwrap_err(),
            TokenError::GivenShape
        );
        for reserved in [
            "system",
            "command line",
            "bootstrap-admin",
            " System ",
            "BOOTSTRAP-ADMIN",
        ] {
            assert_eq!(
                check_new_name(reserved),
                Err(TokenError::NameReserved),
                "{reserved:?}"
            );
        }
        assert_eq!(check_new_name("systems"), Ok(()));
        assert!(Token::from_given(&"k".repeat(40)).is_ok());
        assert_eq!(
            Token::from_given(&format!("{} x", "k".repeat(40))).unwrap_err(),
            TokenError::GivenShape
        );
        assert_eq!(
            record(&Token::generate().unwrap(), "ci", &[], None).unwrap_err(),
            TokenError::NoPermission
        );
    }
}
