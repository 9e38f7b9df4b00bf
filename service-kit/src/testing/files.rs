//! Files the services read, written for tests: catalogs, hosts files, and
//! FIFOs that would block a reader forever.

use std::{
    fmt::Display,
    io::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
};

/// A CSV catalog in a temp file (removed on drop): the header, then
/// `rows`, each `id,title,author,category`.
pub fn csv_catalog<R: Display>(rows: impl IntoIterator<Item = R>) -> tempfile::TempPath {
    let mut file = tempfile::Builder::new()
        .suffix(".csv")
        .tempfile()
        .expect("a temp file");
    let mut out = std::io::BufWriter::new(file.as_file_mut());
    writeln!(out, "id,title,author,category").expect("write");
    for row in rows {
        writeln!(out, "{row}").expect("write");
    }
    out.flush().expect("write");
    drop(out);
    file.into_temp_path()
}

/// A CSV catalog of `count` books of `category`, ids 1..=count, titled
/// "Book number {id}".
pub fn numbered_catalog(count: usize, category: &str) -> tempfile::TempPath {
    csv_catalog((1..=count).map(|id| format!("{id},Book number {id},Author {id},{category}")))
}

/// Writes a hosts(5) file at `path` in which `name` stands for the IP
/// address of each of `replicas` (and `localhost` for 127.0.0.1). It is
/// written beside and renamed into place, so that a reader never sees half
/// of it.
pub fn write_hosts(path: &Path, name: &str, replicas: impl IntoIterator<Item = SocketAddr>) {
    let mut text = String::from("127.0.0.1 localhost\n");
    for addr in replicas {
        text.push_str(&format!("{} {name}\n", addr.ip()));
    }
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).expect("a writable temp dir");
    std::fs::rename(&temporary, path).expect("rename in place");
}

/// A temp dir with a hosts file in it, for [`write_hosts`].
#[derive(Debug)]
pub struct HostsFile {
    dir: tempfile::TempDir,
}

impl HostsFile {
    /// A hosts file in which `name` stands for `replicas`.
    pub fn new(name: &str, replicas: impl IntoIterator<Item = SocketAddr>) -> Self {
        let hosts = Self {
            dir: tempfile::tempdir().expect("a temp dir"),
        };
        hosts.write(name, replicas);
        hosts
    }

    /// Rewrites it: `name` now stands for `replicas`.
    pub fn write(&self, name: &str, replicas: impl IntoIterator<Item = SocketAddr>) {
        write_hosts(&self.path(), name, replicas);
    }

    /// Its path.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("hosts")
    }
}

/// Makes a FIFO (named pipe) at `path`, as an input that would block a
/// reader forever.
pub fn make_fifo(path: &Path) {
    let made = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", path.display());
}
