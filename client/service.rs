//! `outpostctl service install|uninstall [--user|--system] [--dry-run]`:
//! systemd units for the daemon, an `outpostd.socket` (socket activation:
//! clients may connect before the daemon runs) and an `outpostd.service`
//! (`Type=notify`; `KillMode=process` and `--keep-instances-on-exit`, so
//! that a restarted daemon re-adopts the dev servers). Why each setting is
//! there: docs/operations.md. No daemon is needed, and systemctl is not
//! run: the commands to run next are printed.

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, Subcommand};
use outpost::paths;

use crate::{failure::Failure, output};

/// The unit files' names.
const SOCKET_UNIT: &str = "outpostd.socket";
const SERVICE_UNIT: &str = "outpostd.service";
/// Where system units go.
const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";
/// The socket of a system daemon (its runtime directory is the service's).
const SYSTEM_SOCKET: &str = "/run/outpost/outpostd.sock";
/// The socket of a user's daemon, as systemd spells `$XDG_RUNTIME_DIR`:
/// the path the CLI looks at by default.
const USER_SOCKET: &str = "%t/outpost/outpostd.sock";

/// The service commands.
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Write outpostd.socket and outpostd.service (then run the systemctl commands printed)
    Install {
        #[command(flatten)]
        scope: Scope,
        /// The outpostd binary the unit runs [default: the one beside outpostctl]
        #[arg(long, value_name = "PATH")]
        daemon: Option<PathBuf>,
        /// With --system: the user the daemon (and every instance) runs as [default: $SUDO_USER, else $USER]
        #[arg(long, value_name = "USER")]
        run_as: Option<String>,
    },
    /// Remove outpostd.socket and outpostd.service (stop and disable them first)
    Uninstall {
        #[command(flatten)]
        scope: Scope,
    },
}

/// Whose units, and whether to only print them.
#[derive(Debug, Args)]
pub struct Scope {
    /// The user's own units, in ~/.config/systemd/user (the default)
    #[arg(long, conflicts_with = "system")]
    user: bool,
    /// System units, in /etc/systemd/system (needs root)
    #[arg(long)]
    system: bool,
    /// Print what would be written or removed, and change nothing
    #[arg(long)]
    dry_run: bool,
}

impl Scope {
    /// Whether these are system units (`--user` is the default, and clap
    /// refuses both).
    fn system(&self) -> bool {
        self.system && !self.user
    }
}

/// The two units' text.
struct Units {
    socket: String,
    service: String,
}

pub fn run(command: ServiceCommand) -> Result<ExitCode, Failure> {
    match command {
        ServiceCommand::Install {
            scope,
            daemon,
            run_as,
        } => {
            let daemon = daemon_binary(daemon)?;
            let units = if scope.system() {
                let user = run_as
                    .or_else(|| std::env::var("SUDO_USER").ok())
                    .or_else(|| std::env::var("USER").ok())
                    .ok_or_else(|| {
                        service_failure("--run-as: no user named; pass --run-as USER")
                    })?;
                system_units(&daemon, &user)?
            } else {
                if run_as.is_some() {
                    return Err(service_failure(
                        "--run-as is for --system units; a user's units run as that user",
                    ));
                }
                user_units(&daemon)
            };
            install(&unit_dir(&scope)?, &units, &scope)
        }
        ServiceCommand::Uninstall { scope } => uninstall(&unit_dir(&scope)?, &scope),
    }
}

fn install(dir: &Path, units: &Units, scope: &Scope) -> Result<ExitCode, Failure> {
    let files = [
        (dir.join(SOCKET_UNIT), &units.socket),
        (dir.join(SERVICE_UNIT), &units.service),
    ];
    if scope.dry_run {
        for (path, text) in &files {
            output::outln!("# {}\n{text}", path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let cannot = |path: &Path, err: io::Error| {
        service_failure(&format!("cannot write {}: {err}", path.display()))
    };
    fs::create_dir_all(dir).map_err(|err| cannot(dir, err))?;
    for (path, text) in &files {
        fs::write(path, text).map_err(|err| cannot(path, err))?;
        output::outln!("wrote {}", path.display());
    }
    let systemctl = systemctl(scope);
    output::outln!(
        "next: {systemctl} daemon-reload && {systemctl} enable --now {SOCKET_UNIT} {SERVICE_UNIT}"
    );
    Ok(ExitCode::SUCCESS)
}

fn uninstall(dir: &Path, scope: &Scope) -> Result<ExitCode, Failure> {
    let systemctl = systemctl(scope);
    for name in [SOCKET_UNIT, SERVICE_UNIT] {
        let path = dir.join(name);
        if scope.dry_run {
            output::outln!("would remove {}", path.display());
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => output::outln!("removed {}", path.display()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                output::outln!("{} was not installed", path.display());
            }
            Err(err) => {
                return Err(service_failure(&format!(
                    "cannot remove {}: {err}",
                    path.display()
                )));
            }
        }
    }
    output::outln!(
        "next: {systemctl} daemon-reload (a running daemon keeps running: outpostctl shutdown stops it)"
    );
    Ok(ExitCode::SUCCESS)
}

fn systemctl(scope: &Scope) -> &'static str {
    if scope.system() {
        "systemctl"
    } else {
        "systemctl --user"
    }
}

fn unit_dir(scope: &Scope) -> Result<PathBuf, Failure> {
    if scope.system() {
        Ok(PathBuf::from(SYSTEM_UNIT_DIR))
    } else {
        paths::user_unit_dir().ok_or_else(|| {
            service_failure("HOME is not set: no ~/.config/systemd/user to put the units in")
        })
    }
}

/// The units of a user's own daemon.
fn user_units(daemon: &str) -> Units {
    Units {
        socket: socket_unit(USER_SOCKET, "", "0700"),
        service: service_unit(daemon, USER_SOCKET, "", "default.target"),
    }
}

/// The units of a system daemon that runs as `user`.
fn system_units(daemon: &str, user: &str) -> Result<Units, Failure> {
    let simple = !user.is_empty()
        && user.len() <= 32
        && !user.starts_with('-')
        && (user.bytes()).all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if !simple {
        return Err(service_failure(&format!(
            "--run-as: {user:?} is not a user name (at most 32 letters, digits, '_', '-', '.')"
        )));
    }
    Ok(Units {
        socket: socket_unit(SYSTEM_SOCKET, &format!("SocketUser={user}\n"), "0755"),
        service: service_unit(
            daemon,
            SYSTEM_SOCKET,
            &format!(
                "User={user}\n\
                 # The socket's directory, owned by {user}, for its lock.\n\
                 RuntimeDirectory=outpost\n\
                 RuntimeDirectoryMode=0755\n\
                 RuntimeDirectoryPreserve=yes\n\
                 ProtectSystem=full\n\
                 ProtectKernelTunables=yes\n\
                 ProtectKernelModules=yes\n\
                 ProtectKernelLogs=yes\n\
                 ProtectClock=yes\n\
                 ProtectHostname=yes\n\
                 RestrictSUIDSGID=yes\n"
            ),
            "multi-user.target",
        ),
    })
}

fn socket_unit(socket: &str, extra: &str, directory_mode: &str) -> String {
    format!(
        "[Unit]\n\
         Description=outpost daemon's socket (starts outpostd on the first connection)\n\
         \n\
         [Socket]\n\
         ListenStream={socket}\n\
         SocketMode=0600\n\
         {extra}\
         DirectoryMode={directory_mode}\n\
         \n\
         [Install]\n\
         WantedBy=sockets.target\n"
    )
}

fn service_unit(daemon: &str, socket: &str, extra: &str, wanted_by: &str) -> String {
    format!(
        "[Unit]\n\
         Description=outpost daemon: local server processes and content sync\n\
         Requires={SOCKET_UNIT}\n\
         After={SOCKET_UNIT}\n\
         \n\
         [Service]\n\
         Type=notify\n\
         NotifyAccess=main\n\
         ExecStart={daemon} --socket {socket} --keep-instances-on-exit\n\
         # Only the daemon is stopped or restarted: its instances run on and\n\
         # the next daemon re-adopts them.\n\
         KillMode=process\n\
         Restart=on-failure\n\
         RestartSec=2s\n\
         TimeoutStopSec=60s\n\
         WatchdogSec=30s\n\
         NoNewPrivileges=yes\n\
         LockPersonality=yes\n\
         {extra}\
         \n\
         [Install]\n\
         WantedBy={wanted_by}\n"
    )
}

/// The daemon binary as the unit names it: absolute, and written so that
/// systemd reads it as one word with no specifiers.
fn daemon_binary(given: Option<PathBuf>) -> Result<String, Failure> {
    let path = match given {
        Some(path) => path,
        None => std::env::current_exe()
            .map_err(|err| service_failure(&format!("--daemon: cannot find outpostctl ({err})")))?
            .with_file_name("outpostd"),
    };
    let path = path.canonicalize().map_err(|err| {
        service_failure(&format!(
            "--daemon: {} ({err}); name the outpostd binary with --daemon PATH",
            path.display()
        ))
    })?;
    let text = path.to_str().unwrap_or_default();
    let plain = !text.is_empty()
        && (text.bytes()).all(|b| b.is_ascii_alphanumeric() || b"/._-+".contains(&b));
    if !plain {
        return Err(service_failure(&format!(
            "--daemon: {} has characters a unit file would have to escape (only letters, digits and / . _ - + are written as they are); install outpostd at a plainer path",
            path.display()
        )));
    }
    Ok(text.to_owned())
}

fn service_failure(message: &str) -> Failure {
    Failure::Input(message.to_owned())
}
