//! Sync: database-held content — template sets of templates, themes of
//! stylesheets — and its mirror on disk. This module holds the content
//! model, its rules (names, limits) and the store interface; the database
//! side is behind [`ContentStore`] (the daemon's SQLite today, a forum's
//! database next) and sync's own bookkeeping behind [`ledger::Ledger`], so
//! that neither the [`engine`] nor the [`service`] front ends call learns
//! which database it talks to.

pub mod atomic;
pub mod engine;
pub mod events;
pub mod file;
pub mod layout;
pub mod ledger;
pub mod names;
pub mod reconcile;
pub mod service;

use std::{future::Future, path::PathBuf, time::SystemTime};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use layout::TemplateGroups;

/// Largest content accepted, in bytes.
pub const MAX_CONTENT: usize = 2 << 20;

/// The two kinds of synced content.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Templates, in template sets.
    Template,
    /// Stylesheets, in themes.
    Stylesheet,
}

/// Names one piece of content.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Template or stylesheet.
    pub kind: Kind,
    /// The template set or theme.
    pub collection: String,
    /// The template's title or the stylesheet's name.
    pub name: String,
}

/// One template or stylesheet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// What it is.
    pub key: Key,
    /// Its content (empty in listings without content).
    pub content: String,
    /// Incremented on every change; the compare-and-swap token.
    pub version: u64,
    /// When it last changed.
    pub updated_at: SystemTime,
    /// Size of the content in bytes.
    pub size: u64,
    /// SHA-256 of the content, lowercase hex.
    pub sha256: String,
}

/// What a write stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The item as stored.
    pub item: Item,
    /// Whether the write created it.
    pub created: bool,
    /// What the write could not do as it should (a forum's cache file it
    /// could not write, say); the write itself holds.
    pub warnings: Vec<String>,
}

/// What a store strips from the content it stores. Files are compared
/// with the database as stripped, so that an editor adding a final
/// newline to a template MyBB stores without one changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    /// Content is stored as it is.
    Nothing,
    /// Trailing whitespace as PHP's `rtrim` strips it (space, tab,
    /// newline, carriage return, NUL, vertical tab).
    TrailingWhitespace,
}

impl Trim {
    /// `content` as the store would keep it.
    pub fn apply(self, content: &str) -> &str {
        match self {
            Self::Nothing => content,
            Self::TrailingWhitespace => {
                content.trim_end_matches([' ', '\t', '\n', '\r', '\0', '\x0b'])
            }
        }
    }
}

/// The database behind sync, as a status report shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backend {
    /// `native` (the daemon's SQLite) or `mybb`.
    pub kind: &'static str,
    /// The database server's version, once connected.
    pub server_version: String,
    /// The database (or file) name.
    pub database: String,
    /// The forum's table prefix.
    pub prefix: String,
    /// The forum's directory.
    pub forum_root: Option<PathBuf>,
    /// When the database was last polled for changes.
    pub last_poll: Option<SystemTime>,
    /// Since when the database cannot be reached, if it cannot.
    pub unreachable_since: Option<SystemTime>,
    /// Why, while it cannot (never holding a password).
    pub error: String,
}

/// A template set or theme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collection {
    pub name: String,
    /// How many items it holds.
    pub items: u32,
    /// When any of its items last changed.
    pub updated_at: Option<SystemTime>,
}

/// A change made differently on disk and in the database: the database
/// version was kept, the disk version waits in a conflict copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// Identifier to resolve it by.
    pub id: String,
    /// The content.
    pub key: Key,
    /// The synced file (holds the database version).
    pub path: PathBuf,
    /// The copy holding the disk version.
    pub copy_path: PathBuf,
    /// The database version kept.
    pub db_version: u64,
    /// SHA-256 of the database content.
    pub db_sha256: String,
    /// SHA-256 of the disk content.
    pub disk_sha256: String,
    /// When it was detected.
    pub detected_at: SystemTime,
}

/// Why a content operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    /// A name or the content is not acceptable.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field, as named in the API.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// No such collection or item.
    #[error("{0}")]
    NotFound(String),
    /// The compare-and-swap failed.
    #[error("{key} is at version {actual}, not {expected}")]
    VersionMismatch {
        /// What was written to.
        key: String,
        /// The version the caller expected.
        expected: u64,
        /// The current version (0: it does not exist).
        actual: u64,
    },
    /// The request cannot be carried out in the current state (a symbolic
    /// link where a directory must be, a conflict copy gone).
    #[error("{0}")]
    Refused(String),
    /// The database failed.
    #[error("{0}")]
    Storage(String),
}

/// The database side of sync.
pub trait ContentStore: Send + Sync + 'static {
    /// How templates are grouped in directories, now and as it changes.
    fn template_groups(&self) -> watch::Receiver<TemplateGroups>;
    /// What this store strips from content of `kind` it stores, which
    /// comparisons with files must see past.
    fn trim(&self, kind: Kind) -> Trim {
        let _ = kind;
        Trim::Nothing
    }
    /// The backend as a status report shows it.
    fn backend(&self) -> Backend;
    /// Every collection of `kind`, by name.
    fn collections(
        &self,
        kind: Kind,
    ) -> impl Future<Output = Result<Vec<Collection>, ContentError>> + Send;
    /// The items of a collection, by name; NotFound for an unknown one.
    fn items(
        &self,
        kind: Kind,
        collection: &str,
        with_content: bool,
    ) -> impl Future<Output = Result<Vec<Item>, ContentError>> + Send;
    /// One item with its content.
    fn get(&self, key: &Key) -> impl Future<Output = Result<Item, ContentError>> + Send;
    /// Creates or replaces an item (creating its collection), if its current
    /// version is `expected` (0: it must not exist) when given.
    fn put(
        &self,
        key: &Key,
        content: &str,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<Written, ContentError>> + Send;
    /// Deletes an item if its version is `expected` when given; returns the
    /// deleted version.
    fn delete(
        &self,
        key: &Key,
        expected: Option<u64>,
    ) -> impl Future<Output = Result<u64, ContentError>> + Send;
}

/// SHA-256 of `content`, lowercase hex.
pub fn sha256(content: &str) -> String {
    Sha256::digest(content.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Checks content before it may be stored.
pub fn validate_content(content: &str) -> Result<(), ContentError> {
    if content.is_empty() {
        return Err(ContentError::Invalid {
            field: "content",
            reason: "must not be empty (delete the item instead)".to_owned(),
        });
    }
    if content.len() > MAX_CONTENT {
        return Err(ContentError::Invalid {
            field: "content",
            reason: format!(
                "{} bytes is more than the {MAX_CONTENT} allowed",
                content.len()
            ),
        });
    }
    if content.contains('\0') {
        return Err(ContentError::Invalid {
            field: "content",
            reason: "must not contain NUL".to_owned(),
        });
    }
    Ok(())
}

impl Kind {
    /// The request field that names a collection of this kind.
    pub fn collection_field(self) -> &'static str {
        match self {
            Self::Template => "set",
            Self::Stylesheet => "theme",
        }
    }
}

impl Key {
    /// A template's key; both names must be harmless file names (they
    /// become path components), and so must the title's group.
    pub fn template(set: String, title: String) -> Result<Self, ContentError> {
        names::validate("key.set", &set)?;
        names::validate("key.title", &title)?;
        let group = TemplateGroups::ByPrefix.of(&title).unwrap_or_default();
        if names::is_ignored(&group) {
            return Err(ContentError::Invalid {
                field: "key.title",
                reason: format!(
                    "its group {group:?} (the part before the first '_') looks like an editor's temporary file name, which sync ignores"
                ),
            });
        }
        Ok(Self {
            kind: Kind::Template,
            collection: set,
            name: title,
        })
    }

    /// A stylesheet's key; both names must be harmless file names.
    pub fn stylesheet(theme: String, name: String) -> Result<Self, ContentError> {
        names::validate("key.theme", &theme)?;
        names::validate("key.name", &name)?;
        Ok(Self {
            kind: Kind::Stylesheet,
            collection: theme,
            name,
        })
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Kind::Template => "template",
            Kind::Stylesheet => "stylesheet",
        };
        write!(f, "{kind} {}/{}", self.collection, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_come_from_the_title_prefix() {
        let group = |title| TemplateGroups::ByPrefix.of(title).unwrap();
        assert_eq!(group("header_welcomeblock"), "header");
        assert_eq!(group("index"), "ungrouped");
        assert_eq!(group("_odd"), "ungrouped");
    }

    #[test]
    fn keys_are_checked_by_field() {
        let field = |result: Result<Key, ContentError>| match result {
            Err(ContentError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert!(Key::template("Default".into(), "header_welcome".into()).is_ok());
        assert_eq!(field(Key::template("../x".into(), "t".into())), "key.set");
        assert_eq!(field(Key::template("s".into(), "".into())), "key.title");
        assert_eq!(
            field(Key::template("s".into(), "4913_x".into())),
            "key.title"
        );
        assert_eq!(field(Key::stylesheet("t".into(), "a/b".into())), "key.name");
    }

    #[test]
    fn trimming_strips_what_php_rtrim_strips() {
        let trim = Trim::TrailingWhitespace;
        assert_eq!(trim.apply("  a b \t\r\n\0\x0b"), "  a b");
        assert_eq!(trim.apply("a\u{a0}"), "a\u{a0}");
        assert_eq!(trim.apply("\n\n"), "");
        assert_eq!(Trim::Nothing.apply("a\n"), "a\n");
    }

    #[test]
    fn content_limits() {
        assert!(validate_content("x").is_ok());
        assert!(validate_content("").is_err());
        assert!(validate_content(&"x".repeat(MAX_CONTENT + 1)).is_err());
        assert_eq!(
            sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
