//! `holdup export REC --parquet DIR | --jsonl DIR`: a recording's tables
//! for a lake (crates/holdup-export, docs/EXPORT.md).

use anyhow::{bail, Result};
use clap::Args;
use holdup_export::Format;
use holdup_record::Recording;
use std::path::PathBuf;

/// `holdup export` flags.
#[derive(Args)]
pub struct ExportArgs {
    /// The recording.
    file: PathBuf,
    /// Write TABLE.parquet files into this directory.
    #[arg(long, value_name = "DIR")]
    parquet: Option<PathBuf>,
    /// Write TABLE.jsonl files into this directory.
    #[arg(long, value_name = "DIR")]
    jsonl: Option<PathBuf>,
}

/// Exports the recording.
pub fn run(args: ExportArgs) -> Result<()> {
    if args.parquet.is_none() && args.jsonl.is_none() {
        bail!("say where to write: --parquet DIR and/or --jsonl DIR");
    }
    let rec = Recording::open(&args.file)?;
    let tables = holdup_export::tables(&rec.windows);
    for (dir, format) in [
        (&args.parquet, Format::Parquet),
        (&args.jsonl, Format::Jsonl),
    ] {
        let Some(dir) = dir else { continue };
        let files = holdup_export::write(dir, &rec.header, &tables, format)?;
        eprintln!(
            "holdup: wrote {} tables of {} windows to {} ({})",
            files.len(),
            rec.windows.len(),
            dir.display(),
            rec.status.describe()
        );
    }
    Ok(())
}
