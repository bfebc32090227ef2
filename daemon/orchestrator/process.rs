//! Processes as the kernel sees them: spawning a managed process in its own
//! group, reading identities from /proc, and finding every process that
//! belongs to an instance so that a stop leaves nothing behind.

use std::{
    collections::{HashMap, HashSet},
    fs,
    io::{self, Read},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use nix::{
    errno::Errno,
    sys::signal::{Signal, kill, killpg},
    unistd::Pid,
};

use outpost::spec::InstanceSpec;

use crate::config::SECRET_ENV;

use super::logs::{LogFiles, spares::LogSpares};

/// systemd's variables for the service it started, which a daemon run as
/// a unit has and its instances must not inherit.
const SERVICE_PROTOCOL_ENV: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

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
    /// Threads (a process of one needs no look at its task directory).
    pub threads: u32,
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
    // rest starts at field 3 (state); field N is the (N - 3)th.
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    // Fields 14 and 15 (utime, stime).
    let utime = fields.nth(8)?.parse::<u64>().ok()?;
    let stime = fields.next()?.parse::<u64>().ok()?;
    // Field 20 (num_threads), field 22 (starttime), then field 24 (rss).
    let threads = fields.nth(4)?.parse().ok()?;
    let start_ticks = fields.nth(1)?.parse().ok()?;
    let rss_pages = fields.nth(1)?.parse().ok()?;
    Some(ProcEntry {
        pid,
        ppid,
        pgrp,
        state,
        threads,
        start_ticks,
        cpu_ticks: utime + stime,
        rss_pages,
    })
}

/// Reads a small /proc file into `buf` (cleared first). `buf` keeps its
/// capacity between calls, so a file that fits takes one `read` plus the
/// one that sees its end, instead of growing a fresh buffer from 32 bytes.
fn read_into(path: &str, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    buf.reserve(READ_BUFFER);
    fs::File::open(path)?.read_to_end(buf).map(drop)
}

/// Initial capacity of the buffer /proc files are read into.
const READ_BUFFER: usize = 4096;

/// Reads one process's /proc entry into `buf`; `None` when it is gone.
/// The kernel hands out the whole of `/proc/PID/stat` (well under
/// [`READ_BUFFER`]) in one `read`, so one call is made, not one more to
/// see the end of the file.
fn read_entry_with(pid: i32, buf: &mut Vec<u8>) -> Option<ProcEntry> {
    buf.clear();
    buf.resize(READ_BUFFER, 0);
    let mut file = fs::File::open(format!("/proc/{pid}/stat")).ok()?;
    let read = file.read(buf).ok()?;
    if read == buf.len() {
        // Longer than any stat line: read the rest the ordinary way.
        file.read_to_end(buf).ok()?;
    } else {
        buf.truncate(read);
    }
    parse_stat(pid, std::str::from_utf8(buf).ok()?)
}

/// Reads one process's /proc entry; `None` when it is gone.
pub fn read_entry(pid: i32) -> Option<ProcEntry> {
    read_entry_with(pid, &mut Vec::new())
}

/// The pids listed in /proc, ascending.
fn pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .collect();
    pids.sort_unstable();
    pids
}

/// The value of `name` in the environment block `environ` (NUL-separated
/// `NAME=value` pairs).
pub fn env_value<'a>(environ: &'a [u8], name: &str) -> Option<&'a [u8]> {
    environ.split(|&b| b == 0).find_map(|var| {
        var.strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
    })
}

/// Instance markers read from `/proc/PID/environ`, by process identity (pid
/// and start time), so that each process's environment is read once in its
/// lifetime rather than on every scan.
#[derive(Default)]
pub struct MarkerCache(HashMap<(i32, u64), Option<Box<str>>>);

/// The process table at one moment, indexed for finding the processes of
/// an instance.
#[derive(Default)]
pub struct ProcTable {
    /// Every process, ascending by pid.
    entries: Vec<ProcEntry>,
    /// Children by parent pid.
    children: HashMap<i32, Vec<i32>>,
    /// Members by process group id.
    groups: HashMap<i32, Vec<i32>>,
    /// Children of the daemon or of init that carry an instance marker,
    /// by the instance id in it.
    marked: HashMap<Box<str>, Vec<i32>>,
}

impl ProcTable {
    /// Reads every process from /proc. With a `cache`, instance markers
    /// are read too: only for children of the daemon and of init (where
    /// escaped processes end up) and only once per process, through the
    /// cache, which is left holding exactly the processes of this scan.
    /// Without one, [`ProcTable::members`] finds no escaped processes.
    pub fn scan(mut cache: Option<&mut MarkerCache>) -> Self {
        let me = std::process::id() as i32;
        let mut buf = Vec::with_capacity(READ_BUFFER);
        let mut table = Self::default();
        let mut markers = HashMap::new();
        for pid in pids() {
            let Some(entry) = read_entry_with(pid, &mut buf) else {
                continue;
            };
            table.children.entry(entry.ppid).or_default().push(pid);
            table.groups.entry(entry.pgrp).or_default().push(pid);
            if let Some(cache) = cache.as_deref_mut()
                && (entry.ppid == me || entry.ppid == 1)
            {
                let key = (pid, entry.start_ticks);
                let marker = match cache.0.remove(&key) {
                    Some(marker) => marker,
                    None => read_marker(pid, &mut buf),
                };
                if let Some(id) = &marker {
                    table.marked.entry(id.clone()).or_default().push(pid);
                }
                markers.insert(key, marker);
            }
            table.entries.push(entry);
        }
        if let Some(cache) = cache {
            cache.0 = markers;
        }
        table
    }

    /// Every process, ascending by pid.
    pub fn entries(&self) -> &[ProcEntry] {
        &self.entries
    }

    /// Process `pid`, if it existed at the scan.
    pub fn get(&self, pid: i32) -> Option<&ProcEntry> {
        self.entries
            .binary_search_by_key(&pid, |entry| entry.pid)
            .ok()
            .map(|index| &self.entries[index])
    }

    /// Every process (zombies included) that belongs to the instance `id`
    /// whose group is `pgid`: members of the group, all their descendants
    /// (also those that left the group with setsid), and orphans that carry
    /// the instance's marker (double-forked and setsid'd) — re-parented to
    /// the daemon, or to init when they were orphaned while no daemon ran.
    pub fn members(&self, pgid: i32, id: &str) -> Vec<ProcEntry> {
        let me = std::process::id() as i32;
        let roots = self.groups.get(&pgid).into_iter().flatten();
        let marked = self.marked.get(id).into_iter().flatten();
        let mut found: HashSet<i32> = HashSet::new();
        let mut pending: Vec<i32> = roots.chain(marked).copied().collect();
        while let Some(pid) = pending.pop() {
            if found.insert(pid) {
                pending.extend(self.children.get(&pid).into_iter().flatten());
            }
        }
        found.remove(&me);
        let mut members: Vec<ProcEntry> = found
            .iter()
            .filter_map(|&pid| self.get(pid))
            .copied()
            .collect();
        members.sort_unstable_by_key(|entry| entry.pid);
        members
    }
}

/// The instance id in the marker of process `pid`, read from its
/// environment into `buf`.
fn read_marker(pid: i32, buf: &mut Vec<u8>) -> Option<Box<str>> {
    read_into(&format!("/proc/{pid}/environ"), buf).ok()?;
    let id = env_value(buf, INSTANCE_MARKER)?;
    Some(String::from_utf8_lossy(id).into())
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
    /// Its readiness source (the notify socket) could not be made.
    #[error("cannot set up readiness: {0}")]
    Readiness(io::Error),
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
    spares: &Arc<LogSpares>,
    notify_socket: Option<&Path>,
) -> Result<Command, SpawnError> {
    let dir = spec
        .working_dir
        .as_deref()
        .or(spec.project_path.as_deref())
        .unwrap_or(data_dir);
    if !dir.is_dir() {
        return Err(SpawnError::BadWorkingDir(dir.to_owned()));
    }
    let outputs = logs.open_for_child(spares).map_err(SpawnError::Logs)?;
    let mut command = Command::new(&spec.command);
    for secret in SECRET_ENV {
        command.env_remove(secret);
    }
    // systemd's service protocol is the daemon's own, not its children's:
    // an instance must not notify (or claim the sockets of) the daemon's
    // unit. Its own notify socket, if it asked for one, is set below.
    for inherited in SERVICE_PROTOCOL_ENV {
        command.env_remove(inherited);
    }
    if let Some(socket) = notify_socket {
        command.env("NOTIFY_SOCKET", socket);
        if let Some(watchdog) = spec.readiness.watchdog {
            command.env("WATCHDOG_USEC", watchdog.as_micros().to_string());
        }
    }
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
        .stdout(outputs.stdout)
        .stderr(outputs.stderr)
        .process_group(0);
    if let Some(port) = port {
        command.env("PORT", port.to_string());
    }
    Ok(command)
}

/// Maps a spawn failure to what the user needs to hear.
pub fn spawn_error(spec: &InstanceSpec, err: io::Error) -> SpawnError {
    // Quoted in the error: cut.
    let command = outpost::limits::cut(&spec.command).into_owned();
    match err.kind() {
        io::ErrorKind::NotFound => SpawnError::NotFound(command),
        io::ErrorKind::PermissionDenied => SpawnError::NotExecutable(command),
        _ => SpawnError::Other {
            command,
            source: err,
        },
    }
}

/// The instance id in a process's marker, if it carries one set by the
/// daemon of `data_dir`.
pub fn marker_of(pid: i32, data_dir: &Path) -> Option<String> {
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let text = |name: &str| env_value(&environ, name).map(String::from_utf8_lossy);
    let ours = text(DAEMON_MARKER).is_some_and(|dir| Path::new(dir.as_ref()) == data_dir);
    text(INSTANCE_MARKER)
        .filter(|_| ours)
        .map(|id| id.into_owned())
}

/// Live process group leaders that carry the marker of the daemon of
/// `data_dir`, by the instance id in it; where one instance has several,
/// the youngest. These are the processes a daemon spawned and may not have
/// recorded before it died.
pub fn marked_leaders(table: &ProcTable, data_dir: &Path) -> HashMap<String, ProcEntry> {
    let mut leaders: HashMap<String, ProcEntry> = HashMap::new();
    for entry in table
        .entries()
        .iter()
        .filter(|p| p.pid == p.pgrp && p.state != 'Z')
    {
        if let Some(id) = marker_of(entry.pid, data_dir) {
            let youngest = leaders.entry(id).or_insert(*entry);
            if entry.start_ticks > youngest.start_ticks {
                *youngest = *entry;
            }
        }
    }
    leaders
}

/// When a process that started `start_ticks` after boot was started.
pub fn started_at(start_ticks: u64) -> SystemTime {
    let uptime = fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or_default();
    let started = start_ticks as f64 / rustix::param::clock_ticks_per_second() as f64;
    SystemTime::now() - Duration::from_secs_f64((uptime - started).max(0.0))
}

/// The pids of processes with a socket listening on TCP `port` (IPv4 or
/// IPv6), found through /proc/net/tcp* inodes and /proc/*/fd links.
pub fn listeners(table: &ProcTable, port: u16) -> Vec<i32> {
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
    table
        .entries()
        .iter()
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

/// Whether this kernel lists children (it is built with
/// CONFIG_PROC_CHILDREN); without, every look is a scan.
fn listed() -> bool {
    static LISTED: OnceLock<bool> = OnceLock::new();
    *LISTED.get_or_init(|| {
        let me = std::process::id();
        Path::new(&format!("/proc/{me}/task/{me}/children")).exists()
    })
}

/// The children of thread `tid` of process `pid`; `None` when the list
/// cannot be read (the process is gone, or the kernel keeps no lists).
pub fn thread_children(pid: i32, tid: i32) -> Option<Vec<i32>> {
    if !listed() {
        return None;
    }
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")).ok()?;
    Some(
        text.split_whitespace()
            .filter_map(|pid| pid.parse().ok())
            .collect(),
    )
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
        assert_eq!(entry.threads, 1);
        assert_eq!(entry.start_ticks, 987654);
        assert_eq!(entry.cpu_ticks, 3);
        assert_eq!(entry.rss_pages, 10);
    }

    #[test]
    fn this_process_can_be_read() {
        let me = read_entry(std::process::id() as i32).unwrap();
        assert!(me.start_ticks > 0);
        let table = ProcTable::scan(Some(&mut MarkerCache::default()));
        let found = table.get(me.pid).map(|entry| entry.start_ticks);
        assert_eq!(found, Some(me.start_ticks));
    }
}
