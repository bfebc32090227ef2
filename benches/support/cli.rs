//! Wall time of `outpostctl` invocations, one process after another.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{
    BoxError,
    report::{millis, percentile, verdict},
    server::without_outpost_env,
};

/// Unmeasured invocations before the measured ones.
pub const CLI_WARM_UP: usize = 20;
/// Measured invocations.
pub const CLI_RUNS: usize = 200;

/// The `outpostctl` built beside the `outpostd` at `outpostd`. The CLI is a
/// crate of its own, which `cargo bench --bench NAME` does not build: it is
/// built here when it is missing, with the same profile.
pub fn outpostctl_beside(outpostd: &str) -> Result<PathBuf, BoxError> {
    let path = Path::new(outpostd).with_file_name("outpostctl");
    if path.exists() {
        return Ok(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
    let mut build = Command::new(env!("CARGO"));
    build
        .args(["build", "--package", "outpostctl", "--manifest-path"])
        .arg(workspace);
    if path.parent().and_then(Path::file_name) == Some("release".as_ref()) {
        build.arg("--release");
    }
    let status = build.status()?;
    if !status.success() || !path.exists() {
        return Err(format!("cannot build {} ({status})", path.display()).into());
    }
    Ok(path)
}

/// Runs `outpostctl ARGS…` (the one built beside the `outpostd` at
/// `outpostd`) against the daemon on `socket`, one process after another;
/// returns the wall time of each measured run, ascending.
pub fn time_cli(outpostd: &str, socket: &Path, args: &[&str]) -> Result<Vec<Duration>, BoxError> {
    let address = format!("unix://{}", socket.display());
    let mut command = cli_command(outpostd, &address, args)?;
    for _ in 0..CLI_WARM_UP {
        run_once(&mut command, args)?;
    }
    let mut times = (0..CLI_RUNS)
        .map(|_| run_once(&mut command, args))
        .collect::<Result<Vec<_>, _>>()?;
    times.sort_unstable();
    Ok(times)
}

/// `outpostctl --addr ADDRESS ARGS…` (the one built beside the `outpostd`
/// at `outpostd`), free of the caller's `OUTPOST_*` settings, its output
/// discarded but for stderr. Callers may add settings.
pub fn cli_command(outpostd: &str, address: &str, args: &[&str]) -> Result<Command, BoxError> {
    let mut command = Command::new(outpostctl_beside(outpostd)?);
    command
        .args(["--addr", address])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    without_outpost_env(&mut command);
    Ok(command)
}

/// Runs `command` (`outpostctl ARGS…`) to completion; returns its wall
/// time, or its stderr if it failed.
pub fn run_once(command: &mut Command, args: &[&str]) -> Result<Duration, BoxError> {
    let start = Instant::now();
    let output = command.output()?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let args = args.join(" ");
        return Err(format!("outpostctl {args} failed ({}): {stderr}", output.status).into());
    }
    Ok(elapsed)
}

/// Prints the wall times (`times` ascending) of `outpostctl ARGS…` and
/// whether the median is within `target`.
pub fn print_cli(args: &[&str], times: &[Duration], target: Duration) {
    let median = percentile(times, 0.50);
    println!(
        "outpostctl {}, {} runs one after another: median {:.2} ms, p90 {:.2} ms, min {:.2} ms",
        args.join(" "),
        times.len(),
        millis(median),
        millis(percentile(times, 0.90)),
        millis(times.first().copied().unwrap_or_default())
    );
    println!(
        "  median target <= {:.0} ms: {}",
        millis(target),
        verdict(median <= target)
    );
}
