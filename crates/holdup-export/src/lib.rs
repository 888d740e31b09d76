//! `holdup export`: a recording as tables, one per kind of row (thread
//! windows, resource waits, culprits, wake edges, disks, ...), written as
//! Parquet files (with the recording's header as key-value file metadata)
//! or JSON Lines. The schema is documented in docs/EXPORT.md; [`tables`]
//! is its one definition.

#![warn(missing_docs)]

mod jsonl;
#[cfg(feature = "parquet")]
mod parquet_out;
mod tables;

pub use tables::{tables, Column, Table, Type, Value};

use anyhow::{Context, Result};
use holdup_record::RecordingHeader;
use std::path::{Path, PathBuf};

/// Key of the recording header (its JSON) in each Parquet file's metadata.
pub const HEADER_KEY: &str = "holdup.header";
/// Key of the table's name in each Parquet file's metadata.
pub const TABLE_KEY: &str = "holdup.table";
/// Key of the export layout's version in each Parquet file's metadata.
pub const EXPORT_VERSION_KEY: &str = "holdup.export_version";
/// Version of the table layout (bumped when a column changes meaning or goes away).
pub const EXPORT_VERSION: u32 = 1;

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `TABLE.parquet`, zstd-compressed, one row group per table.
    Parquet,
    /// `TABLE.jsonl`, one JSON object per row.
    Jsonl,
}

/// Writes every table into `dir` (created if missing); returns the files written.
pub fn write(
    dir: &Path,
    header: &RecordingHeader,
    tables: &[Table],
    format: Format,
) -> Result<Vec<PathBuf>> {
    #[cfg(not(feature = "parquet"))]
    if format == Format::Parquet {
        let _ = header;
        anyhow::bail!("this holdup was built without Parquet (cargo feature `parquet`): use --jsonl, or rebuild with default features");
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the export directory {}", dir.display()))?;
    let mut files = Vec::new();
    for t in tables {
        let path = dir.join(format!(
            "{}.{}",
            t.name,
            match format {
                Format::Parquet => "parquet",
                Format::Jsonl => "jsonl",
            }
        ));
        match format {
            Format::Jsonl => jsonl::write(&path, t),
            #[cfg(feature = "parquet")]
            Format::Parquet => parquet_out::write(&path, header, t),
            #[cfg(not(feature = "parquet"))]
            Format::Parquet => unreachable!("refused above"),
        }
        .with_context(|| format!("cannot write {}", path.display()))?;
        files.push(path);
    }
    Ok(files)
}
