//! Arbitrary files never panic the parser; what it accepts keeps to the
//! limits; what it refuses is reported in messages of bounded size.

use proptest::prelude::*;

use super::*;
use crate::limits::{MAX_DURATION, MAX_STOP_GRACE};

/// Durations as a file writes them, valid or not, small or huge.
fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        (
            0u64..1000,
            prop_oneof!["ms", "s", "m", "h", "days", "years"]
        )
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        (any::<u64>(), prop_oneof!["s", "days", "years"])
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        any::<String>(),
    ]
}

fn entry() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("idle_timeout"),
        Just("startup_timeout"),
        Just("stop_grace"),
        Just("reset_after"),
        Just("cooldown"),
    ];
    let durations = proptest::collection::vec((key, duration_text()), 0..4);
    (
        durations,
        proptest::option::of(any::<u32>()),
        proptest::option::of((duration_text(), duration_text())),
        proptest::option::of((duration_text(), any::<u32>())),
    )
        .prop_map(|(durations, max_restarts, backoff, health)| {
            let mut text = "[instances.web]\ncommand = [\"sleep\", \"1\"]\nrestart = \"always\"\n".to_owned();
            let mut seen = std::collections::BTreeSet::new();
            for (key, value) in durations {
                if seen.insert(key) {
                    text.push_str(&format!("{key} = {value:?}\n"));
                }
            }
            if let Some(max) = max_restarts {
                text.push_str(&format!("max_restarts = {max}\n"));
            }
            if let Some((first, last)) = backoff {
                text.push_str(&format!("backoff = {:?}\n", format!("{first}..{last}")));
            }
            if let Some((interval, failures)) = health {
                text.push_str(&format!(
                    "health = {{ exec = \"true\", interval = {interval:?}, failures = {failures} }}\n"
                ));
            }
            text
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text_is_parsed_or_refused_without_a_panic(text in any::<String>()) {
        let _ = parse(Path::new("/w/any.toml"), &text);
        let _ = parse(Path::new("/w/any.json"), &text);
    }

    #[test]
    fn accepted_files_keep_every_limit(text in entry()) {
        match parse(Path::new("/w/shop.toml"), &text) {
            Ok(workspace) => {
                for spec in &workspace.instances {
                    let restart = &spec.restart;
                    for d in [restart.initial_delay, restart.max_delay, restart.reset_after,
                              restart.cooldown, spec.startup_timeout, spec.health.interval,
                              spec.idle_timeout.unwrap_or_default()] {
                        prop_assert!(d <= MAX_DURATION);
                    }
                    prop_assert!(spec.stop_grace <= MAX_STOP_GRACE);
                }
            }
            Err(errors) => {
                for error in errors {
                    prop_assert!(error.len() < 1000, "{error}");
                }
            }
        }
    }

}

#[test]
fn huge_input_comes_back_cut() {
    for long in [10_000, 1 << 20] {
        let huge = "q".repeat(long);
        for text in [
            format!("[instances.web]\ncommand = [\"x\"]\nidle_timeout = \"{huge}\"\n"),
            format!("[instances.{huge}]\ncommand = [\"x\"]\n"),
            format!("[instances.web]\ncommand = [\"x\"]\n{huge} = 1\n"),
            format!("[instances.web]\ncommand = [\"x\"]\nrestart = \"{huge}\"\n"),
            huge.clone(),
        ] {
            for error in parse(Path::new("/w/shop.toml"), &text).unwrap_err() {
                assert!(error.len() < 1000, "{} bytes: {}", error.len(), cut(&error));
            }
        }
        let json = format!("{{\"instances\": {{\"web\": {{\"{huge}\": 1}}}}}}");
        for error in parse(Path::new("/w/shop.json"), &json).unwrap_err() {
            assert!(error.len() < 1000, "{} bytes: {}", error.len(), cut(&error));
        }
    }
}
