//! Compiles the `outpost.v1` contract: prost messages, tonic services, the
//! descriptor set served by reflection, and pbjson serde impls that give
//! `--json` the canonical proto3 JSON mapping.

use std::{env, error::Error, fs, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/outpost/v1/instance.proto",
    "proto/outpost/v1/orchestrator.proto",
    "proto/outpost/v1/sync.proto",
    "proto/outpost/v1/history.proto",
];

fn main() -> Result<(), Box<dyn Error>> {
    // protoc ships inside a crate, so no system protoc is needed.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; nothing else reads the
    // environment concurrently.
    unsafe { env::set_var("PROTOC", protoc) };

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let descriptor_path = out_dir.join("outpost_descriptor.bin");

    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        // Well-known types come from pbjson-types so that they serialise to
        // canonical JSON ("1.5s", RFC 3339 timestamps).
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .boxed(".outpost.v1.Instance.spec")
        // A request that does not decode is the caller's to fix.
        .codec_path("crate::codec::Codec")
        .compile_protos(PROTOS, &["proto"])?;

    let descriptors = fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptors)?
        // `outpostctl --json` shows every field under its .proto name, so
        // scripts see `instance_count: 0` rather than a missing key.
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".outpost"])?;

    println!("cargo:rerun-if-changed=proto/outpost");
    Ok(())
}
