//! Property-based fuzzing of the header parser and the mmap reader (proptest).
//! Three generators: raw bytes, valid files with random mutations, and
//! structurally plausible headers with random dtypes/shapes/offsets. The
//! property: never panic; and whenever a file is accepted, every tensor's
//! bytes match dtype x shape and the tensors tile the data region exactly.
//! Each test counts its inputs; `cargo test -- --nocapture` prints them.

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;

use super::dtype::{byte_len, Dtype};
use super::header::{parse_header, Header};
use super::SafetensorsFile;

const CASES: u32 = 20_000;

fn check_accepted(h: &Header, file_size: u64) {
    let data_len = file_size - h.data_start;
    let mut spans: Vec<(u64, u64)> = h.tensors.iter().map(|t| (t.begin, t.end)).collect();
    for t in &h.tensors {
        assert_eq!(Some(t.end - t.begin), byte_len(t.dtype, &t.shape));
    }
    spans.sort();
    let mut pos = 0;
    for (b, e) in spans {
        assert_eq!(b, pos);
        pos = e;
    }
    assert_eq!(pos, data_len);
}

fn valid_file() -> Vec<u8> {
    let json = r#"{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"BF16","shape":[3],"data_offsets":[16,22]},"c":{"dtype":"BOOL","shape":[],"data_offsets":[22,23]}}"#;
    let mut v = (json.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(json.as_bytes());
    v.extend(0..23u8);
    v
}

fn with_len(json: &str, data: usize) -> Vec<u8> {
    let mut v = (json.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(json.as_bytes());
    v.extend(std::iter::repeat_n(0u8, data));
    v
}

static RAW: AtomicUsize = AtomicUsize::new(0);
static MUTATED: AtomicUsize = AtomicUsize::new(0);
static STRUCTURED: AtomicUsize = AtomicUsize::new(0);
static FILES: AtomicUsize = AtomicUsize::new(0);

fn dtype_name() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(
            Dtype::ALL
                .iter()
                .map(|d| d.name().to_string())
                .collect::<Vec<_>>()
        ),
        "[A-Z0-9_]{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn raw_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), extra in 0u64..64) {
        RAW.fetch_add(1, Ordering::Relaxed);
        let size = bytes.len() as u64 + extra;
        if let Ok(h) = parse_header("f", &bytes, size) { check_accepted(&h, size) }
    }

    #[test]
    fn mutated_valid_files_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..6),
    ) {
        MUTATED.fetch_add(1, Ordering::Relaxed);
        let mut v = valid_file();
        for (pos, byte, op) in edits {
            let i = pos % (v.len() + 1);
            match op {
                0 if i < v.len() => v[i] = byte,
                1 => v.insert(i, byte),
                2 if i < v.len() => { v.remove(i); }
                _ => v.truncate(i),
            }
        }
        if let Ok(h) = parse_header("f", &v, v.len() as u64) { check_accepted(&h, v.len() as u64) }
    }

    #[test]
    fn structured_headers_are_checked(
        entries in proptest::collection::vec(
            (dtype_name(), proptest::collection::vec(0u64..5, 0..3), 0u64..40, 0u64..40),
            0..5),
        dup in any::<bool>(),
        data in 0usize..60,
    ) {
        STRUCTURED.fetch_add(1, Ordering::Relaxed);
        let mut parts: Vec<String> = entries.iter().enumerate().map(|(i, (d, s, b, e))| {
            format!(r#""t{}":{{"dtype":"{d}","shape":{s:?},"data_offsets":[{b},{e}]}}"#, if dup { 0 } else { i })
        }).collect();
        if dup { parts.push(r#""x":1"#.into()); }
        let v = with_len(&format!("{{{}}}", parts.join(",")), data);
        match parse_header("f", &v, v.len() as u64) {
            Ok(h) => {
                check_accepted(&h, v.len() as u64);
                prop_assert!(!(dup && entries.len() > 1));
            }
            Err(e) => prop_assert!(e.to_string().starts_with("f: ")),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Through the real file path: open + read every tensor never panics.
    #[test]
    fn mmap_reader_never_panics(cut in 0usize..200, flip in any::<(usize, u8)>()) {
        FILES.fetch_add(1, Ordering::Relaxed);
        let mut v = valid_file();
        let i = flip.0 % v.len();
        v[i] ^= flip.1;
        v.truncate(cut.min(v.len()));
        let path = std::env::temp_dir().join(format!("mft-fuzz-{}-{:?}.safetensors", std::process::id(), std::thread::current().id()));
        std::fs::write(&path, &v).unwrap();
        if let Ok(f) = SafetensorsFile::open(&path) {
            for t in f.tensors() {
                prop_assert_eq!(f.data(t).len() as u64, t.end - t.begin);
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn zz_report_fuzz_counts() {
    // Runs in parallel with the others, so only print; the count is exact
    // when this file's tests run (each proptest runs exactly its case count).
    eprintln!(
        "fuzz inputs so far: raw {} mutated {} structured {} files {}",
        RAW.load(Ordering::Relaxed),
        MUTATED.load(Ordering::Relaxed),
        STRUCTURED.load(Ordering::Relaxed),
        FILES.load(Ordering::Relaxed)
    );
}
