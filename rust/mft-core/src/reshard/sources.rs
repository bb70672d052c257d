//! The source side of a reshard: a checkpoint's files opened once
//! (memory-mapped, every piece checked against its file's header), and
//! any box of any tensor read from the pieces that intersect it.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::boxcopy::copy_intersection;
use super::layout::Layout;
use crate::safetensors::convert::convert;
use crate::safetensors::{Dtype, Error, Result, SafetensorsFile};

/// A source checkpoint: its layout plus its files, open and checked.
pub struct Sources {
    dir: PathBuf,
    layout: Layout,
    files: HashMap<String, SafetensorsFile>,
    /// (file, key) -> index into that file's tensors.
    index: HashMap<(String, String), usize>,
    by_name: HashMap<String, usize>,
}

/// One box of one tensor, wanted in `dtype`.
#[derive(Debug, Clone)]
pub struct BoxRequest {
    pub name: String,
    pub dtype: Dtype,
    pub offset: Vec<u64>,
    pub shape: Vec<u64>,
}

pub(super) fn volume(shape: &[u64]) -> u64 {
    shape.iter().product()
}

impl Sources {
    /// The whole files are about to be read in order: read ahead.
    pub(super) fn advise_sequential(&self) {
        for f in self.files.values() {
            f.advise_sequential();
        }
    }

    pub fn open(dir: impl AsRef<Path>, layout: Layout) -> Result<Sources> {
        let dir = dir.as_ref().to_path_buf();
        let names: HashSet<&str> = layout
            .tensors
            .iter()
            .flat_map(|t| t.pieces.iter().map(|p| p.file.as_str()))
            .collect();
        let names: Vec<&str> = names.into_iter().collect();
        let opened: Vec<Result<(String, SafetensorsFile)>> = names
            .par_iter()
            .map(|n| Ok((n.to_string(), SafetensorsFile::open(dir.join(n))?)))
            .collect();
        let mut files = HashMap::new();
        for r in opened {
            let (n, f) = r?;
            files.insert(n, f);
        }
        let mut index = HashMap::new();
        for (n, f) in &files {
            for (i, t) in f.tensors().iter().enumerate() {
                index.insert((n.clone(), t.name.clone()), i);
            }
        }
        for t in &layout.tensors {
            for p in &t.pieces {
                let f = &files[&p.file];
                let Some(&i) = index.get(&(p.file.clone(), p.key.clone())) else {
                    return Err(Error::Invalid(format!(
                        "{}: tensor {:?}: the layout places a piece here but the file has no tensor {:?}",
                        f.path(),
                        t.name,
                        p.key
                    )));
                };
                let info = &f.tensors()[i];
                if info.dtype != t.dtype || info.shape != p.shape {
                    return Err(Error::Invalid(format!(
                        "{}: tensor {:?}: file has {} {:?}, the layout says {} {:?}",
                        f.path(),
                        p.key,
                        info.dtype.name(),
                        info.shape,
                        t.dtype.name(),
                        p.shape
                    )));
                }
            }
        }
        let by_name = layout
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Sources {
            dir,
            layout,
            files,
            index,
            by_name,
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The request's bytes as one slice of a source file, when some piece
    /// (same dtype, no padding involved) stores the whole box contiguously.
    pub fn contiguous(&self, req: &BoxRequest) -> Option<(&SafetensorsFile, u64, &[u8])> {
        let t = &self.layout.tensors[*self.by_name.get(&req.name)?];
        let n = t.shape.len();
        if t.dtype != req.dtype || req.offset.len() != n || req.shape.len() != n {
            return None;
        }
        if (0..n).any(|d| req.offset[d] + req.shape[d] > t.shape[d]) || volume(&req.shape) == 0 {
            return None;
        }
        for p in &t.pieces {
            let inside = (0..n).all(|d| {
                p.offset[d] <= req.offset[d]
                    && req.offset[d] + req.shape[d] <= p.offset[d] + p.shape[d]
            });
            if !inside {
                continue;
            }
            // Contiguous in C order: dims after the last partial one are
            // whole, dims before it have extent 1.
            if let Some(k) = (0..n).rev().find(|&d| req.shape[d] != p.shape[d]) {
                if (0..k).any(|d| req.shape[d] != 1) {
                    continue;
                }
            }
            let mut lead = 0u64;
            let mut stride = t.dtype.size() as u64;
            for d in (0..n).rev() {
                lead += (req.offset[d] - p.offset[d]) * stride;
                stride *= p.shape[d];
            }
            let f = &self.files[&p.file];
            let info = &f.tensors()[self.index[&(p.file.clone(), p.key.clone())]];
            let data = f.data(info);
            let len = (volume(&req.shape) * t.dtype.size() as u64) as usize;
            return Some((
                f,
                f.data_offset(info) + lead,
                &data[lead as usize..lead as usize + len],
            ));
        }
        None
    }

    /// Fills `out` (the request's box in its dtype, C order) from the source
    /// pieces. Parts of the box outside the global shape (padding) are left
    /// as they are (zero in a fresh file).
    pub fn fill(&self, req: &BoxRequest, out: &mut [u8]) -> Result<()> {
        let bad = |m: String| {
            Error::Invalid(format!(
                "{}: tensor {:?}: {m}",
                self.dir.display(),
                req.name
            ))
        };
        let t = match self.by_name.get(&req.name) {
            Some(&i) => &self.layout.tensors[i],
            None => return Err(bad("not in the source checkpoint".into())),
        };
        if req.offset.len() != t.shape.len() || req.shape.len() != t.shape.len() {
            return Err(bad(format!(
                "box rank differs from the tensor's shape {:?}",
                t.shape
            )));
        }
        if out.len() as u64 != volume(&req.shape) * req.dtype.size() as u64 {
            return Err(bad(format!(
                "output buffer of {} bytes does not fit the box",
                out.len()
            )));
        }
        let want: u64 = (0..t.shape.len())
            .map(|d| {
                let hi = (req.offset[d] + req.shape[d]).min(t.shape[d]);
                hi.saturating_sub(req.offset[d])
            })
            .product();
        if t.dtype == req.dtype {
            return self.gather(t, req, out, want);
        }
        let mut buf = vec![0u8; (volume(&req.shape) * t.dtype.size() as u64) as usize];
        self.gather(t, req, &mut buf, want)?;
        convert(t.dtype, &buf, req.dtype, out).map_err(|e| bad(e.to_string()))
    }

    fn gather(
        &self,
        t: &super::layout::TensorLayout,
        req: &BoxRequest,
        buf: &mut [u8],
        want: u64,
    ) -> Result<()> {
        let bad = |m: String| {
            Error::Invalid(format!(
                "{}: tensor {:?}: {m}",
                self.dir.display(),
                req.name
            ))
        };
        let mut covered = 0u64;
        let mut seen = HashSet::new();
        for p in &t.pieces {
            // Replicated copies of the same box count once.
            if !seen.insert((&p.offset, &p.shape)) {
                continue;
            }
            let f = &self.files[&p.file];
            let info = &f.tensors()[self.index[&(p.file.clone(), p.key.clone())]];
            covered += copy_intersection(
                t.dtype.size(),
                &t.shape,
                f.data(info),
                &p.offset,
                &p.shape,
                buf,
                &req.offset,
                &req.shape,
            );
        }
        if covered != want {
            return Err(bad(format!(
                "source pieces cover {covered} of the {want} elements of box offset {:?} shape {:?} \
                 (missing or overlapping pieces in the layout)",
                req.offset, req.shape
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::safetensors::{write_file, Dtype, TensorRef};

    #[test]
    fn direct_slices_only_for_contiguous_boxes() {
        let dir = std::env::temp_dir().join(format!("mft-rs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..24).collect();
        let t = [TensorRef {
            name: "w",
            dtype: Dtype::U8,
            shape: vec![4, 6],
            data: &data,
        }];
        write_file(dir.join("a.safetensors"), &t, &[]).unwrap();
        let json = r#"{"format":"mft-checkpoint-layout","tensors":{"w":{"shape":[4,6],"dtype":"U8",
            "pieces":[{"file":"a.safetensors","offset":[0,0],"shape":[4,6]}]}}}"#;
        let src = Sources::open(&dir, Layout::from_json("l", json).unwrap()).unwrap();
        let req = |offset: Vec<u64>, shape: Vec<u64>| BoxRequest {
            name: "w".into(),
            dtype: Dtype::U8,
            offset,
            shape,
        };
        assert_eq!(
            src.contiguous(&req(vec![2, 0], vec![2, 6])).map(|c| c.2),
            Some(&data[12..24])
        );
        assert_eq!(
            src.contiguous(&req(vec![1, 2], vec![1, 3])).map(|c| c.2),
            Some(&data[8..11])
        );
        assert!(src.contiguous(&req(vec![0, 0], vec![4, 3])).is_none());
        let mut out = vec![0u8; 12];
        src.fill(&req(vec![0, 3], vec![4, 3]), &mut out).unwrap();
        assert_eq!(out, [3, 4, 5, 9, 10, 11, 15, 16, 17, 21, 22, 23]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
