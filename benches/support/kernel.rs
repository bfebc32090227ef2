//! A process as the kernel sees it: resident memory and CPU time from
//! /proc.

use std::{
    collections::HashMap,
    fs,
    time::{Duration, Instant},
};

use nix::unistd::{SysconfVar, sysconf};

use super::BoxError;

/// Resident memory of process `pid` in bytes (`VmRSS` of
/// `/proc/PID/status`).
pub fn rss(pid: u32) -> Result<u64, BoxError> {
    memory_field(pid, "VmRSS")
}

/// Peak resident memory of process `pid` in bytes (`VmHWM`).
pub fn peak_rss(pid: u32) -> Result<u64, BoxError> {
    memory_field(pid, "VmHWM")
}

/// A memory field of `/proc/PID/status` (given in kB), in bytes.
fn memory_field(pid: u32, field: &str) -> Result<u64, BoxError> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .ok_or_else(|| format!("no {field} in /proc/{pid}/status"))?;
    Ok(kib * 1024)
}

/// `bytes` in MiB, for printing.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

/// Fields 14 to 17 of `/proc/PID/stat`: user and system clock ticks of
/// process `pid`, then those of its children it has waited for.
fn stat_ticks(pid: u32) -> Result<[u64; 4], BoxError> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces; count from the last ')'.
    let after_name = &stat[stat.rfind(')').ok_or("malformed /proc/PID/stat")? + 1..];
    // The fields after the name start at field 3.
    let ticks: Vec<u64> = after_name
        .split_whitespace()
        .skip(14 - 3)
        .take(4)
        .map_while(|value| value.parse().ok())
        .collect();
    ticks
        .try_into()
        .map_err(|_| "malformed /proc/PID/stat".into())
}

/// `count` clock ticks (the unit of the CPU counters in /proc) as a duration.
fn ticks(count: u64) -> Result<Duration, BoxError> {
    let per_second = sysconf(SysconfVar::CLK_TCK)?.ok_or("no CLK_TCK")?;
    Ok(Duration::from_secs_f64(count as f64 / per_second as f64))
}

/// CPU time (user + system) that process `pid` has used, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64, BoxError> {
    let [user, system, ..] = stat_ticks(pid)?;
    Ok(user + system)
}

/// CPU time of a process and of its children it has waited for (for a
/// daemon: the processes it started and reaped), clock-tick resolution.
#[derive(Clone, Copy, Debug)]
pub struct CpuTimes {
    /// The process's own threads, user + system.
    pub own: Duration,
    /// Its waited-for children, user + system.
    pub children: Duration,
}

impl CpuTimes {
    /// The CPU time process `pid` and its waited-for children used so far.
    pub fn of(pid: u32) -> Result<Self, BoxError> {
        let [user, system, children_user, children_system] = stat_ticks(pid)?;
        Ok(Self {
            own: ticks(user + system)?,
            children: ticks(children_user + children_system)?,
        })
    }

    /// What was used since `earlier`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            own: self.own.saturating_sub(earlier.own),
            children: self.children.saturating_sub(earlier.children),
        }
    }
}

/// CPU time the hypervisor has taken from this virtual machine so far,
/// all CPUs together (the `steal` column of `/proc/stat`): time its
/// virtual CPUs wanted to run but the host ran something else. On a shared
/// VM it is what makes the same run take twice as long an hour later.
pub fn stolen() -> Result<Duration, BoxError> {
    ticks(machine_ticks(8, "steal")?)
}

/// CPU time this machine's CPUs have spent with nothing to run so far,
/// all CPUs together (`idle` + `iowait` of `/proc/stat`): with it, a
/// benchmark can tell a process that could not get a CPU from one that
/// did not ask for more.
pub fn idle() -> Result<Duration, BoxError> {
    ticks(machine_ticks(4, "idle")? + machine_ticks(5, "iowait")?)
}

/// Column `index` (`name`) of the first line of `/proc/stat`: clock ticks
/// of all CPUs together.
fn machine_ticks(index: usize, name: &str) -> Result<u64, BoxError> {
    let stat = fs::read_to_string("/proc/stat")?;
    stat.lines()
        .next()
        .and_then(|cpu| cpu.split_whitespace().nth(index))
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| format!("no {name} column in /proc/stat").into())
}

/// The scheduler's statistics of every thread of process `pid`, by thread
/// id: `[time on a CPU in nanoseconds, times it was put on a CPU]` (fields
/// 1 and 3 of `/proc/PID/task/TID/schedstat`).
fn thread_stats(pid: u32) -> Result<HashMap<String, [u64; 2]>, BoxError> {
    let mut stats = HashMap::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?;
        let Ok(text) = fs::read_to_string(task.path().join("schedstat")) else {
            continue; // the thread ended meanwhile
        };
        let fields: Vec<u64> = text
            .split_whitespace()
            .map_while(|v| v.parse().ok())
            .collect();
        if let [on_cpu, _, scheduled] = fields[..] {
            stats.insert(
                task.file_name().to_string_lossy().into_owned(),
                [on_cpu, scheduled],
            );
        }
    }
    Ok(stats)
}

/// How many times the threads of process `pid` that exist now have been
/// put on a CPU: each is a wake-up (or a preemption) of one of them, the
/// cost that a call handed from thread to thread pays on every hop.
pub fn times_scheduled(pid: u32) -> Result<u64, BoxError> {
    Ok(thread_stats(pid)?
        .values()
        .map(|[_, scheduled]| scheduled)
        .sum())
}

/// The CPU use of one process over a window.
pub struct CpuUse {
    /// Clock ticks used in the window.
    pub ticks: u64,
    /// In percent of one core, from the ticks.
    pub percent: f64,
    /// Time on a CPU in the window of the threads that still existed at its
    /// end, from the scheduler's statistics (nanosecond resolution; the time
    /// of threads that ended within the window is missing).
    pub on_cpu: Duration,
    /// `on_cpu` in percent of one core.
    pub on_cpu_percent: f64,
}

impl CpuUse {
    /// Prints the ticks (with their length) and the percentages.
    pub fn print(&self, what: &str) {
        let tick_ms = sysconf(SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .map_or(0.0, |ticks| 1e3 / ticks as f64);
        println!(
            "{what}: {:.3} % of one core ({} ticks of {tick_ms:.0} ms); \
             threads' scheduler statistics: {:.1} ms on a CPU, {:.3} %",
            self.percent,
            self.ticks,
            self.on_cpu.as_secs_f64() * 1e3,
            self.on_cpu_percent
        );
    }
}

/// CPU use of process `pid` over `window` (which the caller fills with
/// whatever it measures), in percent of one core: from the process's tick
/// counters (which also count threads that ended) and from its threads'
/// scheduler statistics (finer, but without threads that ended).
pub async fn cpu_use(pid: u32, window: Duration) -> Result<CpuUse, BoxError> {
    let before = cpu_ticks(pid)?;
    let threads_before = thread_stats(pid)?;
    let start = Instant::now();
    tokio::time::sleep(window).await;
    let used = cpu_ticks(pid)? - before;
    let threads_after = thread_stats(pid)?;
    let elapsed = start.elapsed().as_secs_f64();
    let on_cpu_ns: u64 = threads_after
        .iter()
        .map(|(tid, [after, _])| {
            after.saturating_sub(threads_before.get(tid).map_or(0, |[on_cpu, _]| *on_cpu))
        })
        .sum();
    let on_cpu = Duration::from_nanos(on_cpu_ns);
    Ok(CpuUse {
        ticks: used,
        percent: ticks(used)?.as_secs_f64() / elapsed * 100.0,
        on_cpu,
        on_cpu_percent: on_cpu.as_secs_f64() / elapsed * 100.0,
    })
}
