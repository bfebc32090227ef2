//! Resource limits against real processes: a process tree over its memory
//! limit is stopped and counted as a failure with reason MEMORY_LIMIT;
//! CPU limits, which this daemon can only leave to a cgroup v2 cpu
//! controller it does not use yet, are refused with the reason; bad
//! limits are refused naming the field.

use outpost::proto::v1 as pb;
use tonic::Code;

use crate::harness::{Daemon, changed, events_until, exists, next, spec, stderr, stdout, watch};

fn limits(memory_max_bytes: u64, cpu_max_percent: u32) -> Option<pb::Limits> {
    Some(pb::Limits {
        memory_max_bytes,
        cpu_max_percent,
    })
}

async fn create(daemon: &Daemon, spec: pb::InstanceSpec) -> Result<pb::Instance, tonic::Status> {
    crate::harness::try_create(&daemon.connect().await, spec).await
}

#[tokio::test]
async fn a_tree_over_its_memory_limit_is_stopped_as_a_failure() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = watch(&connection, 0).await;
    next(&mut stream).await;
    // The memory is held by a child of the shell: the whole tree counts.
    let hog = "import time\nx = bytearray(96 << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(600)";
    let mut spec = spec("hog", "sh", &["-c", &format!("python3 -c '{hog}'; exit 0")]);
    spec.limits = limits(32 << 20, 0);
    let created = create(&daemon, spec).await.unwrap();
    let seen = events_until(&mut stream, |event| {
        changed(event)
            .is_some_and(|c| c.instance.as_ref().unwrap().state() == pb::InstanceState::Failed)
    })
    .await;
    let failed = changed(seen.last().unwrap()).unwrap();
    assert_eq!(failed.reason(), pb::TransitionReason::MemoryLimit);
    assert!(
        failed.detail.starts_with("resident memory ")
            && failed.detail.ends_with(" over the 32.0 MiB limit"),
        "{}",
        failed.detail
    );
    assert!(!exists(created.pid), "the tree was stopped");
    let shown = stdout(&daemon.ctl(&["get", "hog"]));
    assert!(
        shown.contains("memory 32.0 MiB: resident memory of the process tree sampled every 1s"),
        "{shown}"
    );
}

#[tokio::test]
async fn cpu_limits_are_refused_with_the_reason() {
    let daemon = Daemon::start();
    let mut spec = spec("busy", "sleep", &["600"]);
    spec.limits = limits(0, 50);
    let refused = create(&daemon, spec).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert!(
        refused
            .message()
            .starts_with("busy: a CPU limit cannot be enforced here: "),
        "{refused:?}"
    );
    let listed = stdout(&daemon.ctl(&["ls"]));
    assert!(!listed.contains("busy"), "nothing was created: {listed}");
    assert!(
        daemon.log.text().contains("CPU limits: refused ("),
        "the capability is logged at start"
    );
}

#[tokio::test]
async fn bad_limits_are_refused_naming_the_field() {
    let daemon = Daemon::start();
    let mut tiny = spec("tiny", "sleep", &["600"]);
    tiny.limits = limits(1000, 0);
    let err = create(&daemon, tiny).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message()
            .starts_with("spec.limits.memory_max_bytes: 1000 is not from"),
        "{err:?}"
    );
    let cli = daemon.ctl(&["run", "x", "--memory-max", "12X", "--", "sleep", "1"]);
    assert_eq!(cli.status.code(), Some(2));
    assert!(
        stderr(&cli).contains("is not a size like 512M"),
        "{}",
        stderr(&cli)
    );
}
