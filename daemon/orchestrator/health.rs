//! Running one health probe: TCP connect, HTTP GET, or a command. Each
//! probe is bounded by its timeout; a command that overruns is killed
//! with its whole process group.

use std::{os::unix::process::CommandExt, process::Stdio, time::Duration};

use bytes::Bytes;

use crate::config::SECRET_ENV;
use http_body_util::Empty;
use hyper::{Request, Uri, header::HOST};
use hyper_util::rt::TokioIo;
use nix::{
    sys::signal::{Signal, killpg},
    unistd::Pid,
};
use tokio::net::TcpStream;

use outpost::{
    limits::cut,
    spec::{HttpTarget, Probe},
};

use super::{reaper::Reaper, status::ExitOutcome};

/// Runs `probe` against an instance on `port`; `Err` says why it failed.
pub async fn check(
    probe: &Probe,
    port: Option<u16>,
    timeout: Duration,
    reaper: &Reaper,
) -> Result<(), String> {
    match probe {
        Probe::None => Ok(()),
        Probe::Tcp { host, port: given } => {
            let port = given.or(port).ok_or("no port to check")?;
            let connect = async {
                TcpStream::connect((host.as_str(), port))
                    .await
                    .map(drop)
                    .map_err(|err| format!("cannot connect to {host}:{port}: {err}"))
            };
            bounded(timeout, connect).await
        }
        Probe::Http { target } => {
            let url = match target {
                HttpTarget::Url(url) => url.clone(),
                HttpTarget::Path(path) => {
                    format!("http://127.0.0.1:{}{path}", port.ok_or("no port to check")?)
                }
            };
            bounded(timeout, http_get(url)).await
        }
        Probe::Exec { command } => exec(command, port, timeout, reaper).await,
    }
}

/// Runs `probe` for at most `timeout`.
async fn bounded(
    timeout: Duration,
    probe: impl Future<Output = Result<(), String>>,
) -> Result<(), String> {
    tokio::time::timeout(timeout, probe)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {}",
                humantime::format_duration(timeout)
            ))
        })
}

/// GET `url`; Ok on a 2xx status.
async fn http_get(url: String) -> Result<(), String> {
    let uri: Uri = url
        .parse()
        .map_err(|err| format!("bad url {url:?}: {err}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("no host in {url:?}"))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|err| format!("cannot connect to {host}:{port}: {err}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|err| format!("HTTP handshake with {host}:{port} failed: {err}"))?;
    tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(HOST, format!("{host}:{port}"))
        .body(Empty::<Bytes>::new())
        .map_err(|err| err.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| format!("GET {url} failed: {err}"))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("GET {url} answered {}", response.status()))
    }
}

/// Runs a probe command in its own group; kills the group on timeout.
async fn exec(
    command: &[String],
    port: Option<u16>,
    timeout: Duration,
    reaper: &Reaper,
) -> Result<(), String> {
    let (program, args) = command.split_first().ok_or("no command")?;
    let mut process = std::process::Command::new(program);
    for secret in SECRET_ENV {
        process.env_remove(secret);
    }
    process
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let Some(port) = port {
        process.env("PORT", port.to_string());
    }
    let spawned = reaper
        .spawn(&mut process)
        .map_err(|err| format!("cannot run {}: {err}", cut(program)))?;
    let mut exit = spawned.exit;
    let outcome = match tokio::time::timeout(timeout, &mut exit).await {
        Ok(outcome) => outcome.unwrap_or(ExitOutcome::Unknown),
        Err(_) => {
            let _ = killpg(Pid::from_raw(spawned.pid as i32), Signal::SIGKILL);
            let _ = exit.await;
            return Err(format!(
                "{} did not finish within {}",
                cut(program),
                humantime::format_duration(timeout)
            ));
        }
    };
    if outcome.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{} ended with {}",
            cut(program),
            outcome.describe()
        ))
    }
}
