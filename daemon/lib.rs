//! outpost: a local control plane for long-running development servers
//! ("instances") and for the database-held content they serve.
//!
//! This crate is the daemon `outpostd` as a library, plus the pieces that
//! `outpostctl`, the tests and the benchmarks share with it: the generated
//! `outpost.v1` contract ([`proto`]), default locations ([`paths`]), the
//! bearer token ([`token`]) and the client endpoint helper ([`endpoint`]).

pub mod bus;
pub mod config;
pub mod endpoint;
pub mod orchestrator;
pub mod paths;
pub mod proto;
pub mod server;
pub mod store;
pub mod sync;
pub mod token;
pub mod workspace_file;
pub mod workspaces;
