//! Processes as the kernel sees them: spawning a managed process in its own
//! group, reading identities from /proc, and finding every process that
//! belongs to an instance so that a stop leaves nothing behind.

use std::{
    collections::HashSet,
    fs, io,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use nix::{
    errno::Errno,
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};

use super::{logs::LogFiles, spec::InstanceSpec};

/// Environment variable set in every managed process (and so inherited by
/// its descendants): how processes that escaped the group are recognised.
pub const INSTANCE_MARKER: &str = "OUTPOST_INSTANCE_ID";
/// Environment variable naming the data directory of the daemon that
/// spawned a process, so that daemons sharing a machine never mistake each
/// other's processes for orphans.
pub const DAEMON_MARKER: &str = "OUTPOST_DATA_DIR";

/// One process as listed in /proc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProcEntry {
    /// Process id.
    pub pid: i32,
    /// Parent pid.
    pub ppid: i32,
    /// Process group id.
    pub pgrp: i32,
    /// State letter (R, S, Z, ...).
    pub state: char,
    /// Start time in clock ticks since boot.
    pub start_ticks: u64,
    /// CPU time used (user + system), in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

/// Parses /proc/PID/stat. The command name (field 2) may contain spaces
/// and parentheses, so fields are counted from the last ')'.
pub fn parse_stat(pid: i32, text: &str) -> Option<ProcEntry> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); field N is fields[N - 3].
    Some(ProcEntry {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
        cpu_ticks: fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?,
        rss_pages: fields.get(21)?.parse().ok()?,
    })
}

/// Reads one process's /proc entry; `None` when it is gone.
pub fn read_entry(pid: i32) -> Option<ProcEntry> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

/// Lists every process.
pub fn scan() -> Vec<ProcEntry> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_entry)
        .collect()
}

/// Whether process `pid` carries `INSTANCE_MARKER=id` in its environment.
fn carries_marker(pid: i32, id: &str) -> bool {
    let Ok(environ) = fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{INSTANCE_MARKER}={id}");
    environ
        .split(|&b| b == 0)
        .any(|var| var == wanted.as_bytes())
}

/// Every process (zombies included) that belongs to the instance `id`
/// whose group is `pgid`: members of the group, all their descendants (also
/// those that left the group with setsid), and orphans that carry the
/// instance's marker (double-forked and setsid'd) — re-parented to the
/// daemon, or to init when they were orphaned while no daemon ran.
pub fn members(table: &[ProcEntry], pgid: i32, id: &str) -> Vec<ProcEntry> {
    let me = std::process::id() as i32;
    let mut found: HashSet<i32> = table
        .iter()
        .filter(|p| p.pgrp == pgid || ((p.ppid == me || p.ppid == 1) && carries_marker(p.pid, id)))
        .map(|p| p.pid)
        .collect();
    // Close over children until nothing new turns up.
    loop {
        let before = found.len();
        for process in table {
            if found.contains(&process.ppid) {
                found.insert(process.pid);
            }
        }
        if found.len() == before {
            break;
        }
    }
    table
        .iter()
        .filter(|p| found.contains(&p.pid) && p.pid != me)
        .copied()
        .collect()
}

/// Sends `signal` to the group and to every member outside it.
pub fn signal_members(pgid: i32, members: &[i32], signal: Signal) {
    if let Err(err) = killpg(Pid::from_raw(pgid), signal)
        && err != Errno::ESRCH
    {
        tracing::warn!(pgid, %err, "cannot signal process group");
    }
    for &pid in members {
        let _ = kill(Pid::from_raw(pid), signal);
    }
}

/// The boot id, which tells a pid of this boot from one of an earlier boot.
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

/// Why a process could not be spawned.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The program does not exist (or is not in PATH).
    #[error("command not found: {0}")]
    NotFound(String),
    /// The program exists but cannot be executed.
    #[error("command is not executable: {0}")]
    NotExecutable(String),
    /// The working directory does not exist.
    #[error("working directory {0} does not exist or is not a directory")]
    BadWorkingDir(PathBuf),
    /// The log files could not be opened.
    #[error("cannot open log files: {0}")]
    Logs(io::Error),
    /// Anything else the kernel said.
    #[error("cannot spawn {command}: {source}")]
    Other {
        /// The program.
        command: String,
        /// The cause.
        source: io::Error,
    },
}

/// Replaces `{port}` with the port (or leaves the text as it is).
fn substitute(text: &str, port: Option<u16>) -> String {
    match port {
        Some(port) => text.replace("{port}", &port.to_string()),
        None => text.to_owned(),
    }
}

/// Builds the command for a managed process: its own process group, stdin
/// from /dev/null, stdout and stderr appended to its log files (so it never
/// depends on the daemon staying alive), `PORT` and the instance marker in
/// its environment.
pub fn command(
    id: &str,
    spec: &InstanceSpec,
    port: Option<u16>,
    data_dir: &Path,
    logs: &LogFiles,
) -> Result<Command, SpawnError> {
    let dir = spec
        .working_dir
        .as_deref()
        .or(spec.project_path.as_deref())
        .unwrap_or(data_dir);
    if !dir.is_dir() {
        return Err(SpawnError::BadWorkingDir(dir.to_owned()));
    }
    let (stdout, stderr) = logs.open_for_child().map_err(SpawnError::Logs)?;
    let mut command = Command::new(&spec.command);
    command
        .args(spec.args.iter().map(|arg| substitute(arg, port)))
        .envs(
            spec.env
                .iter()
                .map(|(key, value)| (key, substitute(value, port))),
        )
        .env(INSTANCE_MARKER, id)
        .env(DAEMON_MARKER, data_dir)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    if let Some(port) = port {
        command.env("PORT", port.to_string());
    }
    Ok(command)
}

/// Maps a spawn failure to what the user needs to hear.
pub fn spawn_error(spec: &InstanceSpec, err: io::Error) -> SpawnError {
    match err.kind() {
        io::ErrorKind::NotFound => SpawnError::NotFound(spec.command.clone()),
        io::ErrorKind::PermissionDenied => SpawnError::NotExecutable(spec.command.clone()),
        _ => SpawnError::Other {
            command: spec.command.clone(),
            source: err,
        },
    }
}

/// The instance id in a process's marker, if it carries one set by the
/// daemon of `data_dir`.
pub fn marker_of(pid: i32, data_dir: &Path) -> Option<String> {
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let value = |name: &str| {
        let prefix = format!("{name}=");
        environ
            .split(|&b| b == 0)
            .find_map(|var| var.strip_prefix(prefix.as_bytes()))
            .map(|value| String::from_utf8_lossy(value).into_owned())
    };
    let ours = value(DAEMON_MARKER).is_some_and(|dir| Path::new(&dir) == data_dir);
    value(INSTANCE_MARKER).filter(|_| ours)
}

/// The pids of processes with a socket listening on TCP `port` (IPv4 or
/// IPv6), found through /proc/net/tcp* inodes and /proc/*/fd links.
pub fn listeners(port: u16) -> Vec<i32> {
    const LISTEN: &str = "0A";
    let mut inodes = HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|address| address.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port)
                && fields.get(3) == Some(&LISTEN)
                && let Some(inode) = fields.get(9)
            {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    scan()
        .into_iter()
        .filter(|process| {
            fs::read_dir(format!("/proc/{}/fd", process.pid)).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    fs::read_link(fd.path())
                        .is_ok_and(|target| inodes.contains(target.to_string_lossy().as_ref()))
                })
            })
        })
        .map(|process| process.pid)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let entry = parse_stat(4242, line).unwrap();
        assert_eq!(entry.state, 'S');
        assert_eq!((entry.ppid, entry.pgrp), (1, 4242));
        assert_eq!(entry.start_ticks, 987654);
        assert_eq!(entry.cpu_ticks, 3);
        assert_eq!(entry.rss_pages, 10);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = read_entry(std::process::id() as i32).unwrap();
        assert!(me.start_ticks > 0);
        assert!(scan().iter().any(|p| p.pid == me.pid));
    }
}
