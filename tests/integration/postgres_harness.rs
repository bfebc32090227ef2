//! The PostgreSQL harness (`tests/support/postgres.rs`) itself: the forums
//! it creates have MyBB's PostgreSQL schema and content, their roles log in
//! with their passwords over TCP and the socket and reach no other forum's
//! database, data survives a restart, and `inc/config.php` reads back in
//! PHP — and, where PHP has its `pgsql` extension, connects the way MyBB's
//! `inc/db_pgsql.php` does.

use std::{path::Path, process::Command};

use crate::{
    mariadb_harness::{check_root_text, php, read_root},
    postgres::{FORUM_PASSWORD, MASTER_TITLES_ALWAYS, PgForum, PgForumSpec, Postgres, SEED_TIME},
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

/// Every column of the content tables as `information_schema` describes
/// MyBB's PostgreSQL definitions (`pgsql_db_tables.php`): table, column,
/// type, length or precision, nullable, default.
const COLUMNS: &str = "\
datacache|title|character varying|50|NO|''::character varying
datacache|cache|text||NO|''::text
templategroups|gid|integer|32|NO|nextval('PREFIXtemplategroups_gid_seq'::regclass)
templategroups|prefix|character varying|50|NO|''::character varying
templategroups|title|character varying|100|NO|''::character varying
templategroups|isdefault|smallint|16|NO|'0'::smallint
templates|tid|integer|32|NO|nextval('PREFIXtemplates_tid_seq'::regclass)
templates|title|character varying|120|NO|''::character varying
templates|template|text||NO|''::text
templates|sid|smallint|16|NO|'0'::smallint
templates|version|character varying|20|NO|'0'::character varying
templates|status|character varying|10|NO|''::character varying
templates|dateline|integer|32|NO|0
templatesets|sid|integer|32|NO|nextval('PREFIXtemplatesets_sid_seq'::regclass)
templatesets|title|character varying|120|NO|''::character varying
themes|tid|integer|32|NO|nextval('PREFIXthemes_tid_seq'::regclass)
themes|name|character varying|100|NO|''::character varying
themes|pid|smallint|16|NO|'0'::smallint
themes|def|smallint|16|NO|'0'::smallint
themes|properties|text||NO|''::text
themes|stylesheets|text||NO|''::text
themes|allowedgroups|text||NO|''::text
themestylesheets|sid|integer|32|NO|nextval('PREFIXthemestylesheets_sid_seq'::regclass)
themestylesheets|name|character varying|30|NO|''::character varying
themestylesheets|tid|numeric|10|NO|'0'::numeric
themestylesheets|attachedto|text||NO|
themestylesheets|stylesheet|text||NO|
themestylesheets|cachefile|character varying|100|NO|''::character varying
themestylesheets|lastmodified|numeric|30|NO|'0'::numeric
";

/// A character outside the Basic Multilingual Plane: 4 bytes in UTF-8.
const EMOJI: &str = "a\u{1F600}b";

/// A libpq connection string value, quoted: `'`, with `\` and `'`
/// backslash-escaped.
fn conninfo_value(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The connection string of `forum`'s role with its password to `database`
/// at `host` (an address, or the socket directory).
fn conninfo(pg: &Postgres, forum: &PgForum, host: &str, database: &str) -> String {
    format!(
        "host={} port={} dbname={database} user={} password={}",
        conninfo_value(host),
        pg.port(),
        forum.user,
        conninfo_value(&forum.password)
    )
}

/// Runs `sql` with psql connected by `target` (a connection string or
/// URL); its output or error.
fn psql(pg: &Postgres, target: &str, sql: &str) -> Result<String, String> {
    let output = pg
        .client()
        .arg(format!("--dbname={target}"))
        .arg(format!("--command={sql}"))
        .output()
        .expect("cannot run psql");
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

fn socket(pg: &Postgres) -> String {
    pg.socket_dir().to_str().unwrap().to_owned()
}

#[test]
fn forums_look_like_mybb_and_their_roles_work() {
    let started = std::time::Instant::now();
    let Some(mut pg) = Postgres::start() else {
        return;
    };
    eprintln!("the server started in {:?}", started.elapsed());
    let first = pg.create_forum(&PgForumSpec::default());
    let second = pg.create_forum(&PgForumSpec {
        database: "forum2".to_owned(),
        prefix: "forum2_".to_owned(),
        master_templates: 60,
    });
    // A second forum in the first one's database, with its own prefix.
    let third = pg.create_forum(&PgForumSpec {
        prefix: "third_".to_owned(),
        master_templates: 11,
        ..PgForumSpec::default()
    });
    assert_eq!(first.password, FORUM_PASSWORD);
    assert_ne!(first.user, second.user);
    assert_eq!(first.user, third.user);

    for (forum, count) in [(&first, 40), (&second, 60), (&third, 11)] {
        let db = &forum.database;
        // A UTF8 database owned by the forum's role.
        assert_eq!(
            pg.sql(
                "",
                &format!(
                    "SELECT pg_encoding_to_char(encoding), datdba::regrole FROM pg_database \
                     WHERE datname = '{db}'"
                )
            ),
            format!("UTF8\t{}\n", forum.user)
        );
        // MyBB's columns, tables owned by the role, no index but the
        // primary keys.
        let columns = pg.sql(
            db,
            &format!(
                "SELECT substr(table_name, {start}), column_name, data_type, \
                 coalesce(character_maximum_length, numeric_precision), is_nullable, column_default \
                 FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name LIKE '{prefix}%' \
                 ORDER BY table_name, ordinal_position",
                start = forum.prefix.len() + 1,
                prefix = forum.prefix,
            ),
        );
        let expected = COLUMNS.replace('|', "\t").replace("PREFIX", &forum.prefix);
        assert_eq!(columns, expected);
        let tables = pg.sql(
            db,
            &format!(
                "SELECT tablename, tableowner FROM pg_tables \
                 WHERE schemaname = 'public' AND tablename LIKE '{}%' ORDER BY tablename",
                forum.prefix
            ),
        );
        let expected: String = TABLES
            .iter()
            .map(|t| format!("{}\t{}\n", forum.table(t), forum.user))
            .collect();
        assert_eq!(tables, expected);
        let indexes = pg.sql(
            db,
            &format!(
                "SELECT indexname FROM pg_indexes WHERE tablename LIKE '{}%' ORDER BY indexname",
                forum.prefix
            ),
        );
        let expected: String = TABLES
            .iter()
            .map(|t| format!("{}_pkey\n", forum.table(t)))
            .collect();
        assert_eq!(indexes, expected);

        let titles = forum.master_titles();
        assert_eq!(titles.len(), count);
        for title in MASTER_TITLES_ALWAYS {
            assert!(titles.iter().any(|t| t == title), "{title} is missing");
        }
        let rows = pg.sql(
            db,
            &format!(
                "SELECT title, sid, version, status, dateline, template = rtrim(template, E'\\n') \
                 FROM {} ORDER BY tid",
                forum.table("templates")
            ),
        );
        let expected: String = titles
            .iter()
            .map(|t| format!("{t}\t-2\t1837\t\t{SEED_TIME}\tt\n"))
            .collect();
        assert_eq!(rows, expected, "only master rows, rtrimmed");
        let counts = pg.sql(
            db,
            &format!(
                "SELECT (SELECT count(*) FROM {}), (SELECT string_agg(sid || ':' || title, ',') FROM {}), \
                 (SELECT string_agg(tid || ':' || pid || ':' || def, ',' ORDER BY tid) FROM {}), \
                 (SELECT string_agg(name || '@' || tid || ':' || lastmodified, ',' ORDER BY sid) FROM {}), \
                 (SELECT string_agg(title, ',') FROM {})",
                forum.table("templategroups"),
                forum.table("templatesets"),
                forum.table("themes"),
                forum.table("themestylesheets"),
                forum.table("datacache"),
            ),
        );
        assert_eq!(
            counts,
            format!(
                "42\t1:Default Templates\t1:0:0,2:1:1,3:2:0\t\
                 global.css@1:{SEED_TIME},usercp.css@1:{SEED_TIME},css3.css@1:{SEED_TIME},\
                 color_black.css@2:{SEED_TIME}\tdefault_theme\n"
            )
        );
    }
    // A backslash and a quote survive the seeding as they are.
    assert_eq!(
        pg.sql(
            "forum",
            "SELECT template FROM mybb_templates WHERE title = 'zzcustom_widget'"
        ),
        "<div class=\"zz_widget\" title='{$lang->welcome_back}'>C:\\forum\\new \\\\ {$mybb->user['username']}</div>\n"
    );

    // The serialized columns are PHP's own format, and the default theme's
    // cache holds its row.
    if let Some(php) = php() {
        let unserialize = |hex: &str| {
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
        let themes = pg.sql(
            "forum",
            "SELECT encode(convert_to(properties, 'UTF8'), 'hex'), \
             encode(convert_to(stylesheets, 'UTF8'), 'hex') FROM mybb_themes ORDER BY tid",
        );
        let rows: Vec<Vec<serde_json::Value>> = themes
            .lines()
            .map(|line| line.split('\t').map(unserialize).collect())
            .collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][0]["templateset"], -2);
        assert_eq!(rows[2][0]["inherited"]["templateset"], 2);
        assert_eq!(
            rows[2][1]["inherited"]["black_global"]["css.php?stylesheet=4"],
            "2"
        );
        let cache = pg.sql(
            "forum",
            "SELECT encode(convert_to(cache, 'UTF8'), 'hex') FROM mybb_datacache \
             WHERE title = 'default_theme'",
        );
        let default = unserialize(cache.trim());
        assert_eq!(default["tid"], "2");
        assert_eq!(
            default["properties"],
            pg.sql("forum", "SELECT properties FROM mybb_themes WHERE tid = 2")
                .trim_end()
        );
    }

    // The role logs in with its password over TCP (by URL and by
    // connection string) and over the socket, and reaches its database.
    let url = first.url(&pg);
    assert_eq!(
        url,
        format!(
            "postgres://forum:p%40ss%3Aw%2Frd%251%27@127.0.0.1:{}/forum",
            pg.port()
        )
    );
    for target in [
        url.clone(),
        conninfo(&pg, &first, "127.0.0.1", "forum"),
        conninfo(&pg, &first, &socket(&pg), "forum"),
    ] {
        assert_eq!(
            psql(
                &pg,
                &target,
                "SELECT current_user, count(*) FROM mybb_templates"
            )
            .unwrap(),
            "forum\t40\n",
            "{target}"
        );
    }
    // Not without it, nor with a wrong one, whichever way.
    for host in ["127.0.0.1".to_owned(), socket(&pg)] {
        let err = psql(
            &pg,
            &format!(
                "host={} port={} dbname=forum user=forum",
                conninfo_value(&host),
                pg.port()
            ),
            "SELECT 1",
        )
        .unwrap_err();
        assert!(err.contains("no password supplied"), "{err}");
        let err = psql(
            &pg,
            &format!(
                "host={} port={} dbname=forum user=forum password=wrong",
                conninfo_value(&host),
                pg.port()
            ),
            "SELECT 1",
        )
        .unwrap_err();
        assert!(err.contains("password authentication failed"), "{err}");
    }
    // Nor does it reach another forum's database (nor that forum's role
    // its own).
    let err = psql(
        &pg,
        &conninfo(&pg, &first, "127.0.0.1", "forum2"),
        "SELECT 1",
    )
    .unwrap_err();
    assert!(
        err.contains("permission denied for database \"forum2\""),
        "{err}"
    );
    let err = psql(
        &pg,
        &conninfo(&pg, &second, "127.0.0.1", "forum"),
        "SELECT 1",
    )
    .unwrap_err();
    assert!(
        err.contains("permission denied for database \"forum\""),
        "{err}"
    );

    // The sequences are past the seeded ids: the role's inserts without an
    // id get fresh ones, as on a fresh install.
    let inserted = psql(
        &pg,
        &url,
        "INSERT INTO mybb_templatesets (title) VALUES ('Mine') RETURNING sid; \
         INSERT INTO mybb_templategroups (prefix, title) VALUES ('mine', 'Mine') RETURNING gid; \
         INSERT INTO mybb_themes (name, pid, properties, stylesheets, allowedgroups) \
         VALUES ('Mine', 1, '', '', 'all') RETURNING tid; \
         INSERT INTO mybb_themestylesheets (name, tid, attachedto, stylesheet, cachefile, lastmodified) \
         VALUES ('mine.css', 4, '', '', 'mine.css', 1) RETURNING sid",
    )
    .unwrap();
    assert_eq!(inserted, "2\n43\n4\n5\n");
    // UTF8 holds a 4-byte character, and the primary key refuses a
    // duplicate (the only constraint MyBB's tables have).
    let insert = |title: &str| {
        format!(
            "INSERT INTO mybb_templates (title, template, sid, version, status, dateline) \
             VALUES ('{title}', '{EMOJI}', 2, '1837', '', 1) RETURNING tid"
        )
    };
    assert_eq!(pg.sql("forum", &insert("emoji")), "41\n");
    assert_eq!(
        pg.sql(
            "forum",
            "SELECT template, octet_length(template) FROM mybb_templates WHERE title = 'emoji'"
        ),
        format!("{EMOJI}\t6\n")
    );
    let err = pg
        .try_sql(
            "forum",
            "INSERT INTO mybb_datacache (title, cache) VALUES ('default_theme', '')",
        )
        .unwrap_err();
    assert!(err.contains("duplicate key value"), "{err}");
    // A script stops at its first error.
    let err = pg
        .try_sql(
            "forum",
            &format!("SELECT nonsense; {}", insert("after_error")),
        )
        .unwrap_err();
    assert!(err.contains("column \"nonsense\" does not exist"), "{err}");
    assert_eq!(
        pg.sql(
            "forum",
            "SELECT count(*) FROM mybb_templates WHERE title = 'after_error'"
        ),
        "0\n"
    );

    // A restart keeps the data, the socket directory and the port.
    let (dir, port) = (pg.socket_dir().to_owned(), pg.port());
    pg.stop();
    assert!(psql(&pg, &url, "SELECT 1").is_err(), "the server is down");
    let restarted = std::time::Instant::now();
    pg.start_again();
    eprintln!("the server started again in {:?}", restarted.elapsed());
    assert_eq!((pg.socket_dir(), pg.port()), (dir.as_path(), port));
    assert_eq!(
        psql(&pg, &url, "SELECT count(*) FROM mybb_templates").unwrap(),
        "41\n"
    );
    assert_eq!(
        psql(
            &pg,
            &conninfo(&pg, &second, &socket(&pg), "forum2"),
            "SELECT count(*) FROM forum2_templates"
        )
        .unwrap(),
        "60\n"
    );
    assert_eq!(
        pg.sql("forum", "SELECT count(*) FROM third_templates"),
        "11\n"
    );
}

#[test]
fn the_forum_root_reads_back_in_php() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let forum = pg.create_forum(&PgForumSpec::default());
    let dir = tempfile::tempdir().unwrap();
    let hostname = format!("127.0.0.1:{}", pg.port());
    forum.write_root(dir.path(), &hostname);
    // MyBB's pgsql driver splits a socket directory's port off too.
    let by_socket = dir.path().join("by_socket");
    let socket_hostname = format!("{}:{}", socket(&pg), pg.port());
    forum.write_root(&by_socket, &socket_hostname);

    check_root_text(
        dir.path(),
        &[
            "$config['database']['type'] = 'pgsql';",
            &format!("$config['database']['hostname'] = '{hostname}';"),
            "// $config['database']['encoding'] = '';",
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
            "type": "pgsql",
            "database": "forum",
            "table_prefix": "mybb_",
            "hostname": hostname,
            "username": "forum",
            "password": FORUM_PASSWORD,
        }),
        "no encoding: the installer comments it out for pgsql"
    );
    assert_eq!(config["cache_store"], "db");
    assert_eq!(config["secret_pin"], "");
    assert_eq!(
        read(&by_socket)[0]["database"]["hostname"],
        socket_hostname.as_str()
    );

    // MyBB's pgsql driver (inc/db_pgsql.php, connect) builds a libpq
    // connection string from the config, unquoted: `hostname` split at
    // its colons into host and port, empty parts left out. Both roots
    // connect that way, over TCP and over the socket.
    let has_pgsql = Command::new(&php)
        .args(["-r", "echo extension_loaded('pgsql') ? 1 : 0;"])
        .output()
        .unwrap();
    if has_pgsql.stdout != b"1" {
        let required =
            std::env::var("OUTPOST_REQUIRE_REAL").is_ok_and(|v| !v.is_empty() && v != "0");
        assert!(
            !required,
            "PHP's pgsql extension is missing (and OUTPOST_REQUIRE_REAL is set)"
        );
        eprintln!("skipping the connection through PHP: no pgsql extension");
        return;
    }
    for root in [dir.path(), by_socket.as_path()] {
        let out = Command::new(&php)
            .args([
                "-r",
                r#"define('IN_MYBB', 1); include $argv[1].'/inc/config.php';
                $c = $config['database'];
                $s = "dbname={$c['database']} user={$c['username']}";
                if(strpos($c['hostname'], ':') !== false) { list($c['hostname'], $c['port']) = explode(':', $c['hostname']); } else { $c['port'] = null; }
                if($c['port']) { $s .= " port={$c['port']}"; }
                if($c['hostname'] != "") { $s .= " host={$c['hostname']}"; }
                if($c['password']) { $s .= " password={$c['password']}"; }
                $link = pg_connect($s);
                $r = pg_fetch_row(pg_query($link, "SELECT current_user, count(*) FROM {$c['table_prefix']}templates"));
                echo implode(' ', $r);"#,
                "--",
            ])
            .arg(root)
            .output()
            .unwrap();
        assert!(out.status.success() && out.stderr.is_empty(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "forum 40");
    }
}
