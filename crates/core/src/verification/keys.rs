//! The keys that sign issued codes and subjects: HMAC-SHA256 under 32 random bytes, read
//! from a key file (`ID:BASE64`, one key a line). The first key signs, every key verifies,
//! so keys rotate without invalidating pending codes. A key never enters the store.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::{CodeSubject, TypedCode};
use secretgen_engine::generator_type::GeneratorType;
use secretgen_engine::registry::InstanceId;

/// The length of a key, in bytes.
pub const KEY_BYTES: usize = 32;

/// The longest key id accepted.
const MAX_KEY_ID: usize = 32;

/// What a code's keyed hash covers, before its fields (so a subject's hash is never a code's).
const CODE_DOMAIN: &[u8] = b"secretgen code v1";
/// What a subject's keyed hash covers, before its fields.
const SUBJECT_DOMAIN: &[u8] = b"secretgen subject v1";

/// A key's name in the key file: 1 to 32 of `A-Z a-z 0-9 _ . -`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// `id` as a key id, or `None` when it is not one.
    pub fn new(id: &str) -> Option<KeyId> {
        let ok = !id.is_empty()
            && id.len() <= MAX_KEY_ID
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        ok.then(|| KeyId(id.to_owned()))
    }

    /// The id as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subject's keyed hash under one key: what the store finds a subject by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubjectMac {
    /// The key that made it.
    pub key_id: KeyId,
    /// HMAC-SHA256 of the instance, the type and the subject.
    pub mac: [u8; 32],
}

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// A line is not `ID:BASE64` of 32 bytes, or repeats an id.
    #[error("{path}, line {line}: {why}")]
    Line {
        /// The file.
        path: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The file names no key.
    #[error("{0}: holds no key (one a line, `ID:BASE64` of 32 random bytes)")]
    Empty(String),
}

/// The keys of a deployment: the first signs new codes and subjects, every one verifies.
/// Zeroed on drop; `Debug` shows the ids only.
#[derive(Clone)]
pub struct Keyring {
    keys: Vec<(KeyId, Zeroizing<[u8; KEY_BYTES]>)>,
}

impl Keyring {
    /// The keys of a key file's text (`path` names it in errors): one `ID:BASE64` a line;
    /// blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str, path: &str) -> Result<Keyring, KeyError> {
        let mut keys: Vec<(KeyId, Zeroizing<[u8; KEY_BYTES]>)> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why| KeyError::Line {
                path: path.to_owned(),
                line: n + 1,
                why,
            };
            let (id, encoded) = line
                .split_once(':')
                .ok_or_else(|| bad("is not `ID:BASE64`"))?;
            let id = KeyId::new(id.trim())
                .ok_or_else(|| bad("its id must be 1 to 32 of A-Z, a-z, 0-9, `_`, `.`, `-`"))?;
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| bad("its key is not base64"))?,
            );
            let key: [u8; KEY_BYTES] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| bad("its key is not 32 bytes"))?;
            if keys.iter().any(|(have, _)| *have == id) {
                return Err(bad("repeats the id of an earlier key"));
            }
            keys.push((id, Zeroizing::new(key)));
        }
        if keys.is_empty() {
            return Err(KeyError::Empty(path.to_owned()));
        }
        Ok(Keyring { keys })
    }

    /// The keys of the file at `path`.
    pub fn load(path: &Path) -> Result<Keyring, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        Keyring::parse(&text, &path.display().to_string())
    }

    /// The keys of the file at `path`, which is made first when there is none (one new key,
    /// `k1`, mode 0600, synced with its directory); whether it was made.
    pub fn load_or_create(path: &Path) -> Result<(Keyring, bool), KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let ring = Keyring::generate();
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Ok(mut file) => {
                let text = ring.file_text();
                file.write_all(text.as_bytes()).map_err(io)?;
                file.sync_all().map_err(io)?;
                if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
                }
                Ok((ring, true))
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok((Keyring::load(path)?, false)),
            Err(e) => Err(io(e)),
        }
    }

    /// One new key, `k1`, of 32 bytes from the OS.
    pub fn generate() -> Keyring {
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        getrandom::fill(key.as_mut()).expect("the OS gives random bytes");
        Keyring {
            keys: vec![(KeyId("k1".to_owned()), key)],
        }
    }

    /// The key file's text of these keys.
    pub fn file_text(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::new());
        for (id, key) in &self.keys {
            text.push_str(id.as_str());
            text.push(':');
            text.push_str(&Zeroizing::new(STANDARD.encode(key.as_ref())));
            text.push('\n');
        }
        text
    }

    /// The key that signs.
    pub fn signing(&self) -> &KeyId {
        &self.keys[0].0
    }

    /// The ids of the keys, the signing key first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.iter().map(|(id, _)| id)
    }

    fn key(&self, id: &str) -> Option<&[u8; KEY_BYTES]> {
        self.keys
            .iter()
            .find(|(have, _)| have.as_str() == id)
            .map(|(_, key)| &**key)
    }

    /// The subject's keyed hash under every key, the signing key's first.
    pub fn subject_macs(
        &self,
        instance: &InstanceId,
        generator_type: GeneratorType,
        subject: &CodeSubject,
    ) -> Vec<SubjectMac> {
        self.keys
            .iter()
            .map(|(id, key)| SubjectMac {
                key_id: id.clone(),
                mac: mac(
                    key,
                    SUBJECT_DOMAIN,
                    &[
                        instance.as_str().as_bytes(),
                        generator_type.full_name().as_bytes(),
                        subject.as_bytes(),
                    ],
                )
                .finalize()
                .into_bytes()
                .into(),
            })
            .collect()
    }

    /// The keyed hash of the code `what` names, `code`, under the signing key.
    pub fn sign_code(&self, what: &CodeFor<'_>, code: &str) -> (KeyId, [u8; 32]) {
        let (key_id, key) = &self.keys[0];
        let tag = code_mac(key, what, code).finalize().into_bytes().into();
        (key_id.clone(), tag)
    }

    /// Whether `typed` is the code `what` names, whose keyed hash under key `key_id` is
    /// `tag`, compared in constant time; false when the key is no longer in the file.
    pub fn verify_code(
        &self,
        key_id: &str,
        tag: &[u8],
        what: &CodeFor<'_>,
        typed: &TypedCode,
    ) -> bool {
        match self.key(key_id) {
            Some(key) => code_mac(key, what, typed.as_str())
                .verify_slice(tag)
                .is_ok(),
            None => false,
        }
    }
}

/// What a code's keyed hash covers besides the code: the instance, the type, the subject and
/// the code's id.
#[derive(Clone, Copy, Debug)]
pub struct CodeFor<'a> {
    /// The instance.
    pub instance: &'a InstanceId,
    /// The type.
    pub generator_type: GeneratorType,
    /// The subject.
    pub subject: &'a CodeSubject,
    /// The code's id.
    pub id: &'a str,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// HMAC-SHA256 under `key` of `domain` and `fields`, each field after its length (so no two
/// lists of fields hash the same bytes).
fn mac(key: &[u8; KEY_BYTES], domain: &[u8], fields: &[&[u8]]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(domain);
    for field in fields {
        mac.update(&(field.len() as u64).to_be_bytes());
        mac.update(field);
    }
    mac
}

fn code_mac(key: &[u8; KEY_BYTES], what: &CodeFor<'_>, code: &str) -> Hmac<Sha256> {
    mac(
        key,
        CODE_DOMAIN,
        &[
            what.instance.as_str().as_bytes(),
            what.generator_type.full_name().as_bytes(),
            what.subject.as_bytes(),
            what.id.as_bytes(),
            code.as_bytes(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> InstanceId {
        InstanceId::new("i1").unwrap()
    }

    fn typed(code: &str) -> TypedCode {
        TypedCode::new(code, "0123456789").unwrap()
    }

    #[test]
    fn a_key_file_is_ids_and_32_base64_bytes_a_line() {
        let a = STANDARD.encode([1u8; 32]);
        let b = STANDARD.encode([2u8; 32]);
        let ring = Keyring::parse(&format!("# rotated\nnew:{a}\n\nold:{b}\n"), "f").unwrap();
        assert_eq!(
            ring.ids().map(KeyId::as_str).collect::<Vec<_>>(),
            ["new", "old"]
        );
        for (text, line) in [
            ("k1\n".to_owned(), 1),
            (format!("k 1:{a}"), 1),
            ("k1:not base64!".to_owned(), 1),
            (format!("k1:{}", STANDARD.encode([1u8; 31])), 1),
            (format!("k1:{a}\nk1:{b}"), 2),
        ] {
            match Keyring::parse(&text, "f") {
                Err(KeyError::Line { line: got, .. }) => assert_eq!(got, line, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            Keyring::parse("# none\n", "f"),
            Err(KeyError::Empty(_))
        ));
        let debug = format!("{ring:?}");
        assert!(!debug.contains(&a[..8]), "{debug}");
    }

    #[test]
    fn a_code_verifies_under_its_key_after_a_rotation_and_nowhere_else() {
        let old = Keyring::generate();
        let (alice, bob) = (
            CodeSubject::new("alice").unwrap(),
            CodeSubject::new("bob").unwrap(),
        );
        let (i1, i2) = (instance(), InstanceId::new("i2").unwrap());
        let t = GeneratorType::OtpSms;
        let what = CodeFor {
            instance: &i1,
            generator_type: t,
            subject: &alice,
            id: "vc_1",
        };
        let (key_id, tag) = old.sign_code(&what, "123456");
        let checks = |ring: &Keyring, what: &CodeFor<'_>, code: &str| {
            ring.verify_code(key_id.as_str(), &tag, what, &typed(code))
        };
        assert!(checks(&old, &what, "123456"));
        // Each field is covered: the code, the id, the subject, the type, the instance.
        assert!(!checks(&old, &what, "123457"));
        assert!(!checks(&old, &CodeFor { id: "vc_2", ..what }, "123456"));
        assert!(!checks(
            &old,
            &CodeFor {
                subject: &bob,
                ..what
            },
            "123456"
        ));
        let email = CodeFor {
            generator_type: GeneratorType::OtpEmail,
            ..what
        };
        assert!(!checks(&old, &email, "123456"));
        assert!(!checks(
            &old,
            &CodeFor {
                instance: &i2,
                ..what
            },
            "123456"
        ));

        // A new key signs; the old one, listed second, still verifies its codes.
        let new_key = STANDARD.encode([7u8; 32]);
        let rotated =
            Keyring::parse(&format!("k2:{new_key}\n{}", old.file_text().as_str()), "f").unwrap();
        assert_eq!(rotated.signing().as_str(), "k2");
        assert!(checks(&rotated, &what, "123456"));
        // Without the old key, its codes no longer verify.
        let only_new = Keyring::parse(&format!("k2:{new_key}"), "f").unwrap();
        assert!(!checks(&only_new, &what, "123456"));
        // A subject's hash under each key, the signing key's first, differs per key and type.
        let macs = rotated.subject_macs(&i1, t, &alice);
        assert_eq!(macs[1], old.subject_macs(&i1, t, &alice)[0]);
        assert_ne!(macs[0].mac, macs[1].mac);
        assert_ne!(
            macs[0].mac,
            rotated.subject_macs(&i1, GeneratorType::OtpEmail, &alice)[0].mac
        );
    }

    #[test]
    fn a_key_file_is_made_once_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("verify.key");
        let (made, created) = Keyring::load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let (read, created) = Keyring::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(made.file_text().as_str(), read.file_text().as_str());
    }
}
