//! Reading files named by settings without trusting them: only a regular
//! file is read (a FIFO would block forever, a device might never end), it
//! is opened without blocking (so that opening a FIFO does not wait for a
//! writer), and no more than a size cap is read, even from a file that
//! grows while it is read.

use std::{
    fs::{File, FileType, OpenOptions},
    io::{self, Read},
    os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _},
    path::Path,
};

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// It cannot be opened or read.
    #[error("cannot read it: {0}")]
    Io(#[from] io::Error),
    /// A FIFO, a device, a directory: nothing that is sure to end.
    #[error("not a regular file ({0})")]
    NotAFile(&'static str),
    /// Larger than the cap.
    #[error("{size} bytes, over the limit of {max}{hint}")]
    TooLarge {
        /// Its size, or what was read of it before it passed the cap.
        size: u64,
        /// The cap.
        max: u64,
        /// Where the cap is set, e.g. " (see --catalog-max-bytes)".
        hint: &'static str,
    },
}

impl FileError {
    /// The error inside an I/O error from [`Capped`], or the I/O error.
    pub fn from_read(err: io::Error) -> Self {
        if err
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<FileError>().is_some())
        {
            match err.into_inner().map(|inner| inner.downcast::<FileError>()) {
                Some(Ok(file_error)) => *file_error,
                Some(Err(other)) => FileError::Io(io::Error::other(other)),
                None => FileError::Io(io::Error::other("an I/O error without a cause")),
            }
        } else {
            FileError::Io(err)
        }
    }
}

/// `path` opened for reading, if it is a regular file of at most
/// `max_bytes`; reads from it fail past `max_bytes`. `hint` ends the
/// too-large message (where the cap is set).
pub fn open_regular(path: &Path, max_bytes: u64, hint: &'static str) -> Result<Capped, FileError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let metadata = file.metadata()?;
    if !metadata.is_file() {
        return Err(FileError::NotAFile(kind(metadata.file_type())));
    }
    if metadata.len() > max_bytes {
        return Err(FileError::TooLarge {
            size: metadata.len(),
            max: max_bytes,
            hint,
        });
    }
    Ok(Capped {
        inner: file,
        left: max_bytes,
        max: max_bytes,
        hint,
    })
}

/// The whole of `path` as text, under the rules of [`open_regular`].
pub fn read_to_string(
    path: &Path,
    max_bytes: u64,
    hint: &'static str,
) -> Result<String, FileError> {
    let mut text = String::new();
    open_regular(path, max_bytes, hint)?
        .read_to_string(&mut text)
        .map_err(FileError::from_read)?;
    Ok(text)
}

fn kind(kind: FileType) -> &'static str {
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// A file read to at most `max` bytes: one that grows past the cap while it
/// is read fails (with a [`FileError::TooLarge`] inside the I/O error)
/// rather than being cut short, which could parse.
#[derive(Debug)]
pub struct Capped {
    inner: File,
    left: u64,
    max: u64,
    hint: &'static str,
}

impl Read for Capped {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte more than is left, to tell "at the cap" from "past it".
        let want = usize::try_from(self.left.saturating_add(1))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let read = self.inner.read(&mut buf[..want])?;
        match self.left.checked_sub(read as u64) {
            Some(left) => {
                self.left = left;
                Ok(read)
            }
            None => Err(io::Error::other(FileError::TooLarge {
                size: self.max.saturating_add(1),
                max: self.max,
                hint: self.hint,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(path: &Path, max_bytes: u64) -> String {
        match read_to_string(path, max_bytes, " (see --cap)") {
            Ok(text) => panic!("expected an error, read {} bytes", text.len()),
            Err(err) => err.to_string(),
        }
    }

    #[test]
    fn what_is_not_a_regular_file_is_refused_without_reading_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).expect("a symlink");

        // Opening a FIFO for reading would wait for a writer: this returns.
        assert_eq!(error(&fifo, u64::MAX), "not a regular file (a FIFO)");
        assert_eq!(
            error(&zero, u64::MAX),
            "not a regular file (a character device)"
        );
        assert_eq!(
            error(dir.path(), u64::MAX),
            "not a regular file (a directory)"
        );
    }

    #[test]
    fn a_file_over_the_cap_is_refused_and_one_at_the_cap_is_read() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("file");
        std::fs::write(&path, "0123456789").expect("written");

        assert_eq!(error(&path, 9), "10 bytes, over the limit of 9 (see --cap)");
        let text = read_to_string(&path, 10, "").expect("at the cap");
        assert_eq!(text, "0123456789");
    }

    #[test]
    fn a_file_that_grows_past_the_cap_while_read_fails() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("file");
        std::fs::write(&path, "0123456789").expect("written");
        // As if the file had been 4 bytes long when it was checked.
        let mut capped = Capped {
            inner: File::open(&path).expect("opens"),
            left: 4,
            max: 4,
            hint: "",
        };

        let mut read = Vec::new();
        let err = capped.read_to_end(&mut read).expect_err("past the cap");

        assert_eq!(
            FileError::from_read(err).to_string(),
            "5 bytes, over the limit of 4"
        );
    }
}
