//! Changing what a running service serves without a restart: a source (the
//! catalog, the certificates) is read again on SIGHUP ([`hangups`]) and
//! whenever its files change on disk ([`watch`]), validated completely, and
//! only then swapped in. A bad change keeps what is served: it is logged
//! once, naming the file and the problem, and counted ([`ReloadMetrics`]).
//!
//! - [`hangups`]: SIGHUP means "reload", as for nginx, Prometheus and
//!   `systemctl reload`; installing the handler ends its default action,
//!   which killed the process without a drain;
//! - [`fingerprint`]: how a change on disk is noticed, whether the files are
//!   replaced by the kubelet's `..data` swap, by a rename, or edited in place;
//! - [`watch`]: the task that reloads a source on either;
//! - [`Live`]: the value served, swapped whole, kept by each user to its end;
//! - [`metrics`]: the outcome and time of each source's last reload, named
//!   as Prometheus names its own.

mod fingerprint;
mod live;
mod metrics;
mod watch;

pub use fingerprint::Fingerprint;
pub use live::Live;
pub use metrics::ReloadMetrics;
pub use watch::{Source, Watching, watch};

use tokio::sync::watch as channel;

/// Reload requests: the count of SIGHUPs received, which each source's task
/// watches. Cloning shares the count.
pub type Hangups = channel::Receiver<u64>;

/// Installs the SIGHUP handler (from now on SIGHUP no longer kills the
/// process) and returns the reload requests it makes. Call it once, at
/// start, within the runtime; with no handler (a platform without SIGHUP,
/// or one that cannot be installed, which is logged) no request ever comes.
pub fn hangups() -> Hangups {
    let (count, requests) = channel::channel(0);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::hangup()) {
            Ok(mut hangup) => {
                tokio::spawn(async move {
                    while hangup.recv().await.is_some() {
                        tracing::info!(signal = "SIGHUP", "reload requested");
                        count.send_modify(|n| *n += 1);
                    }
                });
            }
            Err(err) => tracing::error!(cause = %err, "cannot listen for SIGHUP"),
        }
    }
    #[cfg(not(unix))]
    drop(count);
    requests
}
