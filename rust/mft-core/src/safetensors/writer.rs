//! Writing: header JSON (names sorted, `__metadata__` first, padded with
//! spaces to 8 bytes so tensor data stays aligned), then the tensor bytes.
//! `write_file` streams one file in order from one thread (plain appends, then
//! fdatasync and rename; writeback is started every 64 MB so the fdatasync
//! overlaps the copying). A `PendingFile` (reshard) is `<path>.tmp`, sized up front; tensors (of many files)
//! are written into it in parallel with positioned writes (`write_at` takes
//! `&self`); `commit` fsyncs and renames it over `path`, and dropping it
//! uncommitted removes the temp file.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::dtype::{byte_len, Dtype};
use super::json_out::{push_str, push_u64_list};
use super::{Error, Result};

pub struct TensorRef<'a> {
    pub name: &'a str,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
    /// Little-endian element bytes, exactly dtype size x prod(shape) long.
    pub data: &'a [u8],
}

/// What a file will hold, before any data exists.
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<u64>,
}

pub struct PendingFile {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<File>,
    /// For each spec (in the caller's order): [begin, end) absolute in the file.
    ranges: Vec<(u64, u64)>,
}

impl PendingFile {
    pub fn create(
        path: impl AsRef<Path>,
        specs: &[TensorSpec],
        metadata: &[(String, String)],
    ) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let path_str = path.display().to_string();
        let (header, offsets) = build_header(&path_str, specs, metadata)?;
        let data_start = 8 + header.len() as u64;
        let total = data_start + offsets.iter().map(|&(_, e)| e).max().unwrap_or(0);
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let io = |e: std::io::Error| Error::Io(format!("{path_str}: {e}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io)?;
        let pending = PendingFile {
            path,
            tmp,
            file: Some(file),
            ranges: offsets
                .iter()
                .map(|&(b, e)| (data_start + b, data_start + e))
                .collect(),
        };
        let f = pending.file.as_ref().unwrap();
        // Sized up front: bytes never written (vocab padding) read as zero.
        f.set_len(total).map_err(io)?;
        let mut head = (header.len() as u64).to_le_bytes().to_vec();
        head.extend_from_slice(header.as_bytes());
        f.write_all_at(&head, 0).map_err(io)?;
        Ok(pending)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [begin, end) of spec `i` in the file.
    pub fn range(&self, i: usize) -> (u64, u64) {
        self.ranges[i]
    }

    /// Writes `bytes` at absolute file position `pos` (callable from many threads).
    pub fn write_at(&self, pos: u64, bytes: &[u8]) -> Result<()> {
        self.file
            .as_ref()
            .expect("open until commit")
            .write_all_at(bytes, pos)
            .map_err(|e| Error::Io(format!("{}: {e}", self.path.display())))
    }

    /// The temp file (for in-kernel copies into it).
    pub fn file(&self) -> &File {
        self.file.as_ref().expect("open until commit")
    }

    /// fsync, then rename into place.
    pub fn commit(mut self) -> Result<()> {
        let path_str = self.path.display().to_string();
        let io = |e: std::io::Error| Error::Io(format!("{path_str}: {e}"));
        self.file.take().unwrap().sync_all().map_err(io)?;
        std::fs::rename(&self.tmp, &self.path).map_err(io)?;
        Ok(())
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Large writes are split so one big tensor still uses every core.
pub const WRITE_CHUNK: usize = 8 << 20;

pub fn write_file(
    path: impl AsRef<Path>,
    tensors: &[TensorRef],
    metadata: &[(String, String)],
) -> Result<()> {
    let path = path.as_ref();
    let path_str = path.display().to_string();
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|t| TensorSpec {
            name: t.name.to_string(),
            dtype: t.dtype,
            shape: t.shape.clone(),
        })
        .collect();
    for t in tensors {
        let want = byte_len(t.dtype, &t.shape).unwrap_or(u64::MAX);
        if want != t.data.len() as u64 {
            return Err(Error::Invalid(format!(
                "{path_str}: tensor {:?}: {} bytes given but dtype {} x shape {:?} needs {want}",
                t.name,
                t.data.len(),
                t.dtype.name(),
                t.shape
            )));
        }
    }
    // One thread writing in file order beats parallel positioned writes into
    // a sparse file: the kernel sees plain appends and allocates extents once.
    let (header, offsets) = build_header(&path_str, &specs, metadata)?;
    let tmp = temp_path(path);
    let io = |e: std::io::Error| Error::Io(format!("{path_str}: {e}"));
    let mut guard = RemoveOnDrop(Some(tmp.clone()));
    let file = File::create(&tmp).map_err(io)?;
    let mut out = BufWriter::with_capacity(WRITE_CHUNK, &file);
    out.write_all(&(header.len() as u64).to_le_bytes())
        .map_err(io)?;
    out.write_all(header.as_bytes()).map_err(io)?;
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by_key(|&i| offsets[i].0);
    let mut pos = 8 + header.len() as u64;
    let mut kicked = 0u64;
    for i in order {
        // Large slices bypass the buffer; small ones are coalesced.
        for piece in tensors[i].data.chunks(WRITEBACK_STEP as usize) {
            out.write_all(piece).map_err(io)?;
            pos += piece.len() as u64;
            if pos - kicked >= WRITEBACK_STEP {
                crate::writeback::start(&file, kicked, pos - kicked);
                kicked = pos;
            }
        }
    }
    out.flush().map_err(io)?;
    drop(out);
    file.sync_data().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    guard.0 = None; // renamed: nothing to clean up
    Ok(())
}

/// Disk writeback is started every this many bytes, so the final fdatasync
/// finds most of the file already on its way to disk.
const WRITEBACK_STEP: u64 = 64 << 20;

fn temp_path(path: &Path) -> PathBuf {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    PathBuf::from(tmp)
}

/// Removes a temp file on an early error return.
struct RemoveOnDrop(Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Large tensors are copied in chunks so one big tensor still uses every core.
pub fn copy_parallel(out: &mut [u8], src: &[u8]) {
    out.par_chunks_mut(WRITE_CHUNK)
        .zip(src.par_chunks(WRITE_CHUNK))
        .for_each(|(o, s)| o.copy_from_slice(s));
}

/// The padded header JSON and each spec's [begin, end) in the data region,
/// checking names, dtypes and sizes first.
fn build_header(
    path: &str,
    specs: &[TensorSpec],
    metadata: &[(String, String)],
) -> Result<(String, Vec<(u64, u64)>)> {
    let bad = |name: &str, m: String| Error::Invalid(format!("{path}: tensor {name:?}: {m}"));
    let mut seen = HashSet::new();
    for t in specs {
        if t.name == "__metadata__" {
            return Err(bad(&t.name, "this name is reserved for metadata".into()));
        }
        if !seen.insert(t.name.as_str()) {
            return Err(bad(&t.name, "name given twice".into()));
        }
        if byte_len(t.dtype, &t.shape).is_none() {
            return Err(bad(&t.name, format!("shape {:?} overflows", t.shape)));
        }
    }
    let mut order: Vec<usize> = (0..specs.len()).collect();
    order.sort_by(|&a, &b| specs[a].name.cmp(&specs[b].name));

    let mut out = String::from("{");
    let mut first = true;
    let mut sep = |out: &mut String| {
        if !first {
            out.push(',');
        }
        first = false;
    };
    if !metadata.is_empty() {
        sep(&mut out);
        push_str(&mut out, "__metadata__");
        out.push_str(":{");
        for (i, (k, v)) in metadata.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_str(&mut out, k);
            out.push(':');
            push_str(&mut out, v);
        }
        out.push('}');
    }
    let mut offsets = vec![(0u64, 0u64); specs.len()];
    let mut offset = 0u64;
    for i in order {
        let t = &specs[i];
        sep(&mut out);
        push_str(&mut out, &t.name);
        out.push_str(":{\"dtype\":");
        push_str(&mut out, t.dtype.name());
        out.push_str(",\"shape\":");
        push_u64_list(&mut out, &t.shape);
        out.push_str(",\"data_offsets\":");
        let end = offset + byte_len(t.dtype, &t.shape).unwrap();
        push_u64_list(&mut out, &[offset, end]);
        out.push('}');
        offsets[i] = (offset, end);
        offset = end;
    }
    out.push('}');
    while out.len() % 8 != 0 {
        out.push(' ');
    }
    Ok((out, offsets))
}

#[cfg(test)]
mod tests {
    use super::super::SafetensorsFile;
    use super::*;

    #[test]
    fn round_trip_and_atomic() {
        let dir = std::env::temp_dir().join(format!("mft-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.safetensors");
        let a: Vec<u8> = (0..24).collect();
        let b = [1u8, 0, 1];
        let ts = [
            TensorRef {
                name: "w",
                dtype: Dtype::F32,
                shape: vec![2, 3],
                data: &a,
            },
            TensorRef {
                name: "m",
                dtype: Dtype::Bool,
                shape: vec![3],
                data: &b,
            },
        ];
        write_file(&path, &ts, &[("format".into(), "np".into())]).unwrap();
        let f = SafetensorsFile::open(&path).unwrap();
        assert_eq!(f.header().data_start % 8, 0);
        assert_eq!(f.tensors()[0].name, "m");
        assert_eq!(f.data(f.tensor("w").unwrap()), &a[..]);
        assert_eq!(
            f.header().metadata,
            vec![("format".to_string(), "np".to_string())]
        );
        // A wrong byte length is refused and leaves the good file alone.
        let bad = [TensorRef {
            name: "w",
            dtype: Dtype::F32,
            shape: vec![7],
            data: &a,
        }];
        assert!(write_file(&path, &bad, &[])
            .unwrap_err()
            .to_string()
            .contains("needs 28"));
        assert!(SafetensorsFile::open(&path).is_ok());
        // A file dropped before commit leaves neither a temp nor a final file.
        let other = dir.join("y.safetensors");
        drop(PendingFile::create(&other, &[], &[]).unwrap());
        assert!(!other.exists());
        assert!(!dir.join("x.safetensors.tmp").exists() && !dir.join("y.safetensors.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
