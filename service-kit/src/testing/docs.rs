//! Documentation that is generated from the code, checked by tests: a block
//! of a Markdown file between two markers must equal what the code says
//! today (a binary's `--help`), and `UPDATE_DOCS=1` rewrites it.

use std::path::Path;

/// Checks that the fenced block named `name` in the Markdown file `path`
/// (between `<!-- {name}: begin -->` and `<!-- {name}: end -->`) is
/// `content`. With `UPDATE_DOCS` set in the environment, rewrites the block
/// instead. Panics with what to run when they differ.
pub fn assert_block(path: &Path, name: &str, content: &str) {
    assert_between(
        path,
        name,
        format!("```text\n{}\n```\n", content.trim_end()),
    );
}

/// [`assert_block`] for Markdown shown as it is (a table), not fenced.
pub fn assert_markdown(path: &Path, name: &str, content: &str) {
    assert_between(path, name, format!("{}\n", content.trim_end()));
}

/// The text between the markers named `name` is `wanted`.
fn assert_between(path: &Path, name: &str, wanted: String) {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let begin = format!("<!-- {name}: begin -->\n");
    let end = format!("<!-- {name}: end -->");
    let start = text
        .find(&begin)
        .unwrap_or_else(|| panic!("{} has no `{}` marker", path.display(), begin.trim()))
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .unwrap_or_else(|| panic!("{} has no `{end}` marker", path.display()))
        + start;
    if text[start..stop] == wanted {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some() {
        let updated = format!("{}{wanted}{}", &text[..start], &text[stop..]);
        std::fs::write(path, updated)
            .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        return;
    }
    let first_difference = text[start..stop]
        .lines()
        .zip(wanted.lines())
        .find(|(documented, actual)| documented != actual)
        .map_or_else(
            || "one is longer than the other".to_owned(),
            |(documented, actual)| format!("documented:\n  {documented}\nactual:\n  {actual}"),
        );
    panic!(
        "{}'s `{name}` block differs from the code ({first_difference}).\n\
         Run the test again with UPDATE_DOCS=1 to rewrite it, and commit the result.",
        path.display()
    );
}

/// A command's `--help`, as a reader of the docs should see it: the long
/// help at 100 columns, with no value of the environment the test runs in
/// and no trailing spaces.
pub fn long_help(command: clap::Command) -> String {
    let mut command = command
        .term_width(100)
        .mut_args(|arg| arg.hide_env_values(true));
    let help = command.render_long_help().to_string();
    help.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks that the workspace's `docs/settings.md` shows `command`'s
/// `--help` in its block `{name} --help` (see [`assert_block`]);
/// `crate_dir` is the calling crate's `CARGO_MANIFEST_DIR`.
pub fn assert_help_documented(crate_dir: &str, command: clap::Command) {
    let doc = Path::new(crate_dir).join("../docs/settings.md");
    let name = format!("{} --help", command.get_name());
    assert_block(&doc, &name, &long_help(command));
}

/// A service's command line as its tests hold it: clap's own consistency
/// checks, docs/settings.md showing its `--help` ([`assert_help_documented`]),
/// and every setting read from a variable that starts with one of
/// `prefixes` (OpenTelemetry's `OTEL_` variables are every program's).
pub fn assert_command_line(crate_dir: &str, command: clap::Command, prefixes: &[&str]) {
    command.clone().debug_assert();
    let unprefixed: Vec<String> = command
        .get_arguments()
        .filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version"))
        .filter(|arg| {
            !arg.get_env().is_some_and(|env| {
                let env = env.to_string_lossy();
                env.starts_with("OTEL_") || prefixes.iter().any(|prefix| env.starts_with(prefix))
            })
        })
        .map(|arg| arg.get_id().to_string())
        .collect();
    assert!(
        unprefixed.is_empty(),
        "not read from a variable of this service: {unprefixed:?}"
    );
    assert_help_documented(crate_dir, command);
}

/// The words of `text` that start with one of `prefixes` and go on in
/// capitals, digits and underscores, such as `MARKETPLACE_LISTEN`; a bare
/// prefix (`MARKETPLACE_…`) is not one.
pub fn setting_names<'a>(text: &'a str, prefixes: &[&str]) -> Vec<&'a str> {
    let is_name_char = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_';
    text.split(|c: char| !is_name_char(c))
        .filter(|word| {
            prefixes.iter().any(|prefix| word.starts_with(prefix)) && !word.ends_with('_')
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Settings\n\n<!-- x --help: begin -->\n```text\nold\n```\n<!-- x --help: end -->\n\nafter\n";

    #[test]
    fn a_block_that_differs_fails_and_names_the_line() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("settings.md");
        std::fs::write(&path, DOC).expect("written");

        let panic = std::panic::catch_unwind(|| assert_block(&path, "x --help", "new"))
            .expect_err("differs");

        let message = panic.downcast_ref::<String>().expect("a message");
        assert!(
            message.contains("documented:\n  old\nactual:\n  new"),
            "{message}"
        );
        assert!(message.contains("UPDATE_DOCS=1"), "{message}");
        assert_block(&path, "x --help", "old");
    }

    #[test]
    fn setting_names_are_whole_words_with_a_prefix() {
        let text = "Set `MARKETPLACE_LISTEN=127.0.0.1:5001` or RECOMMENDATIONS_HOST; \
                    every MARKETPLACE_… variable, not XMARKETPLACE_A or RUST_LOG.";

        let names = setting_names(text, &["RECOMMENDATIONS_", "MARKETPLACE_"]);

        assert_eq!(names, ["MARKETPLACE_LISTEN", "RECOMMENDATIONS_HOST"]);
    }
}
