//! Compiles the gRPC services in `proto/` (ZITADEL's AdminService subset and secretgen's
//! CodeService) with protox, a protobuf compiler in pure Rust: building secretgen needs no
//! system `protoc`. The descriptor set is written beside the generated code for server
//! reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = ["zitadel/admin.proto", "secretgen/v1/code.proto"];
    let descriptors = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("secretgen_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".secretgen.v1.CodeChunk.codes")
        .compile_fds(descriptors)?;
    Ok(())
}
