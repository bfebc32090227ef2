//! `outpost`: the contract between the outpost daemon and its clients.
//!
//! The `outpost.v1` messages and tonic stubs generated from the `.proto`
//! files beside this one ([`proto`]), and what both sides of the wire
//! share: daemon addresses and connections ([`endpoint`]), the bearer
//! token ([`token`]), default locations ([`paths`]), and the two inputs a
//! client can check without a daemon — instance specs ([`spec`]) and
//! workspace files ([`workspace_file`]) — so that `outpostctl workspace
//! check` reports exactly what the daemon would. Files either side reads
//! on someone's behalf are read through [`bounded_read`]: regular files
//! only, never more than a limit, never blocking on a FIFO.
//!
//! The daemon (`outpostd`) and the CLI (`outpostctl`) are crates of their
//! own; the CLI depends on this one alone.

pub mod bounded_read;
pub mod codec;
pub mod endpoint;
pub mod limits;
pub mod paths;
pub mod spec;
pub mod tls;
pub mod token;
pub mod workspace_file;

/// The generated `outpost.v1` contract: messages, tonic clients and
/// servers, canonical-JSON serde impls, and the encoded descriptor set.
pub mod proto {
    /// Package `outpost.v1`.
    #[allow(clippy::all, missing_docs)] // generated code
    pub mod v1 {
        tonic::include_proto!("outpost.v1");
        include!(concat!(env!("OUT_DIR"), "/outpost.v1.serde.rs"));
    }

    /// The encoded `FileDescriptorSet` of the contract (with its imports
    /// and source comments), served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/outpost_descriptor.bin"));
}
