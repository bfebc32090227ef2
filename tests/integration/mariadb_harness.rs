//! The MariaDB harness (`tests/support/mariadb.rs`) itself: the forums it
//! creates look like MyBB's, their accounts work over the socket and TCP
//! and see nothing else, data survives a restart, `inc/config.php` reads
//! back in PHP — and what MariaDB does with a value a column cannot hold,
//! which is why the MyBB store checks what it writes.

use std::{path::Path, process::Command};

use crate::mariadb::{
    Charset, FORUM_PASSWORD, Forum, ForumSpec, MASTER_TITLES_ALWAYS, MariaDb, SEED_TIME, SqlMode,
};

/// MyBB's content tables.
const TABLES: [&str; 6] = [
    "datacache",
    "templategroups",
    "templates",
    "templatesets",
    "themes",
    "themestylesheets",
];

/// A character outside the Basic Multilingual Plane: 4 bytes in UTF-8,
/// which utf8mb3 cannot hold.
const EMOJI: &str = "a\u{1F600}b";

fn utf8mb3_forum() -> ForumSpec {
    ForumSpec {
        charset: Charset::Utf8mb3,
        ..ForumSpec::default()
    }
}

/// Runs the client as the forum's account with `args` (connection options)
/// and `sql`; its output or error.
fn as_forum(db: &MariaDb, forum: &Forum, args: &[&str], sql: &str) -> Result<String, String> {
    let output = db
        .client()
        .arg(format!("--user={}", forum.user))
        .arg(format!("--password={}", forum.password))
        .args(args)
        .arg(format!("--database={}", forum.database))
        .arg(format!("--execute={sql}"))
        .output()
        .expect("cannot run the client");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn socket_args(db: &MariaDb) -> Vec<String> {
    vec![format!("--socket={}", db.socket().display())]
}

fn tcp_args(db: &MariaDb) -> Vec<String> {
    vec![
        "--protocol=TCP".to_owned(),
        "--host=127.0.0.1".to_owned(),
        format!("--port={}", db.port()),
    ]
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// An insert of one template into a forum's set 1.
fn insert_template(forum: &Forum, title: &str, content: &str) -> String {
    format!(
        "INSERT INTO {} (title, template, sid, version, status, dateline) VALUES ('{title}', '{content}', 1, '1837', '', 1)",
        forum.table("templates")
    )
}

#[test]
fn forums_look_like_mybb_and_their_accounts_work() {
    let Some(mut db) = MariaDb::start(SqlMode::Strict) else {
        return;
    };
    let first = db.create_forum(&utf8mb3_forum());
    let second = db.create_forum(&ForumSpec {
        database: "forum2".to_owned(),
        prefix: "forum2_".to_owned(),
        charset: Charset::Utf8mb4,
        master_templates: 60,
    });
    assert_eq!(first.password, FORUM_PASSWORD);
    assert_ne!(first.user, second.user);

    for (forum, collation, count) in [
        (&first, "utf8mb3_general_ci", 40),
        (&second, "utf8mb4_general_ci", 60),
    ] {
        let tables = db.sql(
            "",
            &format!(
                "SELECT TABLE_NAME, ENGINE, TABLE_COLLATION FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = '{}' ORDER BY TABLE_NAME",
                forum.database
            ),
        );
        let expected: String = TABLES
            .iter()
            .map(|t| format!("{}\tMyISAM\t{collation}\n", forum.table(t)))
            .collect();
        assert_eq!(tables, expected);

        let titles = forum.master_titles();
        assert_eq!(titles.len(), count);
        for title in MASTER_TITLES_ALWAYS {
            assert!(titles.iter().any(|t| t == title), "{title} is missing");
        }
        let templates = forum.table("templates");
        let rows = db.sql(
            &forum.database,
            &format!(
                "SELECT title, sid, version, status, dateline, template = TRIM(TRAILING '\\n' FROM template) \
                 FROM {templates} ORDER BY tid"
            ),
        );
        let expected: String = titles
            .iter()
            .map(|t| format!("{t}\t-2\t1837\t\t{SEED_TIME}\t1\n"))
            .collect();
        assert_eq!(rows, expected, "only master rows, rtrimmed");
        let counts = db.sql(
            &forum.database,
            &format!(
                "SELECT (SELECT COUNT(*) FROM {}), (SELECT COUNT(*) FROM {}), \
                 (SELECT GROUP_CONCAT(CONCAT(tid, ':', pid, ':', def) ORDER BY tid) FROM {}), \
                 (SELECT GROUP_CONCAT(CONCAT(name, '@', tid) ORDER BY sid) FROM {})",
                forum.table("templategroups"),
                forum.table("templatesets"),
                forum.table("themes"),
                forum.table("themestylesheets"),
            ),
        );
        assert_eq!(
            counts,
            "42\t1\t1:0:0,2:1:1,3:2:0\tglobal.css@1,usercp.css@1,css3.css@1,color_black.css@2\n"
        );
    }

    // The serialized columns are PHP's own format.
    if let Some(php) = php() {
        let themes = db.sql(
            "forum",
            "SELECT HEX(properties), HEX(stylesheets) FROM mybb_themes ORDER BY tid",
        );
        let unserialize = |hex: &str| {
            // The value, and whether PHP serializes it back to the same
            // bytes.
            let out = Command::new(&php)
                .args([
                    "-r",
                    "$s = hex2bin($argv[1]); $v = unserialize($s); \
                     echo json_encode(array($v, serialize($v) === $s));",
                    "--",
                    hex,
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(value[1], true, "not as PHP serializes it: {hex}");
            value[0].clone()
        };
        let rows: Vec<Vec<serde_json::Value>> = themes
            .lines()
            .map(|line| line.split('\t').map(unserialize).collect())
            .collect();
        let (child_properties, child_sheets) = (&rows[2][0], &rows[2][1]);
        assert_eq!(rows[0][0]["templateset"], -2);
        assert_eq!(rows[1][0]["templateset"], 1);
        assert_eq!(child_properties["templateset"], 1);
        assert_eq!(child_properties["inherited"]["templateset"], 2);
        assert_eq!(child_properties["inherited"]["imgdir"], 1);
        assert_eq!(
            child_properties["disporder"],
            serde_json::json!({"global.css": 1, "usercp.css": 2, "css3.css": 3, "color_black.css": 4})
        );
        assert_eq!(
            child_sheets["black"]["global"],
            serde_json::json!(["css.php?stylesheet=4"])
        );
        assert_eq!(
            child_sheets["inherited"]["black_global"]["css.php?stylesheet=4"],
            "2"
        );
        assert_eq!(
            child_sheets["private.php"]["global"],
            serde_json::json!(["css.php?stylesheet=2"])
        );
        let cache = db.sql(
            "forum",
            "SELECT HEX(cache) FROM mybb_datacache WHERE title = 'default_theme'",
        );
        let default = unserialize(cache.trim());
        assert_eq!(default["tid"], "2");
        assert_eq!(
            default["properties"],
            db.sql("forum", "SELECT properties FROM mybb_themes WHERE tid = 2")
                .trim_end()
        );
    }

    // The forum's account, over the socket and over TCP, sees its own
    // database only.
    for args in [socket_args(&db), tcp_args(&db)] {
        let args = strs(&args);
        assert_eq!(
            as_forum(&db, &first, &args, "SELECT COUNT(*) FROM mybb_templates").unwrap(),
            "40\n"
        );
        let databases = as_forum(&db, &first, &args, "SHOW DATABASES").unwrap();
        assert!(!databases.contains("forum2"), "{databases}");
        let denied = as_forum(
            &db,
            &first,
            &args,
            "SELECT COUNT(*) FROM forum2.forum2_templates",
        )
        .unwrap_err();
        assert!(denied.contains("denied"), "{denied}");
    }
    let user = as_forum(&db, &first, &strs(&tcp_args(&db)), "SELECT CURRENT_USER()").unwrap();
    assert_eq!(user, "forum@127.0.0.1\n");
    let wrong = db
        .client()
        .args(["--user=forum", "--password=wrong"])
        .args(socket_args(&db))
        .arg("--execute=SELECT 1")
        .output()
        .unwrap();
    assert!(!wrong.status.success());

    // Strict mode refuses a 4-byte character in a utf8mb3 column…
    let err = db
        .try_sql("forum", &insert_template(&first, "emoji", EMOJI))
        .unwrap_err();
    assert!(err.contains("Incorrect string value"), "{err}");
    // …but MyISAM cannot roll back, so only in a statement's first row: a
    // later row is changed to `?` with a warning.
    let rows = db.sql(
        "forum",
        &format!(
            "{}, ('emoji', '{EMOJI}', 1, '1837', '', 1); \
             SELECT title, HEX(template) FROM mybb_templates WHERE sid = 1 ORDER BY tid",
            insert_template(&first, "plain", "ok")
        ),
    );
    assert_eq!(rows, "plain\t6F6B\nemoji\t613F62\n");
    // utf8mb4 holds it.
    db.sql("forum2", &insert_template(&second, "emoji", EMOJI));
    assert_eq!(
        db.sql(
            "forum2",
            "SELECT template FROM forum2_templates WHERE title = 'emoji'"
        ),
        format!("{EMOJI}\n")
    );

    // A graceful restart keeps the data, the socket and the port.
    let (socket, port) = (db.socket().to_owned(), db.port());
    db.stop();
    assert!(
        as_forum(&db, &first, &strs(&tcp_args(&db)), "SELECT 1").is_err(),
        "the server is down"
    );
    db.start_again();
    assert_eq!((db.socket(), db.port()), (socket.as_path(), port));
    assert_eq!(
        as_forum(
            &db,
            &first,
            &strs(&tcp_args(&db)),
            "SELECT COUNT(*) FROM mybb_templates"
        )
        .unwrap(),
        "42\n"
    );
    assert_eq!(
        as_forum(
            &db,
            &second,
            &strs(&socket_args(&db)),
            "SELECT COUNT(*) FROM forum2_templates"
        )
        .unwrap(),
        "61\n"
    );

    // The URL for the socket: the password percent-encoded.
    assert_eq!(
        first.socket_url(&db),
        format!(
            "mysql://forum:p%40ss%3Aw%2Frd%251%27@localhost/forum?socket={}",
            db.socket().display()
        )
    );
    // sqlx, which the store uses, reads it and gets in.
    let url = first.socket_url(&db);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (user,): (String,) = runtime.block_on(async {
        use sqlx::Connection as _;
        let mut connection = sqlx::MySqlConnection::connect(&url).await.unwrap();
        sqlx::query_as("SELECT CURRENT_USER()")
            .fetch_one(&mut connection)
            .await
            .unwrap()
    });
    assert_eq!(user, "forum@localhost");
}

#[test]
fn a_non_strict_server_changes_what_a_column_cannot_hold() {
    let Some(db) = MariaDb::start(SqlMode::NonStrict) else {
        return;
    };
    assert_eq!(db.sql("", "SELECT @@sql_mode"), "\n");
    let forum = db.create_forum(&utf8mb3_forum());
    // A 4-byte character becomes `?`, with only a warning.
    let out = db.sql(
        "forum",
        &format!(
            "{}; SHOW WARNINGS; SELECT HEX(template) FROM mybb_templates WHERE title = 'emoji'",
            insert_template(&forum, "emoji", EMOJI)
        ),
    );
    assert!(
        out.starts_with("Warning\t1366\tIncorrect string value"),
        "{out}"
    );
    assert!(out.ends_with("\n613F62\n"), "{out}");
    // A template longer than TEXT's 65,535 bytes is cut.
    let out = db.sql(
        "forum",
        &format!(
            "{}; SELECT LENGTH(template) FROM mybb_templates WHERE title = 'long'",
            insert_template(&forum, "long", &"x".repeat(70_000))
        ),
    );
    assert_eq!(out, "65535\n");
}

#[test]
fn the_forum_root_reads_back_in_php() {
    let Some(db) = MariaDb::start(SqlMode::Strict) else {
        return;
    };
    let forum = db.create_forum(&utf8mb3_forum());
    let other = db.create_forum(&ForumSpec {
        database: "other".to_owned(),
        ..ForumSpec::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let hostname = format!("127.0.0.1:{}", db.port());
    forum.write_root(dir.path(), &hostname);
    let tricky = dir.path().join("tricky");
    other.write_root(&tricky, "it's a \\ path\\");

    check_root_text(
        dir.path(),
        &[
            "$config['database']['type'] = 'mysqli';",
            &format!("$config['database']['hostname'] = '{hostname}';"),
            "$config['database']['encoding'] = 'utf8';",
        ],
    );
    let Some(php) = php() else {
        return;
    };
    let read = |root: &Path| read_root(&php, root);
    let read_back = read(dir.path());
    let (config, version, code) = (&read_back[0], &read_back[1], &read_back[2]);
    assert_eq!(
        (version.as_str(), code.as_i64()),
        (Some("1.8.37"), Some(1837))
    );
    assert_eq!(
        config["database"],
        serde_json::json!({
            "type": "mysqli",
            "database": "forum",
            "table_prefix": "mybb_",
            "hostname": hostname,
            "username": "forum",
            "password": FORUM_PASSWORD,
            "encoding": "utf8",
        })
    );
    assert_eq!(config["admin_dir"], "admin");
    assert_eq!(config["hide_admin_links"], 0);
    assert_eq!(config["cache_store"], "db");
    assert_eq!(
        config["memcache"],
        serde_json::json!({"host": "localhost", "port": 11211})
    );
    assert_eq!(
        config["redis"],
        serde_json::json!({"host": "localhost", "port": 6379})
    );
    assert_eq!(config["super_admins"], "1");
    assert_eq!(config["log_pruning"]["task_logs"], 30);
    assert_eq!(
        config["disallowed_remote_hosts"],
        serde_json::json!(["localhost"])
    );
    assert_eq!(config["secret_pin"], "");

    let tricky = read(&tricky);
    assert_eq!(tricky[0]["database"]["hostname"], "it's a \\ path\\");
    assert_eq!(tricky[0]["database"]["encoding"], "utf8mb4");
}

/// PHP's command-line interpreter, or None (with a reason) if it is
/// missing and not required. Shared with the PostgreSQL harness's tests.
pub(crate) fn php() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(php) = std::env::split_paths(&path)
        .map(|dir| dir.join("php"))
        .find(|php| php.is_file())
    {
        return Some(php);
    }
    let required = std::env::var("OUTPOST_REQUIRE_REAL").is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "php is not installed (and OUTPOST_REQUIRE_REAL is set)"
    );
    eprintln!("skipping the PHP checks: php is not installed");
    None
}

/// Checks the text of a forum directory `write_root` wrote, as MyBB's
/// installer leaves one: the config's header, its lines common to every
/// forum of the harness and `server_lines` (those that differ by
/// database), no closing tag, an empty theme cache, and class_core.php.
pub(crate) fn check_root_text(dir: &Path, server_lines: &[&str]) {
    let config = std::fs::read_to_string(dir.join("inc/config.php")).unwrap();
    assert!(config.starts_with("<?php\n/**\n * Database configuration\n"));
    assert!(
        config.ends_with("\n$config['secret_pin'] = '';"),
        "no ?> and no final newline"
    );
    let common = [
        "$config['database']['database'] = 'forum';",
        "$config['database']['table_prefix'] = 'mybb_';",
        "$config['database']['username'] = 'forum';",
        "$config['database']['password'] = 'p@ss:w/rd%1\\'';",
    ];
    for line in common.iter().chain(server_lines) {
        assert!(config.lines().any(|l| l == *line), "{line} is missing");
    }
    assert!(
        dir.join("cache/themes")
            .read_dir()
            .unwrap()
            .next()
            .is_none()
    );
    let core = std::fs::read_to_string(dir.join("inc/class_core.php")).unwrap();
    assert!(core.contains("\tpublic $version_code = 1837;\n"));
}

/// `[$config, $mybb->version, $mybb->version_code]` of the forum at
/// `root`, as PHP reads them.
pub(crate) fn read_root(php: &Path, root: &Path) -> serde_json::Value {
    let out = Command::new(php)
        .args([
            "-r",
            "define('IN_MYBB', 1); include $argv[1].'/inc/config.php'; include $argv[1].'/inc/class_core.php'; \
             $mybb = new MyBB; echo json_encode(array($config, $mybb->version, $mybb->version_code));",
            "--",
        ])
        .arg(root)
        .output()
        .unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
    serde_json::from_slice(&out.stdout).unwrap()
}
