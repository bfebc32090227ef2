//! Named daemons: contexts kept in the client's config
//! (`$XDG_CONFIG_HOME/outpost/contexts.toml`), each an address and the
//! token file it needs; `context add|ls|use|rm`; which daemon a command
//! talks to (`--addr`, else `--context`, else the context in use, else the
//! default socket); and `ls` over several daemons at once, where one that
//! cannot be reached is a row saying so, not the failure of the command.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use outpost::{
    bounded_read,
    endpoint::{Address, ConnectOptions, Connection},
    paths,
    proto::v1 as pb,
    tls::ClientTls,
    token::Token,
    workspace_file::validate_workspace_name,
};

use crate::{failure::Failure, output};

/// Largest contexts file read.
const MAX_FILE: u64 = 1 << 20;

/// `outpostctl context …`.
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Name a daemon: its address and the token file it needs
    Add {
        /// The context's name
        #[arg(value_parser = context_name)]
        name: String,
        /// unix:///PATH or http://HOST:PORT
        address: Address,
        /// The daemon's token (for TCP)
        #[arg(long = "token-file", value_name = "FILE")]
        token_file: Option<PathBuf>,
    },
    /// List contexts; * marks the one in use
    Ls,
    /// Talk to this context's daemon from now on
    Use {
        /// The context's name
        name: String,
    },
    /// Forget a context
    Rm {
        /// The context's name
        name: String,
    },
}

/// One named daemon.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Where it listens.
    pub address: String,
    /// The token it needs, for TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// The contexts file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contexts {
    /// The context commands use without `--context`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// Where a command connects: an address and the token file for it.
pub struct Target {
    pub address: Address,
    pub token_file: Option<PathBuf>,
}

fn context_name(name: &str) -> Result<String, String> {
    validate_workspace_name("context name", name)
        .map(|()| name.to_owned())
        .map_err(|err| err.to_string())
}

fn file() -> Result<PathBuf, Failure> {
    paths::default_contexts_file().ok_or_else(|| {
        Failure::Input("no config directory: set XDG_CONFIG_HOME or HOME".to_owned())
    })
}

impl Contexts {
    /// The contexts file, or none yet.
    pub fn load() -> Result<Self, Failure> {
        let path = file()?;
        let bytes = match bounded_read::read(&path, MAX_FILE) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => return Err(Failure::Input(format!("{}: {err}", path.display()))),
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| Failure::Input(format!("{}: not UTF-8", path.display())))?;
        toml::from_str(&text)
            .map_err(|err| Failure::Input(format!("{}: {}", path.display(), err.message().trim())))
    }

    /// Writes the file whole (a temporary file renamed over it), 0600.
    fn save(&self) -> Result<(), Failure> {
        let path = file()?;
        let fail = |err: std::io::Error| Failure::Input(format!("{}: {err}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let text = toml::to_string(self).map_err(|err| Failure::Input(err.to_string()))?;
        let temporary = path.with_extension("toml.tmp");
        write_private(&temporary, text.as_bytes()).map_err(fail)?;
        std::fs::rename(&temporary, &path).map_err(fail)
    }

    fn get(&self, name: &str) -> Result<&Context, Failure> {
        self.contexts.get(name).ok_or_else(|| {
            Failure::Input(format!(
                "no context named {name} (outpostctl context ls lists them)"
            ))
        })
    }

    fn target(&self, name: &str) -> Result<Target, Failure> {
        let context = self.get(name)?;
        let address = context
            .address
            .parse()
            .map_err(|err| Failure::Input(format!("context {name}: {err}")))?;
        Ok(Target {
            address,
            token_file: context.token_file.clone(),
        })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// The daemon a command talks to: `--addr` (with `--token-file`), else
/// the named context, else the context in use, else the default socket.
pub fn resolve(
    addr: Option<&Address>,
    context: Option<&str>,
    token_file: Option<&Path>,
) -> Result<Target, Failure> {
    if let Some(address) = addr {
        return Ok(Target {
            address: address.clone(),
            token_file: token_file.map(Path::to_owned),
        });
    }
    let contexts = Contexts::load()?;
    let name = context.map(str::to_owned).or(contexts.current.clone());
    let mut target = match name {
        Some(name) => contexts.target(&name)?,
        None => Target {
            address: Address::Unix(paths::default_socket_path().ok_or(Failure::NoDefaultAddress)?),
            token_file: None,
        },
    };
    if let Some(file) = token_file {
        target.token_file = Some(file.to_owned());
    }
    Ok(target)
}

/// Opens a connection to `target`.
pub async fn open(target: &Target, options: &ConnectOptions) -> Result<Connection, Failure> {
    let token = Token::load(target.token_file.as_deref()).map_err(Failure::Token)?;
    Connection::open(&target.address, token.as_ref(), options)
        .await
        .map_err(|source| Failure::Connect {
            address: target.address.clone(),
            source,
        })
}

/// Runs a `context` command (no daemon involved).
pub fn run(command: ContextCommand, json: bool) -> Result<ExitCode, Failure> {
    let mut contexts = Contexts::load()?;
    match command {
        ContextCommand::Add {
            name,
            address,
            token_file,
        } => {
            let token_file = token_file
                .map(std::path::absolute)
                .transpose()
                .map_err(|err| Failure::Input(err.to_string()))?;
            let context = Context {
                address: address.to_string(),
                token_file,
            };
            contexts.contexts.insert(name.clone(), context);
            contexts.save()?;
            output::outln!("context {name}: {address}");
        }
        ContextCommand::Ls if json => output::json(&contexts)?,
        ContextCommand::Ls => {
            let mut rows = vec![["", "NAME", "ADDRESS", "TOKEN FILE"].map(str::to_owned)];
            for (name, context) in &contexts.contexts {
                let mark = if contexts.current.as_ref() == Some(name) {
                    "*"
                } else {
                    ""
                };
                let token = (context.token_file.as_ref())
                    .map_or("-".to_owned(), |file| file.display().to_string());
                rows.push([
                    mark.to_owned(),
                    name.clone(),
                    context.address.clone(),
                    token,
                ]);
            }
            output::table(&rows).map_err(Failure::Output)?;
        }
        ContextCommand::Use { name } => {
            contexts.get(&name)?;
            contexts.current = Some(name.clone());
            contexts.save()?;
            output::outln!("using context {name}");
        }
        ContextCommand::Rm { name } => {
            contexts.get(&name)?;
            contexts.contexts.remove(&name);
            if contexts.current.as_ref() == Some(&name) {
                contexts.current = None;
            }
            contexts.save()?;
            output::outln!("removed context {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Which contexts `ls` asks: the named ones, or all.
#[derive(Clone, Debug)]
pub enum Selection {
    Named(Vec<String>),
    All,
}

/// `ls` over several daemons at once: one table with a CONTEXT column; a
/// daemon that cannot be reached (within `deadline`) is a row saying why.
pub async fn list(
    selection: Selection,
    request: pb::ListInstancesRequest,
    deadline: Duration,
    tls: impl Fn(&Address) -> Result<ClientTls, Failure>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let contexts = Contexts::load()?;
    let names: Vec<String> = match selection {
        Selection::All => contexts.contexts.keys().cloned().collect(),
        Selection::Named(names) => names,
    };
    if names.is_empty() {
        return Err(Failure::Input(
            "no contexts to ask (outpostctl context add NAME ADDRESS)".to_owned(),
        ));
    }
    let mut asks = tokio::task::JoinSet::new();
    for name in names {
        let target = contexts.target(&name)?;
        let request = request.clone();
        let options = ConnectOptions {
            connect_timeout: deadline,
            request_timeout: Some(deadline),
            tls: tls(&target.address)?,
        };
        asks.spawn(async move {
            let answer = async {
                let connection = open(&target, &options).await?;
                let mut client = connection.orchestrator();
                (client.list_instances(request).await)
                    .map(|response| response.into_inner())
                    .map_err(Failure::Rpc)
            };
            (name, answer.await.map_err(|failure| failure.to_string()))
        });
    }
    let mut answers = BTreeMap::new();
    while let Some(joined) = asks.join_next().await {
        if let Ok((name, answer)) = joined {
            answers.insert(name, answer);
        }
    }
    if json {
        let shown: BTreeMap<&String, serde_json::Value> = (answers.iter())
            .map(|(name, answer)| {
                let value = match answer {
                    Ok(response) => serde_json::to_value(response).unwrap_or_default(),
                    Err(error) => serde_json::json!({ "error": error }),
                };
                (name, value)
            })
            .collect();
        output::json(&shown)?;
        return Ok(ExitCode::SUCCESS);
    }
    crate::instances::print_across(&answers)
}
