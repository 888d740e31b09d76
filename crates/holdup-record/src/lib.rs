//! holdup's recording file.
//!
//! A recording holds one [`Snapshot`] per time window, written as soon as the
//! window closes, so a recorder killed with SIGKILL loses at most the window
//! that was still open. Reading never panics: a truncated or damaged file
//! yields every complete window before the damage plus a [`ReadStatus`] that
//! says what happened and where.
//!
//! # File format (version 1)
//!
//! All integers are little-endian.
//!
//! ```text
//! preamble   "HOLDUPRC"                8 bytes magic
//!            format version            u32 (= 1)
//! header     length                    u32 (at most 16 MiB)
//!            crc32 of the payload      u32
//!            payload                   JSON of RecordingHeader
//! window     "WIN1"                    4 bytes tag
//! (repeated) window index              u64 (Snapshot::window.index)
//!            compressed length         u32 (at most 256 MiB)
//!            uncompressed length       u32 (at most 256 MiB)
//!            crc32 of compressed bytes u32
//!            crc32 of the 24 bytes above (tag .. data crc)   u32
//!            compressed bytes          zstd frame of the Snapshot's JSON
//! end        "END1"                    4 bytes tag, written by Recorder::finish
//!            window count              u64
//! ```
//!
//! The block header has its own checksum so that a flipped bit in a length
//! field is reported as corruption instead of being mistaken for truncation
//! (or making the reader allocate gigabytes).

#![warn(missing_docs)]

use holdup_model::{metric_catalog, MetricInfo, Snapshot, Target, SCHEMA_VERSION};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

mod reader;
pub mod ring;
pub mod summary;
mod writer;

pub use reader::{Recording, RecordingReader};
pub use writer::Recorder;

/// First 8 bytes of every recording.
pub const MAGIC: [u8; 8] = *b"HOLDUPRC";
/// Version of the file layout written by this crate (the only one it reads).
pub const FORMAT_VERSION: u32 = 1;
/// Tag that starts a window block.
pub const WINDOW_TAG: [u8; 4] = *b"WIN1";
/// Tag that starts the end marker.
pub const END_TAG: [u8; 4] = *b"END1";
/// Largest header payload accepted, bytes.
pub const MAX_HEADER_LEN: u32 = 16 << 20;
/// Largest compressed or uncompressed window accepted, bytes.
pub const MAX_BLOCK_LEN: u32 = 256 << 20;

/// Bytes before the header payload: magic, version, length, crc.
const PREAMBLE_LEN: usize = 8 + 4 + 4 + 4;
/// Bytes of a window block before its data.
const WINDOW_HEADER_LEN: usize = 4 + 8 + 4 + 4 + 4 + 4;
/// Bytes of the end marker.
const END_LEN: usize = 4 + 8;
/// zstd level for windows: fast, and JSON compresses well at any level.
const ZSTD_LEVEL: i32 = 3;

/// Self-describing header stored at the start of every recording.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingHeader {
    /// File layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Snapshot schema version ([`holdup_model::SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Version of holdup that wrote the file.
    #[serde(default)]
    pub holdup_version: String,
    /// Host name.
    #[serde(default)]
    pub host: String,
    /// Kernel release (`uname -r`).
    #[serde(default)]
    pub kernel: String,
    /// When recording started, Unix time in ms.
    #[serde(default)]
    pub started_unix_ms: u64,
    /// Window length, ms.
    #[serde(default)]
    pub interval_ms: u64,
    /// What was watched.
    pub target: Target,
    /// holdup's command line.
    #[serde(default)]
    pub argv: Vec<String>,
    /// The metric catalog: what each field of a snapshot means.
    #[serde(default)]
    pub metrics: Vec<MetricInfo>,
}

impl RecordingHeader {
    /// A header for a recording starting now on this host: fills versions,
    /// host name, kernel release, start time and the metric catalog.
    pub fn new(target: Target, interval_ms: u64, argv: Vec<String>) -> RecordingHeader {
        let started_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        RecordingHeader {
            format_version: FORMAT_VERSION,
            schema_version: SCHEMA_VERSION,
            holdup_version: env!("CARGO_PKG_VERSION").to_string(),
            host: proc_line("/proc/sys/kernel/hostname"),
            kernel: proc_line("/proc/sys/kernel/osrelease"),
            started_unix_ms,
            interval_ms,
            target,
            argv,
            metrics: metric_catalog(),
        }
    }
}

fn proc_line(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Everything that can go wrong writing or reading a recording. Every message
/// says what is wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The recording file could not be created.
    #[error("cannot create recording file {}: {reason}; {hint}", path.display())]
    Create {
        /// The path.
        path: PathBuf,
        /// What the OS said, in words.
        reason: String,
        /// What to do.
        hint: String,
        /// The OS error.
        source: io::Error,
    },
    /// The disk filled up (ENOSPC) while writing.
    #[error(
        "disk full (ENOSPC) while writing recording {}: {windows} complete windows are safely in the file; \
         free some space or record to another filesystem with -o",
        path.display()
    )]
    DiskFull {
        /// The path.
        path: PathBuf,
        /// Complete windows in the file.
        windows: u64,
    },
    /// Another write error.
    #[error(
        "cannot write recording {}: {source}; {windows} complete windows are safely in the file; \
         check the disk, or record to another path with -o",
        path.display()
    )]
    Write {
        /// The path.
        path: PathBuf,
        /// Complete windows in the file.
        windows: u64,
        /// The OS error.
        source: io::Error,
    },
    /// An earlier write failed and the file could not be cut back to its last
    /// complete window, so nothing more is written to it.
    #[error(
        "recording {} is no longer written after an earlier write error; {windows} complete windows are safely in it; \
         start a new recording at another path",
        path.display()
    )]
    Stopped {
        /// The path.
        path: PathBuf,
        /// Complete windows in the file.
        windows: u64,
    },
    /// A snapshot could not be encoded (a bug in holdup).
    #[error("cannot encode window {index} for the recording: {source} (this is a bug in holdup; please report it)")]
    Encode {
        /// Window index.
        index: u64,
        /// The encoder's error.
        source: serde_json::Error,
    },
    /// The recording could not be opened.
    #[error("cannot open recording {}: {reason}; {hint}", path.display())]
    Open {
        /// The path.
        path: PathBuf,
        /// What the OS said, in words.
        reason: String,
        /// What to do.
        hint: String,
        /// The OS error.
        #[source]
        source: Option<io::Error>,
    },
    /// Reading failed at the OS level (not a problem with the file's contents).
    #[error("cannot read recording {input}: {source}; check the disk or copy the file elsewhere and retry")]
    Read {
        /// The path, or "the input".
        input: String,
        /// The OS error.
        source: io::Error,
    },
    /// The input does not start with the recording magic.
    #[error(
        "{input} is not a holdup recording (it starts with {found} instead of \"HOLDUPRC\"); \
         pass a file written by `holdup record -o FILE`"
    )]
    NotARecording {
        /// The path, or "the input".
        input: String,
        /// The first bytes, escaped.
        found: String,
    },
    /// The file layout version is not one this holdup reads.
    #[error(
        "{input} uses recording format version {version}, but this holdup ({}) reads only version {FORMAT_VERSION}; \
         {}",
        env!("CARGO_PKG_VERSION"),
        if *version > FORMAT_VERSION {
            "read it with the newer holdup that wrote it"
        } else {
            "the file is damaged (no holdup writes that version)"
        }
    )]
    UnsupportedVersion {
        /// The path, or "the input".
        input: String,
        /// Version found.
        version: u32,
    },
    /// The snapshot schema is newer than this holdup understands.
    #[error(
        "{input} holds snapshot schema {schema}, but this holdup ({}) reads schema {supported} or older; \
         read it with the newer holdup that wrote it",
        env!("CARGO_PKG_VERSION")
    )]
    UnsupportedSchema {
        /// The path, or "the input".
        input: String,
        /// Schema found.
        schema: u32,
        /// Newest schema this holdup reads.
        supported: u32,
    },
    /// The input ends before its header does.
    #[error("{input} {detail}; there are no windows to recover, record again")]
    HeaderTruncated {
        /// The path, or "the input".
        input: String,
        /// What is missing.
        detail: String,
    },
    /// The header is damaged.
    #[error(
        "{input} has a damaged header ({reason}); it cannot be read: restore the file from a copy or record again"
    )]
    HeaderCorrupt {
        /// The path, or "the input".
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// A damaged block, met by the streaming [`RecordingReader`]; the windows it
    /// returned before are good.
    #[error("{input}: {status}")]
    Damaged {
        /// The path, or "the input".
        input: String,
        /// Where and what (always [`ReadStatus::Corrupt`]).
        status: ReadStatus,
    },
}

/// How reading a recording ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ReadStatus {
    /// Every window was read and the end marker matched.
    Complete,
    /// The file stops without an end marker: the recorder was killed, crashed,
    /// or is still running. Every complete window was recovered.
    Truncated {
        /// Windows recovered.
        complete_windows: u64,
        /// Bytes of an unfinished block after them, ignored.
        trailing_bytes: u64,
    },
    /// A damaged block. Windows before it were recovered; nothing after it is
    /// returned, since it cannot be trusted.
    Corrupt {
        /// Windows recovered before the damage.
        complete_windows: u64,
        /// Byte offset of the damaged block in the file.
        offset: u64,
        /// Index of the damaged window, when its block header was intact.
        window_index: Option<u64>,
        /// What is wrong.
        reason: String,
    },
}

impl ReadStatus {
    /// One-line human description.
    pub fn describe(&self) -> String {
        match self {
            ReadStatus::Complete => {
                "recording is complete (the recorder finished cleanly)".to_string()
            }
            ReadStatus::Truncated {
                complete_windows,
                trailing_bytes,
            } => {
                let mut s = format!(
                    "recording ended early (holdup was killed or crashed, or is still recording): \
                     recovered {complete_windows} complete {}",
                    plural(*complete_windows, "window", "windows")
                );
                if *trailing_bytes > 0 {
                    s.push_str(&format!(
                        "; {trailing_bytes} trailing {} of an unfinished block ignored",
                        plural(*trailing_bytes, "byte", "bytes")
                    ));
                }
                s
            }
            ReadStatus::Corrupt {
                complete_windows,
                offset,
                window_index,
                reason,
            } => {
                let which = match window_index {
                    Some(i) => format!("window {i}"),
                    None if *complete_windows == 0 => {
                        "the first block after the header".to_string()
                    }
                    None => format!(
                        "the block after the first {complete_windows} {}",
                        plural(*complete_windows, "window", "windows")
                    ),
                };
                format!(
                    "recording is damaged at byte offset {offset} ({which}): {reason}; \
                     recovered the {complete_windows} complete {} before it, nothing after it was read",
                    plural(*complete_windows, "window", "windows")
                )
            }
        }
    }

    /// Windows recovered, when known from the status alone (not for `Complete`).
    pub fn complete_windows(&self) -> Option<u64> {
        match self {
            ReadStatus::Complete => None,
            ReadStatus::Truncated {
                complete_windows, ..
            }
            | ReadStatus::Corrupt {
                complete_windows, ..
            } => Some(*complete_windows),
        }
    }
}

impl fmt::Display for ReadStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

fn plural<'a>(n: u64, one: &'a str, many: &'a str) -> &'a str {
    if n == 1 {
        one
    } else {
        many
    }
}
