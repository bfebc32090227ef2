//! Stylesheets as MyBB's admin panel shows and saves them. A theme shows,
//! for each name, the row of the highest `tid` among the theme and its
//! ancestors (following `pid`); theme 1, the master style, is read-only.
//! Saving an inherited sheet copies it into the theme first. A save then
//! does what the admin panel does, in its order — skip a step and
//! visitors keep the old CSS:
//! 1. the row: `stylesheet`, `cachefile` = name, `lastmodified` = now;
//! 2. the cached file and its minified copy under
//!    `cache/themes/theme{tid}/`, atomically here (MyBB writes in place),
//!    with an mtime no older than `lastmodified` (MyBB links a cached
//!    file only then); when they cannot be written, `cachefile` becomes
//!    `css.php?stylesheet={sid}` and the write warns, as MyBB does;
//! 3. the theme's serialized stylesheet list and display order, and its
//!    descendants' ([`theme_list`](super::theme_list));
//! 4. the `default_theme` cache visitors' pages are built from.

use std::{
    collections::BTreeMap,
    fs, io,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use super::{
    MybbStore, compare, css, from_unix,
    theme_list::{self, DefaultThemeRow, SheetRow, ThemeRow},
    unix_now, version,
};
use crate::sync::{Collection, ContentError, Item, Key, Kind, names, sha256};

/// MyBB's master style: never edited.
const MASTER_THEME: u32 = 1;

/// A theme row.
#[derive(Clone, Debug)]
struct Theme {
    pub tid: u32,
    pub pid: u32,
    pub name: String,
    pub def: bool,
    pub properties: String,
    pub stylesheets: String,
}

/// A stylesheet row, with its content.
#[derive(Clone, Debug)]
struct Sheet {
    sid: u32,
    tid: u32,
    name: String,
    attachedto: String,
    lastmodified: i64,
    stylesheet: String,
}

/// Every theme and every sheet, read together.
struct Styles {
    themes: Vec<Theme>,
    sheets: Vec<Sheet>,
}

impl Styles {
    fn theme_rows(&self) -> Vec<ThemeRow> {
        self.themes
            .iter()
            .map(|theme| ThemeRow {
                tid: theme.tid,
                pid: theme.pid,
                properties: theme.properties.clone(),
            })
            .collect()
    }

    fn sheet_rows(&self) -> Vec<SheetRow> {
        self.sheets
            .iter()
            .map(|sheet| SheetRow {
                sid: sheet.sid,
                tid: sheet.tid,
                name: sheet.name.clone(),
                attachedto: sheet.attachedto.clone(),
                lastmodified: sheet.lastmodified.max(0) as u64,
            })
            .collect()
    }

    /// The theme named `name`: NotFound if none, Refused if two.
    fn theme(&self, name: &str) -> Result<&Theme, ContentError> {
        let found: Vec<&Theme> = self.themes.iter().filter(|t| t.name == name).collect();
        match found.as_slice() {
            [theme] => Ok(theme),
            [] => Err(ContentError::NotFound(format!(
                "no theme {name:?} in the forum (themes are created in MyBB's admin panel)"
            ))),
            _ => Err(ContentError::Refused(format!(
                "the forum has {} themes named {name:?}; rename all but one in MyBB's admin panel",
                found.len()
            ))),
        }
    }

    /// What `theme` shows, by name: the row of the highest `tid` in its
    /// chain; two rows of that theme for one name are an error naming
    /// them.
    fn shown(
        &self,
        theme: &Theme,
    ) -> Result<BTreeMap<String, Result<&Sheet, String>>, ContentError> {
        let chain = theme_list::ancestry(theme.tid, &self.theme_rows())
            .map_err(|err| ContentError::Refused(format!("theme {:?}: {err}", theme.name)))?;
        let mut best: BTreeMap<&str, Vec<&Sheet>> = BTreeMap::new();
        for sheet in self.sheets.iter().filter(|s| chain.contains(&s.tid)) {
            let rows = best.entry(&sheet.name).or_default();
            match rows.first().map(|first| first.tid.cmp(&sheet.tid)) {
                Some(std::cmp::Ordering::Greater) => {}
                Some(std::cmp::Ordering::Equal) => rows.push(sheet),
                _ => *rows = vec![sheet],
            }
        }
        Ok(best
            .into_iter()
            .map(|(name, rows)| {
                let shown = match rows.as_slice() {
                    [sheet] => Ok(*sheet),
                    _ => {
                        let sids: Vec<String> = rows.iter().map(|s| s.sid.to_string()).collect();
                        Err(format!(
                            "has {} rows (sid {}) in theme {}; MyBB shows whichever the database returns first. Delete all but one in MyBB's admin panel",
                            rows.len(),
                            sids.join(", "),
                            rows[0].tid
                        ))
                    }
                };
                (name.to_owned(), shown)
            })
            .collect())
    }
}

fn item(theme: &str, sheet: &Sheet) -> Item {
    let sha256 = sha256(&sheet.stylesheet);
    Item {
        key: Key {
            kind: Kind::Stylesheet,
            collection: theme.to_owned(),
            name: sheet.name.clone(),
        },
        version: version(sheet.sid.into(), sheet.lastmodified, &sha256),
        updated_at: from_unix(sheet.lastmodified),
        size: sheet.stylesheet.len() as u64,
        sha256,
        content: sheet.stylesheet.clone(),
    }
}

impl MybbStore {
    /// Every theme and every stylesheet row.
    async fn styles(&self) -> Result<Styles, ContentError> {
        let t = &self.tables;
        let sql = format!(
            "SELECT CAST(tid AS {{int}}) AS tid, CAST(pid AS {{int}}) AS pid, name, \
             CAST(def AS {{int}}) AS def, properties, stylesheets FROM {} ORDER BY tid",
            t.themes
        );
        let rows = self.rows(&sql, &[]).await?;
        let themes = rows
            .iter()
            .map(|row| {
                Ok(Theme {
                    tid: row.int("tid")? as u32,
                    pid: row.int("pid")? as u32,
                    name: row.text("name")?,
                    def: row.int("def")? == 1,
                    properties: row.text("properties")?,
                    stylesheets: row.text("stylesheets")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(|err| self.storage(err))?;
        let sql = format!(
            "SELECT CAST(sid AS {{int}}) AS sid, CAST(tid AS {{int}}) AS tid, name, attachedto, \
             CAST(lastmodified AS {{int}}) AS lastmodified, stylesheet FROM {} ORDER BY tid DESC",
            t.themestylesheets
        );
        let rows = self.rows(&sql, &[]).await?;
        let sheets = rows
            .iter()
            .map(|row| {
                Ok(Sheet {
                    sid: row.int("sid")? as u32,
                    tid: row.int("tid")? as u32,
                    name: row.text("name")?,
                    attachedto: row.text("attachedto")?,
                    lastmodified: row.int("lastmodified")?,
                    stylesheet: row.text("stylesheet")?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(|err| self.storage(err))?;
        Ok(Styles { themes, sheets })
    }

    /// Every theme, with the number of sheets it shows.
    pub(super) async fn themes(&self) -> Result<Vec<Collection>, ContentError> {
        let styles = self.styles().await?;
        let mut themes = Vec::new();
        for theme in &styles.themes {
            let Ok(shown) = styles.shown(theme) else {
                continue;
            };
            let sheets: Vec<&Sheet> = shown
                .values()
                .filter_map(|s| s.as_ref().ok())
                .copied()
                .collect();
            themes.push(Collection {
                name: theme.name.clone(),
                items: sheets.len() as u32,
                updated_at: sheets.iter().map(|s| s.lastmodified).max().map(from_unix),
            });
        }
        themes.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(themes)
    }

    /// The sheets theme `name` shows; names with duplicate rows are left
    /// out (reading one says why).
    pub(super) async fn stylesheets(&self, name: &str) -> Result<Vec<Item>, ContentError> {
        let styles = self.styles().await?;
        let theme = styles.theme(name)?;
        Ok(styles
            .shown(theme)?
            .into_values()
            .filter_map(|shown| shown.ok().map(|sheet| item(name, sheet)))
            .collect())
    }

    /// One sheet as its theme shows it.
    pub(super) async fn stylesheet(&self, key: &Key) -> Result<Item, ContentError> {
        let styles = self.styles().await?;
        let theme = styles.theme(&key.collection)?;
        match styles.shown(theme)?.remove(&key.name) {
            Some(Ok(sheet)) => Ok(item(&key.collection, sheet)),
            Some(Err(reason)) => Err(ContentError::Refused(format!("{key} {reason}"))),
            None => Err(ContentError::NotFound(format!("no {key}"))),
        }
    }

    /// Saves a sheet as the admin panel does (see the module).
    pub(super) async fn put_stylesheet(
        &self,
        key: &Key,
        content: &str,
        expected: Option<u64>,
    ) -> Result<crate::sync::Written, ContentError> {
        names::validate("key.name", &key.name)?;
        let styles = self.styles().await?;
        let theme = styles.theme(&key.collection)?.clone();
        if theme.tid == MASTER_THEME {
            return Err(ContentError::Refused(format!(
                "{key}: {:?} is MyBB's master style, which the admin panel never edits; edit the sheet in a theme below it",
                theme.name
            )));
        }
        let current = match styles.shown(&theme)?.remove(&key.name) {
            Some(Ok(sheet)) => Some(sheet.clone()),
            Some(Err(reason)) => return Err(ContentError::Refused(format!("{key} {reason}"))),
            None => None,
        };
        let actual = current
            .as_ref()
            .map_or(0, |sheet| item(&key.collection, sheet).version);
        compare(key, expected, actual)?;
        let columns = self.columns().await?;
        self.check_fits("content", &columns.stylesheet, content)?;
        let now = unix_now();
        let t = &self.tables;
        let (sid, created) = match &current {
            Some(sheet) if sheet.tid == theme.tid && sheet.stylesheet == content => {
                return Ok(crate::sync::Written {
                    item: item(&key.collection, sheet),
                    created: false,
                    warnings: Vec::new(),
                });
            }
            Some(sheet) if sheet.tid == theme.tid => {
                let sql = format!(
                    "UPDATE {} SET stylesheet = ?, cachefile = ?, lastmodified = ? \
                     WHERE sid = ? AND tid = ? AND lastmodified = ? AND {{exact}}stylesheet = ?",
                    t.themestylesheets
                );
                let binds = [
                    content.into(),
                    (&key.name).into(),
                    now.into(),
                    sheet.sid.into(),
                    sheet.tid.into(),
                    sheet.lastmodified.into(),
                    (&sheet.stylesheet).into(),
                ];
                let affected = self.run(&sql, &binds).await?;
                if affected != 1 {
                    return Err(self.lost_race(key, expected.unwrap_or(actual)).await);
                }
                (sheet.sid, false)
            }
            inherited => {
                self.check_fits("key.name", &columns.sheet_name, &key.name)?;
                // A copy keeps the inherited sheet's attachment; a new
                // sheet is attached to every page, as MyBB's default.
                let attachedto = inherited.as_ref().map_or("", |sheet| &sheet.attachedto);
                let sql = format!(
                    "INSERT INTO {} (name, tid, attachedto, stylesheet, cachefile, lastmodified) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                    t.themestylesheets
                );
                let binds = [
                    (&key.name).into(),
                    theme.tid.into(),
                    attachedto.into(),
                    content.into(),
                    (&key.name).into(),
                    now.into(),
                ];
                let sid = self.insert(&sql, &binds, "sid").await? as u32;
                let sql = format!(
                    "SELECT name FROM {} WHERE tid = ? AND name = ?",
                    t.themestylesheets
                );
                let rows = self
                    .rows(&sql, &[theme.tid.into(), (&key.name).into()])
                    .await?;
                let own = rows
                    .iter()
                    .filter(|row| row.text("name").is_ok_and(|n| n == key.name))
                    .count();
                if own > 1 {
                    let sql = format!("DELETE FROM {} WHERE sid = ?", t.themestylesheets);
                    self.run(&sql, &[sid.into()]).await?;
                    return Err(self.lost_race(key, expected.unwrap_or(actual)).await);
                }
                (sid, current.is_none())
            }
        };
        let select = format!(
            "SELECT stylesheet AS content, CAST(lastmodified AS {{int}}) AS changed_at FROM {} WHERE sid = ?",
            t.themestylesheets
        );
        self.read_back(key, select, sid.into(), content, now)
            .await?;
        let mut warnings = Vec::new();
        if let Err(err) = self.cache_sheet(theme.tid, &key.name, content) {
            let fallback = format!("css.php?stylesheet={sid}");
            let sql = format!(
                "UPDATE {} SET cachefile = ? WHERE sid = ?",
                t.themestylesheets
            );
            self.run(&sql, &[(&fallback).into(), sid.into()]).await?;
            warnings.push(format!(
                "{key} is saved, but its cached file cannot be written ({err}): the forum serves it through {fallback}, as MyBB does"
            ));
        }
        warnings.extend(self.refresh_lists(theme.tid).await?);
        let sheet = Sheet {
            sid,
            tid: theme.tid,
            name: key.name.clone(),
            attachedto: String::new(),
            lastmodified: now,
            stylesheet: content.to_owned(),
        };
        Ok(crate::sync::Written {
            item: item(&key.collection, &sheet),
            created,
            warnings,
        })
    }

    /// Deletes a theme's own sheet (an inherited one shows again), its
    /// cached files, and updates the lists.
    pub(super) async fn delete_stylesheet(
        &self,
        key: &Key,
        expected: Option<u64>,
    ) -> Result<u64, ContentError> {
        let styles = self.styles().await?;
        let theme = styles.theme(&key.collection)?.clone();
        let sheet = match styles.shown(&theme)?.remove(&key.name) {
            None => return Err(ContentError::NotFound(format!("no {key}"))),
            Some(Err(reason)) => return Err(ContentError::Refused(format!("{key} {reason}"))),
            Some(Ok(sheet)) => sheet.clone(),
        };
        if theme.tid == MASTER_THEME || sheet.tid != theme.tid {
            return Err(ContentError::Refused(format!(
                "{key} belongs to theme {} (inherited or MyBB's master style); delete it there",
                sheet.tid
            )));
        }
        let actual = item(&key.collection, &sheet).version;
        compare(key, expected, actual)?;
        let sql = format!(
            "DELETE FROM {} WHERE sid = ? AND lastmodified = ? AND {{exact}}stylesheet = ?",
            self.tables.themestylesheets
        );
        let binds = [
            sheet.sid.into(),
            sheet.lastmodified.into(),
            (&sheet.stylesheet).into(),
        ];
        let affected = self.run(&sql, &binds).await?;
        if affected != 1 {
            return Err(self.lost_race(key, actual).await);
        }
        let dir = self.forum.root.join(css::theme_dir(theme.tid));
        for name in [key.name.clone(), css::minified_name(&key.name)] {
            let _ = fs::remove_file(dir.join(name));
        }
        for warning in self.refresh_lists(theme.tid).await? {
            tracing::warn!(%key, warning, "after a delete");
        }
        Ok(actual)
    }

    /// Writes the cached copy and its minified twin MyBB serves, each
    /// atomically and with an mtime no older than the row's
    /// `lastmodified`.
    fn cache_sheet(&self, tid: u32, name: &str, content: &str) -> io::Result<()> {
        if !css::is_cached(name) {
            return Ok(());
        }
        let dir = self.forum.root.join(css::theme_dir(tid));
        if !dir.is_dir() {
            fs::create_dir_all(&dir)?;
            // MyBB puts one in every cache directory it makes.
            let _ = fs::write(dir.join("index.html"), "");
        }
        let cached = css::cached(tid, content);
        write_atomically(&dir.join(name), &cached)?;
        write_atomically(&dir.join(css::minified_name(name)), &css::minified(&cached))
    }

    /// Rebuilds the stylesheet list of theme `tid` and its descendants
    /// and, if the default theme is among them, the `default_theme` cache;
    /// returns what could not be done.
    async fn refresh_lists(&self, tid: u32) -> Result<Vec<String>, ContentError> {
        let styles = self.styles().await?;
        let themes = styles.theme_rows();
        let sheets = styles.sheet_rows();
        let root = self.forum.root.clone();
        let mtime = |tid: u32, name: &str| cached_mtime(&root, tid, name);
        let updated = theme_list::with_descendants(tid, &themes)
            .map_err(|err| ContentError::Refused(err.to_string()))?;
        let mut warnings = Vec::new();
        let mut default_changed = None;
        for tid in updated {
            let Some(theme) = styles.themes.iter().find(|t| t.tid == tid) else {
                continue;
            };
            let rebuilt =
                match theme_list::rebuild(tid, &themes, &sheets, self.forum.driver, true, mtime) {
                    Ok(rebuilt) => rebuilt,
                    Err(err) => {
                        warnings.push(format!(
                            "theme {:?}'s stylesheet list is not updated: {err}",
                            theme.name
                        ));
                        continue;
                    }
                };
            let properties = rebuilt
                .properties
                .unwrap_or_else(|| theme.properties.clone());
            let sql = format!(
                "UPDATE {} SET stylesheets = ?, properties = ? WHERE tid = ? \
                 AND {{exact}}stylesheets = ? AND {{exact}}properties = ?",
                self.tables.themes
            );
            let binds = [
                (&rebuilt.stylesheets).into(),
                (&properties).into(),
                tid.into(),
                (&theme.stylesheets).into(),
                (&theme.properties).into(),
            ];
            let affected = self.run(&sql, &binds).await?;
            if affected != 1 {
                warnings.push(format!(
                    "theme {:?} changed while its stylesheet list was rebuilt; save any of its sheets again (or a theme in the admin panel) to bring it up to date",
                    theme.name
                ));
                continue;
            }
            if theme.def {
                default_changed = Some(DefaultThemeRow {
                    name: theme.name.clone(),
                    tid,
                    properties,
                    stylesheets: rebuilt.stylesheets,
                });
            }
        }
        if let Some(row) = default_changed {
            warnings.extend(self.refresh_default_theme(&row).await?);
        }
        Ok(warnings)
    }

    /// Puts the default theme's new row where visitors' pages read it: the
    /// `datacache` table, which the forum's cache store is then made to
    /// read again.
    async fn refresh_default_theme(
        &self,
        row: &DefaultThemeRow,
    ) -> Result<Vec<String>, ContentError> {
        let cache = theme_list::default_theme_cache(Some(row), self.forum.driver);
        let table = format!("{}datacache", self.forum.prefix);
        self.db
            .upsert(&table, "title", "default_theme", "cache", &cache)
            .await
            .map_err(|err| self.storage(err))?;
        let failures = self
            .forum
            .cache_store
            .forget(&self.forum.root, "default_theme")
            .await;
        Ok(failures
            .into_iter()
            .map(|failure| format!(
                "{failure}: guests keep the old stylesheet list until the default_theme cache is rebuilt (Tools & Maintenance → Cache Manager)"
            ))
            .collect())
    }
}

/// The mtime of a theme's cached file, in seconds, if it exists.
fn cached_mtime(root: &Path, tid: u32, name: &str) -> Option<u64> {
    let path = root.join(css::theme_dir(tid)).join(name);
    let modified = fs::metadata(path).ok()?.modified().ok()?;
    Some(modified.duration_since(UNIX_EPOCH).ok()?.as_secs())
}

/// Writes `content` to `path` through a temp file and a rename, so that a
/// visitor never gets half a stylesheet, with the mtime set to now.
fn write_atomically(path: &Path, content: &str) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("cache");
    let temp: PathBuf = path.with_file_name(format!(".outpost-{}-{name}.tmp", std::process::id()));
    let result = (|| {
        let file = fs::File::create(&temp)?;
        io::Write::write_all(&mut &file, content.as_bytes())?;
        // The kernel's file clock may lag the one `lastmodified` was
        // taken from by a tick: set it.
        file.set_modified(SystemTime::now())?;
        file.sync_all()?;
        fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}
