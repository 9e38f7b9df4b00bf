//! Start-up input the real binary refuses: a catalog over the size cap, a
//! FIFO, a device. Each stops start-up at once, before any listener is
//! bound, with an error that names the file and the problem; none hangs.

use std::{path::Path, process::Stdio, time::Duration};

use tokio::process::Command;

/// Starts the binary on `catalog` with `args`; its exit success and stderr.
async fn start(catalog: &Path, args: &[&str]) -> (bool, String) {
    let child = Command::new(env!("CARGO_BIN_EXE_recommendations"))
        .args(["--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"])
        .arg(format!("--catalog={}", catalog.display()))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("start-up ends on its own rather than hang")
        .expect("its output");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_catalog_over_the_size_cap_stops_start_up_with_its_size() {
    let catalog = service_kit::testing::numbered_catalog(1000, "mystery");
    let size = std::fs::metadata(&catalog).expect("written").len();
    let path: &Path = &catalog;

    let (ok, stderr) = start(path, &["--catalog-max-bytes=10000"]).await;

    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: {} bytes, over the limit of 10000 (see --catalog-max-bytes)",
            path.display(),
            size
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_fifo_or_a_device_as_the_catalog_stops_start_up() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let fifo = dir.path().join("books.csv");
    service_kit::testing::make_fifo(&fifo);
    let zero = dir.path().join("zero.csv");
    std::os::unix::fs::symlink("/dev/zero", &zero).expect("a symlink");

    for (path, kind) in [(&fifo, "a FIFO"), (&zero, "a character device")] {
        let (ok, stderr) = start(path, &[]).await;

        assert!(!ok, "{stderr}");
        assert!(
            stderr.contains(&format!("{}: not a regular file ({kind})", path.display())),
            "{stderr}"
        );
    }
}
