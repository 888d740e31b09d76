//! Writing a recording: one checksummed block per window, flushed as the
//! window closes; a failed write cuts the file back to its last complete
//! window.

use super::*;
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
            throttles: Vec::new(),
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
