//! Both real binaries as processes: the homepage over TCP (the tutorial's
//! integration test), then SIGTERM, and both exit 0.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, ChildStdout, Command, Stdio},
};

/// A child process, killed if the test fails first.
pub struct Process {
    child: Child,
    name: String,
    stdout: Option<BufReader<ChildStdout>>,
}

impl Process {
    pub fn start(binary: &std::path::Path, args: &[&str]) -> Self {
        let mut child = Command::new(binary)
            .args(args)
            .arg("--log-format=json")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let name = binary
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
        Self {
            name: format!("{name}[{}]", child.id()),
            child,
            stdout: Some(stdout),
        }
    }

    /// Reads log lines until the "serving" event and returns it. The rest
    /// of the log is then copied to the test's output (shown when the test
    /// fails), which also keeps the pipe from filling up.
    pub fn serving(&mut self) -> serde_json::Value {
        let mut stdout = self.stdout.take().expect("serving() is called once");
        let mut line = String::new();
        loop {
            line.clear();
            let read = stdout.read_line(&mut line).expect("readable stdout");
            assert!(read > 0, "the process exited before serving");
            let event: serde_json::Value = serde_json::from_str(&line).expect("JSON logs");
            if event["message"] == "serving" {
                let name = self.name.clone();
                std::thread::spawn(move || {
                    for line in stdout.lines().map_while(Result::ok) {
                        eprintln!("{name}: {line}");
                    }
                });
                return event;
            }
        }
    }

    /// SIGKILL, as a crashing node would.
    pub fn kill(&mut self) {
        self.child.kill().expect("the process can be killed");
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        self.child.wait().expect("the process ends").code()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The recommendations binary of this workspace, built if needed.
pub fn recommendations_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "recommendations",
            "--bin",
            "recommendations",
        ])
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cannot build recommendations");
    let marketplace = PathBuf::from(env!("CARGO_BIN_EXE_marketplace"));
    marketplace.with_file_name("recommendations")
}

/// Runs `binary healthcheck` with `flag` and returns whether it passed.
fn healthcheck(binary: &PathBuf, flag: &str) -> bool {
    Command::new(binary)
        .args([flag, "healthcheck"])
        .stderr(Stdio::null())
        .status()
        .expect("the binary runs")
        .success()
}

#[tokio::test]
async fn both_binaries_serve_the_homepage_and_exit_cleanly_on_sigterm() {
    let recommendations_bin = recommendations_binary();
    let marketplace_bin = PathBuf::from(env!("CARGO_BIN_EXE_marketplace"));
    let mut recommendations = Process::start(
        &recommendations_bin,
        &["--listen=127.0.0.1:0", "--admin-listen=127.0.0.1:0"],
    );
    let grpc = recommendations.serving()["grpc"]
        .as_str()
        .expect("an address")
        .to_owned();
    let (host, port) = grpc.rsplit_once(':').expect("host:port");
    let mut marketplace = Process::start(
        &marketplace_bin,
        &[
            "--listen=127.0.0.1:0",
            "--admin-listen=127.0.0.1:0",
            &format!("--recommendations-host={host}"),
            &format!("--recommendations-port={port}"),
        ],
    );
    let serving = marketplace.serving();
    let http = serving["http"].as_str().expect("an address").to_owned();
    let admin = serving["admin"].as_str().expect("an address").to_owned();

    let homepage = reqwest::get(format!("http://{http}/"))
        .await
        .expect("the homepage answers")
        .text()
        .await
        .expect("HTML");

    assert!(
        homepage.contains("<title>Online Books For You</title>"),
        "{homepage}"
    );
    // The tutorial's own assertion, word for word: `count("<li>") == 3`.
    assert_eq!(homepage.matches("<li>").count(), 3, "{homepage}");
    // The containers' health checks: the binaries' own subcommands.
    assert!(healthcheck(
        &recommendations_bin,
        &format!("--listen={grpc}")
    ));
    assert!(healthcheck(
        &marketplace_bin,
        &format!("--admin-listen={admin}")
    ));
    assert_eq!(marketplace.terminate(), Some(0));
    assert_eq!(recommendations.terminate(), Some(0));
    assert!(!healthcheck(
        &recommendations_bin,
        &format!("--listen={grpc}")
    ));
    assert!(!healthcheck(
        &marketplace_bin,
        &format!("--admin-listen={admin}")
    ));
}
