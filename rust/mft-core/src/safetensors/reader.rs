//! Memory-mapped reading: the header is parsed and validated at open, after
//! which every tensor's bytes are a bounds-checked slice of the map.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use memmap2::Mmap;

use super::header::{parse_header, Header, TensorInfo};
use super::{Error, Result};

pub struct SafetensorsFile {
    path: String,
    header: Header,
    mmap: Mmap,
    file: File,
}

impl SafetensorsFile {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path_str = path.as_ref().display().to_string();
        let io = |e: std::io::Error| Error::Io(format!("{path_str}: {e}"));
        let mut file = File::open(path.as_ref()).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut len = [0u8; 8];
        let got = read_up_to(&mut file, &mut len).map_err(io)?;
        let n = u64::from_le_bytes(len);
        if got < 8 || n > super::MAX_HEADER_BYTES || n > size.saturating_sub(8) {
            // parse_header words the error (too short / length too large).
            let e = parse_header(&path_str, &len[..got], size).err();
            return Err(
                e.unwrap_or_else(|| Error::Invalid(format!("{path_str}: bad header length {n}")))
            );
        }
        // Read the JSON with plain reads, so a bad header is refused before
        // anything is mapped.
        let mut buf = len.to_vec();
        buf.resize(8 + n as usize, 0);
        file.read_exact(&mut buf[8..]).map_err(io)?;
        let header = parse_header(&path_str, &buf, size)?;
        // SAFETY: the map is read-only; a file truncated underneath us by
        // another process is outside what any mmap reader can guard against.
        let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
        if (mmap.len() as u64) != size {
            return Err(Error::Io(format!(
                "{path_str}: file changed size while opening"
            )));
        }
        Ok(SafetensorsFile {
            path: path_str,
            header,
            mmap,
            file,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn tensors(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.header
            .tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::Invalid(format!("{}: no tensor named {name:?}", self.path)))
    }

    /// The open file, for in-kernel copies of tensor byte ranges.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Absolute file offset of a tensor's first byte.
    pub fn data_offset(&self, t: &TensorInfo) -> u64 {
        self.header.data_start + t.begin
    }

    /// Hints that every byte will be read soon and in order (resharding a
    /// whole checkpoint): fewer, larger page faults.
    pub fn advise_sequential(&self) {
        let _ = self.mmap.advise(memmap2::Advice::Sequential);
        let _ = self.mmap.advise(memmap2::Advice::WillNeed);
    }

    /// The raw little-endian bytes of one tensor (validated at open).
    pub fn data(&self, t: &TensorInfo) -> &[u8] {
        let start = (self.header.data_start + t.begin) as usize;
        let end = (self.header.data_start + t.end) as usize;
        &self.mmap[start..end]
    }
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            k => got += k,
        }
    }
    Ok(got)
}
