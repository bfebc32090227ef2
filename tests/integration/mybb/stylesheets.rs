//! Stylesheets: the copy into a theme, the cached files, the theme's
//! list and every cache of the default theme.

use super::*;

both_servers!(stylesheets_save_as_the_admin_panel_does);
async fn stylesheets_save_as_the_admin_panel_does(server: Server) {
    let Some(mut s) = Synced::start(server, ForumSpec::default(), Connect::Environment).await
    else {
        return;
    };
    let sheets = s.table("themestylesheets");
    let themes = s.table("themes");
    let started = unix_now();
    let summary = s
        .sync
        .export_stylesheets(pb::ExportStylesheetsRequest {
            theme: "Child".to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
        .summary
        .unwrap();
    assert_eq!(summary.written, 4, "the child shows every inherited sheet");
    let child = s.dir("stylesheets", "Child").await;

    // Saving a sheet the child inherits copies it into the child first.
    save(
        &child.join("color_black.css"),
        "#logo { background: url(images/mine.png) }\n",
    );
    s.sheet_event(K::Imported, "Child", "color_black.css").await;
    let row = s.value(&format!(
        "SELECT sid, attachedto, cachefile, CASE WHEN lastmodified >= {started} THEN 1 ELSE 0 END, {} \
         FROM {sheets} WHERE tid = 3 AND name = 'color_black.css'",
        s.db.hex_of("stylesheet")
    ));
    let row: Vec<&str> = row.split('\t').collect();
    assert_eq!(&row[1..4], ["black", "color_black.css", "1"], "{row:?}");
    assert_eq!(
        row[4],
        hex(b"#logo { background: url(images/mine.png) }\n"),
        "stylesheets keep their trailing whitespace"
    );
    assert_eq!(
        s.value(&format!(
            "SELECT COUNT(*) FROM {sheets} WHERE tid = 2 AND name = 'color_black.css' AND lastmodified = {SEED_TIME}"
        )),
        "1",
        "the parent's row is untouched"
    );

    // The cached copies MyBB serves, no older than the row.
    let cache = s.root.path().join("cache/themes/theme3");
    let lastmodified: u64 = s
        .value(&format!(
            "SELECT lastmodified FROM {sheets} WHERE tid = 3 AND name = 'color_black.css'"
        ))
        .parse()
        .unwrap();
    for (file, content) in [
        (
            "color_black.css",
            "#logo { background: url(../../../images/mine.png) }\n",
        ),
        (
            "color_black.min.css",
            "#logo{background:url(../../../images/mine.png)}",
        ),
    ] {
        let path = cache.join(file);
        assert_eq!(fs::read_to_string(&path).unwrap(), content, "{file}");
        let mtime = fs::metadata(&path).unwrap().mtime() as u64;
        assert!(
            mtime >= lastmodified,
            "{file}: mtime {mtime} < {lastmodified}"
        );
    }
    // The theme's list links the cached file.
    let list = s.value(&format!("SELECT stylesheets FROM {themes} WHERE tid = 3"));
    assert!(
        list.contains("cache/themes/theme3/color_black.css"),
        "{list}"
    );

    // A sheet of the default theme: visitors' cached copy of it follows.
    let default = s.dir("stylesheets", "Default").await;
    s.sync
        .export_stylesheets(pb::ExportStylesheetsRequest {
            theme: "Default".to_owned(),
        })
        .await
        .unwrap();
    save(&default.join("global.css"), "body { color: red }");
    s.sheet_event(K::Imported, "Default", "global.css").await;
    let cached_theme = s.value(&format!(
        "SELECT cache FROM {} WHERE title = 'default_theme'",
        s.table("datacache")
    ));
    assert!(
        cached_theme.contains("cache/themes/theme2/global.css"),
        "{cached_theme}"
    );

    // The master style is read-only.
    let err = s
        .sync
        .put_stylesheet(pb::PutStylesheetRequest {
            key: Some(pb::StylesheetKey {
                theme: "MyBB Master Style".to_owned(),
                name: "global.css".to_owned(),
            }),
            content: "body {}".to_owned(),
            expected_version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("master style"), "{}", err.message());
}

both_servers!(a_cache_that_cannot_be_written_falls_back_to_css_php_and_warns);
async fn a_cache_that_cannot_be_written_falls_back_to_css_php_and_warns(server: Server) {
    let Some(mut s) = Synced::start(server, small(), Connect::Environment).await else {
        return;
    };
    let sheets = s.table("themestylesheets");
    s.sync
        .export_stylesheets(pb::ExportStylesheetsRequest {
            theme: "Child".to_owned(),
        })
        .await
        .unwrap();
    // Where the theme's cache directory should be, a file: nothing can
    // be written under it (permissions would not stop root).
    let cache = s.root.path().join("cache/themes/theme3");
    fs::write(&cache, "not a directory").unwrap();
    let child = s.dir("stylesheets", "Child").await;
    save(&child.join("global.css"), "body { color: blue }");
    let warning = s.sheet_event(K::Warning, "Child", "global.css").await;
    assert!(
        warning.message.contains("css.php?stylesheet="),
        "{}",
        warning.message
    );
    s.sheet_event(K::Imported, "Child", "global.css").await;
    let row = s.value(&format!(
        "SELECT sid, cachefile FROM {sheets} WHERE tid = 3 AND name = 'global.css'"
    ));
    let (sid, cachefile) = row.split_once('\t').unwrap();
    assert_eq!(cachefile, format!("css.php?stylesheet={sid}"));
    let list = s.value(&format!(
        "SELECT stylesheets FROM {} WHERE tid = 3",
        s.table("themes")
    ));
    assert!(
        list.contains(&format!("css.php?stylesheet={sid}")),
        "{list}"
    );
}

/// `config.php` as the installer writes it, caching in `store` (one of
/// `redis`, `memcache`, `memcached`) on 127.0.0.1:`port`.
fn caching_in(store: &str, port: u16) -> impl FnOnce(String) -> String {
    let section = if store == "redis" {
        "redis"
    } else {
        "memcache"
    };
    let default_port = if store == "redis" { 6379 } else { 11211 };
    move |config: String| {
        let edited = config
            .replace(
                "$config['cache_store'] = 'db';",
                &format!("$config['cache_store'] = '{store}';"),
            )
            .replace(
                &format!("$config['{section}']['host'] = 'localhost';"),
                &format!("$config['{section}']['host'] = '127.0.0.1';"),
            )
            .replace(
                &format!("$config['{section}']['port'] = {default_port};"),
                &format!("$config['{section}']['port'] = {port};"),
            );
        assert_eq!(
            edited.matches("127.0.0.1").count(),
            config.matches("127.0.0.1").count() + 1,
            "the installer's {section} lines changed"
        );
        edited
    }
}

/// MyBB's key for the forum's `default_theme` cache: md5 of its root's
/// real path with a trailing '/', as PHP's `__FILE__` gives it.
fn default_theme_key(root: &Path) -> String {
    use md5::{Digest, Md5};
    let real = fs::canonicalize(root).unwrap();
    let digest = Md5::digest(format!("{}/", real.display()).as_bytes());
    format!("{}_default_theme", hex(&digest).to_lowercase())
}

/// Saves a sheet of the default theme; returns the first WARNING or
/// IMPORTED event about it.
async fn save_a_default_sheet(s: &mut Synced) -> pb::SyncEvent {
    s.sync
        .export_stylesheets(pb::ExportStylesheetsRequest {
            theme: "Default".to_owned(),
        })
        .await
        .unwrap();
    let default = s.dir("stylesheets", "Default").await;
    save(&default.join("global.css"), "body { color: teal }");
    s.events
        .until("the save of Default/global.css", |event| {
            matches!(event.kind(), K::Warning | K::Imported)
                && matches!(
                    event.key.as_ref().and_then(|key| key.key.as_ref()),
                    Some(content_key::Key::Stylesheet(key)) if key.theme == "Default" && key.name == "global.css"
                )
        })
        .await
}

/// A forum caching in redis, memcache or memcached: a save of a sheet of
/// the default theme deletes MyBB's copy of the `default_theme` cache
/// there, so that its next page reads the new row from `datacache`.
async fn a_default_sheet_save_clears_the_cache_server(kind: Kind, store: &str) {
    let Some(cache) = CacheServer::start(kind) else {
        return;
    };
    let Some(mut s) = Synced::start_with_config(
        Server::MariaDb(SqlMode::Strict),
        small(),
        Connect::Environment,
        caching_in(store, cache.port),
    )
    .await
    else {
        return;
    };
    let key = default_theme_key(s.root.path());
    cache.set(&key, "a:1:{s:3:\"tid\";i:2;}");
    let other = key.replace("default_theme", "settings");
    cache.set(&other, "kept");
    let event = save_a_default_sheet(&mut s).await;
    assert_eq!(event.kind(), K::Imported, "{}", event.message);
    assert!(!cache.has(&key), "{store}: the default_theme key is gone");
    assert!(cache.has(&other), "{store}: other caches stay");
}

#[tokio::test]
async fn a_default_sheet_save_clears_redis() {
    a_default_sheet_save_clears_the_cache_server(Kind::Redis, "redis").await;
}

#[tokio::test]
async fn a_default_sheet_save_clears_memcached() {
    a_default_sheet_save_clears_the_cache_server(Kind::Memcached, "memcached").await;
}

#[tokio::test]
async fn a_default_sheet_save_clears_memcache() {
    a_default_sheet_save_clears_the_cache_server(Kind::Memcached, "memcache").await;
}

/// A cache server that is down: the save lands, with a warning naming
/// the server, since guests keep the old stylesheet list until the
/// cache is rebuilt.
#[tokio::test]
async fn a_cache_server_that_is_down_is_named_in_a_warning() {
    let port = free_port();
    let Some(mut s) = Synced::start_with_config(
        Server::MariaDb(SqlMode::Strict),
        small(),
        Connect::Environment,
        caching_in("redis", port),
    )
    .await
    else {
        return;
    };
    let warning = save_a_default_sheet(&mut s).await;
    assert_eq!(warning.kind(), K::Warning, "{}", warning.message);
    assert!(
        warning
            .message
            .contains(&format!("redis server 127.0.0.1:{port}: cannot connect")),
        "{}",
        warning.message
    );
    s.sheet_event(K::Imported, "Default", "global.css").await;
}
