//! Finding what changed in a forum's database: MyBB's admin panel (or any
//! other tool) writes its tables directly and tells nobody. Every interval
//! one statement reads a fingerprint of each table (row count and
//! checksums over every row); only a table whose fingerprint moved is
//! read again, as per-row checksums without content, and only the titles
//! or stylesheet names whose rows changed are handed to the reconciler. A
//! changed set list, theme tree or template groups change the layout
//! itself: that is a rescan. The stylesheet lists outpost writes into
//! `themes` are not part of its fingerprint.
//!
//! The poller owns what it learns: the forum's template groups (which the
//! layout follows) and the backend's status — last poll, server version,
//! and since when the database cannot be reached. When it comes back, a
//! rescan makes every change that waited due at once.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::watch;

use super::{
    MybbStore, Row,
    templates::{GLOBAL_SET, GLOBAL_SID, MASTER_SID},
};
use crate::sync::{Backend, Key, Kind, engine::SyncEngine, layout::TemplateGroups};

/// The fingerprints of the tables, in one row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Prints {
    templates: String,
    templatesets: String,
    templategroups: String,
    themes: String,
    themestylesheets: String,
}

/// A row's identity, time and checksum, without its content.
type RowPrint = (i64, i64, i64);

/// Rows by set and title, or by theme and stylesheet name.
type RowPrints = BTreeMap<(i64, String), Vec<RowPrint>>;

/// Watches one forum's database.
pub struct Poller {
    store: Arc<MybbStore>,
    interval: Duration,
    groups: watch::Sender<TemplateGroups>,
    backend: watch::Sender<Backend>,
    prints: Option<Prints>,
    templates: RowPrints,
    sheets: RowPrints,
    sets: BTreeMap<i64, String>,
    themes: BTreeMap<i64, String>,
    duplicates: BTreeSet<(i64, String)>,
}

impl Poller {
    pub(super) fn new(
        store: Arc<MybbStore>,
        interval: Duration,
        groups: watch::Sender<TemplateGroups>,
        backend: watch::Sender<Backend>,
    ) -> Self {
        Self {
            store,
            interval,
            groups,
            backend,
            prints: None,
            templates: RowPrints::new(),
            sheets: RowPrints::new(),
            sets: BTreeMap::new(),
            themes: BTreeMap::new(),
            duplicates: BTreeSet::new(),
        }
    }

    /// Reads what the forum holds now — groups, sets, every row's
    /// checksum — before the engine's first rescan, so that a change made
    /// after it is not missed. A database that cannot be reached now is
    /// only reported.
    pub async fn first_look(&mut self) {
        self.poll(None).await;
    }

    /// Polls until the task is dropped, handing changes to `engine`.
    pub async fn run(mut self, engine: SyncEngine) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.poll(Some(&engine)).await;
        }
    }

    /// One poll: the fingerprints, then whatever moved.
    async fn poll(&mut self, engine: Option<&SyncEngine>) {
        let result = self.look(engine).await;
        let was_unreachable = self.backend.borrow().unreachable_since.is_some();
        match result {
            Ok(()) => {
                self.backend.send_modify(|backend| {
                    backend.last_poll = Some(SystemTime::now());
                    backend.unreachable_since = None;
                    backend.error.clear();
                });
                if was_unreachable {
                    tracing::info!(database = %self.store.forum.database, "the forum database is back");
                    if let Some(engine) = engine {
                        engine.rescan_soon();
                    }
                }
            }
            Err(err) => {
                if !was_unreachable {
                    tracing::warn!(%err, "the forum database cannot be reached; changes wait for it");
                    if let Some(engine) = engine {
                        engine.warn(
                            None,
                            &format!("the forum database cannot be reached: {err}; changes wait and are retried"),
                        );
                    }
                }
                self.backend.send_modify(|backend| {
                    backend
                        .unreachable_since
                        .get_or_insert_with(SystemTime::now);
                    backend.error = err;
                });
            }
        }
    }

    async fn look(&mut self, engine: Option<&SyncEngine>) -> Result<(), String> {
        if self.backend.borrow().server_version.is_empty() {
            let version = self
                .store
                .db
                .version()
                .await
                .map_err(|err| err.to_string())?;
            self.backend
                .send_modify(|backend| backend.server_version = version);
        }
        let prints = self.fingerprints().await?;
        let before = self.prints.clone().unwrap_or_default();
        let mut rescan = false;
        if prints.templategroups != before.templategroups {
            self.load_groups().await?;
            rescan = true;
        }
        if prints.templatesets != before.templatesets {
            self.load_sets().await?;
            rescan = true;
        }
        if prints.themes != before.themes {
            self.load_themes().await?;
            rescan = true;
        }
        let mut changed = Vec::new();
        if prints.templates != before.templates {
            let t = &self.store.tables;
            let now = self
                .row_prints(format!(
                    "SELECT CAST(sid AS {{int}}) AS collection, title AS name, CAST(tid AS {{int}}) AS id, \
                     CAST(dateline AS {{int}}) AS at, CAST({{crc}}(template) AS {{int}}) AS crc FROM {}",
                    t.templates
                ))
                .await?;
            changed.extend(self.template_keys(&changed_rows(&self.templates, &now)));
            self.report_duplicates(&now, engine);
            self.templates = now;
        }
        if prints.themestylesheets != before.themestylesheets {
            let t = &self.store.tables;
            let now = self
                .row_prints(format!(
                    "SELECT CAST(tid AS {{int}}) AS collection, name, CAST(sid AS {{int}}) AS id, \
                     CAST(lastmodified AS {{int}}) AS at, CAST({{crc}}(stylesheet) AS {{int}}) AS crc FROM {}",
                    t.themestylesheets
                ))
                .await?;
            changed.extend(self.stylesheet_keys(&changed_rows(&self.sheets, &now)));
            self.sheets = now;
        }
        if let Some(engine) = engine.filter(|_| !rescan && self.prints.is_some()) {
            for key in &changed {
                engine.changed_in_database(key);
            }
        }
        if let Some(engine) = engine.filter(|_| rescan && self.prints.is_some()) {
            engine.rescan_soon();
        }
        self.prints = Some(prints);
        Ok(())
    }

    /// Every table's fingerprint, in one statement (`BIT_XOR` needs
    /// PostgreSQL 14 or later).
    async fn fingerprints(&self) -> Result<Prints, String> {
        let t = &self.store.tables;
        let print = |table: &str, columns: &str| {
            format!(
                "(SELECT CONCAT(COUNT(*), ':', COALESCE(SUM({{crc}}(CONCAT_WS({{sep}}, {columns}))), 0), ':', \
                 COALESCE(BIT_XOR({{crc}}(CONCAT_WS({{sep}}, {columns}))), 0)) FROM {table})"
            )
        };
        let sql = format!(
            "SELECT {} AS templates, {} AS templatesets, {} AS templategroups, {} AS themes, {} AS themestylesheets",
            print(&t.templates, "tid, sid, title, dateline, template"),
            print(&t.templatesets, "sid, title"),
            print(&t.templategroups, "gid, prefix"),
            print(&t.themes, "tid, name, pid"),
            print(
                &t.themestylesheets,
                "sid, name, tid, attachedto, lastmodified, stylesheet"
            ),
        );
        let rows = self
            .store
            .db
            .rows(&sql, &[])
            .await
            .map_err(|err| err.to_string())?;
        let row = rows.first().ok_or("the fingerprints are no row")?;
        let get = |column: &str| row.text(column).map_err(|err| err.to_string());
        Ok(Prints {
            templates: get("templates")?,
            templatesets: get("templatesets")?,
            templategroups: get("templategroups")?,
            themes: get("themes")?,
            themestylesheets: get("themestylesheets")?,
        })
    }

    async fn load_groups(&mut self) -> Result<(), String> {
        let sql = format!("SELECT prefix FROM {}", self.store.tables.templategroups);
        let prefixes = self
            .select(&sql)
            .await?
            .iter()
            .map(|row| row.text("prefix"))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| err.to_string())?;
        self.groups.send_replace(TemplateGroups::prefixes(prefixes));
        Ok(())
    }

    async fn load_sets(&mut self) -> Result<(), String> {
        let sql = format!(
            "SELECT CAST(sid AS {{int}}) AS id, title AS name FROM {}",
            self.store.tables.templatesets
        );
        self.sets = self.names(&sql).await?;
        Ok(())
    }

    async fn load_themes(&mut self) -> Result<(), String> {
        let sql = format!(
            "SELECT CAST(tid AS {{int}}) AS id, name FROM {}",
            self.store.tables.themes
        );
        self.themes = self.names(&sql).await?;
        Ok(())
    }

    /// The rows portable statement `sql` selects.
    async fn select(&self, sql: &str) -> Result<Vec<Row>, String> {
        self.store
            .db
            .rows(sql, &[])
            .await
            .map_err(|err| err.to_string())
    }

    /// Names by id, from a statement selecting `id` and `name`.
    async fn names(&self, sql: &str) -> Result<BTreeMap<i64, String>, String> {
        self.select(sql)
            .await?
            .iter()
            .map(|row| Ok((row.int("id")?, row.text("name")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|err| err.to_string())
    }

    /// Rows' prints, from a statement selecting `collection` id, `name`,
    /// row `id`, time (`at`) and checksum (`crc`).
    async fn row_prints(&self, sql: String) -> Result<RowPrints, String> {
        let mut prints = RowPrints::new();
        for row in self.select(&sql).await? {
            let print = (|| {
                let print = (row.int("id")?, row.int("at")?, row.int("crc")?);
                Ok::<_, sqlx::Error>(((row.int("collection")?, row.text("name")?), print))
            })();
            let (key, print) = print.map_err(|err| err.to_string())?;
            prints.entry(key).or_default().push(print);
        }
        for rows in prints.values_mut() {
            rows.sort_unstable();
        }
        Ok(prints)
    }

    /// The stylesheets the changed rows can change: a theme's row shows in
    /// it and the themes below it, so every theme's sheet of that name is
    /// looked at.
    fn stylesheet_keys(&self, changed: &BTreeSet<(i64, String)>) -> Vec<Key> {
        let names: BTreeSet<&String> = changed.iter().map(|(_, name)| name).collect();
        let mut keys = Vec::new();
        for theme in self.themes.values() {
            keys.extend(names.iter().map(|name| Key {
                kind: Kind::Stylesheet,
                collection: theme.clone(),
                name: (*name).clone(),
            }));
        }
        keys
    }

    /// The templates the changed rows can change: a set's own row its
    /// set's, a master row every set's.
    fn template_keys(&self, changed: &BTreeSet<(i64, String)>) -> Vec<Key> {
        let key = |set: &str, title: &str| Key {
            kind: Kind::Template,
            collection: set.to_owned(),
            name: title.to_owned(),
        };
        let mut keys = Vec::new();
        for (sid, title) in changed {
            match *sid {
                MASTER_SID => keys.extend(self.sets.values().map(|set| key(set, title))),
                GLOBAL_SID => keys.push(key(GLOBAL_SET, title)),
                sid => keys.extend(self.sets.get(&sid).map(|set| key(set, title))),
            }
        }
        keys
    }

    /// Warns once about each title with more than one row in a set.
    fn report_duplicates(&mut self, prints: &RowPrints, engine: Option<&SyncEngine>) {
        let duplicates: BTreeSet<(i64, String)> = prints
            .iter()
            .filter(|(_, rows)| rows.len() > 1)
            .map(|(key, _)| key.clone())
            .collect();
        if let Some(engine) = engine {
            for (sid, title) in duplicates.difference(&self.duplicates) {
                let set = match *sid {
                    MASTER_SID => "the master templates".to_owned(),
                    GLOBAL_SID => GLOBAL_SET.to_owned(),
                    sid => self
                        .sets
                        .get(&sid)
                        .map_or_else(|| format!("set {sid}"), |set| format!("set {set:?}")),
                };
                engine.warn(
                    None,
                    &format!(
                        "template {title:?} has {} rows in {set}: MyBB shows visitors whichever the database returns first, and outpost syncs none of them until all but one are deleted",
                        prints[&(*sid, title.clone())].len()
                    ),
                );
            }
        }
        self.duplicates = duplicates;
    }
}

/// The (collection, name) pairs whose rows differ between `before` and
/// `now`.
fn changed_rows(before: &RowPrints, now: &RowPrints) -> BTreeSet<(i64, String)> {
    let gone = before.keys().filter(|key| !now.contains_key(*key));
    let differ = now
        .iter()
        .filter(|(key, rows)| before.get(*key) != Some(*rows))
        .map(|(key, _)| key);
    gone.chain(differ).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_titles_are_reported() {
        let prints = |rows: &[(i64, &str, RowPrint)]| {
            let mut prints = RowPrints::new();
            for (sid, title, row) in rows {
                prints
                    .entry((*sid, (*title).to_owned()))
                    .or_default()
                    .push(*row);
            }
            prints
        };
        let before = prints(&[
            (-2, "header", (1, 10, 100)),
            (-2, "footer", (2, 10, 200)),
            (1, "index", (3, 10, 300)),
        ]);
        let now = prints(&[
            (-2, "header", (1, 10, 100)),
            (-2, "footer", (2, 11, 201)),
            (1, "header", (4, 12, 400)),
        ]);
        let changed: Vec<_> = changed_rows(&before, &now).into_iter().collect();
        assert_eq!(
            changed,
            [
                (-2, "footer".to_owned()),
                (1, "header".to_owned()),
                (1, "index".to_owned())
            ]
        );
    }
}
