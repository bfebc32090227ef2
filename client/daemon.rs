//! Commands about the daemon itself: `validate`, `status`, `health`,
//! `dashboard` and `shutdown`.

use std::process::ExitCode;

use clap::Subcommand;
use outpost::{endpoint::Connection, proto::v1 as pb};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::{failure::Failure, output};

/// The daemon commands, at the top level of the command line.
#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Compare the daemon's state with the processes and ports that exist (exit 1 if they disagree)
    Validate {
        /// Apply the safe fixes (never kills a process it cannot prove is outpost's)
        #[arg(long)]
        fix: bool,
    },
    /// Show the daemon's version, uptime, listeners and instance counts
    Status,
    /// Print a one-time URL that logs a browser into the dashboard (valid for one visit within 60 s)
    Dashboard {
        /// Also open it in the default browser ($BROWSER, else xdg-open)
        #[arg(long)]
        open: bool,
    },
    /// Check the gRPC health of the daemon and its services (exit 1 unless all serve)
    Health {
        /// Check only this service (e.g. outpost.v1.Sync); "" is the daemon as a whole
        service: Option<String>,
    },
    /// Stop the daemon; its instances keep running for the next daemon to re-adopt (returns once its state is stored)
    Shutdown {
        /// Stop every instance too (dependents first)
        #[arg(long)]
        stop_instances: bool,
    },
}

impl DaemonCommand {
    /// Whether the command waits as long as the daemon takes (stopping
    /// instances has their grace periods), with no request deadline.
    pub fn waits(&self) -> bool {
        matches!(self, Self::Shutdown { .. })
    }
}

pub async fn run(
    connection: &Connection,
    json: bool,
    command: DaemonCommand,
) -> Result<ExitCode, Failure> {
    match command {
        DaemonCommand::Validate { fix } => validate(connection, json, fix).await,
        DaemonCommand::Status => status(connection, json).await,
        DaemonCommand::Dashboard { open } => dashboard(connection, json, open).await,
        DaemonCommand::Health { service } => health(connection, json, service).await,
        DaemonCommand::Shutdown { stop_instances } => {
            shutdown(connection, json, stop_instances).await
        }
    }
}

/// Services `health` checks when none is named ("" is the daemon overall).
const SERVICES: [&str; 3] = ["", "outpost.v1.Orchestrator", "outpost.v1.Sync"];

async fn status(connection: &Connection, json: bool) -> Result<ExitCode, Failure> {
    let status = connection
        .orchestrator()
        .get_daemon_status(pb::GetDaemonStatusRequest {})
        .await?
        .into_inner();
    if json {
        output::json(&status)?;
        return Ok(ExitCode::SUCCESS);
    }
    let by_state: Vec<String> = status
        .instance_counts
        .iter()
        .filter(|count| count.count > 0)
        .map(|count| format!("{} {}", count.count, output::instance_state(count.state)))
        .collect();
    let mut instances = format!(
        "{} (at most {})",
        status.instance_count, status.max_instances
    );
    if !by_state.is_empty() {
        instances = format!("{instances}: {}", by_state.join(", "));
    }
    let port_pool = status
        .port_range
        .map(|range| format!("{}-{}", range.first, range.last))
        .unwrap_or_default();
    let store = if status.store_error.is_empty() {
        "writable".to_owned()
    } else {
        let since = status
            .store_failing_since
            .map(|since| {
                format!(
                    " for {}",
                    output::seconds(output::seconds_since(since.seconds))
                )
            })
            .unwrap_or_default();
        format!("NOT WRITABLE{since}: {}", status.store_error)
    };
    output::rows(&[
        (
            "daemon",
            format!("outpostd {} (pid {})", status.version, status.pid),
        ),
        ("uptime", output::duration(status.uptime.as_ref())),
        ("listening", status.listen_addresses.join(", ")),
        (
            "tls",
            if status.tls_fingerprint.is_empty() {
                "none".to_owned()
            } else {
                format!("certificate SHA-256 {}", status.tls_fingerprint)
            },
        ),
        (
            "dashboard",
            if status.http_address.is_empty() {
                "none (start outpostd with --http 127.0.0.1:7878)".to_owned()
            } else {
                status.http_address
            },
        ),
        ("data dir", status.data_dir),
        ("state", store),
        ("instances", instances),
        ("port pool", port_pool),
        ("sync root", status.sync_root),
        ("workspaces", status.workspaces_dir),
        (
            "history",
            if status.history_path.is_empty() {
                "off".to_owned()
            } else {
                format!(
                    "{} (git -C {} log)",
                    status.history_path, status.history_path
                )
            },
        ),
    ])?;
    Ok(ExitCode::SUCCESS)
}

/// `outpostctl dashboard [--open]`: the login URL, printed (and opened).
async fn dashboard(connection: &Connection, json: bool, open: bool) -> Result<ExitCode, Failure> {
    let login = connection
        .orchestrator()
        .create_dashboard_login(pb::CreateDashboardLoginRequest {})
        .await?
        .into_inner();
    if json {
        output::json(&login)?;
    } else {
        output::outln!("{}", login.url);
    }
    if open {
        let opener = std::env::var_os("BROWSER").unwrap_or_else(|| "xdg-open".into());
        let opened = std::process::Command::new(&opener)
            .arg(&login.url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .status();
        match opened {
            Ok(status) if status.success() => {}
            Ok(status) => {
                return Err(Failure::Browser(format!(
                    "{} could not open the URL ({status}); open it by hand",
                    opener.to_string_lossy()
                )));
            }
            Err(err) => {
                return Err(Failure::Browser(format!(
                    "cannot run {}: {err}; open the URL by hand",
                    opener.to_string_lossy()
                )));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `outpostctl shutdown [--stop-instances]`: one line once the daemon has
/// stored its state.
async fn shutdown(
    connection: &Connection,
    json: bool,
    stop_instances: bool,
) -> Result<ExitCode, Failure> {
    let stopped = connection
        .orchestrator()
        .shutdown(pb::ShutdownRequest { stop_instances })
        .await?
        .into_inner();
    if json {
        output::json(&stopped)?;
    } else {
        let count = stopped.active_instances;
        let instances = if count == 1 { "instance" } else { "instances" };
        if stopped.instances_stopped {
            output::outln!("outpostd stopped; {count} {instances} stopped");
        } else {
            output::outln!(
                "outpostd stopped; {count} {instances} left running for the next daemon"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `outpostctl health [SERVICE]`: exit status 1 unless every checked
/// service is SERVING.
async fn health(
    connection: &Connection,
    json: bool,
    service: Option<String>,
) -> Result<ExitCode, Failure> {
    let services: Vec<String> = match service {
        Some(service) => vec![service],
        None => SERVICES.iter().map(|s| (*s).to_owned()).collect(),
    };
    let mut client = connection.health();
    let mut results = Vec::with_capacity(services.len());
    for service in services {
        let response = client
            .check(HealthCheckRequest {
                service: service.clone(),
            })
            .await?
            .into_inner();
        let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
        results.push((service, status));
    }
    let all_serving = results
        .iter()
        .all(|(_, status)| *status == ServingStatus::Serving);
    if json {
        let entries: Vec<serde_json::Value> = results
            .iter()
            .map(|(service, status)| {
                serde_json::json!({ "service": service, "status": status.as_str_name() })
            })
            .collect();
        output::json(&entries)?;
    } else {
        let rows: Vec<(&str, String)> = results
            .iter()
            .map(|(service, status)| {
                let label = if service.is_empty() {
                    "(daemon)"
                } else {
                    service.as_str()
                };
                (label, status.as_str_name().to_owned())
            })
            .collect();
        output::rows(&rows)?;
    }
    Ok(if all_serving {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `outpostctl validate [--fix]`: one line per inconsistency; exit status 1
/// while any remains unfixed.
async fn validate(connection: &Connection, json: bool, fix: bool) -> Result<ExitCode, Failure> {
    let response = connection
        .orchestrator()
        .validate_state(pb::ValidateStateRequest { fix })
        .await?
        .into_inner();
    if json {
        output::json(&response)?;
    } else if response.inconsistencies.is_empty() {
        output::outln!("no inconsistencies");
    } else {
        for issue in &response.inconsistencies {
            let kind = output::word(
                issue.kind,
                pb::InconsistencyKind::as_str_name,
                "INCONSISTENCY_KIND_",
            )
            .unwrap_or_else(|| "unspecified".to_owned())
            .replace('_', " ");
            let fixed = if issue.fixed { " [fixed]" } else { "" };
            output::outln!("{kind}: {} — {}{fixed}", issue.description, issue.remedy);
        }
    }
    let unfixed = response.inconsistencies.iter().any(|issue| !issue.fixed);
    Ok(if unfixed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
