//! Any input: reading never panics, and the streaming reader agrees with
//! `Recording::from_bytes`.
//!
//! Run with `cargo +nightly fuzz run read` from crates/holdup-record.
#![no_main]

use holdup_record::{Recording, RecordingReader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Recording::from_bytes(data) {
        Ok(r) => {
            let _ = r.status.describe();
            let _ = r.summary().to_string();
            let reader = RecordingReader::new(data).expect("from_bytes accepted this header");
            let streamed: Vec<_> = reader.filter_map(Result::ok).collect();
            assert_eq!(streamed, r.windows);
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(RecordingReader::new(data).is_err());
        }
    }
});
