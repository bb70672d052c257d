//! Executing a reshard: fill each target box from the source boxes that
//! intersect it (`sources.rs`). Target files are `PendingFile`s, so all of
//! them fill in parallel and none appears under its final name unless every
//! one of its tensors was written.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use rayon::prelude::*;

use super::layout::Layout;
use super::sources::{volume, BoxRequest, Sources};
use crate::safetensors::{PendingFile, Result, TensorSpec};

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub files: usize,
    pub tensors: usize,
    pub bytes: u64,
}

/// Splits a box along axis 0 into chunks of about `limit` bytes, so one huge
/// tensor still spreads over every core and a dtype conversion needs only a
/// chunk-sized buffer. The chunks' bytes are consecutive slices of the box.
fn chunk_rows(req: &BoxRequest, limit: u64) -> Vec<BoxRequest> {
    let row_bytes = volume(req.shape.get(1..).unwrap_or(&[])) * req.dtype.size() as u64;
    if req.shape.is_empty() || row_bytes == 0 || req.shape[0] * row_bytes <= limit {
        return vec![req.clone()];
    }
    let rows = (limit / row_bytes).max(1);
    let mut out = Vec::new();
    let mut r = 0;
    while r < req.shape[0] {
        let n = rows.min(req.shape[0] - r);
        let mut c = req.clone();
        c.offset[0] += r;
        c.shape[0] = n;
        out.push(c);
        r += n;
    }
    out
}

const CHUNK_BYTES: u64 = 16 << 20;

/// Writes every file of `dst` into `dst_dir` from `src`. A piece's dtype is
/// its tensor's dtype in `dst` (converted from the source's when they differ).
pub fn reshard(
    src: &Sources,
    dst_dir: impl AsRef<Path>,
    dst: &Layout,
    metadata: &[(String, String)],
) -> Result<Stats> {
    let dst_dir = dst_dir.as_ref();
    let mut per_file: BTreeMap<&str, Vec<(TensorSpec, BoxRequest)>> = BTreeMap::new();
    for t in &dst.tensors {
        for p in &t.pieces {
            per_file.entry(&p.file).or_default().push((
                TensorSpec {
                    name: p.key.clone(),
                    dtype: t.dtype,
                    shape: p.shape.clone(),
                },
                BoxRequest {
                    name: t.name.clone(),
                    dtype: t.dtype,
                    offset: p.offset.clone(),
                    shape: p.shape.clone(),
                },
            ));
        }
    }
    src.advise_sequential();
    let mut pending = Vec::new();
    let mut stats = Stats::default();
    for (file, items) in &per_file {
        let specs: Vec<TensorSpec> = items.iter().map(|(s, _)| s.clone()).collect();
        pending.push(PendingFile::create(dst_dir.join(file), &specs, metadata)?);
        stats.files += 1;
        stats.tensors += items.len();
    }
    let mut jobs: Vec<(usize, u64, BoxRequest)> = Vec::new();
    for (fi, (pf, (_, items))) in pending.iter().zip(&per_file).enumerate() {
        for (ti, (_, req)) in items.iter().enumerate() {
            let (begin, end) = pf.range(ti);
            stats.bytes += end - begin;
            let mut pos = begin;
            for c in chunk_rows(req, CHUNK_BYTES) {
                let n = volume(&c.shape) * c.dtype.size() as u64;
                jobs.push((fi, pos, c));
                pos += n;
            }
        }
    }
    // Largest first keeps every core busy to the end.
    jobs.sort_by_key(|(_, _, r)| std::cmp::Reverse(volume(&r.shape) * r.dtype.size() as u64));
    jobs.into_par_iter().try_for_each(|(fi, pos, req)| {
        // A box stored contiguously in one source piece goes straight from
        // the source map to the target file; anything else via a buffer.
        if let Some((file, at, bytes)) = src.contiguous(&req) {
            if copy_in_kernel(file.file(), at, pending[fi].file(), pos, bytes.len()) {
                return Ok(());
            }
            return pending[fi].write_at(pos, bytes);
        }
        let mut buf = vec![0u8; (volume(&req.shape) * req.dtype.size() as u64) as usize];
        src.fill(&req, &mut buf)?;
        pending[fi].write_at(pos, &buf)
    })?;
    // fsync the files concurrently: the disk queue stays full.
    pending.into_par_iter().try_for_each(PendingFile::commit)?;
    Ok(stats)
}

/// copy_file_range: the kernel moves page-cache pages from file to file
/// without mapping or copying them through user space (what `cp` does).
/// False when the filesystem cannot (the caller then writes from the map).
#[cfg(target_os = "linux")]
fn copy_in_kernel(from: &File, mut at: u64, to: &File, mut pos: u64, mut len: usize) -> bool {
    use std::os::fd::AsRawFd;
    while len > 0 {
        let (mut a, mut p) = (at as libc::loff_t, pos as libc::loff_t);
        // SAFETY: plain syscall on two open descriptors with valid offsets.
        let n = unsafe {
            libc::copy_file_range(from.as_raw_fd(), &mut a, to.as_raw_fd(), &mut p, len, 0)
        };
        if n <= 0 {
            // Only a failure before anything was copied may fall back: the
            // caller rewrites the whole range, so partial progress is fine too.
            return false;
        }
        let n = n as usize;
        at += n as u64;
        pos += n as u64;
        len -= n;
    }
    true
}

/// Elsewhere (macOS has no copy_file_range) the caller writes from the map.
#[cfg(not(target_os = "linux"))]
fn copy_in_kernel(_from: &File, _at: u64, _to: &File, _pos: u64, _len: usize) -> bool {
    false
}

/// Reads boxes into new buffers, in parallel (what one rank needs on load).
pub fn read_boxes(src: &Sources, reqs: &[BoxRequest]) -> Result<Vec<Vec<u8>>> {
    reqs.par_iter()
        .map(|r| {
            let mut out = vec![0u8; (volume(&r.shape) * r.dtype.size() as u64) as usize];
            src.fill(r, &mut out)?;
            Ok(out)
        })
        .collect()
}
