//! Property tests of spec validation: arbitrary input never panics it;
//! what it accepts keeps to every limit and survives a round trip.

use proptest::prelude::*;

use super::*;
use crate::limits::MAX_LABELS;

/// Durations mostly within the limits, some at or far past them.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        6 => (0u64..120, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        6 => (1u64..=MAX_DURATION.as_secs() + 2).prop_map(Duration::from_secs),
        1 => any::<u64>().prop_map(Duration::from_secs),
        1 => Just(Duration::MAX),
    ]
}

fn count(max: u32) -> impl Strategy<Value = u32> {
    prop_oneof![8 => 0..=max + 1, 1 => any::<u32>()]
}

/// Mostly `valid` text, sometimes anything.
fn text(valid: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        16 => proptest::string::string_regex(valid).unwrap(),
        1 => any::<String>(),
        1 => (0usize..9000).prop_map(|n| "y".repeat(n)),
    ]
}

fn probe() -> impl Strategy<Value = Probe> {
    prop_oneof![
        3 => Just(Probe::None),
        1 => (text("[a-z.]{0,12}"), proptest::option::of(any::<u16>()))
            .prop_map(|(host, port)| Probe::tcp(host, port)),
        1 => (text("(http://[a-z]{1,8}/)?"), text("/[a-z]{0,8}"))
            .prop_map(|(url, path)| Probe::http(url, path)),
        1 => proptest::collection::vec(text("[a-z]{1,8}"), 0..4)
            .prop_map(|command| Probe::Exec { command }),
    ]
}

fn health() -> impl Strategy<Value = HealthCheck> {
    (
        probe(),
        duration(),
        duration(),
        count(MAX_THRESHOLD),
        count(MAX_THRESHOLD),
    )
        .prop_map(
            |(probe, interval, timeout, failure_threshold, success_threshold)| HealthCheck {
                probe,
                interval,
                timeout,
                failure_threshold,
                success_threshold,
            },
        )
}

fn restart() -> impl Strategy<Value = RestartPolicy> {
    (
        prop_oneof![
            Just(RestartMode::Never),
            Just(RestartMode::OnFailure),
            Just(RestartMode::Always)
        ],
        duration(),
        duration(),
        count(MAX_RESTARTS),
        duration(),
        duration(),
    )
        .prop_map(
            |(mode, first, second, max_restarts, reset_after, cooldown)| RestartPolicy {
                mode,
                initial_delay: first.min(second),
                max_delay: first.max(second),
                max_restarts,
                reset_after,
                cooldown,
            },
        )
}

fn port() -> impl Strategy<Value = PortChoice> {
    prop_oneof![
        Just(PortChoice::None),
        Just(PortChoice::Auto),
        any::<u16>().prop_map(PortChoice::Fixed)
    ]
}

fn input() -> impl Strategy<Value = SpecInput> {
    let map = |keys| proptest::collection::btree_map(text(keys), text("[a-z]{0,8}"), 0..4);
    (
        (
            text("[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z0-9]{1,10})?"),
            text("[a-z]{1,10}"),
            proptest::collection::vec(text("[a-z0-9 {}]{0,10}"), 0..4),
            map("[A-Z_]{1,8}"),
        ),
        (
            text("(/[a-z]{1,8}){0,3}"),
            port(),
            text("(SIG)?(INT|TERM|HUP)?"),
            prop_oneof![
                Just(None),
                (0u64..=MAX_STOP_GRACE.as_secs() + 2).prop_map(|s| Some(Duration::from_secs(s))),
                proptest::option::of(duration()),
            ],
            map("[a-z]{1,8}"),
        ),
        (
            health(),
            restart(),
            proptest::option::of(duration()),
            proptest::option::of(duration()),
        ),
    )
        .prop_map(
            |(
                (name, command, args, env),
                (working_dir, port, stop_signal, stop_grace, labels),
                (health, restart, idle_timeout, startup_timeout),
            )| SpecInput {
                name,
                project_path: String::new(),
                command,
                args,
                env,
                working_dir,
                port,
                stop_signal,
                stop_grace,
                labels,
                health,
                restart,
                idle_timeout,
                startup_timeout,
                readiness: Readiness::default(),
                limits: Limits::default(),
                depends_on: Default::default(),
                restart_dependents: false,
            },
        )
}

/// The raw input that gives `spec` back.
fn input_of(spec: &InstanceSpec) -> SpecInput {
    let text = |path: &Option<PathBuf>| {
        path.as_ref()
            .map(|path| path.display().to_string())
            .unwrap_or_default()
    };
    SpecInput {
        name: spec.name.clone(),
        project_path: text(&spec.project_path),
        command: spec.command.clone(),
        args: spec.args.clone(),
        env: spec.env.clone(),
        working_dir: text(&spec.working_dir),
        port: spec.port,
        stop_signal: spec.stop_signal.as_str().to_owned(),
        stop_grace: Some(spec.stop_grace),
        labels: spec.labels.clone(),
        health: spec.health.clone(),
        restart: spec.restart.clone(),
        idle_timeout: spec.idle_timeout,
        startup_timeout: Some(spec.startup_timeout),
        readiness: spec.readiness.clone(),
        limits: spec.limits.clone(),
        depends_on: spec.depends_on.clone(),
        restart_dependents: spec.restart_dependents,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn validation_never_panics_and_accepted_specs_keep_the_limits(input in input()) {
        let Ok(spec) = InstanceSpec::validate(input) else { return Ok(()) };
        let durations = [
            spec.health.interval,
            spec.health.timeout,
            spec.restart.initial_delay,
            spec.restart.max_delay,
            spec.restart.reset_after,
            spec.restart.cooldown,
            spec.startup_timeout,
            spec.idle_timeout.unwrap_or_default(),
        ];
        prop_assert!(durations.iter().all(|d| *d <= MAX_DURATION));
        prop_assert!(spec.health.interval >= crate::limits::MIN_PROBE_INTERVAL);
        prop_assert!(spec.stop_grace <= MAX_STOP_GRACE);
        prop_assert!(spec.health.failure_threshold <= MAX_THRESHOLD);
        prop_assert!(spec.health.success_threshold <= MAX_THRESHOLD);
        prop_assert!(spec.restart.max_restarts <= MAX_RESTARTS);
        prop_assert!(spec.name.len() <= MAX_NAME_LEN && spec.labels.len() <= MAX_LABELS);
        // Every deadline the daemon derives from it can be computed.
        let now = std::time::Instant::now();
        prop_assert!(durations.iter().all(|d| now.checked_add(*d).is_some()));
        // Round trips: as JSON, and validated again from itself.
        let json = serde_json::to_string(&spec).unwrap();
        prop_assert_eq!(&serde_json::from_str::<InstanceSpec>(&json).unwrap(), &spec);
        prop_assert_eq!(&InstanceSpec::validate(input_of(&spec)).unwrap(), &spec);
    }

    #[test]
    fn errors_quote_at_most_a_cut_of_the_input(long in 1000usize..200_000) {
        let huge = "Z".repeat(long);
        for input in [
            SpecInput { name: "web".into(), command: "x".into(), stop_signal: huge.clone(), ..SpecInput::default() },
            SpecInput { name: huge.clone(), command: "x".into(), ..SpecInput::default() },
            SpecInput { name: "web".into(), command: "x".into(), working_dir: huge.clone(), ..SpecInput::default() },
        ] {
            let err = InstanceSpec::validate(input).unwrap_err();
            prop_assert!(err.to_string().len() < 600, "{}", err.to_string().len());
        }
    }
}
