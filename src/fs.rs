//! Reading the files a user names (checkpoints, vocabularies): regular files
//! only.
//!
//! A FIFO, a socket or a character device given as a checkpoint would block
//! the read forever (or, like `/dev/zero`, never end), with the GIL released
//! and Ctrl-C ignored, since Rust's `read` retries on `EINTR`. So the file is
//! opened without blocking (`O_NONBLOCK`, which makes opening a FIFO return at
//! once), checked with `fstat` on the open descriptor (no race with a rename),
//! and anything but a regular file is refused with an `Io` error naming it.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::path::Path;

use crate::error::{Error, Result};

/// The whole contents of the regular file `path`. A directory is an
/// `IsADirectory` error, any other non-regular file an error naming its kind;
/// a stray temporary file of a killed save of `path` is removed (see
/// [`crate::atomic::remove_stale`]).
pub fn read_regular(path: &Path) -> Result<Vec<u8>> {
    let mut file = open_regular(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut bytes = Vec::new();
    usize::try_from(len)
        .ok()
        .and_then(|n| bytes.try_reserve_exact(n).ok())
        .ok_or_else(|| {
            Error::io(
                path,
                io::Error::new(
                    io::ErrorKind::OutOfMemory,
                    format!("cannot hold the file's {len} bytes in memory"),
                ),
            )
        })?;
    file.read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    crate::atomic::remove_stale(path);
    Ok(bytes)
}

/// Opens `path` for reading if it is a regular file (following links).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK);
    }
    let file = opts.open(path)?;
    let kind = file.metadata()?.file_type();
    if kind.is_file() {
        // O_NONBLOCK means nothing for a regular file's reads.
        return Ok(file);
    }
    if kind.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            "is a directory, not a file",
        ));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "not a regular file (a {}); refusing to read it",
            kind_name(&kind)
        ),
    ))
}

fn kind_name(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "FIFO";
        }
        if kind.is_socket() {
            return "socket";
        }
        if kind.is_char_device() {
            return "character device";
        }
        if kind.is_block_device() {
            return "block device";
        }
    }
    let _ = kind;
    "special file"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_without_blocking() {
        let e = read_regular(Path::new("/dev/zero")).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let e = read_regular(&std::env::temp_dir()).unwrap_err();
        assert!(
            matches!(&e, Error::Io { source, .. } if source.kind() == io::ErrorKind::IsADirectory)
        );
    }
}
