//! The three-way decision for one entity: from what the file holds, what
//! the database holds and what both last agreed on (the base), what must
//! happen. Pure, so that every case is tested here; the engine gathers
//! the inputs and carries the decision out.

use super::file::Stat;

/// What both sides last agreed on for one entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Base {
    /// SHA-256 of the agreed content.
    pub sha256: String,
    /// The database version it came from.
    pub db_version: u64,
    /// The file's stat tuple right after.
    pub stat: Stat,
}

/// The file side, once settled.
#[derive(Clone, Copy, Debug)]
pub enum FileSide<'a> {
    /// No file.
    Missing,
    /// Content with this hash, read under this stat tuple.
    Content {
        /// SHA-256 of the content.
        sha256: &'a str,
        /// Stat tuple of the read.
        stat: Stat,
    },
}

/// The database side.
#[derive(Clone, Copy, Debug)]
pub struct DbSide<'a> {
    /// The row version.
    pub version: u64,
    /// SHA-256 of the content.
    pub sha256: &'a str,
}

/// What to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Both sides are as agreed.
    Nothing,
    /// Both sides hold the same content: record it as the new base.
    Agree,
    /// Only the file changed (or it is new): write it to the database.
    Import,
    /// Only the database changed (or the file is missing from a mirrored
    /// collection): write the file.
    WriteFile,
    /// Both changed differently: keep the database, save the file aside.
    Conflict,
    /// Deleted in the database, unchanged on disk: remove the file.
    RemoveFile,
    /// The file is gone, the database unchanged: report it, delete nothing.
    Orphaned,
    /// Both are gone: forget the base.
    Forget,
}

/// Decides for one entity. `mirrored`: its collection has a directory
/// under the sync root, so database content without a file is written.
pub fn decide(
    file: FileSide<'_>,
    db: Option<DbSide<'_>>,
    base: Option<&Base>,
    mirrored: bool,
) -> Decision {
    use Decision::*;
    match (file, db, base) {
        (FileSide::Content { sha256, stat }, Some(db), Some(base)) => {
            let file_changed = sha256 != base.sha256;
            // By content: a version number can come back after a delete.
            let db_changed = db.sha256 != base.sha256;
            match (file_changed, db_changed) {
                (false, false) if stat == base.stat && db.version == base.db_version => Nothing,
                (false, false) => Agree,
                (true, false) => Import,
                (false, true) => WriteFile,
                (true, true) if sha256 == db.sha256 => Agree,
                (true, true) => Conflict,
            }
        }
        (FileSide::Content { sha256, .. }, Some(db), None) if sha256 == db.sha256 => Agree,
        (FileSide::Content { .. }, Some(_), None) => Conflict,
        (FileSide::Content { sha256, .. }, None, Some(base)) if sha256 == base.sha256 => RemoveFile,
        (FileSide::Content { .. }, None, _) => Import,
        (FileSide::Missing, Some(db), Some(base)) if db.sha256 != base.sha256 && mirrored => {
            WriteFile
        }
        (FileSide::Missing, Some(_), Some(_)) => Orphaned,
        (FileSide::Missing, Some(_), None) if mirrored => WriteFile,
        (FileSide::Missing, None, Some(_)) => Forget,
        (FileSide::Missing, _, None) => Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::{Decision::*, *};

    const STAT: Stat = Stat {
        size: 3,
        mtime_ns: 1,
        inode: 7,
    };

    fn base(sha256: &str, db_version: u64) -> Base {
        Base {
            sha256: sha256.to_owned(),
            db_version,
            stat: STAT,
        }
    }

    fn file(sha256: &str) -> FileSide<'_> {
        FileSide::Content { sha256, stat: STAT }
    }

    fn db(sha256: &str, version: u64) -> Option<DbSide<'_>> {
        Some(DbSide { version, sha256 })
    }

    #[test]
    fn one_side_changed_flows_to_the_other() {
        let agreed = base("a", 1);
        assert_eq!(decide(file("a"), db("a", 1), Some(&agreed), true), Nothing);
        assert_eq!(decide(file("b"), db("a", 1), Some(&agreed), true), Import);
        assert_eq!(
            decide(file("a"), db("b", 2), Some(&agreed), true),
            WriteFile
        );
    }

    #[test]
    fn both_changed_agree_or_conflict() {
        let agreed = base("a", 1);
        assert_eq!(decide(file("b"), db("b", 2), Some(&agreed), true), Agree);
        assert_eq!(decide(file("b"), db("c", 2), Some(&agreed), true), Conflict);
        // A new version with the agreed content is no change.
        assert_eq!(decide(file("b"), db("a", 5), Some(&agreed), true), Import);
        assert_eq!(decide(file("a"), db("a", 5), Some(&agreed), true), Agree);
        // Deleted and created again at version 1 with other content: a change.
        assert_eq!(
            decide(file("a"), db("z", 1), Some(&agreed), true),
            WriteFile
        );
    }

    #[test]
    fn a_touched_file_only_refreshes_the_base() {
        let agreed = base("a", 1);
        let touched = FileSide::Content {
            sha256: "a",
            stat: Stat {
                mtime_ns: 2,
                ..STAT
            },
        };
        assert_eq!(decide(touched, db("a", 1), Some(&agreed), true), Agree);
    }

    #[test]
    fn without_a_base_equal_content_agrees_and_different_content_conflicts() {
        assert_eq!(decide(file("a"), db("a", 3), None, true), Agree);
        assert_eq!(decide(file("a"), db("b", 3), None, true), Conflict);
        assert_eq!(decide(file("a"), None, None, true), Import);
    }

    #[test]
    fn deletions_are_never_automatic_on_the_database_side() {
        let agreed = base("a", 1);
        assert_eq!(
            decide(FileSide::Missing, db("a", 1), Some(&agreed), true),
            Orphaned
        );
        assert_eq!(
            decide(FileSide::Missing, db("b", 2), Some(&agreed), true),
            WriteFile
        );
        // A collection whose directory the user removed is not brought back.
        assert_eq!(
            decide(FileSide::Missing, db("b", 2), Some(&agreed), false),
            Orphaned
        );
        assert_eq!(decide(FileSide::Missing, None, Some(&agreed), true), Forget);
        // Deleted in the database: the file goes only if nobody edited it.
        assert_eq!(decide(file("a"), None, Some(&agreed), true), RemoveFile);
        assert_eq!(decide(file("b"), None, Some(&agreed), true), Import);
    }

    #[test]
    fn only_mirrored_collections_get_files() {
        assert_eq!(decide(FileSide::Missing, db("a", 1), None, true), WriteFile);
        assert_eq!(decide(FileSide::Missing, db("a", 1), None, false), Nothing);
        assert_eq!(decide(FileSide::Missing, None, None, true), Nothing);
    }
}
