//! What MyBB's admin panel writes into `themes` after a stylesheet is
//! saved (`update_theme_stylesheet_list()` in
//! `admin/inc/functions_themes.php`, `docs/mybb-semantics.md`): the
//! theme's serialized `stylesheets` list, the `disporder` in its
//! serialized `properties`, the same for every descendant theme, and the
//! `default_theme` datacache entry — byte for byte, so that the forum
//! cannot tell our write from its own.
//!
//! Pure: the rows come in, the cached files are asked about through a
//! closure, the new column values come out.

use std::collections::HashSet;

use super::php_value::{self, Array, Key, Number, Value};

/// A `themes` row, as far as the stylesheet list needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThemeRow {
    pub tid: u32,
    pub pid: u32,
    /// The serialized `properties` column.
    pub properties: String,
}

/// A `themestylesheets` row, without its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SheetRow {
    pub sid: u32,
    pub tid: u32,
    pub name: String,
    pub attachedto: String,
    pub lastmodified: u64,
}

/// The forum's database layer (`$config['database']['type']`): what PHP
/// gets for an integer column, which MyBB writes back into the
/// serialized values as `i:2;` or `s:1:"2";`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// `mysqli`: every column a string.
    Mysqli,
    /// `mysql_pdo`: PDO without emulated prepares, integers as integers.
    MysqlPdo,
    /// `pgsql`: every column a string.
    Pgsql,
    /// `pgsql_pdo`: integer columns (`themes.tid`, a `serial`) as
    /// integers, `numeric` ones (`themestylesheets.tid`) as strings. From
    /// PHP's pdo_pgsql, not checked against a live server.
    PgsqlPdo,
    /// `sqlite` (PDO): integers as integers (PHP 8.1 and later), and its
    /// `fetch_array` returns each column twice, by name and by number.
    Sqlite,
}

impl Driver {
    /// `themestylesheets.tid` as PHP gets it.
    fn sheet_tid(self, tid: u32) -> Value {
        match self {
            Driver::MysqlPdo | Driver::Sqlite => Value::Int(tid.into()),
            Driver::Mysqli | Driver::Pgsql | Driver::PgsqlPdo => Value::str(&tid.to_string()),
        }
    }

    /// `themes.tid` as PHP gets it.
    fn theme_tid(self, tid: u32) -> Value {
        match self {
            Driver::MysqlPdo | Driver::Sqlite | Driver::PgsqlPdo => Value::Int(tid.into()),
            Driver::Mysqli | Driver::Pgsql => Value::str(&tid.to_string()),
        }
    }
}

/// Where MyBB would stop with a PHP error, or data this model does not
/// follow MyBB into.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("there is no theme {0}")]
    UnknownTheme(u32),
    #[error("theme {0} is its own ancestor (MyBB would recurse until PHP gives up)")]
    Cycle(u32),
    #[error(
        "theme {0}'s properties are a scalar, which MyBB cannot add a display order to (PHP error)"
    )]
    ScalarProperties(u32),
    #[error(
        "theme {0}'s display order for {1:?} is neither an integer nor a float (MyBB would compare it by PHP's loose rules or stop with a PHP error)"
    )]
    DisplayOrder(u32, String),
}

/// The new `themes` columns of one theme.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rebuilt {
    pub stylesheets: String,
    /// `None` when display orders are not updated (MyBB's
    /// `$update_disporders` false): the column stays as it is.
    pub properties: Option<String>,
}

fn theme(tid: u32, themes: &[ThemeRow]) -> Option<&ThemeRow> {
    themes.iter().find(|t| t.tid == tid)
}

/// The theme chain MyBB walks (`make_parent_theme_list`): `tid`, its
/// parent, grandparent …, up to the first `pid` that is not a theme (0 for
/// a top theme). Both the sheets a theme shows and its cached files are
/// looked for along it, in this order.
pub fn ancestry(tid: u32, themes: &[ThemeRow]) -> Result<Vec<u32>, Error> {
    let mut chain = Vec::new();
    let mut at = theme(tid, themes).ok_or(Error::UnknownTheme(tid))?;
    loop {
        if chain.contains(&at.tid) {
            return Err(Error::Cycle(at.tid));
        }
        chain.push(at.tid);
        match theme(at.pid, themes) {
            Some(parent) => at = parent,
            None => return Ok(chain),
        }
    }
}

/// `tid` and all its descendants, in the order MyBB updates them: the
/// theme first, then each child (in the order of `themes`, which MyBB
/// reads `ORDER BY pid, name`) followed by its own descendants. MyBB
/// rewrites a grandchild once more for every ancestor between it and
/// `tid`, with the same values; it is listed once here.
pub fn with_descendants(tid: u32, themes: &[ThemeRow]) -> Result<Vec<u32>, Error> {
    ancestry(tid, themes)?;
    let mut out = vec![tid];
    let mut seen: HashSet<u32> = HashSet::from([tid]);
    fn children(tid: u32, themes: &[ThemeRow], out: &mut Vec<u32>, seen: &mut HashSet<u32>) {
        for child in themes.iter().filter(|t| t.pid == tid) {
            if seen.insert(child.tid) {
                out.push(child.tid);
                children(child.tid, themes, out, seen);
            }
        }
    }
    children(tid, themes, &mut out, &mut seen);
    Ok(out)
}

/// The sheet a theme shows under each name: among the rows of the theme
/// and its ancestors, the highest `tid` wins (MyBB's `ORDER BY tid DESC`,
/// not the nearest ancestor). In MyBB's order: by `tid` descending, rows
/// of one theme in the order of `sheets`: pass them as the forum's
/// database returns that query, which leaves ties in no defined order.
pub fn visible_sheets<'a>(
    tid: u32,
    themes: &[ThemeRow],
    sheets: &'a [SheetRow],
) -> Result<Vec<&'a SheetRow>, Error> {
    let chain = ancestry(tid, themes)?;
    let mut rows: Vec<&SheetRow> = sheets.iter().filter(|s| chain.contains(&s.tid)).collect();
    rows.sort_by_key(|s| std::cmp::Reverse(s.tid));
    let mut names = HashSet::new();
    rows.retain(|s| names.insert(s.name.as_str()));
    Ok(rows)
}

/// The URL MyBB lists for a sheet: the cached file of the first theme of
/// the chain that has it no older than the row, else `css.php`.
fn sheet_url(
    sheet: &SheetRow,
    chain: &[u32],
    cached_mtime: &impl Fn(u32, &str) -> Option<u64>,
) -> String {
    chain
        .iter()
        .find(|&&t| cached_mtime(t, &sheet.name).is_some_and(|m| m >= sheet.lastmodified))
        .map_or_else(
            || format!("css.php?stylesheet={}", sheet.sid),
            |t| format!("cache/themes/theme{t}/{}", sheet.name),
        )
}

/// The files and actions of an `attachedto` value: `|` between files,
/// `file?action,action`; a file without `?` (or an empty or `"0"` value,
/// falsy in PHP) is `global`. Only the part between the first and the
/// second `?` names actions.
fn attachments(attachedto: &str) -> Vec<(&str, Vec<&str>)> {
    let attachedto = match attachedto {
        "" | "0" => "global",
        other => other,
    };
    attachedto
        .split('|')
        .map(|part| {
            let mut pieces = part.split('?');
            let file = pieces.next().unwrap_or_default();
            match pieces.next() {
                Some(actions) => (file, actions.split(',').collect()),
                None => (file, vec!["global"]),
            }
        })
        .collect()
}

/// The new `stylesheets` and `properties` of theme `tid`, as
/// `update_theme_stylesheet_list(tid)` writes them, given every theme and
/// every sheet row (in database order, see [`visible_sheets`]), and
/// `cached_mtime(tid, name)`: the mtime of
/// `cache/themes/theme{tid}/{name}` under the forum root (or, with MyBB's
/// CDN setting on, under its `cdnpath`) if that file exists.
///
/// MyBB's plugin hook on each URL is not run.
pub fn rebuild(
    tid: u32,
    themes: &[ThemeRow],
    sheets: &[SheetRow],
    driver: Driver,
    update_disporders: bool,
    cached_mtime: impl Fn(u32, &str) -> Option<u64>,
) -> Result<Rebuilt, Error> {
    let chain = ancestry(tid, themes)?;
    let visible = visible_sheets(tid, themes, sheets)?;

    let mut list = Array::new();
    for sheet in &visible {
        let url = sheet_url(sheet, &chain, &cached_mtime);
        // PHP's empty() on the tid: theme 0 is never "inherited".
        let inherited = (sheet.tid != tid && sheet.tid != 0).then(|| driver.sheet_tid(sheet.tid));
        for (file, actions) in attachments(&sheet.attachedto) {
            for action in actions {
                list.array_at(Key::from(file))
                    .and_then(|f| f.array_at(Key::from(action)))
                    .expect("the list holds only arrays at these depths")
                    .push(Value::str(&url));
                if let Some(inherited) = &inherited {
                    list.array_at(Key::from("inherited"))
                        .and_then(|i| i.array_at(Key::from(format!("{file}_{action}").as_str())))
                        .expect("the list holds only arrays at these depths")
                        .insert(Key::from(url.as_str()), inherited.clone());
                }
            }
        }
    }
    let stylesheets = text(&Value::Array(list));

    let properties = if update_disporders {
        let row = theme(tid, themes).ok_or(Error::UnknownTheme(tid))?;
        let mut properties = properties(row)?;
        let orders = display_orders(tid, properties.get(&Key::from("disporder")), &visible)?;
        properties.insert(Key::from("disporder"), Value::Array(orders));
        Some(text(&Value::Array(properties)))
    } else {
        None
    };
    Ok(Rebuilt {
        stylesheets,
        properties,
    })
}

/// A serialized value as text: it is valid UTF-8 whenever its strings
/// are, and they all come from `&str`s (a parsed string is cut at quotes).
fn text(value: &Value) -> String {
    String::from_utf8_lossy(&php_value::serialize(value)).into_owned()
}

/// The theme's properties as MyBB holds them: `my_unserialize`d once by
/// `cache_themes()`, and once more by `update_theme_stylesheet_list()` if
/// that gave no array (so a serialized string inside a string counts);
/// nothing readable (`false`) or `null` becomes an empty array.
fn properties(row: &ThemeRow) -> Result<Array, Error> {
    let once = php_value::parse(row.properties.as_bytes()).unwrap_or(Value::Bool(false));
    let twice = match once {
        Value::Array(a) => return Ok(a),
        Value::Str(s) => php_value::parse(&s).unwrap_or(Value::Bool(false)),
        _ => Value::Bool(false),
    };
    match twice {
        Value::Array(a) => Ok(a),
        Value::Null | Value::Bool(false) => Ok(Array::new()),
        _ => Err(Error::ScalarProperties(row.tid)),
    }
}

/// The new `disporder`: each visible name keeps its order; names without
/// one follow the highest, one apart, in list order; the rest go; then
/// sorted by order (PHP's stable `asort`).
fn display_orders(tid: u32, old: Option<&Value>, visible: &[&SheetRow]) -> Result<Array, Error> {
    let old = match old {
        Some(Value::Array(a)) => Some(a),
        // A string: isset() is true for an integer-like name within its
        // length (from the end if negative), and MyBB then orders by a
        // character of it.
        Some(Value::Str(s)) => {
            let len = i64::try_from(s.len()).unwrap_or(i64::MAX);
            if let Some(sheet) = visible.iter().find(|sheet| {
                matches!(Key::from(sheet.name.as_str()), Key::Int(n) if -len <= n && n < len)
            }) {
                return Err(Error::DisplayOrder(tid, sheet.name.clone()));
            }
            None
        }
        _ => None,
    };
    let mut kept: Vec<(Key, Value, Number)> = Vec::new();
    let mut orphans = Vec::new();
    let mut max = Number::Int(0);
    for sheet in visible {
        let key = Key::from(sheet.name.as_str());
        match old.and_then(|o| o.get(&key)) {
            None | Some(Value::Null) => orphans.push(key),
            Some(value) => {
                let n = Number::of(value)
                    .ok_or_else(|| Error::DisplayOrder(tid, sheet.name.clone()))?;
                if n.compare(max).is_gt() {
                    max = n;
                }
                kept.push((key, value.clone(), n));
            }
        }
    }
    let mut next = max.plus_one();
    for key in orphans {
        kept.push((key, next.into(), next));
        next = next.plus_one();
    }
    kept.sort_by(|a, b| a.2.compare(b.2));
    Ok(kept.into_iter().map(|(k, v, _)| (k, v)).collect())
}

/// A `themes` row as `update_default_theme()` reads it for the
/// `default_theme` cache.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultThemeRow {
    pub name: String,
    pub tid: u32,
    /// The serialized columns, kept as strings (serialized once more).
    pub properties: String,
    pub stylesheets: String,
}

/// The `default_theme` datacache value (`datacache.cache`) as
/// `$cache->update_default_theme()` writes it: the row with `def` = 1
/// (`name`, `tid`, `properties`, `stylesheets`, in that order; SQLite
/// adds each by number too), or what the driver returns for no row.
pub fn default_theme_cache(row: Option<&DefaultThemeRow>, driver: Driver) -> String {
    let Some(row) = row else {
        // mysqli_fetch_array gives null, PDO and pg_fetch_array false.
        return text(&if driver == Driver::Mysqli {
            Value::Null
        } else {
            Value::Bool(false)
        });
    };
    let columns = [
        ("name", Value::str(&row.name)),
        ("tid", driver.theme_tid(row.tid)),
        ("properties", Value::str(&row.properties)),
        ("stylesheets", Value::str(&row.stylesheets)),
    ];
    let mut cache = Array::new();
    for (name, value) in columns {
        if driver == Driver::Sqlite {
            cache.insert(Key::from(name), value.clone());
            cache.push(value);
        } else {
            cache.insert(Key::from(name), value);
        }
    }
    text(&Value::Array(cache))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn theme(tid: u32, pid: u32, properties: &str) -> ThemeRow {
        ThemeRow {
            tid,
            pid,
            properties: properties.into(),
        }
    }

    fn sheet(sid: u32, tid: u32, name: &str, attachedto: &str, lastmodified: u64) -> SheetRow {
        SheetRow {
            sid,
            tid,
            name: name.into(),
            attachedto: attachedto.into(),
            lastmodified,
        }
    }

    /// A fresh install's master and default themes, in short.
    fn forum() -> (Vec<ThemeRow>, Vec<SheetRow>) {
        let themes = vec![
            theme(
                1,
                0,
                "a:1:{s:9:\"disporder\";a:2:{s:10:\"global.css\";i:1;s:10:\"usercp.css\";i:2;}}",
            ),
            theme(
                2,
                1,
                "a:2:{s:11:\"templateset\";s:1:\"1\";s:9:\"disporder\";a:2:{s:10:\"global.css\";i:1;s:10:\"usercp.css\";i:2;}}",
            ),
            theme(3, 2, "a:0:{}"),
        ];
        let sheets = vec![
            sheet(1, 1, "global.css", "", 100),
            sheet(
                2,
                1,
                "usercp.css",
                "usercp.php|usercp2.php|private.php?compose,folders",
                100,
            ),
            sheet(8, 2, "color_black.css", "black", 100),
        ];
        (themes, sheets)
    }

    #[test]
    fn chains_and_descendants() {
        let (mut themes, _) = forum();
        themes.push(theme(4, 1, ""));
        themes.push(theme(5, 9, ""));
        assert_eq!(ancestry(3, &themes), Ok(vec![3, 2, 1]));
        assert_eq!(ancestry(5, &themes), Ok(vec![5]));
        assert_eq!(ancestry(7, &themes), Err(Error::UnknownTheme(7)));
        assert_eq!(with_descendants(1, &themes), Ok(vec![1, 2, 3, 4]));
        assert_eq!(with_descendants(2, &themes), Ok(vec![2, 3]));
        themes[0].pid = 3;
        assert_eq!(ancestry(2, &themes), Err(Error::Cycle(2)));
        assert_eq!(with_descendants(2, &themes), Err(Error::Cycle(2)));
    }

    #[test]
    fn the_highest_tid_wins_not_the_nearest_ancestor() {
        let themes = vec![theme(5, 0, ""), theme(3, 5, "")];
        let sheets = vec![sheet(1, 3, "a.css", "", 0), sheet(2, 5, "a.css", "", 0)];
        let visible = visible_sheets(3, &themes, &sheets).unwrap();
        assert_eq!(visible.iter().map(|s| s.sid).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn the_default_theme_list_of_a_fresh_install() {
        let (themes, sheets) = forum();
        let files = |tid: u32, name: &str| (tid == 1 && name == "global.css").then_some(100);
        let rebuilt = rebuild(2, &themes, &sheets, Driver::Mysqli, true, files).unwrap();
        assert_eq!(
            rebuilt.stylesheets,
            concat!(
                "a:6:{s:5:\"black\";a:1:{s:6:\"global\";a:1:{i:0;s:20:\"css.php?stylesheet=8\";}}",
                "s:6:\"global\";a:1:{s:6:\"global\";a:1:{i:0;s:30:\"cache/themes/theme1/global.css\";}}",
                "s:9:\"inherited\";a:5:{s:13:\"global_global\";a:1:{s:30:\"cache/themes/theme1/global.css\";s:1:\"1\";}",
                "s:17:\"usercp.php_global\";a:1:{s:20:\"css.php?stylesheet=2\";s:1:\"1\";}",
                "s:18:\"usercp2.php_global\";a:1:{s:20:\"css.php?stylesheet=2\";s:1:\"1\";}",
                "s:19:\"private.php_compose\";a:1:{s:20:\"css.php?stylesheet=2\";s:1:\"1\";}",
                "s:19:\"private.php_folders\";a:1:{s:20:\"css.php?stylesheet=2\";s:1:\"1\";}}",
                "s:10:\"usercp.php\";a:1:{s:6:\"global\";a:1:{i:0;s:20:\"css.php?stylesheet=2\";}}",
                "s:11:\"usercp2.php\";a:1:{s:6:\"global\";a:1:{i:0;s:20:\"css.php?stylesheet=2\";}}",
                "s:11:\"private.php\";a:2:{s:7:\"compose\";a:1:{i:0;s:20:\"css.php?stylesheet=2\";}s:7:\"folders\";a:1:{i:0;s:20:\"css.php?stylesheet=2\";}}}",
            )
        );
        assert_eq!(
            rebuilt.properties.as_deref(),
            Some(
                "a:2:{s:11:\"templateset\";s:1:\"1\";s:9:\"disporder\";a:3:{s:10:\"global.css\";i:1;s:10:\"usercp.css\";i:2;s:15:\"color_black.css\";i:3;}}"
            )
        );
    }

    #[test]
    fn a_cached_file_counts_only_when_no_older_than_the_row() {
        let (themes, mut sheets) = forum();
        sheets[0].tid = 3;
        sheets[0].lastmodified = 200;
        // Theme 3's own file is stale, theme 2's is fresh: the chain's first
        // fresh one wins even though it is another theme's.
        let files = |tid: u32, name: &str| match (tid, name) {
            (3, "global.css") => Some(199),
            (2, "global.css") => Some(200),
            _ => None,
        };
        let rebuilt = rebuild(3, &themes, &sheets, Driver::Sqlite, false, files).unwrap();
        assert!(
            rebuilt
                .stylesheets
                .contains("s:30:\"cache/themes/theme2/global.css\"")
        );
        assert!(!rebuilt.stylesheets.contains("theme3"));
        // Inherited tids are integers under SQLite.
        assert!(
            rebuilt
                .stylesheets
                .contains("s:20:\"css.php?stylesheet=2\";i:1;")
        );
        assert_eq!(rebuilt.properties, None);
    }

    #[test]
    fn attachedto_splits_as_mybb() {
        assert_eq!(attachments(""), [("global", vec!["global"])]);
        assert_eq!(attachments("0"), [("global", vec!["global"])]);
        assert_eq!(attachments("a.php?"), [("a.php", vec![""])]);
        assert_eq!(
            attachments("a.php?x?y|"),
            [("a.php", vec!["x"]), ("", vec!["global"])]
        );
    }

    #[test]
    fn display_orders_are_brought_up_to_date() {
        let themes = vec![theme(
            1,
            0,
            "a:2:{s:9:\"disporder\";a:3:{s:5:\"b.css\";s:1:\"5\";s:4:\"gone\";i:1;s:5:\"a.css\";i:2;}s:1:\"x\";d:0.5;}",
        )];
        let sheets = vec![
            sheet(1, 1, "a.css", "", 0),
            sheet(2, 1, "new", "", 0),
            sheet(3, 1, "b.css", "", 0),
            sheet(4, 1, "7", "", 0),
        ];
        let rebuilt = rebuild(1, &themes, &sheets, Driver::Mysqli, true, |_, _| None).unwrap();
        // Imported themes hold string orders; they are kept as they are.
        assert_eq!(
            rebuilt.properties.as_deref(),
            Some(
                "a:2:{s:9:\"disporder\";a:4:{s:5:\"a.css\";i:2;s:5:\"b.css\";s:1:\"5\";s:3:\"new\";i:6;i:7;i:7;}s:1:\"x\";d:0.5;}"
            )
        );
    }

    #[test]
    fn unreadable_properties_become_just_the_display_order() {
        let sheets = vec![sheet(1, 1, "a.css", "", 0)];
        for properties in ["", "garbage", "N;", "b:0;", "s:6:\"a:0:{}\";"] {
            let themes = vec![theme(1, 0, properties)];
            let rebuilt = rebuild(1, &themes, &sheets, Driver::Mysqli, true, |_, _| None).unwrap();
            assert_eq!(
                rebuilt.properties.as_deref(),
                Some("a:1:{s:9:\"disporder\";a:1:{s:5:\"a.css\";i:1;}}"),
                "{properties:?}"
            );
        }
        let themes = vec![theme(1, 0, "i:5;")];
        // cache_themes() gives 5, not an array; unserializing 5 again gives false.
        assert!(rebuild(1, &themes, &sheets, Driver::Mysqli, true, |_, _| None).is_ok());
        let themes = vec![theme(1, 0, "s:4:\"i:5;\";")];
        assert_eq!(
            rebuild(1, &themes, &sheets, Driver::Mysqli, true, |_, _| None),
            Err(Error::ScalarProperties(1))
        );
    }

    #[test]
    fn display_orders_php_compares_loosely_are_refused() {
        let sheets = vec![sheet(1, 1, "a.css", "", 0), sheet(2, 1, "1", "", 0)];
        for (properties, name) in [
            (
                "a:1:{s:9:\"disporder\";a:1:{s:5:\"a.css\";s:3:\"1.5\";}}",
                "a.css",
            ),
            ("a:1:{s:9:\"disporder\";a:1:{s:5:\"a.css\";b:1;}}", "a.css"),
            ("a:1:{s:9:\"disporder\";s:3:\"abc\";}", "1"),
        ] {
            let themes = vec![theme(1, 0, properties)];
            assert_eq!(
                rebuild(1, &themes, &sheets, Driver::Mysqli, true, |_, _| None),
                Err(Error::DisplayOrder(1, name.into()))
            );
        }
        // A string too short for the name's offset: nothing is set.
        let themes = vec![theme(1, 0, "a:1:{s:9:\"disporder\";s:1:\"x\";}")];
        assert!(rebuild(1, &themes, &sheets, Driver::Mysqli, true, |_, _| None).is_ok());
    }

    #[test]
    fn default_theme_cache_per_driver() {
        let row = DefaultThemeRow {
            name: "Default".into(),
            tid: 2,
            properties: "a:0:{}".into(),
            stylesheets: "a:0:{}".into(),
        };
        assert_eq!(
            default_theme_cache(Some(&row), Driver::Mysqli),
            "a:4:{s:4:\"name\";s:7:\"Default\";s:3:\"tid\";s:1:\"2\";s:10:\"properties\";s:6:\"a:0:{}\";s:11:\"stylesheets\";s:6:\"a:0:{}\";}"
        );
        assert_eq!(
            default_theme_cache(Some(&row), Driver::Sqlite),
            "a:8:{s:4:\"name\";s:7:\"Default\";i:0;s:7:\"Default\";s:3:\"tid\";i:2;i:1;i:2;s:10:\"properties\";s:6:\"a:0:{}\";i:2;s:6:\"a:0:{}\";s:11:\"stylesheets\";s:6:\"a:0:{}\";i:3;s:6:\"a:0:{}\";}"
        );
        assert_eq!(default_theme_cache(None, Driver::Mysqli), "N;");
        assert_eq!(default_theme_cache(None, Driver::Pgsql), "b:0;");
    }
}

#[cfg(test)]
mod judge;
