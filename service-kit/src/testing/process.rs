//! A service binary as a child process, the way an operator runs it: its
//! JSON log read up to the "serving" event (which names the bound
//! addresses), SIGTERM or SIGKILL on demand, and killed if the test ends
//! first, pass or fail.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
    sync::{Arc, Mutex},
};

/// The most log lines kept for [`Process::log`]; later ones are only
/// shown.
const MAX_KEPT_LINES: usize = 10_000;

/// A child process, killed when dropped.
#[derive(Debug)]
pub struct Process {
    child: Child,
    name: String,
    stdout: Option<BufReader<ChildStdout>>,
    /// The "serving" event, once read.
    served: Option<serde_json::Value>,
    log: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl Process {
    /// Starts `binary` with `args` and `--log-format=json`.
    pub fn start(binary: &Path, args: &[&str]) -> Self {
        Self::start_with_env(binary, args, &[])
    }

    /// [`Process::start`], with `env` added to the environment.
    pub fn start_with_env(binary: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(binary)
            .args(args)
            .arg("--log-format=json")
            .envs(env.iter().copied())
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
            served: None,
            log: Arc::default(),
        }
    }

    /// The log events written, those before "serving" included (the first
    /// [`MAX_KEPT_LINES`]), as JSON.
    pub fn log(&self) -> Vec<serde_json::Value> {
        self.log.lock().expect("not poisoned").clone()
    }

    /// Reads log lines until the "serving" event and returns it. The rest
    /// of the log is then copied to the test's output (shown when the test
    /// fails), which also keeps the pipe from filling up, and kept for
    /// [`Process::log`].
    pub fn serving(&mut self) -> serde_json::Value {
        let mut stdout = self.stdout.take().expect("serving() is called once");
        let mut line = String::new();
        loop {
            line.clear();
            let read = stdout.read_line(&mut line).expect("readable stdout");
            assert!(read > 0, "{} exited before serving", self.name);
            let event: serde_json::Value = serde_json::from_str(&line).expect("JSON logs");
            eprintln!("{}: {}", self.name, line.trim_end());
            {
                let mut log = self.log.lock().expect("not poisoned");
                if log.len() < MAX_KEPT_LINES {
                    log.push(event.clone());
                }
            }
            if event["message"] == "serving" {
                let name = self.name.clone();
                let log = self.log.clone();
                std::thread::spawn(move || {
                    for line in stdout.lines().map_while(Result::ok) {
                        eprintln!("{name}: {line}");
                        let mut log = log.lock().expect("not poisoned");
                        if log.len() < MAX_KEPT_LINES
                            && let Ok(event) = serde_json::from_str(&line)
                        {
                            log.push(event);
                        }
                    }
                });
                self.served = Some(event.clone());
                return event;
            }
        }
    }

    /// The address of the listener `name` ("http", "grpc", "admin") from
    /// the "serving" event.
    pub fn address(serving: &serde_json::Value, name: &str) -> String {
        serving[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} address in {serving}"))
            .to_owned()
    }

    /// The address of the listener `name`, as [`Process::address`] reads
    /// it from the "serving" event [`Process::serving`] returned.
    pub fn listener(&self, name: &str) -> String {
        let served = self.served.as_ref().expect("serving() was called");
        Self::address(served, name)
    }

    /// SIGKILL, as a crashing node would.
    pub fn kill(&mut self) {
        self.child.kill().expect("the process can be killed");
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        self.signal("TERM");
        self.child.wait().expect("the process ends").code()
    }

    /// Sends SIGHUP: "reload".
    pub fn hangup(&self) {
        self.signal("HUP");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name}");
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
