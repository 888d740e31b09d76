//! Writing: unwritable paths, disk full.

mod common;

use common::{header, snapshot, SharedBuf};
use holdup_record::{ReadStatus, RecordError, Recorder, Recording};
use std::io::{self, Write};
use std::path::Path;

#[test]
fn unwritable_path_names_the_path_and_says_why() {
    let err = Recorder::create(Path::new("/nonexistent-dir/x.rec"), &header()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RecordError::Create { .. }), "{msg}");
    assert!(msg.contains("/nonexistent-dir/x.rec"), "{msg}");
    assert!(
        msg.contains("directory /nonexistent-dir does not exist"),
        "{msg}"
    );
    // The library names no flag (record -o, diagnose --record and the
    // workbench all create recordings); it says what to do.
    assert!(msg.contains("choose another path"), "{msg}");
}

#[test]
fn directory_as_path_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    let err = Recorder::create(dir.path(), &header()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&dir.path().display().to_string()) && msg.contains("is a directory"),
        "{msg}"
    );
}

#[test]
fn dev_full_reports_disk_full() {
    let err = Recorder::create(Path::new("/dev/full"), &header()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, RecordError::DiskFull { windows: 0, .. }),
        "{msg}"
    );
    assert!(msg.contains("/dev/full"), "{msg}");
    assert!(msg.contains("disk full (ENOSPC)"), "{msg}");
    assert!(
        msg.contains("0 complete windows are safely in the file"),
        "{msg}"
    );
}

/// Accepts `room` bytes, then fails every write with ENOSPC, like a disk
/// that fills up.
struct FillingDisk {
    out: SharedBuf,
    room: usize,
}

impl Write for FillingDisk {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::Error::from_raw_os_error(28));
        }
        let n = b.len().min(self.room);
        self.room -= n;
        self.out.write(&b[..n])
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn disk_filling_mid_recording_says_how_many_windows_are_safe() {
    // Measure a recording of two windows, then give the disk room for that
    // plus half of the third.
    let probe = SharedBuf::default();
    let mut rec = Recorder::from_writer(probe.clone(), "probe", &header()).unwrap();
    rec.write_window(&snapshot(0)).unwrap();
    rec.write_window(&snapshot(1)).unwrap();
    let two = probe.0.lock().unwrap().len();
    rec.write_window(&snapshot(2)).unwrap();
    let three = probe.0.lock().unwrap().len();

    let out = SharedBuf::default();
    let disk = FillingDisk {
        out: out.clone(),
        room: two + (three - two) / 2,
    };
    let mut rec = Recorder::from_writer(disk, "/data/run.rec", &header()).unwrap();
    rec.write_window(&snapshot(0)).unwrap();
    rec.write_window(&snapshot(1)).unwrap();
    let err = rec.write_window(&snapshot(2)).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, RecordError::DiskFull { windows: 2, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("/data/run.rec") && msg.contains("disk full (ENOSPC)"),
        "{msg}"
    );
    assert!(
        msg.contains("2 complete windows are safely in the file"),
        "{msg}"
    );
    assert_eq!(rec.windows_written(), 2);

    // A partial block went out and cannot be taken back: the recorder stops.
    let err = rec.write_window(&snapshot(3)).unwrap_err();
    assert!(
        matches!(err, RecordError::Stopped { windows: 2, .. }),
        "{err}"
    );

    // What reached the disk reads back as two windows and a cut-off block.
    let r = Recording::from_bytes(&out.0.lock().unwrap()).unwrap();
    assert_eq!(r.windows, vec![snapshot(0), snapshot(1)]);
    assert_eq!(
        r.status,
        ReadStatus::Truncated {
            complete_windows: 2,
            trailing_bytes: ((three - two) / 2) as u64
        }
    );
}

#[test]
fn file_recording_is_readable_while_it_is_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.rec");
    let mut rec = Recorder::create(&path, &header()).unwrap();
    assert_eq!(rec.path(), path.as_path());
    let r = Recording::open(&path).unwrap();
    assert!(r.windows.is_empty());
    assert_eq!(
        r.status,
        ReadStatus::Truncated {
            complete_windows: 0,
            trailing_bytes: 0
        }
    );
    rec.write_window(&snapshot(0)).unwrap();
    // No buffering in user space: the window is in the file now.
    let r = Recording::open(&path).unwrap();
    assert_eq!(r.windows, vec![snapshot(0)]);
    rec.sync().unwrap();
    assert_eq!(rec.finish().unwrap(), 1);
    assert_eq!(Recording::open(&path).unwrap().status, ReadStatus::Complete);
}

#[test]
fn header_new_fills_this_host() {
    let h =
        holdup_record::RecordingHeader::new(holdup_model::Target::All, 500, vec!["holdup".into()]);
    assert_eq!(h.format_version, holdup_record::FORMAT_VERSION);
    assert_eq!(h.schema_version, holdup_model::SCHEMA_VERSION);
    assert_eq!(h.metrics.len(), 16);
    assert!(!h.kernel.is_empty() && !h.host.is_empty());
    assert!(h.started_unix_ms > 1_600_000_000_000);
    assert_eq!(h.interval_ms, 500);
}
