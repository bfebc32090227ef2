//! Resource usage of real process trees: a sample counts every process of
//! an instance — a descendant that moved to a session of its own, an orphan
//! the daemon inherited — before and after the daemon re-adopts it, and a
//! memory limit sees the same samples.

use std::fs;

use outpost::{endpoint::Connection, proto::v1 as pb};

use crate::{
    harness::{
        Daemon, START_DEADLINE, changed, create, events_until, eventually, exists,
        marked_processes, next, parent_of, pid_file, spec, stop, watch,
    },
    recovery::crash,
};

/// A Python program that holds `mib` MiB resident until killed.
fn hog(mib: u64) -> String {
    format!(
        "import time\nx = bytearray({mib} << 20)\nfor i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(600)"
    )
}

/// The usage `get` shows for instance `name`, once it is sampled.
async fn usage(connection: &Connection, name: &str) -> Option<pb::ResourceUsage> {
    crate::harness::instance(connection, name).await.usage
}

/// Waits until a sample of `name` counts `processes` processes and at
/// least `min_rss` bytes (a read asks for the next sample when the last is
/// a second old).
async fn wait_usage(connection: &Connection, name: &str, processes: u32, min_rss: u64) {
    let what = format!("{name}'s usage to count {processes} processes, {min_rss} bytes");
    eventually(&what, START_DEADLINE, || async {
        let usage = usage(connection, name).await?;
        (usage.process_count == processes && usage.rss_bytes >= min_rss).then_some(())
    })
    .await;
}

#[tokio::test]
async fn usage_counts_the_processes_that_left_the_group() {
    let mut daemon = Daemon::start();
    let connection = daemon.connect().await;
    let dir = daemon.dir.path().join("tree");
    fs::create_dir(&dir).unwrap();
    // The memory is held by a child in a session of its own; a daemonized
    // sleep (its parent exits, and it left the group) is inherited by the
    // daemon, a subreaper.
    let script = format!(
        r#"
        setsid python3 -c '{}' &
        echo $! > "$1/hog"
        ( setsid sleep 1000 & echo $! > "$1/orphan" )
        exec sleep 1000
        "#,
        hog(64)
    );
    let args = ["-c", &script, "sh", dir.to_str().unwrap()];
    let instance = create(&connection, spec("tree", "sh", &args)).await;
    // Each pid is written before its process calls setsid, and the
    // orphan's parent exits after: wait until the tree has settled.
    let left_the_group = |pid: u32| {
        let group = nix::unistd::getpgid(Some(nix::unistd::Pid::from_raw(pid as i32)));
        group.is_ok_and(|group| group.as_raw() as u32 != instance.pgid)
    };
    let settled = "the hog and the orphan in sessions of their own, the orphan the daemon's";
    let [hog, orphan] = eventually(settled, START_DEADLINE, || async {
        let pids = [pid_file(&dir.join("hog"))?, pid_file(&dir.join("orphan"))?];
        let inherited = parent_of(pids[1]) == Some(daemon.pid());
        (pids.into_iter().all(left_the_group) && inherited).then_some(pids)
    })
    .await;
    wait_usage(&connection, "tree", 3, 64 << 20).await;
    drop(connection);

    // Re-adopted, the orphan is init's: the daemon finds it by its marker.
    crash(&mut daemon);
    daemon.respawn(&[]);
    let connection = daemon.connect().await;
    for pid in [instance.pid, hog, orphan] {
        eprintln!("DEBUG {pid} parent {:?}", parent_of(pid));
    }
    wait_usage(&connection, "tree", 3, 64 << 20).await;
    assert_ne!(parent_of(orphan), Some(daemon.pid()));
    stop(&connection, "tree").await;
    // Init's zombies may linger: only live processes count.
    let left = marked_processes().remove(&instance.id);
    assert_eq!(left, None, "the stop left live processes");
}

#[tokio::test]
async fn a_memory_limit_counts_a_descendant_that_left_the_group() {
    let daemon = Daemon::start();
    let connection = daemon.connect().await;
    let mut stream = watch(&connection, 0).await;
    next(&mut stream).await;
    let dir = daemon.dir.path().join("escape");
    fs::create_dir(&dir).unwrap();
    let script = format!(
        r#"setsid python3 -c '{}' & echo $! > "$1/hog"; exec sleep 1000"#,
        hog(96)
    );
    let mut spec = spec(
        "escape",
        "sh",
        &["-c", &script, "sh", dir.to_str().unwrap()],
    );
    spec.limits = Some(pb::Limits {
        memory_max_bytes: 32 << 20,
        cpu_max_percent: 0,
    });
    let created = create(&connection, spec).await;
    let seen = events_until(&mut stream, |event| {
        changed(event)
            .is_some_and(|c| c.instance.as_ref().unwrap().state() == pb::InstanceState::Failed)
    })
    .await;
    let failed = changed(seen.last().unwrap()).unwrap();
    assert_eq!(failed.reason(), pb::TransitionReason::MemoryLimit);
    let hog = pid_file(&dir.join("hog")).expect("the hog was started");
    assert!(!exists(created.pid) && !exists(hog), "the tree was stopped");
}
