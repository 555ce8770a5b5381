//! The docs' command lines held against the binary: README.md's usage block must be what
//! `cognito-onboard --help` prints (`UPDATE_USAGE=1 cargo test --test it usage` writes it
//! again), and every option and subcommand that README.md, CONTRIBUTING.md and docs/*.md name
//! must exist. What the tool accepts is read from its own `--help` (and each subcommand's),
//! never from a list kept here, so the docs cannot drift from the binary unseen.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use cognito_onboard::error::exit;

use crate::support::*;

const START: &str = "<!-- usage:start -->";
const END: &str = "<!-- usage:end -->";
const FENCE: &str = "```text\n";
const REGENERATE: &str = "UPDATE_USAGE=1 cargo test --test it usage";

/// Options of other tools that the docs show in their own command lines. Each is accepted only
/// on a line that names its tool before it; an entry no line uses any more is an error, so the
/// list stays as short as the docs need.
const FOREIGN: &[(&str, &[&str])] = &[
    (
        "cargo",
        &[
            "locked",
            "path",
            "test",
            "check",
            "release",
            "ignored",
            "nocapture",
        ],
    ),
    (
        "aws dynamodb",
        &["table-name", "point-in-time-recovery-specification"],
    ),
    ("aws sesv2", &["email-address"]),
    ("docker", &["build-arg", "rm"]),
    ("git rev-parse", &["short"]),
    ("systemctl", &["now"]),
    ("chromium", &["headless", "screenshot", "window-size"]),
    ("node_exporter", &["collector"]),
];

/// One command's `--help`: its long options (with whether each takes a value) and its
/// subcommands.
#[derive(Default)]
struct Help {
    /// Long option name (without `--`) to "takes a value".
    options: BTreeMap<String, bool>,
    subcommands: BTreeSet<String>,
}

impl Help {
    /// Parses clap's help layout: option definitions are indented less than their
    /// descriptions (which may themselves mention options, wrapped onto a line of their own),
    /// and each subcommand starts a line indented by two under `Commands:`.
    fn parse(text: &str) -> Help {
        let mut help = Help::default();
        let mut in_commands = false;
        for line in text.lines() {
            if line == "Commands:" {
                in_commands = true;
                continue;
            }
            if line.trim().is_empty() {
                in_commands = false;
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            let item = line.trim_start();
            if in_commands {
                if indent == 2
                    && let Some(name) = item.split_whitespace().next()
                {
                    help.subcommands.insert(name.to_string());
                }
                continue;
            }
            if indent >= 8 || !item.starts_with('-') {
                continue;
            }
            let long = match item.split_once(", ") {
                Some((short, rest)) if !short.starts_with("--") => rest,
                _ => item,
            };
            if let Some(rest) = long.strip_prefix("--") {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                    .unwrap_or(rest.len());
                let takes_value = rest[end..].starts_with(" <") || rest[end..].starts_with("=<");
                help.options.insert(rest[..end].to_string(), takes_value);
            }
        }
        help
    }
}

/// The help of every command the binary has, keyed by its path (`[]`, `["run"]`,
/// `["state", "init"]`), found by following each help's `Commands:` list.
fn helps() -> BTreeMap<Vec<String>, Help> {
    let mut all = BTreeMap::new();
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let r = binary(path.iter().map(String::as_str).chain(["--help"])).expect(exit::OK);
        let help = Help::parse(&r.stdout());
        for sub in &help.subcommands {
            // clap's own `help` subcommand prints other commands' help; it has none of its own.
            if sub != "help" {
                todo.push([path.clone(), vec![sub.clone()]].concat());
            }
        }
        all.insert(path, help);
    }
    all
}

/// README.md, CONTRIBUTING.md and every docs/*.md, with their paths relative to the root.
fn docs() -> Vec<(String, String)> {
    let root = root();
    let mut paths = vec![PathBuf::from("README.md"), PathBuf::from("CONTRIBUTING.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(&root).expect("under the root").to_path_buf())
        .collect();
    more.sort();
    paths.extend(more);
    paths
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(root.join(&p))
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p.display().to_string(), text)
        })
        .collect()
}

/// The text between README.md's markers, and where it starts and ends.
fn usage_block(readme: &str) -> (usize, usize) {
    let start = readme
        .find(START)
        .unwrap_or_else(|| panic!("README.md has no {START}"))
        + START.len();
    let end = start
        + readme[start..]
            .find(END)
            .unwrap_or_else(|| panic!("README.md has no {END} after {START}"));
    (start, end)
}

/// What belongs between the markers: the help in a text fence.
fn wanted_block(help: &str) -> String {
    format!("\n{FENCE}{help}```\n")
}

/// Trailing spaces are not compared: clap pads the blank lines inside long help, editors strip
/// them on save, and markdown shows neither.
fn without_trailing_spaces(text: &str) -> Vec<&str> {
    text.lines().map(str::trim_end).collect()
}

#[test]
fn the_readmes_usage_block_is_what_help_prints() {
    let r = binary(["--help"]).expect(exit::OK);
    assert_eq!(r.stderr(), "");
    let want = wanted_block(&r.stdout());
    let path = root().join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let (start, end) = usage_block(&readme);
    if std::env::var_os("UPDATE_USAGE").is_some() {
        let updated = format!("{}{want}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).expect("write README.md");
        return;
    }
    let (got, want) = (
        without_trailing_spaces(&readme[start..end]),
        without_trailing_spaces(&want),
    );
    if got != want {
        let line = got.iter().zip(&want).take_while(|(g, w)| g == w).count();
        panic!(
            "README.md's usage block is not what `cognito-onboard --help` prints: they differ \
             from line {} of the block (README: {:?}, --help: {:?}).\nWrite it again with \
             `{REGENERATE}` and review `git diff README.md`.",
            line + 1,
            got.get(line).copied().unwrap_or("<end of block>"),
            want.get(line).copied().unwrap_or("<end of help>"),
        );
    }
}

/// Each `--name` in `line`, with its byte offset: two dashes not inside a longer run of dashes
/// or a word, then a lower-case letter. `---`, `<!--` and a bare `--` are not options.
fn long_options(line: &str) -> Vec<(usize, &str)> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(at) = line[i..].find("--") {
        let at = i + at;
        let before_ok =
            at == 0 || !(bytes[at - 1] == b'-' || bytes[at - 1].is_ascii_alphanumeric());
        let name_start = at + 2;
        if before_ok && bytes.get(name_start).is_some_and(u8::is_ascii_lowercase) {
            let len = line[name_start..]
                .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'))
                .unwrap_or(line.len() - name_start);
            let name = line[name_start..name_start + len].trim_end_matches('-');
            found.push((at, name));
            i = name_start + len;
        } else {
            i = name_start;
        }
    }
    found
}

/// Every long option anywhere in the docs (prose, tables, code) is checked, not only those on
/// lines that name `cognito-onboard`: an option of the tool is often named alone (`--update`),
/// and a stale one must not hide there. An option that is no option of the binary (in any
/// command's `--help`) passes only where [`FOREIGN`] lists it and its tool is named before it
/// on the same line.
#[test]
fn every_option_the_docs_name_is_an_option_of_the_binary() {
    let helps = helps();
    let known: BTreeSet<&str> = helps
        .values()
        .flat_map(|h| h.options.keys().map(String::as_str))
        .collect();
    let mut unused: BTreeSet<(&str, &str)> = FOREIGN
        .iter()
        .flat_map(|(tool, opts)| opts.iter().map(move |o| (*tool, *o)))
        .collect();
    let mut stale = Vec::new();
    for (file, text) in docs() {
        for (n, line) in text.lines().enumerate() {
            for (at, name) in long_options(line) {
                if known.contains(name) {
                    continue;
                }
                let foreign = FOREIGN.iter().find_map(|(tool, opts)| {
                    let option = opts.iter().find(|o| **o == name)?;
                    line[..at].contains(tool).then_some((*tool, *option))
                });
                match foreign {
                    Some(entry) => {
                        unused.remove(&entry);
                    }
                    None => stale.push(format!("{file}:{}: --{name}", n + 1)),
                }
            }
        }
    }
    assert!(
        stale.is_empty(),
        "the docs name options that no `cognito-onboard ... --help` lists (if one belongs to \
         another tool, add it to FOREIGN in tests/it/usage.rs):\n{}",
        stale.join("\n")
    );
    assert!(
        unused.is_empty(),
        "FOREIGN in tests/it/usage.rs allows options no doc uses any more; remove them: {unused:?}"
    );
}

/// Whether `tokens[i]` runs the binary: `cognito-onboard` at the start of the line or after a
/// shell operator, or glued to an opening `$(`, `(` or backtick. As an argument (`docker build
/// -t cognito-onboard`, `man cognito-onboard`) it is a name, not a command.
fn runs_the_binary(tokens: &[&str], i: usize) -> bool {
    let t = tokens[i];
    let named = t == "cognito-onboard"
        || ["$(", "(", "`"]
            .iter()
            .any(|p| t.ends_with(&format!("{p}cognito-onboard")));
    named
        && (i == 0
            || t != "cognito-onboard"
            || matches!(
                tokens[i - 1],
                "&&" | "||" | ";" | "|" | "sudo" | "exec" | "time"
            ))
}

/// Whether the shell command ends at `token` (a comment, a redirection or another command).
fn ends_command(token: &str) -> bool {
    token.starts_with('#')
        || token.contains('>')
        || matches!(token, "|" | "||" | "&&" | ";" | "\\")
        || token.ends_with(')')
}

/// The problems of one command line (`tokens` after `cognito-onboard`): a subcommand the
/// binary lacks, or an option the command it reaches does not list.
fn check_command_line(
    tokens: &[&str],
    helps: &BTreeMap<Vec<String>, Help>,
    problems: &mut Vec<String>,
) {
    let mut path: Vec<String> = Vec::new();
    let mut took_positional = false;
    let mut skip_value = false;
    for raw in tokens {
        if ends_command(raw) {
            return;
        }
        if std::mem::take(&mut skip_value) {
            continue;
        }
        let token = raw.trim_matches(|c| c == '[' || c == ']');
        let help = &helps[&path];
        let shown = if path.is_empty() {
            "cognito-onboard".to_string()
        } else {
            format!("cognito-onboard {}", path.join(" "))
        };
        if let Some(option) = token.strip_prefix("--") {
            let (name, inline_value) = match option.split_once('=') {
                Some((name, _)) => (name, true),
                None => (option, false),
            };
            match help.options.get(name) {
                Some(takes_value) => skip_value = *takes_value && !inline_value,
                None => problems.push(format!("`{shown}` has no option --{name}")),
            }
        } else if token.starts_with('-') {
            // A short option: the help's long options are what the docs are checked against.
        } else if !help.subcommands.is_empty() && !took_positional {
            let word = token
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && token.starts_with(|c: char| c.is_ascii_lowercase());
            if !word {
                return; // a placeholder such as `[OPTIONS]` or `<COMMAND>`
            }
            if !help.subcommands.contains(token) {
                problems.push(format!("`{shown}` has no subcommand {token}"));
                return;
            }
            if token == "help" {
                return;
            }
            path.push(token.to_string());
        } else {
            took_positional = true;
        }
    }
}

/// In fenced blocks, every command line that runs `cognito-onboard` names subcommands the
/// binary has, and each option after a subcommand is one that subcommand's `--help` lists
/// (the options before it, the top level's). This is stricter than the option check above: an
/// option of `run` shown on a `status` line fails here.
#[test]
fn every_command_line_in_the_docs_runs_a_real_subcommand_with_its_options() {
    let helps = helps();
    let mut problems = Vec::new();
    let mut lines_checked = 0;
    for (file, text) in docs() {
        let mut fenced = false;
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                continue;
            }
            if !fenced {
                continue;
            }
            let tokens: Vec<&str> = line.split_whitespace().collect();
            for i in 0..tokens.len() {
                if tokens[i].starts_with('#') {
                    break; // a shell comment: prose, not a command
                }
                if runs_the_binary(&tokens, i) {
                    lines_checked += 1;
                    let mut found = Vec::new();
                    check_command_line(&tokens[i + 1..], &helps, &mut found);
                    problems.extend(found.into_iter().map(|p| format!("{file}:{}: {p}", n + 1)));
                }
            }
        }
    }
    // The docs show the tool at work in many places; a handful means the scan is broken.
    assert!(
        lines_checked > 10,
        "only {lines_checked} command lines found in the docs"
    );
    assert!(
        problems.is_empty(),
        "command lines in the docs that the binary would refuse:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_option_scanner_finds_options_and_nothing_else() {
    let found: Vec<&str> =
        long_options("`--update attributes` |---| <!-- x --> -- a--b --dry-run=1")
            .into_iter()
            .map(|(_, n)| n)
            .collect();
    assert_eq!(found, ["update", "dry-run"]);
}
