//! The workspace file format: what it reads and what it refuses.

use super::*;

fn parse_toml(text: &str) -> Result<Workspace, Vec<String>> {
    parse(Path::new("/w/shop.toml"), text)
}

#[test]
fn defaults_merge_and_names_are_prefixed() {
    let workspace = parse_toml(
        r#"
        [defaults]
        restart = "on-failure"
        env = { RUST_LOG = "info", MODE = "dev" }

        [instances.web]
        command = ["python3", "-m", "http.server", "{port}"]
        port = "auto"
        env = { MODE = "web" }
        health = { http = "/" }
        "#,
    )
    .unwrap();
    let web = &workspace.instances[0];
    assert_eq!(web.name, "shop.web");
    assert_eq!(web.env["RUST_LOG"], "info");
    assert_eq!(web.env["MODE"], "web");
    assert_eq!(web.restart.mode, RestartMode::OnFailure);
    assert_eq!(web.port, PortChoice::Auto);
}

#[test]
fn problems_name_the_line_or_field() {
    let syntax = parse_toml("[instances.web\ncommand = [\"x\"]").unwrap_err();
    assert!(syntax[0].contains("line 1"), "{syntax:?}");
    let unknown = parse_toml("[instances.web]\ncommand = [\"x\"]\ncolour = \"red\"").unwrap_err();
    assert!(
        unknown[0].contains("colour") && unknown[0].contains("line 3"),
        "{unknown:?}"
    );
    let negative =
        parse_toml("[instances.web]\ncommand = [\"x\"]\nidle_timeout = \"-1s\"").unwrap_err();
    assert!(
        negative[0].contains("instances.web: idle_timeout"),
        "{negative:?}"
    );
    let duplicate = parse_toml(
        "[instances.a]\ncommand = [\"x\"]\nname = \"same\"\n[instances.b]\ncommand = [\"x\"]\nname = \"same\"",
    )
    .unwrap_err();
    assert!(duplicate[0].contains("used twice"), "{duplicate:?}");
    let json = parse(
        Path::new("/w/shop.json"),
        "{\"instances\": {\"web\": {\"comand\": []}}}",
    )
    .unwrap_err();
    assert!(
        json[0].contains("comand") && json[0].contains("line 1"),
        "{json:?}"
    );
}

#[test]
fn dependencies_name_keys_of_the_file_or_other_instances() {
    let workspace = parse_toml(
        r#"
        [instances.db]
        command = ["db"]
        restart_dependents = true
        [instances.migrate]
        command = ["migrate"]
        depends_on = ["db"]
        [instances.api]
        command = ["api"]
        name = "api"
        depends_on = { db = "ready", migrate = "completed", "cache.redis" = "started" }
        "#,
    )
    .unwrap();
    let api = &workspace.instances[0];
    assert_eq!(api.name, "api");
    assert_eq!(
        api.depends_on,
        BTreeMap::from([
            ("cache.redis".to_owned(), Condition::Started),
            ("shop.db".to_owned(), Condition::Ready),
            ("shop.migrate".to_owned(), Condition::Completed),
        ])
    );
    assert!(workspace.instances[1].restart_dependents);
    assert_eq!(
        workspace.instances[2].depends_on,
        BTreeMap::from([("shop.db".to_owned(), Condition::Ready)])
    );
    let cycle = parse_toml(
        "[instances.a]\ncommand = [\"x\"]\ndepends_on = [\"b\"]\n\
         [instances.b]\ncommand = [\"x\"]\ndepends_on = [\"a\"]\n",
    )
    .unwrap_err();
    assert!(
        cycle[0].contains("depends_on: shop.a → shop.b → shop.a is a cycle"),
        "{cycle:?}"
    );
    let word =
        parse_toml("[instances.a]\ncommand = [\"x\"]\ndepends_on = { b = \"up\" }").unwrap_err();
    assert!(word[0].contains("instances.a: depends_on.b:"), "{word:?}");
    let own = parse_toml("[instances.a]\ncommand = [\"x\"]\ndepends_on = [\"a\"]").unwrap_err();
    assert!(own[0].contains("cannot depend on itself"), "{own:?}");
}

#[test]
fn readiness_is_read_and_checked() {
    let workspace = parse_toml(
        r#"
        [instances.api]
        command = ["./api"]
        ready_log = "listening on"

        [instances.worker]
        command = ["./worker"]
        ready_notify = true
        watchdog = "10s"
        "#,
    )
    .unwrap();
    let api = &workspace.instances[0].readiness;
    assert_eq!(api.log_pattern.as_deref(), Some("listening on"));
    let worker = &workspace.instances[1].readiness;
    assert!(worker.notify);
    assert_eq!(worker.watchdog, Some(Duration::from_secs(10)));

    let bad = parse_toml("[instances.api]\ncommand = [\"x\"]\nready_log = \"(\"").unwrap_err();
    assert!(bad[0].contains("instances.api: ready_log:"), "{bad:?}");
    let lonely = parse_toml("[instances.api]\ncommand = [\"x\"]\nwatchdog = \"1s\"").unwrap_err();
    assert!(lonely[0].contains("instances.api: watchdog:"), "{lonely:?}");
}

#[test]
fn only_workspace_files_count() {
    assert_eq!(
        workspace_name(Path::new("/w/shop.toml")).as_deref(),
        Some("shop")
    );
    for other in [
        "/w/.shop.toml.swp",
        "/w/shop.toml~",
        "/w/.hidden.toml",
        "/w/4913",
        "/w/shop.yaml",
    ] {
        assert_eq!(workspace_name(Path::new(other)), None, "{other}");
    }
}
