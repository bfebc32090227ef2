//! Workspace commands: ls, show, apply, check. Workspace names are
//! checked here as the daemon checks them (one harmless path component),
//! so a bad one is a usage error before anything is sent.

use std::{path::Path, process::ExitCode};

use clap::Subcommand;
use outpost::{endpoint::Connection, proto::v1 as pb, workspace_file};

use crate::{
    failure::Failure,
    output::{self, outln},
};

/// `outpostctl workspace …`.
#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// List workspaces: name, instances, last applied, problems
    Ls,
    /// Show a workspace's file, status and instance specs
    Show {
        /// Its name
        #[arg(value_parser = workspace_name)]
        name: String,
    },
    /// Apply a workspace file now (a name in the workspaces directory, or a path)
    Apply {
        /// NAME or FILE
        #[arg(value_parser = source)]
        source: pb::apply_workspace_request::Source,
        /// Only validate and print the diff it would make
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop every instance of a workspace, dependents first
    Stop {
        /// Its name
        #[arg(value_parser = workspace_name)]
        name: String,
    },
    /// Start every instance of a workspace (dependents wait for their dependencies)
    Start {
        /// Its name
        #[arg(value_parser = workspace_name)]
        name: String,
    },
    /// Take a workspace back to a version from `outpostctl history workspace NAME` (only what differs restarts)
    Rollback {
        /// Its name
        #[arg(value_parser = workspace_name)]
        name: String,
        /// The commit whose version to go back to
        #[arg(long = "to", value_name = "REV")]
        rev: String,
    },
    /// Validate a workspace file without a daemon (exit 1 on problems)
    Check {
        /// The file
        file: String,
    },
}

/// `outpostctl workspace check FILE`: the daemon's own validation (and
/// its defensive read), locally. With `--json`: `{"file", "valid",
/// "workspace", "instances", "errors"}`.
pub fn check(file: &str, json: bool) -> Result<ExitCode, Failure> {
    let result = workspace_file::load(Path::new(file));
    if json {
        let (workspace, instances, errors) = match &result {
            Ok(workspace) => (
                Some(workspace.name.clone()),
                workspace.instances.iter().map(|s| s.name.clone()).collect(),
                Vec::new(),
            ),
            Err(errors) => (None, Vec::new(), errors.clone()),
        };
        output::json(&serde_json::json!({
            "file": file,
            "valid": result.is_ok(),
            "workspace": workspace,
            "instances": instances,
            "errors": errors,
        }))?;
    } else {
        match &result {
            Ok(workspace) => outln!(
                "{file}: ok, workspace {} with {} instances",
                workspace.name,
                workspace.instances.len()
            ),
            Err(errors) => {
                for error in errors {
                    output::errln!("{error}");
                }
            }
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A workspace name argument, checked as the daemon checks it.
pub fn workspace_name(name: &str) -> Result<String, String> {
    workspace_file::validate_workspace_name("workspace name", name)
        .map(|()| name.to_owned())
        .map_err(|err| err.to_string())
}

/// `apply`'s argument: an existing file (sent as its absolute path), else a
/// workspace name.
fn source(text: &str) -> Result<pb::apply_workspace_request::Source, String> {
    if Path::new(text).exists() {
        let path = std::path::absolute(text).map_err(|err| format!("{text}: {err}"))?;
        return Ok(pb::apply_workspace_request::Source::File(
            path.display().to_string(),
        ));
    }
    workspace_name(text)
        .map(pb::apply_workspace_request::Source::Name)
        .map_err(|err| format!("no such file, and not a workspace name: {err}"))
}

/// Runs a workspace command against the daemon.
pub async fn run(
    connection: &Connection,
    json: bool,
    command: WorkspaceCommand,
) -> Result<ExitCode, Failure> {
    let mut client = connection.orchestrator();
    match command {
        WorkspaceCommand::Ls => {
            let response = client
                .list_workspaces(pb::ListWorkspacesRequest {})
                .await?
                .into_inner();
            if json {
                output::json(&response)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut rows = vec![["NAME", "INSTANCES", "FILE", "PROBLEMS"].map(str::to_owned)];
            for workspace in &response.workspaces {
                rows.push([
                    workspace.name.clone(),
                    workspace.instance_count.to_string(),
                    workspace.file.clone(),
                    workspace.last_errors.len().to_string(),
                ]);
            }
            output::table(&rows)?;
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::Show { name } => {
            let response = client
                .get_workspace(pb::GetWorkspaceRequest { name })
                .await?
                .into_inner();
            if json {
                output::json(&response)?;
                return Ok(ExitCode::SUCCESS);
            }
            let workspace = response.workspace.unwrap_or_default();
            print_workspace(&workspace);
            for spec in response.definition.map(|d| d.instances).unwrap_or_default() {
                outln!("  {}: {} {}", spec.name, spec.command, spec.args.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::Stop { name } => {
            let request = pb::StopWorkspaceRequest { name };
            let response = client.stop_workspace(request).await?.into_inner();
            if json {
                return output::done(output::json(&response));
            }
            crate::instances::print_table(&response.instances)
        }
        WorkspaceCommand::Start { name } => {
            let request = pb::StartWorkspaceRequest { name };
            let response = client.start_workspace(request).await?.into_inner();
            if json {
                return output::done(output::json(&response));
            }
            crate::instances::print_table(&response.instances)
        }
        WorkspaceCommand::Apply { source, dry_run } => {
            let response = client
                .apply_workspace(pb::ApplyWorkspaceRequest {
                    source: Some(source),
                    dry_run,
                })
                .await?
                .into_inner();
            if json {
                output::json(&response)?;
            } else {
                let diff = response.diff.unwrap_or_default();
                let verb = if dry_run { "would" } else { "did" };
                outln!(
                    "{verb} create {:?}, delete {:?}, restart {:?}; unchanged {:?}",
                    diff.created,
                    diff.deleted,
                    diff.changed,
                    diff.unchanged
                );
            }
            // An apply is all or nothing: a failure is an error status
            // (naming the step and the rollback), never a partial success.
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::Rollback { name, rev } => {
            let response = connection
                .history()
                .rollback_workspace(pb::RollbackWorkspaceRequest { name, rev })
                .await?
                .into_inner();
            if json {
                return output::done(output::json(&response));
            }
            let restored = response.restored.unwrap_or_default();
            let diff = response.diff.unwrap_or_default();
            outln!(
                "rolled back to {} ({}): created {:?}, deleted {:?}, restarted {:?}; unchanged {:?}",
                restored.rev.chars().take(12).collect::<String>(),
                restored.summary,
                diff.created,
                diff.deleted,
                diff.changed,
                diff.unchanged
            );
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::Check { file } => check(&file, json),
    }
}

fn print_workspace(workspace: &pb::Workspace) {
    outln!(
        "{} ({}), {} instances",
        workspace.name,
        workspace.file,
        workspace.instance_count
    );
    for error in &workspace.last_errors {
        outln!("  problem: {error}");
    }
}
