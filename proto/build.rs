//! Compiles the `.proto` files with the vendored protoc and records a descriptor set for reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY of intent: build scripts run single-threaded; this only points prost-build at protoc.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("prism_descriptor.bin"))
        .bytes(".")
        .compile_protos(
            &[
                "prism/keyvalue/v1/keyvalue.proto",
                "prism/pubsub/v1/pubsub.proto",
                "prism/queue/v1/queue.proto",
                "prism/filter/v1/filter.proto",
                "prism/registry/v1/registry.proto",
                "prism/mailbox/v1/mailbox.proto",
                "prism/admin/v1/admin.proto",
            ],
            &["."],
        )?;
    println!("cargo:rerun-if-changed=prism");
    Ok(())
}
