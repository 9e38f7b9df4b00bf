//! Reading a variable's text by the rules of the specification's
//! "Environment Variable Specification": an empty value is unset; a boolean
//! is `true` or anything else, false (warned unless `false`); a number the
//! implementation cannot parse, and a value of an enum it does not know,
//! are ignored with a warning; a known value it cannot honour stops the
//! start (our rule: the operator must know it is not done).

use std::time::Duration;

use anyhow::bail;
use percent_encoding::percent_decode_str;

use super::TraceSettings;

/// The settings being read, and the warnings so far.
pub(super) struct Reader<'a> {
    settings: &'a TraceSettings,
    pub(super) warnings: Vec<String>,
}

impl<'a> Reader<'a> {
    pub(super) fn new(settings: &'a TraceSettings) -> Self {
        Self {
            settings,
            warnings: Vec::new(),
        }
    }

    fn warn(&mut self, name: &str, value: &str, why: &str) {
        self.warnings
            .push(format!("{name}={value:?} is ignored: {why}"));
    }

    /// The text of `name`, or of the first of `names` that is set.
    pub(super) fn text(&self, names: &[&str]) -> Option<(&'static str, &'a str)> {
        names.iter().find_map(|name| {
            let value = self.settings.get(name)?;
            let name = super::variables::VARIABLES
                .iter()
                .find(|v| v.name == *name)?
                .name;
            Some((name, value))
        })
    }

    /// A boolean: `true` in any case, else false.
    pub(super) fn boolean(&mut self, names: &[&str]) -> Option<bool> {
        let (name, value) = self.text(names)?;
        if value.eq_ignore_ascii_case("true") {
            return Some(true);
        }
        if !value.eq_ignore_ascii_case("false") {
            self.warn(name, value, "a boolean is true or false; read as false");
        }
        Some(false)
    }

    /// A whole number of milliseconds.
    pub(super) fn millis(&mut self, names: &[&str]) -> Option<Duration> {
        self.count(names)
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX)))
    }

    /// A whole number, 0 or more.
    pub(super) fn count(&mut self, names: &[&str]) -> Option<usize> {
        let (name, value) = self.text(names)?;
        match value.parse::<usize>() {
            Ok(count) => Some(count),
            Err(_) => {
                self.warn(
                    name,
                    value,
                    "not a whole number of 0 or more; the default is used",
                );
                None
            }
        }
    }

    /// A number from 0 to 1.
    pub(super) fn ratio(&mut self, names: &[&str]) -> Option<f64> {
        let (name, value) = self.text(names)?;
        match value.parse::<f64>() {
            Ok(ratio) if (0.0..=1.0).contains(&ratio) => Some(ratio),
            _ => {
                self.warn(name, value, "not a number from 0 to 1; the default is used");
                None
            }
        }
    }

    /// One of `supported`; a value of `refused` (the specification's, which
    /// we cannot honour) stops the start; any other is ignored.
    pub(super) fn choice<T: Copy>(
        &mut self,
        names: &[&str],
        supported: &[(&str, T)],
        refused: &[&str],
    ) -> anyhow::Result<Option<T>> {
        let Some((name, value)) = self.text(names) else {
            return Ok(None);
        };
        let value = value.to_ascii_lowercase();
        if let Some((_, choice)) = supported.iter().find(|(text, _)| *text == value) {
            return Ok(Some(*choice));
        }
        let names: Vec<&str> = supported.iter().map(|(text, _)| *text).collect();
        if refused.contains(&value.as_str()) {
            bail!(
                "{name}={value} is not supported by this service; the values supported are {}",
                names.join(", ")
            );
        }
        self.warn(name, &value, &format!("not one of {}", names.join(", ")));
        Ok(None)
    }

    /// A comma-separated list, each item trimmed and lowercased.
    pub(super) fn list(&self, names: &[&str]) -> Option<(&'static str, Vec<String>)> {
        let (name, value) = self.text(names)?;
        let items = value
            .split(',')
            .map(|item| item.trim().to_ascii_lowercase())
            .filter(|item| !item.is_empty())
            .collect();
        Some((name, items))
    }

    /// `key=value` pairs separated by commas, values percent-decoded (the
    /// W3C Baggage format without properties). `whole`: a malformed pair
    /// discards the whole value (as the specification says of
    /// OTEL_RESOURCE_ATTRIBUTES), else only that pair.
    pub(super) fn pairs(&mut self, names: &[&str], whole: bool) -> Vec<(String, String)> {
        let Some((name, value)) = self.text(names) else {
            return Vec::new();
        };
        let mut pairs = Vec::new();
        for item in value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
        {
            let decoded = item.split_once('=').and_then(|(key, value)| {
                let key = key.trim();
                let value = percent_decode_str(value.trim()).decode_utf8().ok()?;
                (!key.is_empty()).then(|| (key.to_owned(), value.into_owned()))
            });
            match decoded {
                Some(pair) => pairs.push(pair),
                None if whole => {
                    self.warn(name, value, &format!("{item:?} is not key=value with a percent-encoded value; the whole variable is discarded"));
                    return Vec::new();
                }
                None => self.warn(name, item, "not key=value with a percent-encoded value"),
            }
        }
        pairs
    }
}
