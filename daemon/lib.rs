//! `outpostd`: the outpost daemon as a library, for its binary, its tests
//! and its benchmarks. The contract it serves (generated stubs, specs,
//! workspace files, token, paths) is the `outpost` crate.

pub mod bus;
pub mod config;
pub mod daemon;
pub mod history;
mod http;
pub mod orchestrator;
pub mod pid_lock;
pub mod server;
pub mod service_manager;
pub mod shutdown;
pub mod store;
pub mod sync;
pub mod workspaces;
