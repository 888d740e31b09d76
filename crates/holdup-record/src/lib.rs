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

pub mod summary;

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

/// Words and advice for an OS error met creating a file.
fn create_advice(path: &Path, e: &io::Error) -> (String, String) {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| ".".to_string(), |p| p.display().to_string());
    // No flag names here: `record -o`, `diagnose --record` and the
    // workbench all create recordings; each says which flag it read.
    let other = "choose another path (e.g. /tmp/holdup.rec)";
    match e.kind() {
        io::ErrorKind::NotFound => (
            format!("directory {dir} does not exist"),
            format!("create it (mkdir -p {dir}) or {other}"),
        ),
        io::ErrorKind::PermissionDenied => (
            format!("permission denied writing in {dir}"),
            format!("run holdup as a user who may write there, or {other}"),
        ),
        io::ErrorKind::ReadOnlyFilesystem => {
            ("the filesystem is read-only".to_string(), other.to_string())
        }
        io::ErrorKind::IsADirectory => (
            "it is a directory".to_string(),
            format!(
                "give a file name inside it (e.g. {}/holdup.rec)",
                path.display()
            ),
        ),
        io::ErrorKind::NotADirectory => (
            "a component of the path is not a directory".to_string(),
            other.to_string(),
        ),
        _ => (e.to_string(), other.to_string()),
    }
}

/// Where a [`Recorder`] writes.
enum Sink {
    File(File),
    Other(Box<dyn Write + Send>),
}

impl Sink {
    fn write_all(&mut self, b: &[u8]) -> io::Result<()> {
        match self {
            Sink::File(f) => f.write_all(b),
            Sink::Other(w) => {
                w.write_all(b)?;
                w.flush()
            }
        }
    }
}

/// Writes a recording: the header at creation, then one block per window.
///
/// Each window is written with a single `write_all` of the whole block
/// straight to the kernel (no user-space buffer), so once
/// [`write_window`](Recorder::write_window) returns, killing the process
/// loses nothing of it. [`finish`](Recorder::finish) writes the end marker and
/// fsyncs. A recorder dropped without `finish` leaves a valid recording that
/// reads as ended early.
///
/// If a write fails (e.g. the disk is full) the recorder cuts the file back to
/// its last complete window, so the file stays readable, and later windows may
/// be written again once space is available.
pub struct Recorder {
    sink: Sink,
    path: PathBuf,
    windows: u64,
    /// Bytes of complete blocks in the file (header included).
    good_len: u64,
    /// A failed write left a partial block that could not be removed.
    stopped: bool,
    compressor: zstd::bulk::Compressor<'static>,
    block: Vec<u8>,
}

impl fmt::Debug for Recorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .field("windows", &self.windows)
            .field("good_len", &self.good_len)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// Creates (or truncates) `path` and writes the header.
    ///
    /// Errors name the path and say why it failed (directory missing,
    /// permission denied, disk full, ...) and what to do.
    pub fn create(path: &Path, header: &RecordingHeader) -> Result<Recorder, RecordError> {
        let file = File::create(path).map_err(|e| {
            if is_disk_full(&e) {
                return RecordError::DiskFull {
                    path: path.to_path_buf(),
                    windows: 0,
                };
            }
            let (reason, hint) = create_advice(path, &e);
            RecordError::Create {
                path: path.to_path_buf(),
                reason,
                hint,
                source: e,
            }
        })?;
        Recorder::start(Sink::File(file), path.to_path_buf(), header)
    }

    /// Writes a recording to any writer (a pipe, a socket, a test double).
    /// `name` is used in error messages. Each block is written with one
    /// `write_all` followed by `flush`. After a failed write nothing more is
    /// written, since a partial block cannot be taken back.
    pub fn from_writer<W: Write + Send + 'static>(
        writer: W,
        name: impl Into<PathBuf>,
        header: &RecordingHeader,
    ) -> Result<Recorder, RecordError> {
        Recorder::start(Sink::Other(Box::new(writer)), name.into(), header)
    }

    fn start(sink: Sink, path: PathBuf, header: &RecordingHeader) -> Result<Recorder, RecordError> {
        let mut header = header.clone();
        header.format_version = FORMAT_VERSION;
        let json = serde_json::to_vec(&header)
            .map_err(|source| RecordError::Encode { index: 0, source })?;
        let compressor =
            zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|source| RecordError::Write {
                path: path.clone(),
                windows: 0,
                source,
            })?;
        let mut rec = Recorder {
            sink,
            path,
            windows: 0,
            good_len: 0,
            stopped: false,
            compressor,
            block: Vec::new(),
        };
        let mut buf = Vec::with_capacity(PREAMBLE_LEN + json.len());
        buf.extend_from_slice(&MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        buf.extend_from_slice(&(json.len() as u32).to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
        buf.extend_from_slice(&json);
        rec.write_block(&buf)?;
        Ok(rec)
    }

    /// Appends one window. When it returns `Ok`, the whole block is in the
    /// kernel, safe from the process being killed.
    pub fn write_window(&mut self, s: &Snapshot) -> Result<(), RecordError> {
        if self.stopped {
            return Err(RecordError::Stopped {
                path: self.path.clone(),
                windows: self.windows,
            });
        }
        let index = s.window.index;
        // serde_json writes NaN/inf as null, which would not read back as f64:
        // store such shares as 0 instead of a window that cannot be decoded.
        let json = if s.disks.iter().any(|d| !d.share.is_finite()) {
            let mut s = s.clone();
            for d in &mut s.disks {
                if !d.share.is_finite() {
                    d.share = 0.0;
                }
            }
            serde_json::to_vec(&s)
        } else {
            serde_json::to_vec(s)
        }
        .map_err(|source| RecordError::Encode { index, source })?;
        if json.len() > MAX_BLOCK_LEN as usize {
            return Err(RecordError::Encode {
                index,
                source: serde::ser::Error::custom(format!(
                    "window is {} bytes, over the {} MiB limit",
                    json.len(),
                    MAX_BLOCK_LEN >> 20
                )),
            });
        }
        let data = self
            .compressor
            .compress(&json)
            .map_err(|source| RecordError::Write {
                path: self.path.clone(),
                windows: self.windows,
                source,
            })?;
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        block.extend_from_slice(&WINDOW_TAG);
        block.extend_from_slice(&index.to_le_bytes());
        block.extend_from_slice(&(data.len() as u32).to_le_bytes());
        block.extend_from_slice(&(json.len() as u32).to_le_bytes());
        block.extend_from_slice(&crc32fast::hash(&data).to_le_bytes());
        let head_crc = crc32fast::hash(&block[..WINDOW_HEADER_LEN - 4]);
        block.extend_from_slice(&head_crc.to_le_bytes());
        block.extend_from_slice(&data);
        let res = self.write_block(&block);
        self.block = block;
        res?;
        self.windows += 1;
        Ok(())
    }

    /// Windows written so far.
    pub fn windows_written(&self) -> u64 {
        self.windows
    }

    /// The path (or name) written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Forces what was written to stable storage (fsync). Not needed to
    /// survive the process being killed; only against power loss.
    pub fn sync(&mut self) -> Result<(), RecordError> {
        let res = match &mut self.sink {
            Sink::File(f) => f.sync_data(),
            Sink::Other(w) => w.flush(),
        };
        res.map_err(|e| self.write_error(e))
    }

    /// Writes the end marker and fsyncs. Returns the number of windows.
    pub fn finish(mut self) -> Result<u64, RecordError> {
        if self.stopped {
            return Err(RecordError::Stopped {
                path: self.path.clone(),
                windows: self.windows,
            });
        }
        let mut end = Vec::with_capacity(END_LEN);
        end.extend_from_slice(&END_TAG);
        end.extend_from_slice(&self.windows.to_le_bytes());
        self.write_block(&end)?;
        if let Sink::File(f) = &mut self.sink {
            // fsync is meaningless on some character devices and pipes; a
            // failure there is not a lost window.
            if let Err(e) = f.sync_all() {
                if e.kind() != io::ErrorKind::InvalidInput {
                    return Err(self.write_error(e));
                }
            }
        }
        Ok(self.windows)
    }

    /// Writes one whole block; on failure tries to cut the file back to the
    /// last complete block so it stays a valid recording.
    fn write_block(&mut self, b: &[u8]) -> Result<(), RecordError> {
        match self.sink.write_all(b) {
            Ok(()) => {
                self.good_len += b.len() as u64;
                Ok(())
            }
            Err(e) => {
                if !self.roll_back() {
                    self.stopped = true;
                }
                Err(self.write_error(e))
            }
        }
    }

    /// Cuts a regular file back to its last complete block after a failed
    /// write. Returns false when that is impossible (pipes, devices, writers).
    fn roll_back(&mut self) -> bool {
        match &mut self.sink {
            Sink::File(f) => {
                f.metadata().is_ok_and(|m| m.is_file())
                    && f.set_len(self.good_len).is_ok()
                    && f.seek(SeekFrom::Start(self.good_len)).is_ok()
            }
            Sink::Other(_) => false,
        }
    }

    fn write_error(&self, e: io::Error) -> RecordError {
        if is_disk_full(&e) {
            RecordError::DiskFull {
                path: self.path.clone(),
                windows: self.windows,
            }
        } else {
            RecordError::Write {
                path: self.path.clone(),
                windows: self.windows,
                source: e,
            }
        }
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(ENOSPC)
}

/// A recording read into memory.
#[derive(Clone, Debug, PartialEq)]
pub struct Recording {
    /// The header.
    pub header: RecordingHeader,
    /// Every complete, intact window, in file order.
    pub windows: Vec<Snapshot>,
    /// Whether the file was complete, ended early, or is damaged.
    pub status: ReadStatus,
}

impl Recording {
    /// Reads a recording file.
    ///
    /// A file that is not a recording, has an unsupported version or a
    /// damaged header is an `Err`. Anything wrong after the header is
    /// reported in [`Recording::status`], with every good window before it.
    pub fn open(path: &Path) -> Result<Recording, RecordError> {
        Recording::read_all(RecordingReader::open(path)?)
    }

    /// Reads a recording held in memory (see [`Recording::open`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Recording, RecordError> {
        Recording::read_all(RecordingReader::new(bytes)?)
    }

    fn read_all<R: Read>(mut r: RecordingReader<R>) -> Result<Recording, RecordError> {
        let mut windows = Vec::new();
        let status = loop {
            match r.step()? {
                Step::Window(s) => windows.push(s),
                Step::End(status) => break status,
            }
        };
        Ok(Recording {
            header: r.header,
            windows,
            status,
        })
    }

    /// A short summary for people (see [`summary::summarize`]), including
    /// how reading ended.
    pub fn summary(&self) -> summary::Summary {
        let mut s = summary::summarize(&self.header, &self.windows);
        s.status = Some(self.status.clone());
        s
    }
}

/// Outcome of reading one block; short-lived, so not worth boxing.
#[allow(clippy::large_enum_variant)]
enum Step {
    Window(Snapshot),
    End(ReadStatus),
}

/// Reads a recording window by window, without holding it all in memory.
///
/// Yields `Ok(snapshot)` for each intact window. The iterator ends with
/// `None` when the file ends (complete or cut short: see
/// [`status`](RecordingReader::status)), and yields one
/// `Err(RecordError::Damaged)` before ending when it meets a damaged block,
/// or `Err(RecordError::Read)` on an OS read error.
pub struct RecordingReader<R> {
    inner: R,
    input: String,
    header: RecordingHeader,
    /// Byte offset of the next block.
    offset: u64,
    windows: u64,
    status: Option<ReadStatus>,
    failed: bool,
}

impl<R> fmt::Debug for RecordingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingReader")
            .field("input", &self.input)
            .field("offset", &self.offset)
            .field("windows", &self.windows)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl RecordingReader<io::BufReader<File>> {
    /// Opens a recording file and reads its header.
    pub fn open(path: &Path) -> Result<Self, RecordError> {
        let open_err = |reason: String, hint: String, source| RecordError::Open {
            path: path.to_path_buf(),
            reason,
            hint,
            source,
        };
        let file = File::open(path).map_err(|e| {
            let (reason, hint) = match e.kind() {
                io::ErrorKind::NotFound => (
                    "no such file".to_string(),
                    "check the path; recordings are written by `holdup record -o FILE`".to_string(),
                ),
                io::ErrorKind::PermissionDenied => (
                    "permission denied".to_string(),
                    "run as a user who may read it, or copy it somewhere readable".to_string(),
                ),
                _ => (e.to_string(), "check the path".to_string()),
            };
            open_err(reason, hint, Some(e))
        })?;
        if file.metadata().is_ok_and(|m| m.is_dir()) {
            return Err(open_err(
                "it is a directory".to_string(),
                "pass the recording file itself".to_string(),
                None,
            ));
        }
        RecordingReader::with_name(io::BufReader::new(file), path.display().to_string())
    }
}

impl<R: Read> RecordingReader<R> {
    /// Reads the header from `inner`; errors call the input "the input".
    pub fn new(inner: R) -> Result<Self, RecordError> {
        RecordingReader::with_name(inner, "the input".to_string())
    }

    /// Like [`new`](RecordingReader::new), naming the input `name` in errors.
    pub fn with_name(mut inner: R, name: String) -> Result<Self, RecordError> {
        let input = name;
        let read_err = |source| RecordError::Read {
            input: input.clone(),
            source,
        };
        let mut pre = [0u8; PREAMBLE_LEN];
        let n = read_upto(&mut inner, &mut pre).map_err(read_err)?;
        let have_magic = n.min(MAGIC.len());
        if pre[..have_magic] != MAGIC[..have_magic] {
            return Err(RecordError::NotARecording {
                input,
                found: escape(&pre[..have_magic]),
            });
        }
        if n == 0 {
            return Err(RecordError::HeaderTruncated {
                input,
                detail: "is empty (holdup was stopped before it wrote the header)".to_string(),
            });
        }
        if n >= 12 {
            let version = u32_at(&pre, 8);
            if version != FORMAT_VERSION {
                return Err(RecordError::UnsupportedVersion { input, version });
            }
        }
        if n < PREAMBLE_LEN {
            return Err(RecordError::HeaderTruncated {
                input,
                detail: format!("ends inside its header ({n} bytes; the header alone needs more)"),
            });
        }
        let len = u32_at(&pre, 12);
        let crc = u32_at(&pre, 16);
        if len > MAX_HEADER_LEN {
            return Err(RecordError::HeaderCorrupt {
                input,
                reason: format!(
                    "header length {len} is over the {} MiB limit",
                    MAX_HEADER_LEN >> 20
                ),
            });
        }
        let mut payload = Vec::new();
        (&mut inner)
            .take(u64::from(len))
            .read_to_end(&mut payload)
            .map_err(read_err)?;
        if payload.len() < len as usize {
            return Err(RecordError::HeaderTruncated {
                input,
                detail: format!(
                    "ends inside its header (the header length field says {len} bytes, only {} follow; \
                     the file was cut off before its first window, or the length field is damaged)",
                    payload.len()
                ),
            });
        }
        let actual = crc32fast::hash(&payload);
        if actual != crc {
            return Err(RecordError::HeaderCorrupt {
                input,
                reason: format!("checksum mismatch: stored {crc:#010x}, computed {actual:#010x}"),
            });
        }
        let header: RecordingHeader =
            serde_json::from_slice(&payload).map_err(|e| RecordError::HeaderCorrupt {
                input: input.clone(),
                reason: format!("invalid JSON: {e}"),
            })?;
        if header.schema_version > SCHEMA_VERSION {
            return Err(RecordError::UnsupportedSchema {
                input,
                schema: header.schema_version,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(RecordingReader {
            inner,
            input,
            header,
            offset: (PREAMBLE_LEN + len as usize) as u64,
            windows: 0,
            status: None,
            failed: false,
        })
    }

    /// The recording's header.
    pub fn header(&self) -> &RecordingHeader {
        &self.header
    }

    /// How reading ended; `None` while windows remain (or after an OS read error).
    pub fn status(&self) -> Option<&ReadStatus> {
        self.status.as_ref()
    }

    /// Windows returned so far.
    pub fn windows_read(&self) -> u64 {
        self.windows
    }

    /// Byte offset of the next block.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    fn corrupt(&self, window_index: Option<u64>, reason: String) -> Step {
        Step::End(ReadStatus::Corrupt {
            complete_windows: self.windows,
            offset: self.offset,
            window_index,
            reason,
        })
    }

    fn truncated(&self, trailing_bytes: u64) -> Step {
        Step::End(ReadStatus::Truncated {
            complete_windows: self.windows,
            trailing_bytes,
        })
    }

    /// Reads the next block. `Err` only for OS read errors.
    fn step(&mut self) -> Result<Step, RecordError> {
        let read_err = |source| RecordError::Read {
            input: self.input.clone(),
            source,
        };
        let mut head = [0u8; WINDOW_HEADER_LEN];
        let n = read_upto(&mut self.inner, &mut head[..4]).map_err(read_err)?;
        if n < 4 {
            let part = &head[..n];
            if WINDOW_TAG.starts_with(part) || END_TAG.starts_with(part) {
                return Ok(self.truncated(n as u64));
            }
            return Ok(self.corrupt(None, format!("unknown block tag {}", escape(part))));
        }
        let tag: [u8; 4] = [head[0], head[1], head[2], head[3]];
        if tag == END_TAG {
            let mut count = [0u8; 8];
            let n = read_upto(&mut self.inner, &mut count).map_err(read_err)?;
            if n < count.len() {
                return Ok(self.truncated(4 + n as u64));
            }
            let count = u64::from_le_bytes(count);
            if count != self.windows {
                return Ok(self.corrupt(
                    None,
                    format!(
                        "end marker says {count} windows, but {} were read",
                        self.windows
                    ),
                ));
            }
            let mut extra = Vec::new();
            (&mut self.inner)
                .take(1 << 20)
                .read_to_end(&mut extra)
                .map_err(read_err)?;
            if !extra.is_empty() {
                self.offset += END_LEN as u64;
                return Ok(self.corrupt(None, "unexpected data after the end marker".to_string()));
            }
            return Ok(Step::End(ReadStatus::Complete));
        }
        if tag != WINDOW_TAG {
            return Ok(self.corrupt(
                None,
                format!(
                    "unknown block tag {} (expected \"WIN1\" or \"END1\")",
                    escape(&tag)
                ),
            ));
        }
        let n = read_upto(&mut self.inner, &mut head[4..]).map_err(read_err)?;
        if n < WINDOW_HEADER_LEN - 4 {
            return Ok(self.truncated(4 + n as u64));
        }
        let index = u64::from_le_bytes(head[4..12].try_into().expect("8 bytes"));
        let clen = u32_at(&head, 12);
        let ulen = u32_at(&head, 16);
        let data_crc = u32_at(&head, 20);
        let head_crc = u32_at(&head, 24);
        let actual = crc32fast::hash(&head[..WINDOW_HEADER_LEN - 4]);
        if actual != head_crc {
            return Ok(self.corrupt(
                None,
                format!("block header checksum mismatch (stored {head_crc:#010x}, computed {actual:#010x})"),
            ));
        }
        if clen > MAX_BLOCK_LEN || ulen > MAX_BLOCK_LEN {
            return Ok(self.corrupt(
                Some(index),
                format!(
                    "block lengths {clen} (compressed) / {ulen} (uncompressed) exceed the {} MiB limit",
                    MAX_BLOCK_LEN >> 20
                ),
            ));
        }
        let mut data = Vec::with_capacity((clen as usize).min(1 << 20));
        (&mut self.inner)
            .take(u64::from(clen))
            .read_to_end(&mut data)
            .map_err(read_err)?;
        if data.len() < clen as usize {
            return Ok(self.truncated((WINDOW_HEADER_LEN + data.len()) as u64));
        }
        let actual = crc32fast::hash(&data);
        if actual != data_crc {
            return Ok(self.corrupt(
                Some(index),
                format!(
                    "data checksum mismatch (stored {data_crc:#010x}, computed {actual:#010x})"
                ),
            ));
        }
        let json = match decompress(&data, ulen) {
            Ok(j) => j,
            Err(e) => return Ok(self.corrupt(Some(index), format!("cannot decompress: {e}"))),
        };
        let snap: Snapshot = match serde_json::from_slice(&json) {
            Ok(s) => s,
            Err(e) => {
                return Ok(self.corrupt(
                    Some(index),
                    format!(
                        "cannot decode the window ({e}); was it written by another holdup version?"
                    ),
                ))
            }
        };
        if snap.window.index != index {
            return Ok(self.corrupt(
                Some(index),
                format!(
                    "block says window {index} but holds window {}",
                    snap.window.index
                ),
            ));
        }
        self.offset += (WINDOW_HEADER_LEN + data.len()) as u64;
        self.windows += 1;
        Ok(Step::Window(snap))
    }
}

impl<R: Read> Iterator for RecordingReader<R> {
    type Item = Result<Snapshot, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.status.is_some() || self.failed {
            return None;
        }
        match self.step() {
            Ok(Step::Window(s)) => Some(Ok(s)),
            Ok(Step::End(status)) => {
                self.status = Some(status.clone());
                match status {
                    ReadStatus::Corrupt { .. } => Some(Err(RecordError::Damaged {
                        input: self.input.clone(),
                        status,
                    })),
                    _ => None,
                }
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// Decompresses one zstd frame that must expand to exactly `ulen` bytes,
/// growing the buffer only as data actually arrives.
fn decompress(data: &[u8], ulen: u32) -> io::Result<Vec<u8>> {
    let mut dec = zstd::stream::read::Decoder::with_buffer(data)?.single_frame();
    let mut out = Vec::with_capacity((ulen as usize).min(1 << 20));
    (&mut dec).take(u64::from(ulen) + 1).read_to_end(&mut out)?;
    if out.len() != ulen as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "expanded to {}{} bytes, expected {ulen}",
                out.len(),
                if out.len() > ulen as usize { "+" } else { "" }
            ),
        ));
    }
    Ok(out)
}

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_upto<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Bytes as a quoted, escaped string for messages.
fn escape(b: &[u8]) -> String {
    format!("\"{}\"", b.escape_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdup_model::{Loss, WindowInfo};

    fn header() -> RecordingHeader {
        RecordingHeader::new(Target::Pid { pid: 1 }, 1000, vec![])
    }

    fn window(index: u64) -> Snapshot {
        Snapshot {
            window: WindowInfo {
                index,
                start_ns: index,
                end_ns: index + 1,
                wall_start_ms: 0,
            },
            threads: vec![],
            resources: vec![],
            futex_wakes: vec![],
            wakeups: vec![],
            culprits: vec![],
            disks: vec![],
            loss: Loss::default(),
            overhead: vec![],
            runtimes: Vec::new(),
        }
    }

    /// After a failed write (here: a partial block written by hand, as a
    /// full disk would leave), the file is cut back to its last complete
    /// window and recording can go on once space is back.
    #[test]
    fn failed_write_is_rolled_back_in_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.rec");
        let mut rec = Recorder::create(&path, &header()).unwrap();
        rec.write_window(&window(0)).unwrap();
        rec.write_window(&window(1)).unwrap();
        let good = std::fs::metadata(&path).unwrap().len();
        assert_eq!(good, rec.good_len);
        rec.sink.write_all(b"WIN1 partial block").unwrap();
        assert!(rec.roll_back());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
        rec.write_window(&window(3)).unwrap();
        assert_eq!(rec.finish().unwrap(), 3);
        let r = Recording::open(&path).unwrap();
        assert_eq!(r.status, ReadStatus::Complete);
        let idx: Vec<u64> = r.windows.iter().map(|w| w.window.index).collect();
        assert_eq!(idx, [0, 1, 3]);
    }

    #[test]
    fn writers_cannot_be_rolled_back() {
        let mut rec = Recorder::from_writer(Vec::new(), "vec", &header()).unwrap();
        assert!(!rec.roll_back());
    }
}
