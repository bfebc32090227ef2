//! One-time login codes for the dashboard: `outpostctl dashboard` asks for
//! one (over the socket or the token-guarded TCP listener, so whoever gets
//! a code could already drive the daemon), the browser redeems it once
//! within [`CODE_TTL`] for a session cookie. A task owns the outstanding
//! codes; only their SHA-256 is kept, so a lookup's timing says nothing
//! about a code.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use sha2::{Digest, Sha256};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};

/// How long a code may wait for its visit.
pub(crate) const CODE_TTL: Duration = Duration::from_secs(60);
/// Most codes outstanding at once; issuing another forgets the oldest.
const MAX_CODES: usize = 64;

enum Command {
    Issue(oneshot::Sender<Option<Issued>>),
    Redeem(String, oneshot::Sender<bool>),
}

/// A fresh code and when it stops working.
pub(crate) struct Issued {
    pub(crate) code: String,
    pub(crate) expires_at: SystemTime,
}

/// The handle to the task that owns the codes.
#[derive(Clone, Debug)]
pub(crate) struct Logins(mpsc::Sender<Command>);

impl Logins {
    /// Starts the task; it ends when the last handle is dropped.
    pub(crate) fn start() -> Self {
        let (sender, receiver) = mpsc::channel(16);
        tokio::spawn(own(receiver));
        Self(sender)
    }

    /// A new code, valid for one visit within [`CODE_TTL`]; None when the
    /// kernel gives no randomness (a guessable code is no code).
    pub(crate) async fn issue(&self) -> Option<Issued> {
        let (reply, answer) = oneshot::channel();
        self.0.send(Command::Issue(reply)).await.ok()?;
        answer.await.ok().flatten()
    }

    /// Whether `code` was issued, unused and unexpired; it is spent either
    /// way.
    pub(crate) async fn redeem(&self, code: &str) -> bool {
        let (reply, answer) = oneshot::channel();
        if self
            .0
            .send(Command::Redeem(code.to_owned(), reply))
            .await
            .is_err()
        {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

async fn own(mut commands: mpsc::Receiver<Command>) {
    let mut codes: HashMap<[u8; 32], Instant> = HashMap::new();
    while let Some(command) = commands.recv().await {
        let now = Instant::now();
        codes.retain(|_, expires| *expires > now);
        match command {
            Command::Issue(reply) => {
                if codes.len() >= MAX_CODES
                    && let Some(oldest) = codes
                        .iter()
                        .min_by_key(|(_, expires)| **expires)
                        .map(|(digest, _)| *digest)
                {
                    codes.remove(&oldest);
                }
                let issued = random_bytes::<32>().map(|bytes| {
                    let code = hex(&bytes);
                    codes.insert(digest(&code), now + CODE_TTL);
                    Issued {
                        code,
                        expires_at: SystemTime::now() + CODE_TTL,
                    }
                });
                let _ = reply.send(issued);
            }
            Command::Redeem(code, reply) => {
                let _ = reply.send(codes.remove(&digest(&code)).is_some());
            }
        }
    }
}

fn digest(code: &str) -> [u8; 32] {
    Sha256::digest(code.as_bytes()).into()
}

/// `N` random bytes from the kernel; None (logged) when it has none.
pub(crate) fn random_bytes<const N: usize>() -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    match getrandom::fill(&mut bytes) {
        Ok(()) => Some(bytes),
        Err(err) => {
            tracing::error!(%err, "the kernel gave no random bytes");
            None
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_code_works_once() {
        let logins = Logins::start();
        let issued = logins.issue().await.unwrap();
        assert_eq!(issued.code.len(), 64);
        assert!(!logins.redeem("not-a-code").await);
        assert!(logins.redeem(&issued.code).await);
        assert!(
            !logins.redeem(&issued.code).await,
            "a code is spent once used"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_code_expires() {
        let logins = Logins::start();
        let issued = logins.issue().await.unwrap();
        tokio::time::advance(CODE_TTL + Duration::from_secs(1)).await;
        assert!(!logins.redeem(&issued.code).await);
    }

    #[tokio::test]
    async fn the_oldest_code_makes_room() {
        let logins = Logins::start();
        let first = logins.issue().await.unwrap();
        for _ in 0..MAX_CODES {
            logins.issue().await.unwrap();
        }
        assert!(!logins.redeem(&first.code).await);
    }
}
