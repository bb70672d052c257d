//! Encode a JSONL corpus's "text" fields with one tokenizer.json on this
//! thread and print MB per CPU-second (this thread's user+system time, so
//! other processes on a loaded machine do not count): the loop to profile
//! (`perf record`, `valgrind --tool=cachegrind`) without Python.
//!
//!     cargo run --release -p mft-core --example encode_file -- TOKENIZER.json CORPUS.jsonl [MB] [PASSES]

use std::time::Instant;

fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: encode_file TOKENIZER.json CORPUS.jsonl [MB] [PASSES]");
        std::process::exit(2);
    }
    let tok = mft_core::bpe::from_file(std::path::Path::new(&args[1])).unwrap_or_else(|e| {
        eprintln!("{}: {e}", args[1]);
        std::process::exit(1)
    });
    let limit = args
        .get(3)
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(f64::MAX)
        * 1e6;
    let passes = args
        .get(4)
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(3);
    let corpus = std::fs::read_to_string(&args[2]).expect("readable corpus");
    let mut texts = Vec::new();
    let mut bytes = 0usize;
    for line in corpus.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("JSONL");
        let t = v["text"].as_str().unwrap_or("").to_string();
        bytes += t.len();
        texts.push(t);
        if bytes as f64 >= limit {
            break;
        }
    }
    let mut best = 0.0f64;
    let mut ids = 0usize;
    for pass in 0..passes {
        let (wall, cpu) = (Instant::now(), thread_cpu_seconds());
        ids = texts.iter().map(|t| tok.encode(t, false).len()).sum();
        let cpu = thread_cpu_seconds() - cpu;
        let mb_per_cpu_s = bytes as f64 / 1e6 / cpu;
        best = best.max(mb_per_cpu_s);
        eprintln!(
            "pass {pass}: {:.2} MB per CPU-second ({:.2} s CPU, {:.2} s wall)",
            mb_per_cpu_s,
            cpu,
            wall.elapsed().as_secs_f64()
        );
    }
    println!(
        "{}: {:.1} MB, {ids} ids, best {best:.2} MB per CPU-second",
        args[1],
        bytes as f64 / 1e6
    );
}
