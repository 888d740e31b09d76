//! Reading a recording back, recovering every complete window of a
//! truncated or damaged file and saying what it found.

use super::*;
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
