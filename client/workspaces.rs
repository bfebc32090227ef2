//! Workspace commands: ls, show, apply, check.

use std::{path::Path, process::ExitCode};

use clap::Subcommand;
use outpost::{endpoint::Connection, proto::v1 as pb, workspace_file};

use crate::{failure::Failure, output};

/// `outpostctl workspace …`.
#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// List workspaces: name, instances, last applied, problems
    Ls,
    /// Show a workspace's file, status and instance specs
    Show {
        /// Its name
        name: String,
    },
    /// Apply a workspace file now (a name in the workspaces directory, or a path)
    Apply {
        /// NAME or FILE
        source: String,
        /// Only validate and print the diff it would make
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate a workspace file without a daemon (exit 1 on problems)
    Check {
        /// The file
        file: String,
    },
}

/// `outpostctl workspace check FILE`: the daemon's own validation, locally.
pub fn check(file: &str) -> ExitCode {
    match workspace_file::load(Path::new(file)) {
        Ok(workspace) => {
            println!(
                "{file}: ok, workspace {} with {} instances",
                workspace.name,
                workspace.instances.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for error in errors {
                eprintln!("{error}");
            }
            ExitCode::FAILURE
        }
    }
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
                println!("  {}: {} {}", spec.name, spec.command, spec.args.join(" "));
            }
            Ok(ExitCode::SUCCESS)
        }
        WorkspaceCommand::Apply { source, dry_run } => {
            let source = if Path::new(&source).exists() {
                pb::apply_workspace_request::Source::File(
                    std::path::absolute(&source)
                        .unwrap_or_default()
                        .display()
                        .to_string(),
                )
            } else {
                pb::apply_workspace_request::Source::Name(source)
            };
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
                println!(
                    "{verb} create {:?}, delete {:?}, restart {:?}; unchanged {:?}",
                    diff.created, diff.deleted, diff.changed, diff.unchanged
                );
                for error in response
                    .workspace
                    .as_ref()
                    .map(|w| w.last_errors.clone())
                    .unwrap_or_default()
                {
                    eprintln!("{error}");
                }
            }
            let failed = response
                .workspace
                .is_some_and(|w| !w.last_errors.is_empty());
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        WorkspaceCommand::Check { file } => Ok(check(&file)),
    }
}

fn print_workspace(workspace: &pb::Workspace) {
    println!(
        "{} ({}), {} instances",
        workspace.name, workspace.file, workspace.instance_count
    );
    for error in &workspace.last_errors {
        println!("  problem: {error}");
    }
}
