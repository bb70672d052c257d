//! Writing: header JSON (names sorted, `__metadata__` first, padded with
//! spaces to 8 bytes so tensor data stays aligned), then the tensor bytes,
//! all into `<path>.tmp` which is fsynced and renamed over `path`.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

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

pub fn write_file(
    path: impl AsRef<Path>,
    tensors: &[TensorRef],
    metadata: &[(String, String)],
) -> Result<()> {
    let path = path.as_ref();
    let path_str = path.display().to_string();
    let header = build_header(&path_str, tensors, metadata)?;

    let mut order: Vec<&TensorRef> = tensors.iter().collect();
    order.sort_by(|a, b| a.name.cmp(b.name));

    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let io = |e: std::io::Error| Error::Io(format!("{path_str}: {e}"));
    let result = (|| -> std::io::Result<()> {
        let mut w = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for t in &order {
            w.write_all(t.data)?;
        }
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

/// The padded header JSON, checking names, dtypes and byte lengths first.
fn build_header(
    path: &str,
    tensors: &[TensorRef],
    metadata: &[(String, String)],
) -> Result<String> {
    let bad = |name: &str, m: String| Error::Invalid(format!("{path}: tensor {name:?}: {m}"));
    let mut seen = HashSet::new();
    for t in tensors {
        if t.name == "__metadata__" {
            return Err(bad(t.name, "this name is reserved for metadata".into()));
        }
        if !seen.insert(t.name) {
            return Err(bad(t.name, "name given twice".into()));
        }
        let want = byte_len(t.dtype, &t.shape)
            .ok_or_else(|| bad(t.name, format!("shape {:?} overflows", t.shape)))?;
        if want != t.data.len() as u64 {
            return Err(bad(
                t.name,
                format!(
                    "{} bytes given but dtype {} x shape {:?} needs {want}",
                    t.data.len(),
                    t.dtype.name(),
                    t.shape
                ),
            ));
        }
    }
    let mut order: Vec<&TensorRef> = tensors.iter().collect();
    order.sort_by(|a, b| a.name.cmp(b.name));

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
    let mut offset = 0u64;
    for t in order {
        sep(&mut out);
        push_str(&mut out, t.name);
        out.push_str(":{\"dtype\":");
        push_str(&mut out, t.dtype.name());
        out.push_str(",\"shape\":");
        push_u64_list(&mut out, &t.shape);
        out.push_str(",\"data_offsets\":");
        let end = offset + t.data.len() as u64;
        push_u64_list(&mut out, &[offset, end]);
        out.push('}');
        offset = end;
    }
    out.push('}');
    while out.len() % 8 != 0 {
        out.push(' ');
    }
    Ok(out)
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
        assert!(!dir.join("x.safetensors.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
