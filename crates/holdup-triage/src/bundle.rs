//! The triage bundle: a tar archive compressed with zstd (`tar --zstd -xf`
//! unpacks it) holding the recording, the report as text and JSON, and the
//! host's facts.

use crate::host::HostFacts;
use crate::report::Report;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The recording's name in the bundle (an ordinary holdup recording).
pub const RECORDING: &str = "recording.rec";
/// The report as text.
pub const REPORT_TEXT: &str = "report.txt";
/// The report as JSON.
pub const REPORT_JSON: &str = "report.json";
/// The host facts as JSON.
pub const HOST_JSON: &str = "host.json";
/// The hung-task and OOM lines of the kernel log.
pub const KERNEL_LOG: &str = "kernel-log.txt";
/// zstd level: the recording is compressed already; the rest is small.
const LEVEL: i32 = 3;

fn is_enospc(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(libc::ENOSPC))
    })
}

/// Writes the bundle to `out` (through `out.part`, renamed when complete,
/// so a reader never sees half a bundle). Returns its size.
pub fn write(
    out: &Path,
    recording: &Path,
    report: &Report,
    text: &str,
    facts: &HostFacts,
) -> Result<u64> {
    let part = PathBuf::from(format!("{}.part", out.display()));
    let r = write_part(&part, recording, report, text, facts);
    match r {
        Ok(()) => {
            std::fs::rename(&part, out)
                .with_context(|| format!("cannot move the bundle to {}", out.display()))?;
            Ok(std::fs::metadata(out).map_or(0, |m| m.len()))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            if is_enospc(&e) {
                Err(e.context(format!(
                    "the disk holding {} is full: free space there or write the bundle elsewhere (-o / --dir)",
                    out.display()
                )))
            } else {
                Err(e.context(format!("cannot write the bundle {}", out.display())))
            }
        }
    }
}

fn write_part(
    part: &Path,
    recording: &Path,
    report: &Report,
    text: &str,
    facts: &HostFacts,
) -> Result<()> {
    let f = File::create(part).with_context(|| format!("creating {}", part.display()))?;
    let enc = zstd::Encoder::new(f, LEVEL)?;
    let mut tar = tar::Builder::new(enc);
    tar.append_path_with_name(recording, RECORDING)?;
    let mut add = |name: &str, data: &[u8]| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(report.started_unix_ms / 1000);
        h.set_cksum();
        tar.append_data(&mut h, name, data)
    };
    add(REPORT_TEXT, text.as_bytes())?;
    add(REPORT_JSON, &serde_json::to_vec_pretty(report)?)?;
    add(HOST_JSON, &serde_json::to_vec_pretty(facts)?)?;
    add(KERNEL_LOG, (facts.kernel_log.join("\n") + "\n").as_bytes())?;
    let enc = tar.into_inner()?;
    let mut f = enc.finish()?;
    f.flush()?;
    f.sync_all()?;
    Ok(())
}

/// Every file of a bundle, by name.
pub fn read(path: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let f =
        File::open(path).with_context(|| format!("cannot open the bundle {}", path.display()))?;
    let dec = zstd::Decoder::new(f)?;
    let mut ar = tar::Archive::new(dec);
    let mut out = BTreeMap::new();
    for e in ar
        .entries()
        .with_context(|| format!("{} is not a triage bundle (tar + zstd)", path.display()))?
    {
        let mut e = e?;
        let name = e.path()?.display().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data)?;
        out.insert(name, data);
    }
    Ok(out)
}
