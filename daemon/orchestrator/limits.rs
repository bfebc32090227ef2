//! Resource limits: what this machine lets the daemon enforce (looked at
//! once, at start, and logged), and the memory watch that enforces a
//! memory limit by sampling the process tree's resident memory. The
//! kernel could enforce both through a cgroup v2 subtree with the memory
//! and cpu controllers; the daemon does not create cgroups yet, so memory
//! limits are sampled everywhere and CPU limits, which sampling cannot
//! enforce, are refused with the reason.

use std::{path::Path, time::SystemTime};

use outpost::spec::Limits;

use super::status::Usage;

/// How often a memory-limited instance's usage is looked at.
pub const MEMORY_CHECK: std::time::Duration = std::time::Duration::from_secs(1);
/// Samples over the limit in a row that count as a failure: one could be
/// a moment's peak caught by the sampler.
const SAMPLES_OVER: u32 = 2;
/// `statfs` type of a cgroup v2 mount.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;

/// What the machine offers for limits.
#[derive(Clone, Debug)]
pub struct Capabilities {
    /// Why the kernel cannot enforce CPU limits for us.
    no_cpu: String,
}

impl Capabilities {
    /// Looks at the cgroup hierarchy the daemon runs in.
    pub fn detect() -> Self {
        let no_cpu = match cgroup_v2_controllers(Path::new("/sys/fs/cgroup")) {
            Err(why) => why,
            Ok(controllers) if !controllers.iter().any(|c| c == "cpu") => format!(
                "the daemon's cgroup v2 has no cpu controller (it has: {})",
                controllers.join(" ")
            ),
            Ok(_) => "the daemon does not create cgroups yet, though this machine's cgroup v2 \
                      has the cpu controller"
                .to_owned(),
        };
        Self { no_cpu }
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        format!(
            "memory limits: resident memory sampled every {}s; CPU limits: refused ({})",
            MEMORY_CHECK.as_secs(),
            self.no_cpu
        )
    }

    /// Whether `limits` can be enforced here; the reason when not.
    pub fn check(&self, name: &str, limits: &Limits) -> Result<(), String> {
        match limits.cpu_max_percent {
            Some(_) => Err(format!(
                "{name}: a CPU limit cannot be enforced here: {}",
                self.no_cpu
            )),
            None => Ok(()),
        }
    }

    /// How `limits` are enforced, as `get` shows it.
    pub fn enforcement(limits: &Limits) -> Option<String> {
        limits.memory_max.map(|bytes| {
            format!(
                "memory {}: resident memory of the process tree sampled every {}s",
                mebibytes(bytes),
                MEMORY_CHECK.as_secs()
            )
        })
    }
}

/// The controllers of the cgroup v2 group the daemon is in, or why there
/// is none to use.
fn cgroup_v2_controllers(mount: &Path) -> Result<Vec<String>, String> {
    let stat = nix::sys::statfs::statfs(mount)
        .map_err(|err| format!("{} cannot be examined: {err}", mount.display()))?;
    if stat.filesystem_type().0 as i64 != CGROUP2_SUPER_MAGIC {
        return Err(format!(
            "{} is not a cgroup v2 hierarchy (a hybrid or v1 layout)",
            mount.display()
        ));
    }
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|err| err.to_string())?;
    let path = own
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or("the daemon is in no cgroup v2 group")?;
    let file = mount
        .join(path.trim_start_matches('/'))
        .join("cgroup.controllers");
    let text = std::fs::read_to_string(&file)
        .map_err(|err| format!("{} cannot be read: {err}", file.display()))?;
    Ok(text.split_whitespace().map(str::to_owned).collect())
}

/// A memory limit's watch over one process's samples.
#[derive(Debug, Default)]
pub struct MemoryWatch {
    over: u32,
    last: Option<SystemTime>,
}

impl MemoryWatch {
    /// Looks at a sample; the failure message once [`SAMPLES_OVER`]
    /// distinct samples in a row were over `max`. A sample seen before
    /// counts once.
    pub fn observe(&mut self, usage: Option<&Usage>, max: u64) -> Option<String> {
        let usage = usage?;
        if self.last == Some(usage.sampled_at) {
            return None;
        }
        self.last = Some(usage.sampled_at);
        if usage.rss_bytes <= max {
            self.over = 0;
            return None;
        }
        self.over += 1;
        (self.over >= SAMPLES_OVER).then(|| {
            format!(
                "resident memory {} over the {} limit",
                mebibytes(usage.rss_bytes),
                mebibytes(max)
            )
        })
    }
}

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn sample(rss_bytes: u64, at: u64) -> Usage {
        Usage {
            rss_bytes,
            cpu_percent: 0.0,
            process_count: 1,
            sampled_at: SystemTime::UNIX_EPOCH + Duration::from_secs(at),
        }
    }

    #[test]
    fn two_distinct_samples_over_the_limit_in_a_row_fail() {
        let mut watch = MemoryWatch::default();
        let max = 100 << 20;
        assert_eq!(watch.observe(None, max), None);
        assert_eq!(watch.observe(Some(&sample(200 << 20, 1)), max), None);
        assert_eq!(
            watch.observe(Some(&sample(200 << 20, 1)), max),
            None,
            "the same sample again is not a second one"
        );
        assert_eq!(watch.observe(Some(&sample(50 << 20, 2)), max), None);
        assert_eq!(watch.observe(Some(&sample(200 << 20, 3)), max), None);
        assert_eq!(
            watch.observe(Some(&sample(200 << 20, 4)), max).as_deref(),
            Some("resident memory 200.0 MiB over the 100.0 MiB limit")
        );
    }

    #[test]
    fn cpu_limits_are_refused_with_the_reason() {
        let capabilities = Capabilities::detect();
        let cpu = Limits {
            cpu_max_percent: Some(50),
            ..Default::default()
        };
        let refused = capabilities.check("web", &cpu).unwrap_err();
        assert!(refused.starts_with("web: a CPU limit cannot be enforced here: "));
        assert!(capabilities.describe().contains("CPU limits: refused"));
        let memory = Limits {
            memory_max: Some(1 << 30),
            ..Default::default()
        };
        assert!(capabilities.check("web", &memory).is_ok());
    }
}
