//! The generated `outpost.v1` contract: messages, tonic clients and servers,
//! canonical-JSON serde impls, and the encoded descriptor set for reflection.

#![allow(clippy::all, missing_docs)] // generated code

/// Package `outpost.v1`.
pub mod v1 {
    tonic::include_proto!("outpost.v1");
    include!(concat!(env!("OUT_DIR"), "/outpost.v1.serde.rs"));
}

/// The encoded `FileDescriptorSet` of `proto/` (with its imports and source
/// comments), served by gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/outpost_descriptor.bin"));
