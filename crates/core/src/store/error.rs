//! Why a store could not do what was asked: a kind that callers act on, a message for
//! people, and the driver's or the operating system's error beneath it, if any.

use std::error::Error;
use std::fmt;
use std::path::Path;

/// The error beneath a [`StoreError`].
type Source = Box<dyn Error + Send + Sync + 'static>;

/// Why the store could not do what was asked.
///
/// Its message says what failed and where; [`Error::source`] gives the error of SQLite,
/// PostgreSQL or the file system that made it fail, when there is one.
#[derive(Debug)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    source: Option<Source>,
}

/// The kinds of [`StoreError`], for callers that act on them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The data directory or the database file cannot be created, opened or written.
    Unavailable,
    /// Another process holds the data directory.
    Locked,
    /// The file is not a secretgen store, or its contents are damaged.
    Corrupt,
    /// The write is not allowed on this handle (read-only, or not the writer), or conflicts
    /// with what is stored.
    Refused,
    /// A live token already has the name a new token was to have.
    NameTaken,
}

impl StoreError {
    pub(crate) fn new(kind: StoreErrorKind, message: impl Into<String>) -> StoreError {
        StoreError {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// This error, caused by `source` (a driver's or the file system's error).
    pub(crate) fn caused_by(mut self, source: impl Into<Source>) -> StoreError {
        self.source = Some(source.into());
        self
    }

    /// This error with `what` before its message (`what: message`); its kind and source
    /// stay.
    pub(crate) fn context(mut self, what: impl fmt::Display) -> StoreError {
        self.message = format!("{what}: {}", self.message);
        self
    }

    /// What went wrong, broadly.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl Error for StoreError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn Error + 'static))
    }
}

/// A store that cannot be reached, created or written.
pub(crate) fn unavailable(message: String) -> StoreError {
    StoreError::new(StoreErrorKind::Unavailable, message)
}

/// A store file that is damaged, incomplete or foreign, and was left as it is.
pub(crate) fn corrupt(path: &Path, why: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Corrupt,
        format!(
            "{} is not a usable secretgen store: {why}; it was left as it is \
             (restore it from a backup, or move it away to start afresh)",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_and_kind_survive_a_context() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let e = StoreError::new(StoreErrorKind::Unavailable, "cannot read x")
            .caused_by(io)
            .context("cannot open the store");
        assert_eq!(e.to_string(), "cannot open the store: cannot read x");
        assert_eq!(e.kind(), StoreErrorKind::Unavailable);
        let source = e.source().expect("a source");
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::NotFound)
        );
        assert!(
            StoreError::new(StoreErrorKind::Refused, "no")
                .source()
                .is_none()
        );
    }
}
