//! What a valid spec is, case by case.

use super::*;

#[test]
fn names_are_dns_like() {
    for good in ["web", "shop.web", "a-1", "x"] {
        validate_name("n", good).unwrap();
    }
    for bad in [
        "",
        "Web",
        "a/b",
        "a b",
        "-a",
        "a-",
        "a..b",
        ".a",
        "i-0123456789abcdef",
    ] {
        assert!(validate_name("n", bad).is_err(), "{bad:?}");
    }
}

#[test]
fn signals_parse_with_or_without_prefix() {
    assert_eq!(parse_signal("TERM"), Some(Signal::SIGTERM));
    assert_eq!(parse_signal("sigint"), Some(Signal::SIGINT));
    assert_eq!(parse_signal("NOPE"), None);
}

#[test]
fn probes_fill_in_their_defaults() {
    assert_eq!(
        Probe::tcp(String::new(), None),
        Probe::Tcp {
            host: "127.0.0.1".to_owned(),
            port: None
        }
    );
    assert_eq!(
        Probe::http(String::new(), String::new()),
        Probe::Http {
            target: HttpTarget::Path("/".to_owned())
        }
    );
    assert_eq!(
        Probe::http("http://h/x".to_owned(), "/ignored".to_owned()),
        Probe::Http {
            target: HttpTarget::Url("http://h/x".to_owned())
        }
    );
}

#[test]
fn an_external_process_needs_a_pid_or_a_port() {
    let input = |pid, port| ExternalInput {
        name: "legacy".to_owned(),
        pid,
        port,
        ..ExternalInput::default()
    };
    assert_eq!(input(0, 0).validate().unwrap_err().field, "pid");
    assert_eq!(input(0, 70_000).validate().unwrap_err().field, "port");
    let external = input(0, 8080).validate().unwrap();
    assert_eq!(
        (external.pid, external.spec.port),
        (None, PortChoice::Fixed(8080))
    );
    assert_eq!(external.spec.restart.mode, RestartMode::Never);
    let probed = ExternalInput {
        health: HealthCheck {
            probe: Probe::http(String::new(), "/up".to_owned()),
            ..HealthCheck::default()
        },
        ..input(42, 0)
    };
    assert_eq!(probed.validate().unwrap_err().field, "health.http");
}
