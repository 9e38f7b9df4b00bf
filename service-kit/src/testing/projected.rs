//! A directory of files updated the way the kubelet updates a mounted
//! Secret or ConfigMap (its "atomic writer"): each version is written to a
//! new hidden directory, `..data` is a symlink to the current one, swapped
//! by a rename, and each file is a symlink through `..data`. Readers never
//! see half a version; a file's path stays the same across versions.

use std::path::{Path, PathBuf};

/// A temp directory of files, swapped whole as the kubelet swaps them.
pub struct ProjectedDir {
    dir: tempfile::TempDir,
    version: u32,
}

impl ProjectedDir {
    /// A directory holding `files` (name, content).
    pub fn new(files: &[(&str, &str)]) -> Self {
        let mut projected = Self {
            dir: tempfile::tempdir().expect("a temp dir"),
            version: 0,
        };
        projected.update(files);
        projected
    }

    /// The path of the file `name`, the same in every version.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Makes `files` the current version, at once: a new version directory,
    /// then the `..data` symlink swapped by a rename, then the old version
    /// removed. Files of the old version not in `files` disappear.
    pub fn update(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let root = self.dir.path();
        let version = format!("..version_{}", self.version);
        std::fs::create_dir(root.join(&version)).expect("a new version directory");
        for (name, content) in files {
            std::fs::write(root.join(&version).join(name), content).expect("written");
            let link = root.join(name);
            if std::fs::symlink_metadata(&link).is_err() {
                symlink(&Path::new("..data").join(name), &link);
            }
        }
        let next = root.join("..data_tmp");
        symlink(Path::new(&version), &next);
        std::fs::rename(&next, root.join("..data")).expect("..data swapped");
        if self.version > 1 {
            let old = root.join(format!("..version_{}", self.version - 1));
            std::fs::remove_dir_all(old).expect("the old version removed");
        }
    }
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("a symlink");
}
