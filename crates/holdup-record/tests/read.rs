//! Reading: round trips, truncation, corruption, hostile lengths.

mod common;

use common::{build, header, snapshot, Built};
use holdup_record::{ReadStatus, RecordError, Recorder, Recording, RecordingReader, MAX_BLOCK_LEN};
use proptest::prelude::*;
use std::sync::OnceLock;

/// Offset of the fields inside a window block.
const CLEN_AT: usize = 12;
const ULEN_AT: usize = 16;
const HEAD_CRC_AT: usize = 24;

fn small() -> &'static Built {
    static B: OnceLock<Built> = OnceLock::new();
    B.get_or_init(|| build(4, true))
}

/// Rewrites a u32 field of window block `k` and fixes the block header crc,
/// so only the length checks stand between the value and the reader.
fn set_block_u32(b: &Built, k: usize, at: usize, v: u32) -> Vec<u8> {
    let mut bytes = b.bytes.clone();
    let s = b.block_start(k);
    bytes[s + at..s + at + 4].copy_from_slice(&v.to_le_bytes());
    let crc = crc32fast::hash(&bytes[s..s + HEAD_CRC_AT]);
    bytes[s + HEAD_CRC_AT..s + HEAD_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    bytes
}

#[test]
fn round_trip_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.rec");
    let windows: Vec<_> = (0..6).map(snapshot).collect();
    let mut rec = Recorder::create(&path, &header()).unwrap();
    for w in &windows {
        rec.write_window(w).unwrap();
    }
    assert_eq!(rec.windows_written(), 6);
    assert_eq!(rec.finish().unwrap(), 6);

    let r = Recording::open(&path).unwrap();
    assert_eq!(r.header, header());
    assert_eq!(r.windows, windows);
    assert_eq!(r.status, ReadStatus::Complete);

    let mut reader = RecordingReader::open(&path).unwrap();
    assert_eq!(reader.header(), &header());
    let streamed: Vec<_> = reader.by_ref().map(Result::unwrap).collect();
    assert_eq!(streamed, windows);
    assert_eq!(reader.status(), Some(&ReadStatus::Complete));
    assert_eq!(reader.windows_read(), 6);
}

#[test]
fn recording_without_finish_reads_as_ended_early() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.rec");
    let mut rec = Recorder::create(&path, &header()).unwrap();
    for i in 0..3 {
        rec.write_window(&snapshot(i)).unwrap();
    }
    // What SIGKILL leaves: the file as written, no end marker.
    drop(rec);
    let r = Recording::open(&path).unwrap();
    assert_eq!(r.windows.len(), 3);
    assert_eq!(
        r.status,
        ReadStatus::Truncated {
            complete_windows: 3,
            trailing_bytes: 0
        }
    );
    let msg = r.status.describe();
    assert!(
        msg.contains("ended early") && msg.contains("recovered 3 complete windows"),
        "{msg}"
    );
}

#[test]
fn empty_recording_round_trips() {
    let b = build(0, true);
    let r = Recording::from_bytes(&b.bytes).unwrap();
    assert!(r.windows.is_empty());
    assert_eq!(r.status, ReadStatus::Complete);
}

#[test]
fn non_finite_share_is_stored_as_zero() {
    let mut s = snapshot(0);
    s.disks[0].share = f64::NAN;
    s.disks[1].share = f64::INFINITY;
    let buf = common::SharedBuf::default();
    let mut rec = Recorder::from_writer(buf.clone(), "memory", &header()).unwrap();
    rec.write_window(&s).unwrap();
    rec.finish().unwrap();
    let r = Recording::from_bytes(&buf.0.lock().unwrap()).unwrap();
    assert_eq!(r.status, ReadStatus::Complete);
    assert_eq!(r.windows[0].disks[0].share, 0.0);
    assert_eq!(r.windows[0].disks[1].share, 0.0);
}

#[test]
fn truncated_at_every_offset() {
    let b = small();
    for len in 0..=b.bytes.len() {
        let cut = &b.bytes[..len];
        let res = Recording::from_bytes(cut);
        if len < b.header_end {
            let err = res.expect_err("cut inside the header must be an error");
            assert!(
                matches!(err, RecordError::HeaderTruncated { .. }),
                "len {len}: {err}"
            );
            continue;
        }
        let r = res.unwrap_or_else(|e| panic!("len {len}: {e}"));
        let k = b.window_ends.iter().filter(|&&e| e <= len).count();
        assert_eq!(r.windows, b.windows[..k], "len {len}");
        if len == b.bytes.len() {
            assert_eq!(r.status, ReadStatus::Complete);
        } else {
            let trailing = (len - b.block_start(k)) as u64;
            assert_eq!(
                r.status,
                ReadStatus::Truncated {
                    complete_windows: k as u64,
                    trailing_bytes: trailing
                },
                "len {len}"
            );
        }
    }
}

/// Expected outcome of flipping a bit at `off`: `None` for an error, else
/// the windows kept and the offset of the block reported corrupt.
fn expect_flip(b: &Built, off: usize) -> Option<(usize, usize)> {
    if off < b.header_end {
        return None;
    }
    match b.window_ends.iter().position(|&e| off < e) {
        Some(k) => Some((k, b.block_start(k))),
        None => Some((
            b.windows.len(),
            *b.window_ends.last().unwrap_or(&b.header_end),
        )),
    }
}

fn check_flip(b: &Built, off: usize, bit: u8) {
    let mut bytes = b.bytes.clone();
    bytes[off] ^= 1 << bit;
    let res = Recording::from_bytes(&bytes);
    match expect_flip(b, off) {
        None => assert!(res.is_err(), "flip in header at {off} bit {bit} accepted"),
        Some((k, block)) => {
            let r = res.unwrap_or_else(|e| panic!("flip at {off} bit {bit}: {e}"));
            assert_eq!(r.windows, b.windows[..k], "flip at {off} bit {bit}");
            match &r.status {
                ReadStatus::Corrupt {
                    complete_windows,
                    offset,
                    ..
                } => {
                    assert_eq!(*complete_windows, k as u64, "flip at {off} bit {bit}");
                    assert_eq!(*offset, block as u64, "flip at {off} bit {bit}");
                }
                other => panic!("flip at {off} bit {bit}: expected corrupt, got {other:?}"),
            }
        }
    }
}

#[test]
fn every_byte_flipped_is_detected() {
    let b = small();
    for off in 0..b.bytes.len() {
        check_flip(b, off, (off % 8) as u8);
    }
}

#[test]
fn corrupt_window_names_its_index_and_offset() {
    let b = small();
    let mut bytes = b.bytes.clone();
    let last_byte_of_window_2 = b.window_ends[2] - 1;
    bytes[last_byte_of_window_2] ^= 0x40;
    let r = Recording::from_bytes(&bytes).unwrap();
    assert_eq!(r.windows.len(), 2);
    let expected_offset = b.block_start(2) as u64;
    match &r.status {
        ReadStatus::Corrupt {
            complete_windows: 2,
            offset,
            window_index: Some(2),
            reason,
        } => {
            assert_eq!(*offset, expected_offset);
            assert!(reason.contains("checksum mismatch"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let msg = r.status.describe();
    assert!(
        msg.contains(&format!("byte offset {expected_offset}")),
        "{msg}"
    );
    assert!(msg.contains("window 2"), "{msg}");
    assert!(
        msg.contains("recovered the 2 complete windows before it"),
        "{msg}"
    );

    // The streaming reader yields the two good windows, then the error, then stops.
    let mut reader = RecordingReader::new(&bytes[..]).unwrap();
    assert_eq!(reader.next().unwrap().unwrap(), b.windows[0]);
    assert_eq!(reader.next().unwrap().unwrap(), b.windows[1]);
    let err = reader.next().unwrap().unwrap_err();
    assert!(matches!(err, RecordError::Damaged { .. }), "{err}");
    assert!(err.to_string().contains("damaged at byte offset"), "{err}");
    assert!(reader.next().is_none());
    assert_eq!(reader.status(), Some(&r.status));
}

#[test]
fn huge_block_length_is_rejected_without_allocating() {
    let b = small();
    for at in [CLEN_AT, ULEN_AT] {
        for v in [u32::MAX, MAX_BLOCK_LEN + 1] {
            let bytes = set_block_u32(b, 1, at, v);
            let r = Recording::from_bytes(&bytes).unwrap();
            assert_eq!(r.windows, b.windows[..1]);
            match &r.status {
                ReadStatus::Corrupt {
                    complete_windows: 1,
                    window_index: Some(1),
                    reason,
                    ..
                } => {
                    assert!(reason.contains("exceed the 256 MiB limit"), "{reason}")
                }
                other => panic!("field at {at} = {v}: {other:?}"),
            }
        }
    }
    // Without fixing the header crc, the same change is caught as damage.
    let mut bytes = b.bytes.clone();
    let s = b.block_start(1) + CLEN_AT;
    bytes[s..s + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let r = Recording::from_bytes(&bytes).unwrap();
    assert!(
        matches!(&r.status, ReadStatus::Corrupt { complete_windows: 1, reason, .. } if reason.contains("block header checksum"))
    );
}

#[test]
fn length_past_the_end_reads_as_truncated_and_wrong_length_as_corrupt() {
    let b = small();
    // A compressed length within the cap but past the end of the file: the
    // reader only holds what is there.
    let bytes = set_block_u32(b, 3, CLEN_AT, MAX_BLOCK_LEN);
    let r = Recording::from_bytes(&bytes).unwrap();
    assert_eq!(r.windows.len(), 3);
    assert!(
        matches!(
            r.status,
            ReadStatus::Truncated {
                complete_windows: 3,
                ..
            }
        ),
        "{:?}",
        r.status
    );
    // An uncompressed length that does not match the data.
    let bytes = set_block_u32(b, 0, ULEN_AT, 10);
    let r = Recording::from_bytes(&bytes).unwrap();
    assert!(r.windows.is_empty());
    assert!(
        matches!(&r.status, ReadStatus::Corrupt { reason, .. } if reason.contains("cannot decompress")),
        "{:?}",
        r.status
    );
}

#[test]
fn huge_header_length_is_a_clear_error() {
    let b = small();
    let mut bytes = b.bytes.clone();
    bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
    let err = Recording::from_bytes(&bytes).unwrap_err();
    assert!(matches!(err, RecordError::HeaderCorrupt { .. }), "{err}");
    assert!(err.to_string().contains("over the 16 MiB limit"), "{err}");
}

#[test]
fn not_a_recording_and_bad_versions_are_clear_errors() {
    let err = Recording::from_bytes(b"hello world, this is text").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RecordError::NotARecording { .. }), "{msg}");
    assert!(
        msg.contains("is not a holdup recording") && msg.contains("holdup record -o"),
        "{msg}"
    );

    let err = Recording::from_bytes(b"").unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");

    let mut bytes = small().bytes.clone();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let err = Recording::from_bytes(&bytes).unwrap_err();
    assert!(
        matches!(err, RecordError::UnsupportedVersion { version: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer holdup"), "{err}");
}

#[test]
fn newer_schema_is_refused_with_advice() {
    let mut h = header();
    h.schema_version = holdup_model::SCHEMA_VERSION + 1;
    let buf = common::SharedBuf::default();
    Recorder::from_writer(buf.clone(), "memory", &h)
        .unwrap()
        .finish()
        .unwrap();
    let err = Recording::from_bytes(&buf.0.lock().unwrap()).unwrap_err();
    assert!(
        matches!(err, RecordError::UnsupportedSchema { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("newer holdup"), "{err}");
}

#[test]
fn data_after_the_end_marker_is_reported() {
    let b = small();
    let mut bytes = b.bytes.clone();
    bytes.extend_from_slice(b"junk");
    let r = Recording::from_bytes(&bytes).unwrap();
    assert_eq!(r.windows, b.windows);
    assert!(
        matches!(&r.status, ReadStatus::Corrupt { complete_windows: 4, reason, .. } if reason.contains("after the end marker")),
        "{:?}",
        r.status
    );
}

#[test]
fn open_errors_name_the_path() {
    let err = Recording::open(std::path::Path::new("/nonexistent-dir/x.rec")).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("/nonexistent-dir/x.rec") && msg.contains("no such file"),
        "{msg}"
    );

    let dir = tempfile::tempdir().unwrap();
    let err = Recording::open(dir.path()).unwrap_err();
    assert!(err.to_string().contains("is a directory"), "{err}");

    let path = dir.path().join("text.rec");
    std::fs::write(&path, "not a recording").unwrap();
    let err = Recording::open(&path).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_bit_flips_never_panic_and_keep_prior_windows(off in 0usize..100_000, bit in 0u8..8) {
        let b = small();
        check_flip(b, off % b.bytes.len(), bit);
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512), keep_magic: bool) {
        let mut data = data;
        if keep_magic {
            let mut v = b"HOLDUPRC\x01\0\0\0".to_vec();
            v.extend_from_slice(&data);
            data = v;
        }
        let _ = Recording::from_bytes(&data);
    }

    #[test]
    fn random_overwrites_after_the_header_keep_prior_windows(
        off in 0usize..100_000,
        junk in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let b = small();
        let off = b.header_end + off % (b.bytes.len() - b.header_end);
        let mut bytes = b.bytes.clone();
        let end = (off + junk.len()).min(bytes.len());
        bytes[off..end].copy_from_slice(&junk[..end - off]);
        let r = Recording::from_bytes(&bytes).unwrap();
        match (off..end).find(|&i| bytes[i] != b.bytes[i]) {
            None => {
                prop_assert_eq!(&r.windows, &b.windows);
                prop_assert_eq!(r.status, ReadStatus::Complete);
            }
            Some(first) => {
                let k = b.window_ends.iter().filter(|&&e| e <= first).count();
                prop_assert_eq!(&r.windows[..], &b.windows[..k]);
                let is_corrupt = matches!(r.status, ReadStatus::Corrupt { .. });
                prop_assert!(is_corrupt, "{:?}", r.status);
            }
        }
    }
}
