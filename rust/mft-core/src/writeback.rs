//! Starting disk writeback early, so a writer's final fsync finds most of
//! its file already on the way to disk (it then waits for the tail only).

use std::fs::File;

/// Asks the kernel to start (not wait for) writeback of a byte range. A hint
/// only: failures are ignored (the final fsync reports real errors), and on
/// systems without `sync_file_range` it does nothing.
#[cfg(target_os = "linux")]
pub fn start(file: &File, offset: u64, len: u64) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: plain syscall on an open fd; no memory is passed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as i64,
            len as i64,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
pub fn start(_file: &File, _offset: u64, _len: u64) {}
