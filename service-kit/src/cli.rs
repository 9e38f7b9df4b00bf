//! Every service's command line: its settings, each a flag that is also an
//! environment variable, and one command besides serving, `healthcheck`.
//!
//! A service declares its settings (a clap `Args` struct that flattens
//! [`crate::lifecycle::ServiceSettings`] and its listener's limits) and says
//! who it is with [`ServiceArgs`]; `Cli<Settings>` is then its whole command
//! line, and [`main`] can be its whole `main`.

use std::{future::Future, process::ExitCode, time::Duration};

use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::{admin, lifecycle::ServiceSettings, runtime, telemetry};

/// A service's command line. Without a command, the service serves.
#[derive(Debug, Parser)]
pub struct Cli<S: Args> {
    /// What to do; without a command, serve.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The service's settings (the health check reads them too, to find the
    /// service it checks).
    #[command(flatten)]
    pub settings: S,
}

/// The commands besides serving.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Exit 0 if the service these settings describe, running on this host,
    /// reports itself healthy, 1 otherwise (each service says how it asks:
    /// [`ServiceArgs::HEALTHCHECK`]).
    Healthcheck,
}

/// What a service's settings say of the service, for its command line.
pub trait ServiceArgs: Args {
    /// The binary's name.
    const NAME: &'static str;
    /// The binary's version: its crate's `CARGO_PKG_VERSION`.
    const VERSION: &'static str;
    /// What the service is, the first paragraph of `--help`.
    const ABOUT: &'static str;
    /// What `healthcheck` asks of the running service, for `--help`: "Exit
    /// 0 if ..., 1 otherwise".
    const HEALTHCHECK: &'static str;
    /// The prefix of the environment variables of the settings every
    /// service shares (`MARKETPLACE` makes `MARKETPLACE_DRAIN_TIMEOUT`).
    const ENV_PREFIX: &'static str;

    /// `command` with the variables of the shared settings groups this
    /// service flattens named with [`Self::ENV_PREFIX`], by
    /// [`crate::limits::with_env_prefix`] for each group.
    fn with_env_prefix(command: clap::Command) -> clap::Command;
}

impl<S: ServiceArgs> Cli<S> {
    /// The command line as `--help` shows it and as it parses.
    pub fn command_with_env() -> clap::Command {
        S::with_env_prefix(
            Self::command()
                .name(S::NAME)
                .bin_name(S::NAME)
                .version(S::VERSION)
                .about(S::ABOUT)
                .long_about(None)
                .mut_subcommand("healthcheck", |command| command.about(S::HEALTHCHECK)),
        )
    }

    /// Parses the process's arguments and environment; exits with a usage
    /// message on an invalid one.
    pub fn from_env() -> Self {
        let matches = Self::command_with_env().get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|err| err.exit())
    }

    /// Parses `args` (the binary's name first) and the environment.
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::command_with_env().try_get_matches_from(args)?;
        Self::from_arg_matches(&matches)
    }
}

/// The whole `main` of a service that needs nothing else: parses its
/// command line, starts the runtime its [`ServiceSettings`] (found in its
/// settings by `common`) ask for, then either serves (logs and traces set
/// up, `serve` run with the settings, spans flushed at the end) or, for
/// `healthcheck`, asks `probe_path` of the admin listener. The exit code
/// says how it ended, the error logged.
pub fn main<S, const P: u16, Fut>(
    common: fn(&S) -> &ServiceSettings<P>,
    probe_path: &'static str,
    serve: impl FnOnce(S) -> Fut,
) -> ExitCode
where
    S: ServiceArgs,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let cli = Cli::<S>::from_env();
    let settings = common(&cli.settings).clone();
    let result = runtime::run(settings.worker_threads, None, async move {
        if cli.command == Some(Command::Healthcheck) {
            let admin = admin::local_probe_address(settings.admin_listen);
            return admin::probe(admin, probe_path, Duration::from_secs(3)).await;
        }
        let tracing = telemetry::init(settings.log_format, &settings.trace, S::NAME)?;
        let result = serve(cli.settings).await;
        tracing.shutdown().await;
        result
    });
    telemetry::exit_code(S::NAME, result)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::limits::with_env_prefix;

    /// A service of one setting of its own and the shared ones.
    #[derive(Args, Debug)]
    struct Settings {
        /// Where it listens.
        #[arg(long, env = "EXAMPLE_LISTEN", default_value = "127.0.0.1:7000")]
        listen: SocketAddr,
        #[command(flatten)]
        service: ServiceSettings<7001>,
    }

    impl ServiceArgs for Settings {
        const NAME: &'static str = "example";
        const VERSION: &'static str = "1.2.3";
        const ABOUT: &'static str = "An example service.";
        const HEALTHCHECK: &'static str = "Exit 0 if it answers.";
        const ENV_PREFIX: &'static str = "EXAMPLE";

        fn with_env_prefix(command: clap::Command) -> clap::Command {
            with_env_prefix::<ServiceSettings<7001>>(command, Self::ENV_PREFIX)
        }
    }

    #[test]
    fn the_command_line_is_the_services() {
        let command = Cli::<Settings>::command_with_env();
        command.clone().debug_assert();

        assert_eq!(command.get_name(), "example");
        assert_eq!(command.get_version(), Some("1.2.3"));
        assert_eq!(
            command.get_about().map(ToString::to_string).as_deref(),
            Some("An example service.")
        );
        let envs: Vec<String> = command
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .collect();
        assert!(envs.contains(&"EXAMPLE_LISTEN".to_owned()), "{envs:?}");
        assert!(
            envs.contains(&"EXAMPLE_DRAIN_TIMEOUT".to_owned()),
            "{envs:?}"
        );
        assert!(!envs.contains(&"DRAIN_TIMEOUT".to_owned()), "{envs:?}");
        let healthcheck = command
            .find_subcommand("healthcheck")
            .and_then(clap::Command::get_about)
            .map(ToString::to_string);
        assert_eq!(healthcheck.as_deref(), Some("Exit 0 if it answers."));
    }

    #[test]
    fn healthcheck_reads_the_same_settings() {
        let cli = Cli::<Settings>::try_parse_args([
            "example",
            "--listen=127.0.0.1:6000",
            "--drain-timeout=3s",
            "healthcheck",
        ])
        .expect("parses");

        assert_eq!(cli.command, Some(Command::Healthcheck));
        assert_eq!(cli.settings.listen.port(), 6000);
        assert_eq!(cli.settings.service.drain_timeout.as_secs(), 3);
    }

    #[test]
    fn without_a_command_it_serves() {
        let cli = Cli::<Settings>::try_parse_args(["example"]).expect("parses");

        assert_eq!(cli.command, None);
        assert_eq!(cli.settings.service.admin_listen.port(), 7001);
    }

    #[test]
    fn an_invalid_setting_is_refused_naming_it() {
        let err = Cli::<Settings>::try_parse_args(["example", "--listen=nowhere"])
            .expect_err("not an address");

        assert!(err.to_string().contains("--listen"), "{err}");
    }
}
