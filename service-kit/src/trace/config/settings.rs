//! The `OTEL_*` variables as clap reads them: one flag per variable, its
//! text kept as it came, so that the flag and the variable are read the
//! same way, by the specification's rules ([`super::OtelConfig`]), and a
//! value the specification says to ignore with a warning never stops clap.

use std::collections::BTreeMap;

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches};

use super::variables::{VARIABLES, flag};

/// The `OTEL_*` settings given, by variable name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceSettings {
    values: BTreeMap<&'static str, String>,
}

impl TraceSettings {
    /// The value of the variable `name`, when it is set and not empty (the
    /// specification reads an empty value as unset).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// Settings of `pairs` (variable, value), for tests.
    pub fn of(pairs: &[(&str, &str)]) -> Self {
        let mut values = BTreeMap::new();
        for (name, value) in pairs {
            if let Some(variable) = VARIABLES.iter().find(|v| v.name == *name) {
                values.insert(variable.name, (*value).to_owned());
            }
        }
        Self { values }
    }
}

impl FromArgMatches for TraceSettings {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut settings = Self::default();
        settings.update_from_arg_matches(matches)?;
        Ok(settings)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        for variable in VARIABLES {
            if let Some(value) = matches.get_one::<String>(variable.name) {
                self.values.insert(variable.name, value.clone());
            }
        }
        Ok(())
    }
}

impl Args for TraceSettings {
    fn augment_args(command: Command) -> Command {
        VARIABLES.iter().fold(command, |command, variable| {
            command.arg(
                Arg::new(variable.name)
                    .long(flag(variable.name))
                    .env(variable.name)
                    .value_name("VALUE")
                    .action(ArgAction::Set)
                    .help(format!("{} ({})", variable.help, variable.values))
                    .help_heading("OpenTelemetry (docs/operations.md#opentelemetry-variables)"),
            )
        })
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        trace: TraceSettings,
    }

    #[test]
    fn each_variable_is_a_flag_that_keeps_its_text() {
        let cli = Cli::try_parse_from([
            "test",
            "--otel-bsp-schedule-delay=500",
            "--otel-exporter-otlp-headers=a=b%20c",
            "--otel-sdk-disabled=",
        ])
        .expect("any text parses");

        assert_eq!(cli.trace.get("OTEL_BSP_SCHEDULE_DELAY"), Some("500"));
        assert_eq!(cli.trace.get("OTEL_EXPORTER_OTLP_HEADERS"), Some("a=b%20c"));
        assert_eq!(cli.trace.get("OTEL_SDK_DISABLED"), None, "empty is unset");
        assert_eq!(cli.trace.get("OTEL_SERVICE_NAME"), None);
    }
}
