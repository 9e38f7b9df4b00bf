//! Noticing that a source's files changed, by what `stat` says of each
//! (through symbolic links): its size, modification time and inode. The
//! kubelet updates a mounted Secret or ConfigMap by writing a new directory
//! and swapping the `..data` link, so the files reached through it change
//! inode; `mv` over a file does the same; an edit in place changes its size
//! or its modification time. Reading the metadata of a few files every few
//! seconds costs nothing worth counting, and needs no inotify, which does
//! not see a swapped symbolic link's target change.

use std::{path::PathBuf, time::SystemTime};

/// What `stat` says of one file, or that it could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FileState {
    Seen {
        len: u64,
        modified: Option<SystemTime>,
        inode: u64,
    },
    Unreadable(std::io::ErrorKind),
}

/// The state of a source's files; two fingerprints that differ mean the
/// source changed on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fingerprint(Vec<FileState>);

impl Fingerprint {
    /// The fingerprint of `paths` now.
    pub fn of(paths: &[PathBuf]) -> Self {
        Self(paths.iter().map(|path| state(path)).collect())
    }
}

fn state(path: &std::path::Path) -> FileState {
    match std::fs::metadata(path) {
        Ok(metadata) => FileState::Seen {
            len: metadata.len(),
            modified: metadata.modified().ok(),
            inode: inode(&metadata),
        },
        Err(err) => FileState::Unreadable(err.kind()),
    }
}

#[cfg(unix)]
fn inode(metadata: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(metadata)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_an_edit_in_place_and_a_swapped_link_each_change_it() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let file = dir.path().join("books.csv");
        std::fs::write(&file, "one").expect("written");
        let paths = [file.clone()];
        let first = Fingerprint::of(&paths);
        assert_eq!(Fingerprint::of(&paths), first, "nothing changed");

        // Replaced by a rename: a new inode.
        let next = dir.path().join("next");
        std::fs::write(&next, "one").expect("written");
        std::fs::rename(&next, &file).expect("renamed");
        let renamed = Fingerprint::of(&paths);
        assert_ne!(renamed, first);

        // Edited in place: a new size.
        std::fs::write(&file, "one more").expect("written");
        let edited = Fingerprint::of(&paths);
        assert_ne!(edited, renamed);

        // Reached through a link that is swapped, as the kubelet does.
        #[cfg(unix)]
        {
            let v1 = dir.path().join("v1");
            let v2 = dir.path().join("v2");
            std::fs::create_dir(&v1).expect("a dir");
            std::fs::create_dir(&v2).expect("a dir");
            std::fs::write(v1.join("books.csv"), "same").expect("written");
            std::fs::write(v2.join("books.csv"), "same").expect("written");
            let data = dir.path().join("..data");
            std::os::unix::fs::symlink("v1", &data).expect("linked");
            let through = [data.join("books.csv")];
            let before = Fingerprint::of(&through);
            let swap = dir.path().join("..data_tmp");
            std::os::unix::fs::symlink("v2", &swap).expect("linked");
            std::fs::rename(&swap, &data).expect("swapped");
            assert_ne!(
                Fingerprint::of(&through),
                before,
                "the link now reaches another file"
            );
        }
    }

    #[test]
    fn a_missing_file_is_a_state_of_its_own() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let paths = [dir.path().join("missing")];
        let missing = Fingerprint::of(&paths);

        std::fs::write(&paths[0], "here").expect("written");

        assert_ne!(Fingerprint::of(&paths), missing);
    }
}
