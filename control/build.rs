use std::error::Error;
use std::path::PathBuf;
use std::process::Command;

fn main() -> Result<(), Box<dyn Error>> {
    // Migrations are embedded with sqlx::migrate!; rebuild when they change.
    println!("cargo:rerun-if-changed=migrations");
    build_execd()
}

/// berth-execd, the exec agent control bind-mounts into every sandbox,
/// must run on any image (glibc, musl, or a static busybox on scratch): it
/// is built here a second time as a static executable, by a cargo of its
/// own in a target directory of its own (shared by every build of control
/// under one target directory), and embedded in control.
fn build_execd() -> Result<(), Box<dyn Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let crate_dir = manifest_dir.join("execd");
    for watched in ["src", "Cargo.toml"] {
        println!(
            "cargo:rerun-if-changed={}",
            crate_dir.join(watched).display()
        );
    }
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../Cargo.lock").display()
    );
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // OUT_DIR is <target>/<profile>/build/<crate>-<hash>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .map_or_else(|| out_dir.join("execd-target"), |t| t.join("berth-execd"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["rustc", "--release", "--locked", "--bin", "berth-execd"])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .args([
            "--",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "strip=symbols",
        ]);
    // Nothing of the outer build's own: not clippy's wrapper, not its flags.
    for var in [
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        build.env_remove(var);
    }
    let status = build.status()?;
    if !status.success() {
        return Err(format!("building berth-execd failed: {status}").into());
    }
    let built = std::fs::read(target_dir.join("release/berth-execd"))?;
    std::fs::write(out_dir.join("berth-execd"), &built)?;
    // Its identity, so that control tells an installed copy is current
    // without reading the embedded bytes (which would make them resident).
    std::fs::write(out_dir.join("berth-execd.id"), fingerprint(&built))?;
    Ok(())
}

/// Length and 64-bit FNV-1a of the bytes, in hex.
fn fingerprint(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{}-{hash:016x}", bytes.len())
}
