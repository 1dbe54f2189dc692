//! Atomic file writes: nothing a user saved is lost to a crash mid-save.
//!
//! The new contents go to a temporary file beside the target, which is
//! flushed, fsynced and renamed over the target; readers see the old file or
//! the new one, never a partial one.
//!
//! * The temporary file has one name per target, `.<name>.tmp`, so a save
//!   killed half-way (kill -9, a power cut) leaves at most one stray file,
//!   which the next save of the same target, or the next load of it
//!   ([`remove_stale`]), removes.
//! * Writers in one directory take turns: each holds an exclusive `flock` on
//!   the directory while it writes and renames, so two processes (or threads)
//!   saving the same target never rename each other's half-written files, and
//!   a temporary file found while holding the lock belongs to a dead writer.
//! * A target that is a symbolic link is written through: the file the link
//!   points to is replaced (atomically, in its own directory) and the link
//!   stays, as `open(path, "w")` would do.

// Values from Python reach this module: no index or slice may panic.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How long a writer waits for another one writing in the same directory.
const LOCK_TIMEOUT: Duration = Duration::from_secs(120);

/// Writes `path` atomically: `write` fills the temporary file `.<name>.tmp`
/// beside it (beside the link's target when `path` is a symbolic link), which
/// is flushed, fsynced and renamed over the target. On any failure the
/// temporary file is removed and the target is left as it was.
pub fn write(path: &Path, write: impl FnOnce(&mut File) -> io::Result<()>) -> Result<()> {
    let target = resolve_links(path).map_err(|e| Error::io(path, e))?;
    let mode = match fs::metadata(&target) {
        Ok(m) if m.is_dir() => {
            return Err(Error::io(
                path,
                io::Error::new(io::ErrorKind::IsADirectory, "is a directory, not a file"),
            ))
        }
        Ok(m) if !m.is_file() => {
            return Err(Error::io(
                path,
                io::Error::other("exists and is not a regular file; refusing to replace it"),
            ))
        }
        Ok(m) => Some(m.permissions()),
        Err(_) => None,
    };
    let dir = parent(&target);
    let tmp = temp_path(&target).map_err(|e| Error::io(path, e))?;
    let lock = DirLock::acquire(&dir, true).map_err(|e| Error::io(&dir, e))?;
    let result = (|| -> io::Result<()> {
        // Holding the lock, a temporary file here is a dead writer's.
        remove_if_present(&tmp)?;
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        if let Some(perm) = mode {
            // The replacement keeps the permissions of the file it replaces.
            f.set_permissions(perm)?;
        }
        write(&mut f)?;
        f.flush()?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &target)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    // Make the rename itself durable; not every platform can sync a directory.
    match &lock.dir {
        Some(d) => {
            let _ = d.sync_all();
        }
        None => {
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
        }
    }
    Ok(())
}

/// Removes the temporary file a killed save of `path` left, unless a writer
/// is at work in its directory right now. Best effort: a read-only directory
/// or any other failure leaves things as they are.
pub fn remove_stale(path: &Path) {
    let Ok(target) = resolve_links(path) else {
        return;
    };
    let Ok(tmp) = temp_path(&target) else {
        return;
    };
    if fs::symlink_metadata(&tmp).is_err() {
        return;
    }
    if let Ok(lock) = DirLock::acquire(&parent(&target), false) {
        if lock.held {
            let _ = fs::remove_file(&tmp);
        }
    }
}

/// The temporary file a save of `target` writes: `.<name>.tmp` beside it.
pub fn temp_path(target: &Path) -> io::Result<PathBuf> {
    let name = target
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    Ok(parent(target).join(tmp_name))
}

/// `path` with every symbolic link in its last component followed (the
/// directories above are the kernel's to follow). A dangling link gives the
/// path it points to, which the write then creates.
pub fn resolve_links(path: &Path) -> io::Result<PathBuf> {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = fs::read_link(&p)?;
                p = if to.is_absolute() {
                    to
                } else {
                    parent(&p).join(to)
                };
            }
            _ => return Ok(p),
        }
    }
    Err(io::Error::other("too many levels of symbolic links"))
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// An exclusive `flock` on a directory, released when dropped (or when the
/// process dies). Where directories cannot be opened or locked (some network
/// file systems), writers go on unlocked, as before.
struct DirLock {
    dir: Option<File>,
    held: bool,
}

impl DirLock {
    /// `wait`: wait (up to [`LOCK_TIMEOUT`]) for another writer to finish;
    /// otherwise return at once, `held` false when the lock is taken.
    fn acquire(dir: &Path, wait: bool) -> io::Result<DirLock> {
        let Ok(file) = File::open(dir) else {
            // The caller's own create/rename reports a missing directory.
            return Ok(DirLock {
                dir: None,
                held: false,
            });
        };
        let start = Instant::now();
        loop {
            match try_lock(&file) {
                Ok(true) => {
                    return Ok(DirLock {
                        dir: Some(file),
                        held: true,
                    })
                }
                Ok(false) if wait && start.elapsed() < LOCK_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(false) if wait => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!(
                            "another process has been writing in this directory for {} s",
                            LOCK_TIMEOUT.as_secs()
                        ),
                    ))
                }
                Ok(false) | Err(_) => {
                    return Ok(DirLock {
                        dir: Some(file),
                        held: false,
                    })
                }
            }
        }
    }
}

#[cfg(unix)]
fn try_lock(file: &File) -> io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock on a descriptor this function's caller owns.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EWOULDBLOCK) => Ok(false),
        Some(libc::EINTR) => Ok(false),
        _ => Err(e),
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> io::Result<bool> {
    Err(io::Error::other("no directory locks on this platform"))
}

impl Drop for DirLock {
    fn drop(&mut self) {
        #[cfg(unix)]
        if let (true, Some(f)) = (self.held, &self.dir) {
            use std::os::unix::io::AsRawFd;
            // SAFETY: unlocking the descriptor locked in `acquire`.
            unsafe {
                libc::flock(f.as_raw_fd(), libc::LOCK_UN);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rustrnn-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn a_stray_temporary_file_is_removed_by_the_next_save() {
        let d = tmp_dir("stray");
        let path = d.join("m.bin");
        let tmp = temp_path(&path).unwrap();
        fs::write(&tmp, b"half a file").unwrap();
        write(&path, |f| f.write_all(b"new")).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(!tmp.exists());
        fs::write(&tmp, b"half a file").unwrap();
        remove_stale(&path);
        assert!(!tmp.exists());
        fs::remove_dir_all(&d).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_is_written_through() {
        let d = tmp_dir("link");
        fs::create_dir_all(d.join("real")).unwrap();
        let real = d.join("real").join("m.bin");
        fs::write(&real, b"old").unwrap();
        let link = d.join("m.bin");
        std::os::unix::fs::symlink("real/m.bin", &link).unwrap();
        write(&link, |f| f.write_all(b"new")).unwrap();
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(fs::read(&real).unwrap(), b"new");
        assert_eq!(fs::read_dir(d.join("real")).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }
}
