//! holdup's BPF side: the generated skeleton of the linked programs
//! (`src/bpf/*.bpf.c`, one per kernel subsystem) and the shared structs of
//! `src/bpf/holdup.h`, generated from BTF so they are defined exactly once.

#[allow(
    clippy::all,
    non_camel_case_types,
    non_snake_case,
    dead_code,
    missing_docs
)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/holdup.skel.rs"));
}

pub use skel::*;
