//! Templates: what a set shows and how a save writes, what is refused,
//! what the database changes, names that cannot be files.

use super::*;

both_servers!(a_set_exports_and_saves_as_the_admin_panel_does);
async fn a_set_exports_and_saves_as_the_admin_panel_does(server: Server) {
    let spec = ForumSpec {
        master_templates: 300,
        ..ForumSpec::default()
    };
    let Some(mut s) = Synced::start(server, spec, Connect::Config).await else {
        return;
    };
    let templates = s.table("templates");
    let started = unix_now();

    // The set shows every master template, in MyBB's groups.
    let summary = export(&mut s.sync, SET).await;
    assert_eq!((summary.written, summary.conflicts), (300, 0));
    let dir = s.dir("templates", SET).await;
    for (file, title) in [
        ("header/header.html", "header"),
        (
            "header/header_welcomeblock_guest.html",
            "header_welcomeblock_guest",
        ),
        ("index/index.html", "index"),
        ("ungrouped/zzcustom_widget.html", "zzcustom_widget"),
        ("ungrouped/htmldoctype.html", "htmldoctype"),
    ] {
        let on_disk = fs::read(dir.join(file)).unwrap_or_else(|err| panic!("{file}: {err}"));
        let in_db = s.value(&format!(
            "SELECT {} FROM {templates} WHERE sid = -2 AND title = '{title}'",
            s.db.sha256_of("template")
        ));
        assert_eq!(sha256(&on_disk), in_db, "{file} holds the master template");
    }

    // The first save inserts the set's own row: trimmed, version_code,
    // status '', dateline now; the master row stays as it was.
    let header = dir.join("header/header.html");
    save(
        &header,
        "<div id=\"header\">{$lang->welcome}</div>\n\n\t \n",
    );
    s.events
        .until("the header imported", |e| {
            about(e, K::Imported, SET, "header")
        })
        .await;
    let rows = s.value(&format!(
        "SELECT sid, {}, version, CONCAT('[', status, ']'), \
         CASE WHEN dateline >= {started} THEN 1 ELSE 0 END \
         FROM {templates} WHERE title = 'header' ORDER BY sid",
        s.db.hex_of("template")
    ));
    let master = s.value(&format!(
        "SELECT COUNT(*) FROM {templates} WHERE sid = -2 AND dateline = {SEED_TIME}"
    ));
    assert_eq!(master, "300", "no master row changed");
    let own: Vec<&str> = rows.lines().nth(1).unwrap().split('\t').collect();
    assert_eq!(rows.lines().count(), 2, "{rows}");
    assert_eq!(own[0], "1");
    assert_eq!(
        own[1],
        hex(b"<div id=\"header\">{$lang->welcome}</div>"),
        "stored without trailing whitespace"
    );
    assert_eq!(&own[2..], ["1837", "[]", "1"]);

    // A later save updates that row; no third row appears.
    save(&header, "<div id=\"header\">v2</div>");
    s.events
        .until("the second save imported", |e| {
            about(e, K::Imported, SET, "header")
        })
        .await;
    assert_eq!(
        s.value(&format!(
            "SELECT COUNT(*), MAX(template) FROM {templates} WHERE title = 'header'"
        )),
        "2\t<div id=\"header\">v2</div>"
    );

    // An editor adding a final newline changes nothing in the database.
    let before = s.value(&format!(
        "SELECT dateline FROM {templates} WHERE title = 'header' AND sid = 1"
    ));
    let mark = s.events.mark();
    save(&header, "<div id=\"header\">v2</div>\n");
    quiesce(&mut s.sync, &mut s.events).await;
    assert!(
        s.events
            .matching(|e| e.revision > mark && about(e, K::Imported, SET, "header"))
            .is_empty(),
        "a final newline is no change"
    );
    assert_eq!(
        s.value(&format!(
            "SELECT dateline FROM {templates} WHERE title = 'header' AND sid = 1"
        )),
        before
    );

    // Deleting the set's row through the API reverts to the master, and
    // the file follows; the master itself cannot be deleted.
    let key = pb::TemplateKey {
        set: SET.to_owned(),
        title: "header".to_owned(),
    };
    s.sync
        .delete_template(pb::DeleteTemplateRequest {
            key: Some(key.clone()),
            expected_version: None,
        })
        .await
        .unwrap();
    let master_sha = s.value(&format!(
        "SELECT {} FROM {templates} WHERE sid = -2 AND title = 'header'",
        s.db.sha256_of("template")
    ));
    eventually("the file to hold the master again", EVENT_DEADLINE, || {
        let ok = fs::read(&header).is_ok_and(|content| sha256(&content) == master_sha);
        async move { ok.then_some(()) }
    })
    .await;
    let refused = s
        .sync
        .delete_template(pb::DeleteTemplateRequest {
            key: Some(key),
            expected_version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused.message().contains("master"),
        "{}",
        refused.message()
    );
}

/// What MyBB's `check_template`, a utf8mb3 column or TEXT's size would
/// refuse or mangle is refused with the reason — whatever the server's
/// mode, since without strict mode MySQL would store it cut short or with
/// `?` for the characters it cannot hold.
async fn refusals(mode: SqlMode) {
    let spec = ForumSpec {
        charset: Charset::Utf8mb3,
        master_templates: 20,
        ..ForumSpec::default()
    };
    let Some(mut s) = Synced::start(Server::MariaDb(mode), spec, Connect::Environment).await else {
        return;
    };
    let templates = s.table("templates");
    for (content, reason) in [
        ("<p>{$config['database']['password']}</p>", "check_template"),
        ("<script>let a = `${b}`;</script>", "check_template"),
        ("<p>{$mybb->user->delete()}</p>", "check_template"),
        ("<p>smile \u{1F600}</p>", "U+1F600"),
        (&"x".repeat(70_000), "65535"),
    ] {
        let err = s
            .sync
            .put_template(put(SET, "index", content, None))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(err.message().starts_with("content: "), "{}", err.message());
        assert!(err.message().contains(reason), "{}", err.message());
    }
    // The same from a file: REJECTED with the reason, nothing written.
    export(&mut s.sync, SET).await;
    let index = s.dir("templates", SET).await.join("index/index.html");
    save(&index, "<p>smile \u{1F600}</p>\n");
    let rejected = s
        .events
        .until("the emoji file rejected", |e| {
            e.kind() == K::Rejected && e.path == index.display().to_string()
        })
        .await;
    assert!(rejected.message.contains("U+1F600"), "{}", rejected.message);
    // A set the forum does not have (sets are made in its admin panel).
    let elsewhere = index
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .with_file_name("No Such Set")
        .join("header/header.html");
    fs::create_dir_all(elsewhere.parent().unwrap()).unwrap();
    save(&elsewhere, "<p>lost?</p>");
    let rejected = s
        .events
        .until("the file of an unknown set rejected", |e| {
            e.kind() == K::Rejected && e.path == elsewhere.display().to_string()
        })
        .await;
    assert!(
        rejected.message.contains("no template set"),
        "{}",
        rejected.message
    );
    assert_eq!(
        s.value(&format!("SELECT COUNT(*) FROM {templates} WHERE sid <> -2")),
        "0",
        "nothing reached the database"
    );
}

#[tokio::test]
async fn refusals_in_strict_mode() {
    refusals(SqlMode::Strict).await;
}

#[tokio::test]
async fn refusals_without_strict_mode() {
    refusals(SqlMode::NonStrict).await;
}

both_servers!(database_edits_reach_the_files_and_duplicates_are_reported);
async fn database_edits_reach_the_files_and_duplicates_are_reported(server: Server) {
    let Some(mut s) = Synced::start(server, small(), Connect::Environment).await else {
        return;
    };
    let templates = s.table("templates");
    let now = s.db.now();
    export(&mut s.sync, SET).await;
    let dir = s.dir("templates", SET).await;

    // Another tool changes a master row: every set showing it follows.
    s.value(&format!(
        "UPDATE {templates} SET template = 'new footer', dateline = {now} \
         WHERE sid = -2 AND title = 'footer'"
    ));
    s.events
        .until("the footer written", |e| {
            about(e, K::Exported, SET, "footer")
        })
        .await;
    assert_eq!(
        fs::read_to_string(dir.join("footer/footer.html")).unwrap(),
        "new footer"
    );

    // The admin panel saves the set's own copy of index.
    s.value(&format!(
        "INSERT INTO {templates} (title, template, sid, version, status, dateline) \
         VALUES ('index', 'own index', 1, '1837', '', {now})"
    ));
    s.events
        .until("the index written", |e| about(e, K::Exported, SET, "index"))
        .await;
    assert_eq!(
        fs::read_to_string(dir.join("index/index.html")).unwrap(),
        "own index"
    );

    // A second own row: reported, and the title is synced no more.
    s.value(&format!(
        "INSERT INTO {templates} (title, template, sid, version, status, dateline) \
         VALUES ('index', 'another index', 1, '1837', '', {now})"
    ));
    let warning = s
        .events
        .until("the duplicate reported", |e| {
            e.kind() == K::Warning && e.message.contains("\"index\"")
        })
        .await;
    assert!(warning.message.contains("2 rows"), "{}", warning.message);
    save(&dir.join("index/index.html"), "mine");
    let rejected = s
        .events
        .until("the duplicated title rejected", |e| {
            e.kind() == K::Rejected && e.path.ends_with("index/index.html")
        })
        .await;
    assert!(
        rejected.message.contains("2 own rows"),
        "{}",
        rejected.message
    );
    assert_eq!(
        s.value(&format!(
            "SELECT COUNT(*) FROM {templates} WHERE title = 'index' AND template = 'mine'"
        )),
        "0"
    );
}

both_servers!(titles_that_cannot_be_file_names_are_never_written);
async fn titles_that_cannot_be_file_names_are_never_written(server: Server) {
    let Some(mut s) = Synced::start(server, small(), Connect::Environment).await else {
        return;
    };
    let templates = s.table("templates");
    s.value(&format!(
        "INSERT INTO {templates} (title, template, sid, version, status, dateline) VALUES \
         ('../../../escaped', 'x', -2, '1837', '', 1), ('a/b', 'y', 1, '1837', '', 1)"
    ));
    let summary = export(&mut s.sync, SET).await;
    assert_eq!((summary.written, summary.skipped), (20, 2));
    // Changes to them in the database reach no file either.
    s.value(&format!(
        "UPDATE {templates} SET template = 'z', dateline = 2 WHERE title IN ('../../../escaped', 'a/b')"
    ));
    quiesce(&mut s.sync, &mut s.events).await;
    let root = PathBuf::from(status(&mut s.sync).await.root);
    let outside = root.parent().unwrap();
    assert!(!outside.join("escaped.html").exists());
    let files = crate::sync_support::files(&root);
    assert_eq!(files.len(), 20, "{files:?}");
}

/// What PostgreSQL's columns hold: UTF-8 throughout, so a 4-byte
/// character is stored exactly (where a utf8mb3 MySQL column refuses
/// it); and a `varchar(n)` counts characters, so a longer stylesheet name
/// is refused with the reason before PostgreSQL would fail the statement.
#[tokio::test]
async fn postgres_stores_any_character_and_refuses_names_its_column_cannot_hold() {
    let Some(mut s) = Synced::start(Server::Postgres, small(), Connect::Config).await else {
        return;
    };
    let templates = s.table("templates");
    s.sync
        .put_template(put(SET, "index", "<p>smile \u{1F600}</p>", None))
        .await
        .unwrap();
    assert_eq!(
        s.value(&format!(
            "SELECT template FROM {templates} WHERE sid = 1 AND title = 'index'"
        )),
        "<p>smile \u{1F600}</p>"
    );
    let sheet = |name: String| pb::PutStylesheetRequest {
        key: Some(pb::StylesheetKey {
            theme: "Child".to_owned(),
            name,
        }),
        content: "body {}".to_owned(),
        expected_version: None,
    };
    // varchar(30): thirty characters, sixty bytes.
    let fits = format!("{}.css", "é".repeat(26));
    s.sync.put_stylesheet(sheet(fits)).await.unwrap();
    let err = s
        .sync
        .put_stylesheet(sheet(format!("{}.css", "é".repeat(27))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("31 characters") && err.message().contains("at most 30"),
        "{}",
        err.message()
    );
}
