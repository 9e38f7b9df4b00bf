//! The task that keeps one source current: on each SIGHUP, and whenever its
//! files' [`Fingerprint`] changes, it loads the source again (on a blocking
//! thread: loading reads and validates whole files) and hands a good load
//! to the service; a bad one is logged and counted, and what is served
//! stays. A file caught half-written fails once and is loaded when the
//! writer's last change shows.

use std::{path::PathBuf, sync::Arc, time::Duration};

use super::{Fingerprint, Hangups, ReloadMetrics};

/// A source a service reloads.
pub struct Source<T> {
    /// Its name, as the logs and the metrics' `source` label say it.
    pub name: &'static str,
    /// The files it is read from: a change to any is a change to it.
    pub paths: Vec<PathBuf>,
    /// Reads and validates it completely; the error names the file and the
    /// problem.
    pub load: Arc<dyn Fn() -> anyhow::Result<T> + Send + Sync>,
}

/// The reload task of [`watch`]: it stops when this is dropped (with the
/// service that holds it).
#[derive(Debug)]
pub struct Watching(tokio::task::JoinHandle<()>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reloads `source` on each SIGHUP of `hangups` and, checked every
/// `interval`, whenever its files change; each good load goes to `apply`.
/// Counts and logs each reload in `metrics`; runs until the returned
/// [`Watching`] is dropped. Must be called within the runtime.
pub fn watch<T: Send + 'static>(
    source: Source<T>,
    interval: Duration,
    hangups: Hangups,
    metrics: ReloadMetrics,
    apply: impl Fn(T) + Send + 'static,
) -> Watching {
    let mut hangups = Some(hangups);
    let mut seen = Fingerprint::of(&source.paths);
    Watching(tokio::spawn(async move {
        loop {
            let requested = tokio::select! {
                changed = hangup(&mut hangups) => changed,
                () = tokio::time::sleep(interval) => false,
            };
            let now = Fingerprint::of(&source.paths);
            if !requested && now == seen {
                continue;
            }
            seen = now;
            let load = source.load.clone();
            let loaded = match tokio::task::spawn_blocking(move || load()).await {
                Ok(loaded) => loaded,
                Err(err) => Err(anyhow::anyhow!("the loader failed: {err}")),
            };
            match loaded {
                Ok(value) => {
                    apply(value);
                    metrics.succeeded(source.name);
                    tracing::info!(source = source.name, requested, "reloaded");
                }
                Err(err) => {
                    metrics.failed(source.name);
                    tracing::error!(
                        source = source.name,
                        cause = format!("{err:#}"),
                        "reload failed; still serving what was loaded before"
                    );
                }
            }
        }
    }))
}

/// Resolves with `true` on the next SIGHUP; never, once there can be none.
async fn hangup(hangups: &mut Option<Hangups>) -> bool {
    if let Some(requests) = hangups {
        if requests.changed().await.is_ok() {
            return true;
        }
        *hangups = None;
    }
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use prometheus_client::registry::Registry;

    use super::*;
    use crate::metrics::encode;

    /// A source that reads `path` as a number; anything else is an error.
    fn number_in(path: PathBuf) -> Source<u32> {
        let read = path.clone();
        Source {
            name: "number",
            paths: vec![path],
            load: Arc::new(move || {
                let text = std::fs::read_to_string(&read)?;
                Ok(text.trim().parse::<u32>()?)
            }),
        }
    }

    /// Replaces `path`'s content at once, as a rename does.
    fn replace(path: &std::path::Path, text: &str) {
        let next = path.with_extension("next");
        std::fs::write(&next, text).expect("written");
        std::fs::rename(&next, path).expect("renamed");
    }

    async fn until(mut condition: impl FnMut() -> bool) -> bool {
        for _ in 0..200 {
            if condition() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_change_on_disk_is_applied_a_bad_one_kept_out_and_counted() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("number");
        std::fs::write(&path, "1").expect("written");
        let applied = Arc::new(Mutex::new(Vec::new()));
        let (_keep, hangups) = tokio::sync::watch::channel(0);
        let mut registry = Registry::default();
        let metrics = ReloadMetrics::register(&mut registry, "test");
        let seen = applied.clone();
        let _watching = watch(
            number_in(path.clone()),
            Duration::from_millis(20),
            hangups,
            metrics,
            move |n| seen.lock().expect("not poisoned").push(n),
        );

        replace(&path, "not a number at all");
        let failures = "test_reload_failures_total{source=\"number\"} 1";
        assert!(until(|| encode(&registry).expect("encodes").contains(failures)).await);
        assert!(applied.lock().expect("not poisoned").is_empty(), "kept out");
        replace(&path, "2");
        assert!(until(|| applied.lock().expect("not poisoned").as_slice() == [2]).await);

        let text = encode(&registry).expect("encodes");
        assert!(
            text.contains("test_last_reload_successful{source=\"number\"} 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_hangup_reloads_even_when_nothing_changed() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("number");
        std::fs::write(&path, "7").expect("written");
        let applied = Arc::new(Mutex::new(Vec::new()));
        let (hangup, hangups) = tokio::sync::watch::channel(0);
        let seen = applied.clone();
        let _watching = watch(
            number_in(path),
            Duration::from_secs(3600),
            hangups,
            ReloadMetrics::default(),
            move |n| seen.lock().expect("not poisoned").push(n),
        );

        hangup.send_modify(|n| *n += 1);

        assert!(until(|| applied.lock().expect("not poisoned").as_slice() == [7]).await);
    }
}
