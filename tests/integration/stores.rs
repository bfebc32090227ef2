//! The content store a sync test runs against: the daemon's own SQLite
//! ("native", the default) or a MyBB forum's database in a private MariaDB
//! server (`--mybb`). The sync promises (editor saves, conflicts, rescans)
//! are the same on both, so their tests are written once, as an `async fn`
//! taking a [`Backend`], and [`both_stores!`] runs each on both.
//!
//! What differs between the stores, and what a test body must therefore ask
//! the [`Store`] instead of assuming: MyBB template sets exist only once
//! created in its admin panel ([`Store::create_set`]); a set also shows the
//! forum's master templates ([`Store::own`], [`Store::masters`]); MyBB
//! strips trailing whitespace from what it stores ([`Store::stored`]); and
//! its versions are opaque tokens, so a test compares a version with one it
//! was given, never with 1, 2, 3.

use outpost::proto::v1 as pb;
use tempfile::TempDir;

use crate::{
    harness::{Daemon, DaemonBuilder},
    mariadb::{Forum, ForumSpec, MariaDb, SqlMode},
    sync_support::sync_builder,
};

/// `--mybb-poll` of a MyBB daemon: much shorter than the default (1 s),
/// so that a change made in the forum's database is seen quickly.
const MYBB_POLL: &str = "100ms";

/// Which content store a test's daemon uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The daemon's own SQLite database.
    Native,
    /// A MyBB 1.8 forum's database (`--mybb`), in a private MariaDB server.
    Mybb,
}

impl Backend {
    /// Starts `builder`'s daemon on this store and waits until it serves.
    /// None (after saying why on stderr) when the store is MyBB and MariaDB
    /// is not installed: the test then returns early. With
    /// `OUTPOST_REQUIRE_REAL` set (CI) that is a panic instead, so nothing
    /// skips silently there.
    pub fn start_with(self, builder: DaemonBuilder) -> Option<Store> {
        match self {
            Backend::Native => Some(Store::native(builder.start())),
            Backend::Mybb => {
                let db = MariaDb::start(SqlMode::Strict)?;
                let forum = db.create_forum(&ForumSpec::default());
                let root = tempfile::Builder::new()
                    .prefix("outpost-forum")
                    .tempdir()
                    .expect("a temporary forum directory");
                // config.php names the client's default socket; the URL
                // points at this test's server instead.
                forum.write_root(root.path(), "localhost");
                let daemon = builder
                    .arg("--mybb")
                    .arg(root.path())
                    .arg("--mybb-poll")
                    .arg(MYBB_POLL)
                    .env("OUTPOST_MYBB_DATABASE", &forum.socket_url(&db))
                    .start();
                Some(Store {
                    daemon,
                    mybb: Some(Mybb {
                        forum,
                        _root: root,
                        db,
                    }),
                })
            }
        }
    }

    /// Starts a daemon with [`crate::sync_support::FAST_SETTLE`] and `extra`
    /// arguments (as [`crate::sync_support::sync_daemon`]) on this store.
    pub fn sync_daemon(self, extra: &[&str]) -> Option<Store> {
        self.start_with(sync_builder(extra))
    }
}

/// A running daemon and the store it syncs with. The daemon is stopped
/// before the forum's database server is killed (fields drop in order), so
/// that it never sees its database vanish.
pub struct Store {
    /// The daemon.
    pub daemon: Daemon,
    /// The forum, for a MyBB store.
    mybb: Option<Mybb>,
}

/// A forum and the server holding its database.
struct Mybb {
    forum: Forum,
    /// The forum's directory (`inc/config.php`, `cache/themes/`).
    _root: TempDir,
    /// Last: killed after everything that uses it.
    db: MariaDb,
}

impl Store {
    /// A daemon on the native store.
    pub fn native(daemon: Daemon) -> Self {
        Self { daemon, mybb: None }
    }

    /// Makes template set `name` exist, as far as the store needs it to
    /// before templates are put into it: natively a put creates its set; a
    /// MyBB set is a `templatesets` row that only the admin panel creates
    /// (a put into a missing set is NOT_FOUND), so it is inserted here.
    pub fn create_set(&self, name: &str) {
        if let Some(mybb) = &self.mybb {
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == ' '),
                "a set name needing no quoting: {name:?}"
            );
            self.sql(&format!(
                "INSERT INTO {} (title) VALUES ('{name}')",
                mybb.forum.table("templatesets")
            ));
        }
    }

    /// Runs `sql` in the forum's database, as the admin panel or another
    /// tool changing it behind the daemon's back; its output. Only for a
    /// MyBB store.
    pub fn sql(&self, sql: &str) -> String {
        let mybb = self.mybb.as_ref().expect("SQL needs a MyBB store");
        mybb.db.sql(&mybb.forum.database, sql)
    }

    /// The prefixed name of the forum's table `name`, for [`Store::sql`];
    /// None for the native store.
    pub fn table(&self, name: &str) -> Option<String> {
        self.mybb.as_ref().map(|mybb| mybb.forum.table(name))
    }

    /// The content the store holds after `content` was saved: MyBB strips
    /// trailing whitespace as PHP's `rtrim` does; the native store keeps
    /// every byte.
    pub fn stored(&self, content: &str) -> String {
        match self.mybb {
            None => content.to_owned(),
            Some(_) => content
                .trim_end_matches([' ', '\t', '\n', '\r', '\0', '\x0b'])
                .to_owned(),
        }
    }

    /// The titles of the master templates every MyBB set shows where it
    /// has no row of its own (none natively).
    pub fn masters(&self) -> Vec<String> {
        self.mybb
            .as_ref()
            .map_or_else(Vec::new, |mybb| mybb.forum.master_titles())
    }

    /// `titles` without the master templates' (all of them natively): the
    /// templates a test put into a set itself.
    pub fn own(&self, titles: impl IntoIterator<Item = String>) -> Vec<String> {
        let masters = self.masters();
        titles
            .into_iter()
            .filter(|title| !masters.contains(title))
            .collect()
    }

    /// `templates` without the master templates a MyBB set shows (all of
    /// them natively), in their order.
    pub fn own_templates(&self, templates: Vec<pb::Template>) -> Vec<pb::Template> {
        let masters = self.masters();
        templates
            .into_iter()
            .filter(|template| {
                let title = &template.key.as_ref().expect("a template has a key").title;
                !masters.contains(title)
            })
            .collect()
    }
}

/// Runs the test body `$name` (an `async fn` taking a [`Backend`]) once
/// per store, as the tests `$name::native` and `$name::mybb`: one body,
/// so both stores are held to the same promises. The tests are
/// `#[tokio::test]` unless attributes are given.
macro_rules! both_stores {
    ($name:ident) => {
        both_stores!(#[tokio::test] $name);
    };
    ($(#[$attr:meta])+ $name:ident) => {
        mod $name {
            use crate::stores::Backend;

            $(#[$attr])+
            async fn native() {
                super::$name(Backend::Native).await;
            }

            $(#[$attr])+
            async fn mybb() {
                super::$name(Backend::Mybb).await;
            }
        }
    };
}
pub(crate) use both_stores;
