//! Black-box tests: each starts a real `outpostd` on a temporary socket and
//! data directory and drives it over gRPC, through `outpostctl`, `grpcurl`
//! or a generated Python client.

/// A private MariaDB or PostgreSQL server per test, with synthetic MyBB
/// forums (the `outpost-test-support` crate, shared with the benchmarks).
pub use outpost_test_support::{mariadb, postgres};

mod bounds;
mod cache_servers;
mod cli_pipes;
mod config;
mod content;
mod contexts;
mod dashboard;
mod dependencies;
mod durability;
mod export;
mod harness;
mod history;
mod hostile;
mod http_api;
mod http_client;
mod instances;
mod limits;
mod mariadb_harness;
mod mybb;
mod mybb_visitor;
mod policies;
mod polyglot;
mod postgres_harness;
mod readiness;
mod recovery;
mod serving;
mod shutdown;
mod socket;
mod stores;
mod sync_control;
mod sync_editors;
mod sync_errors;
mod sync_stress;
mod sync_support;
mod sync_watch;
mod systemd;
mod tcp;
mod tls;
mod usage;
mod wait;
mod watch;
mod workspace_faults;
mod workspaces;
