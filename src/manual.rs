//! Shell completions and the man page, generated from the clap definition in `cli`, so they
//! name every subcommand and option there is. Must not be written by hand, nor need AWS, the
//! settings file or the state.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "cognito-onboard", out);
}

/// The man page, in roff: the top-level page with its SUBCOMMANDS section, then a section per
/// subcommand with its options, so `man cognito-onboard` covers them all in one page.
pub fn man_page(out: &mut dyn Write) -> std::io::Result<()> {
    let cmd = Cli::command();
    clap_mangen::Man::new(cmd.clone()).render(out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        writeln!(
            out,
            ".SH \"COGNITO ONBOARD {}\"",
            sub.get_name().to_uppercase()
        )?;
        let man = clap_mangen::Man::new(sub.clone());
        let mut part = Vec::new();
        man.render_description_section(&mut part)?;
        man.render_options_section(&mut part)?;
        // Inside the subcommand's section, its description and options are subsections.
        for line in String::from_utf8_lossy(&part).lines() {
            match line.strip_prefix(".SH ") {
                Some(title) => writeln!(out, ".SS {title}")?,
                None => writeln!(out, "{line}")?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subcommands() -> Vec<String> {
        Cli::command()
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect()
    }

    #[test]
    fn every_shell_completes_every_subcommand() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut out = Vec::new();
            completions(shell, &mut out);
            let text = String::from_utf8(out).unwrap();
            for sub in subcommands() {
                assert!(text.contains(&sub), "{shell}: no {sub}");
            }
            assert!(text.contains("user-pool-id"), "{shell}: no global option");
        }
    }

    #[test]
    fn the_man_page_names_every_subcommand_and_its_options() {
        let mut out = Vec::new();
        man_page(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains(".TH cognito-onboard 1"), "{text:.200}");
        for sub in subcommands() {
            assert!(
                text.contains(&format!("COGNITO ONBOARD {}", sub.to_uppercase())),
                "no section for {sub}"
            );
        }
        assert!(text.contains("refresh\\-after"), "run's options are listed");
        assert_eq!(
            text.matches("\n.SH DESCRIPTION\n").count(),
            1,
            "a subcommand's description is a subsection of its section"
        );
    }
}
