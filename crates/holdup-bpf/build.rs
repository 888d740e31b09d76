//! Compiles each `src/bpf/*.bpf.c` (one per kernel subsystem) with clang,
//! links the objects into one with libbpf's static linker, and generates the
//! Rust skeleton (which also carries the shared structs of `holdup.h`).

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

const SUBSYSTEMS: &[&str] = &["sched", "futex", "vfs", "net", "mux", "blk"];

/// `HOLDUP_CLANG` overrides; otherwise clang-19 by name, then plain clang.
fn find_clang() -> PathBuf {
    if let Ok(c) = env::var("HOLDUP_CLANG") {
        return PathBuf::from(c);
    }
    for name in ["clang-19", "clang"] {
        if Command::new(name)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return PathBuf::from(name);
        }
    }
    panic!(
        "holdup needs clang to compile its BPF programs: install it with \
         `apt-get install clang-19` or point HOLDUP_CLANG at a clang >= 14"
    );
}

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let bpf_dir = manifest.join("src/bpf");
    let libbpf_include = env::var("DEP_BPF_INCLUDE")
        .expect("libbpf-sys did not export its include directory (DEP_BPF_INCLUDE)");
    let clang = find_clang();
    let arch = match env::var("CARGO_CFG_TARGET_ARCH").unwrap().as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        other => other,
    }
    .to_string();

    println!("cargo:rerun-if-env-changed=HOLDUP_CLANG");
    println!(
        "cargo:rerun-if-changed={}",
        bpf_dir.join("holdup.h").display()
    );
    println!(
        "cargo:rerun-if-changed={}",
        bpf_dir.join("holdup.bpf.h").display()
    );

    let mut objects = Vec::new();
    for sub in SUBSYSTEMS {
        let src = bpf_dir.join(format!("{sub}.bpf.c"));
        let obj = out.join(format!("{sub}.bpf.o"));
        println!("cargo:rerun-if-changed={}", src.display());
        compile(
            &clang,
            &src,
            &obj,
            &bpf_dir,
            Path::new(&libbpf_include),
            &arch,
        );
        objects.push(obj);
    }

    let linked = out.join("holdup.bpf.o");
    let mut linker = libbpf_rs::Linker::new(&linked).expect("cannot create BPF linker");
    for obj in &objects {
        linker
            .add_file(obj)
            .unwrap_or_else(|e| panic!("linking {}: {e}", obj.display()));
    }
    linker.link().expect("BPF static link failed");

    libbpf_cargo::SkeletonBuilder::new()
        .obj(&linked)
        .generate(out.join("holdup.skel.rs"))
        .expect("skeleton generation failed");
}

fn compile(
    clang: &Path,
    src: &Path,
    obj: &Path,
    bpf_dir: &Path,
    libbpf_include: &Path,
    arch: &str,
) {
    let status = Command::new(clang)
        .args([
            "-g",
            "-O2",
            "-target",
            "bpf",
            "-Wall",
            "-Wno-unused-function",
        ])
        .arg(format!("-D__TARGET_ARCH_{arch}"))
        .arg("-I")
        .arg(bpf_dir)
        .arg("-I")
        .arg(libbpf_include)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(obj)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", clang.display()));
    assert!(status.success(), "clang failed on {}", src.display());
}
