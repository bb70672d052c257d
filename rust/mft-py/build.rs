//! Builds the C++ kernels (`csrc/`, via the top-level CMakeLists.txt) and
//! drops the resulting `_kernels` extension into `python/mft/`, so the one
//! wheel maturin packs carries Rust and C++ alike.
//!
//! maturin does not run CMake itself; cargo runs this script before
//! compiling the crate, and maturin packs `python/` afterwards.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../..");
    let root = root.canonicalize().expect("repository root");
    for watched in ["CMakeLists.txt", "csrc", "ascend_kernels"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-env-changed=MFT_CMAKE");

    let python = find_python();
    let cmake = find_cmake(&python);
    let pybind11_dir = python_output(&python, "import pybind11; print(pybind11.get_cmake_dir())")
        .unwrap_or_else(|| {
            fail("pybind11 is not importable by the build's Python; `pip install pybind11`")
        });

    let build_dir = PathBuf::from(env::var("OUT_DIR").unwrap()).join("cmake-build");
    std::fs::create_dir_all(&build_dir).unwrap();
    let dest = root.join("python").join("mft");

    run(Command::new(&cmake)
        .arg("-S")
        .arg(&root)
        .arg("-B")
        .arg(&build_dir)
        .arg("-DCMAKE_BUILD_TYPE=Release")
        .arg(format!("-Dpybind11_DIR={pybind11_dir}"))
        .arg(format!("-DPython_EXECUTABLE={python}"))
        .arg(format!("-DMFT_KERNEL_OUTPUT_DIR={}", dest.display())));
    let jobs = env::var("NUM_JOBS").unwrap_or_else(|_| "2".into());
    run(Command::new(&cmake)
        .arg("--build")
        .arg(&build_dir)
        .arg("--parallel")
        .arg(jobs));
}

fn find_python() -> String {
    for var in ["PYO3_PYTHON", "PYTHON_SYS_EXECUTABLE"] {
        if let Ok(p) = env::var(var) {
            if !p.is_empty() {
                return p;
            }
        }
    }
    "python3".to_string()
}

/// cmake from $MFT_CMAKE, next to the Python (a venv with the PyPI `cmake`),
/// from the `cmake` Python package, or on PATH — in that order.
fn find_cmake(python: &str) -> String {
    if let Ok(c) = env::var("MFT_CMAKE") {
        return c;
    }
    if let Some(dir) = Path::new(python).parent() {
        let beside = dir.join("cmake");
        if beside.is_file() {
            return beside.display().to_string();
        }
    }
    if let Some(bin) = python_output(
        python,
        "import cmake, os; print(os.path.join(cmake.CMAKE_BIN_DIR, 'cmake'))",
    ) {
        if Path::new(&bin).is_file() {
            return bin;
        }
    }
    "cmake".to_string()
}

fn python_output(python: &str, code: &str) -> Option<String> {
    let out = Command::new(python).arg("-c").arg(code).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn run(cmd: &mut Command) {
    let status = cmd
        .status()
        .unwrap_or_else(|e| fail(&format!("could not start {cmd:?}: {e}")));
    if !status.success() {
        fail(&format!("{cmd:?} failed with {status}"));
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("mft build: {msg}");
    std::process::exit(1);
}
