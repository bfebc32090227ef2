//! Templates as MyBB's admin panel shows and saves them. A set (`sid` ≥ 1)
//! shows its own row for a title, else the master row (`sid` −2); "Global
//! Templates" are the rows of `sid` −1. A save stores the content without
//! trailing whitespace, with `version` = the forum's `version_code`,
//! `status` = '' and `dateline` = now; the first save of a master
//! template inserts the set's own row, and a master row is never written.
//! Two own rows for one title (no unique key stops them) are reported,
//! never picked between.

use std::collections::BTreeMap;

use super::{MybbStore, Row, compare, from_unix, rules, unix_now, version};
use crate::sync::{
    Collection, ContentError, Item, Key, Kind, Trim, Written, names, sha256, validate_content,
};

/// The set MyBB calls "Global Templates".
pub const GLOBAL_SET: &str = "Global Templates";
/// `sid` of global templates.
pub const GLOBAL_SID: i64 = -1;
/// `sid` of the master templates every set inherits.
pub const MASTER_SID: i64 = -2;

/// One row of the templates table.
#[derive(Debug)]
struct TemplateRow {
    tid: i64,
    sid: i64,
    title: String,
    dateline: i64,
    template: String,
}

/// What a set shows for one title.
enum Shown {
    /// The set's own row (or a global template).
    Own(TemplateRow),
    /// The master row, inherited.
    Master(TemplateRow),
}

impl Shown {
    fn row(&self) -> &TemplateRow {
        match self {
            Self::Own(row) | Self::Master(row) => row,
        }
    }
}

fn template_row(row: &Row) -> Result<TemplateRow, sqlx::Error> {
    Ok(TemplateRow {
        tid: row.int("tid")?,
        sid: row.int("sid")?,
        title: row.text("title")?,
        dateline: row.int("dateline")?,
        template: row.text("template")?,
    })
}

fn item(set: &str, row: &TemplateRow) -> Item {
    let sha256 = sha256(&row.template);
    Item {
        key: Key {
            kind: Kind::Template,
            collection: set.to_owned(),
            name: row.title.clone(),
        },
        version: version(row.tid, row.dateline, &sha256),
        updated_at: from_unix(row.dateline),
        size: row.template.len() as u64,
        sha256,
        content: row.template.clone(),
    }
}

/// What a set shows, by title, from its own and the master rows; a title
/// with two rows of one kind is an error naming them.
fn shown(sid: i64, rows: Vec<TemplateRow>) -> BTreeMap<String, Result<Shown, String>> {
    let mut own: BTreeMap<String, Vec<TemplateRow>> = BTreeMap::new();
    let mut master: BTreeMap<String, Vec<TemplateRow>> = BTreeMap::new();
    for row in rows {
        let by_title = if row.sid == sid {
            &mut own
        } else {
            &mut master
        };
        by_title.entry(row.title.clone()).or_default().push(row);
    }
    let mut shown = BTreeMap::new();
    for (title, rows) in master {
        shown.insert(title, single(rows, "master").map(Shown::Master));
    }
    for (title, rows) in own {
        shown.insert(title, single(rows, "own").map(Shown::Own));
    }
    shown
}

/// The one row, or why there is not one.
fn single(mut rows: Vec<TemplateRow>, what: &str) -> Result<TemplateRow, String> {
    if rows.len() == 1 {
        return Ok(rows.remove(0));
    }
    let tids: Vec<String> = rows.iter().map(|row| row.tid.to_string()).collect();
    Err(format!(
        "has {} {what} rows (tid {}) for one title; MyBB shows visitors whichever the database returns first. Delete all but one in MyBB's admin panel (or the database)",
        rows.len(),
        tids.join(", ")
    ))
}

impl MybbStore {
    /// Every template set, and "Global Templates".
    pub(super) async fn template_sets(&self) -> Result<Vec<Collection>, ContentError> {
        let t = &self.tables;
        let sql = format!(
            "SELECT s.title AS title, \
             (SELECT CAST(COUNT(DISTINCT {{exact}}i.title) AS {{int}}) FROM {templates} i WHERE i.sid IN (-2, s.sid)) AS items, \
             (SELECT CAST(MAX(i.dateline) AS {{int}}) FROM {templates} i WHERE i.sid = s.sid) AS updated \
             FROM {sets} s \
             UNION ALL SELECT '{GLOBAL_SET}', CAST(COUNT(DISTINCT {{exact}}title) AS {{int}}), CAST(MAX(dateline) AS {{int}}) \
             FROM {templates} WHERE sid = -1 \
             ORDER BY title",
            templates = t.templates,
            sets = t.templatesets,
        );
        let rows = self.rows(&sql, &[]).await?;
        rows.iter()
            .map(|row| {
                Ok(Collection {
                    name: row.text("title")?,
                    items: row.int("items")? as u32,
                    updated_at: row.int_or_null("updated")?.map(from_unix),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|err| self.storage(err))
    }

    /// The `sid` of set `set`: NotFound if the forum has none of that
    /// title, Refused if it has two.
    async fn set_id(&self, set: &str) -> Result<i64, ContentError> {
        let sql = format!(
            "SELECT CAST(sid AS {{int}}) AS sid, title FROM {} WHERE title = ?",
            self.tables.templatesets
        );
        let rows = self.rows(&sql, &[set.into()]).await?;
        let mut sids = Vec::new();
        for row in &rows {
            // MySQL's collation ignores case: compare exactly here.
            let title = row.text("title").map_err(|err| self.storage(err))?;
            if title == set {
                sids.push(row.int("sid").map_err(|err| self.storage(err))?);
            }
        }
        if set == GLOBAL_SET {
            sids.push(GLOBAL_SID);
        }
        match sids.as_slice() {
            [sid] => Ok(*sid),
            [] => Err(ContentError::NotFound(format!(
                "no template set {set:?} in the forum (sets are created in MyBB's admin panel)"
            ))),
            _ => Err(ContentError::Refused(format!(
                "the forum has {} template sets titled {set:?}; rename all but one in MyBB's admin panel",
                sids.len()
            ))),
        }
    }

    /// The rows set `sid` shows from: its own and, for a normal set, the
    /// master rows; only those of `title` when given.
    async fn rows_of(
        &self,
        sid: i64,
        title: Option<&str>,
    ) -> Result<Vec<TemplateRow>, ContentError> {
        let sids = if sid == GLOBAL_SID {
            "sid = ?"
        } else {
            "sid IN (-2, ?)"
        };
        let filter = if title.is_some() {
            " AND title = ?"
        } else {
            ""
        };
        let sql = format!(
            "SELECT CAST(tid AS {{int}}) AS tid, CAST(sid AS {{int}}) AS sid, title, \
             CAST(dateline AS {{int}}) AS dateline, template FROM {} WHERE {sids}{filter}",
            self.tables.templates
        );
        let mut binds = vec![sid.into()];
        binds.extend(title.map(Into::into));
        let rows = self.rows(&sql, &binds).await?;
        let rows = rows
            .iter()
            .map(template_row)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|err| self.storage(err))?;
        // MySQL's collation ignores case: compare exactly here.
        Ok(rows
            .into_iter()
            .filter(|row| title.is_none_or(|title| row.title == title))
            .collect())
    }

    /// The templates set `set` shows, by title; titles with duplicate rows
    /// are left out (reading one of them says why).
    pub(super) async fn templates(&self, set: &str) -> Result<Vec<Item>, ContentError> {
        let sid = self.set_id(set).await?;
        let rows = self.rows_of(sid, None).await?;
        Ok(shown(sid, rows)
            .into_values()
            .filter_map(|shown| shown.ok().map(|shown| item(set, shown.row())))
            .collect())
    }

    /// What set `sid` shows for `title`, if anything.
    async fn shown_for(
        &self,
        sid: i64,
        set: &str,
        title: &str,
    ) -> Result<Option<Shown>, ContentError> {
        let rows = self.rows_of(sid, Some(title)).await?;
        match shown(sid, rows).remove(title) {
            None => Ok(None),
            Some(Ok(shown)) => Ok(Some(shown)),
            Some(Err(reason)) => Err(ContentError::Refused(format!(
                "template {set}/{title} {reason}"
            ))),
        }
    }

    /// One template as its set shows it.
    pub(super) async fn template(&self, key: &Key) -> Result<Item, ContentError> {
        let sid = self.set_id(&key.collection).await?;
        match self.shown_for(sid, &key.collection, &key.name).await? {
            Some(shown) => Ok(item(&key.collection, shown.row())),
            None => Err(ContentError::NotFound(format!("no {key}"))),
        }
    }

    /// Saves a template as the admin panel does (see the module).
    pub(super) async fn put_template(
        &self,
        key: &Key,
        content: &str,
        expected: Option<u64>,
    ) -> Result<Written, ContentError> {
        let content = Trim::TrailingWhitespace.apply(content);
        validate_content(content).map_err(|_| ContentError::Invalid {
            field: "content",
            reason: "is only whitespace, which MyBB would store as an empty template (delete it instead)".to_owned(),
        })?;
        rules::check_template(content).map_err(|reason| ContentError::Invalid {
            field: "content",
            reason: reason.to_owned(),
        })?;
        names::validate("key.title", &key.name)?;
        let sid = self.set_id(&key.collection).await?;
        let current = self.shown_for(sid, &key.collection, &key.name).await?;
        let actual = current
            .as_ref()
            .map_or(0, |shown| item(&key.collection, shown.row()).version);
        compare(key, expected, actual)?;
        let columns = self.columns().await?;
        self.check_fits("content", &columns.template, content)?;
        let now = unix_now();
        let t = &self.tables;
        let (tid, created) = match &current {
            Some(Shown::Own(row)) if row.template == content => {
                // Nothing to write: MyBB would store the same text.
                return Ok(Written {
                    item: item(&key.collection, row),
                    created: false,
                    warnings: Vec::new(),
                });
            }
            Some(Shown::Own(row)) => {
                let sql = format!(
                    "UPDATE {} SET template = ?, version = ?, status = '', dateline = ? \
                     WHERE tid = ? AND sid = ? AND dateline = ? AND {{exact}}template = ?",
                    t.templates
                );
                let binds = [
                    content.into(),
                    self.forum.version_code.to_string().into(),
                    now.into(),
                    row.tid.into(),
                    row.sid.into(),
                    row.dateline.into(),
                    (&row.template).into(),
                ];
                let affected = self.run(&sql, &binds).await?;
                if affected != 1 {
                    return Err(self.lost_race(key, expected.unwrap_or(actual)).await);
                }
                (row.tid, false)
            }
            shown => {
                self.check_fits("key.title", &columns.title, &key.name)?;
                let sql = format!(
                    "INSERT INTO {} (title, template, sid, version, status, dateline) VALUES (?, ?, ?, ?, '', ?)",
                    t.templates
                );
                let binds = [
                    (&key.name).into(),
                    content.into(),
                    sid.into(),
                    self.forum.version_code.to_string().into(),
                    now.into(),
                ];
                let tid = self.insert(&sql, &binds, "tid").await?;
                // No unique key stops a second own row: if one appeared
                // meanwhile, ours goes again and the race is lost.
                let own = self.rows_of(sid, Some(&key.name)).await?;
                if own.iter().filter(|row| row.sid == sid).count() > 1 {
                    let sql = format!("DELETE FROM {} WHERE tid = ?", t.templates);
                    self.run(&sql, &[tid.into()]).await?;
                    return Err(self.lost_race(key, expected.unwrap_or(actual)).await);
                }
                (tid, shown.is_none())
            }
        };
        let select = format!(
            "SELECT template AS content, CAST(dateline AS {{int}}) AS changed_at FROM {} WHERE tid = ?",
            t.templates
        );
        self.read_back(key, select, tid, content, now).await?;
        let row = TemplateRow {
            tid,
            sid,
            title: key.name.clone(),
            dateline: now,
            template: content.to_owned(),
        };
        Ok(Written {
            item: item(&key.collection, &row),
            created,
            warnings: Vec::new(),
        })
    }

    /// Deletes a set's own row (MyBB's "revert to original": the master
    /// shows again) or a global template; a master row is refused.
    pub(super) async fn delete_template(
        &self,
        key: &Key,
        expected: Option<u64>,
    ) -> Result<u64, ContentError> {
        let sid = self.set_id(&key.collection).await?;
        let row = match self.shown_for(sid, &key.collection, &key.name).await? {
            None => return Err(ContentError::NotFound(format!("no {key}"))),
            Some(Shown::Master(_)) => {
                return Err(ContentError::Refused(format!(
                    "{key} is MyBB's master template, which is never changed; only a set's own copy can be deleted"
                )));
            }
            Some(Shown::Own(row)) => row,
        };
        let actual = item(&key.collection, &row).version;
        compare(key, expected, actual)?;
        let sql = format!(
            "DELETE FROM {} WHERE tid = ? AND dateline = ? AND {{exact}}template = ?",
            self.tables.templates
        );
        let binds = [row.tid.into(), row.dateline.into(), (&row.template).into()];
        let affected = self.run(&sql, &binds).await?;
        if affected != 1 {
            return Err(self.lost_race(key, actual).await);
        }
        Ok(actual)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tid: i64, sid: i64, title: &str) -> TemplateRow {
        TemplateRow {
            tid,
            sid,
            title: title.to_owned(),
            dateline: 1,
            template: format!("t{tid}"),
        }
    }

    #[test]
    fn a_set_shows_its_own_rows_over_the_master() {
        let rows = vec![
            row(1, MASTER_SID, "header"),
            row(2, MASTER_SID, "footer"),
            row(3, 1, "header"),
            row(4, 1, "custom"),
            row(5, MASTER_SID, "index"),
            row(6, MASTER_SID, "index"),
            row(7, 1, "twice"),
            row(8, 1, "twice"),
        ];
        let shown = shown(1, rows);
        let tid = |title: &str| match &shown[title] {
            Ok(Shown::Own(row)) => ("own", row.tid),
            Ok(Shown::Master(row)) => ("master", row.tid),
            Err(reason) => panic!("{title}: {reason}"),
        };
        assert_eq!(tid("header"), ("own", 3));
        assert_eq!(tid("footer"), ("master", 2));
        assert_eq!(tid("custom"), ("own", 4));
        let twice = shown["twice"].as_ref().err().unwrap();
        assert!(twice.contains("2 own rows (tid 7, 8)"), "{twice}");
        assert!(shown["index"].as_ref().err().unwrap().contains("master"));
    }
}
