//! Dispatch: the command line resolved once into settings (`config::resolve`), logging and the
//! runtime set up, the command's own file called, and the one place a command's result becomes
//! an exit code. Must not hold a command's steps (`commands`) or resolve a setting itself.

use std::io::IsTerminal;

use crate::cli::{Cli, Command};
use crate::commands;
use crate::config::{self, Settings};
use crate::error::{self, Error};
use crate::logging;

/// Runs a parsed command line and returns the process exit code.
pub fn main(cli: Cli) -> u8 {
    // Generated from the command line's definition alone: no settings, no AWS, no state.
    match &cli.command {
        Command::Completions(a) => {
            crate::manual::completions(a.shell, &mut std::io::stdout());
            return error::exit::OK;
        }
        Command::Man => {
            return match crate::manual::man_page(&mut std::io::stdout()) {
                Ok(()) => error::exit::OK,
                Err(e) => fail_early(Error::io(
                    "cannot write the man page",
                    std::path::Path::new("-"),
                    e,
                )),
            };
        }
        _ => {}
    }
    let (common, settings) = match config::resolve(&cli, std::io::stderr().is_terminal()) {
        Ok(resolved) => resolved,
        Err(e) => return fail_early(e),
    };
    logging::init(common.log_format, common.verbosity, common.progress);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail_early(Error::Config(format!(
                "cannot start the async runtime: {e}"
            )));
        }
    };
    let result = runtime.block_on(async {
        match &settings {
            Settings::Check(s) => commands::check::run(&common, s).await,
            Settings::Run(s) => commands::run::run(&common, s).await,
            Settings::Status(s) => commands::status::run(&common, s).await,
            Settings::Doctor(s) => commands::doctor::run(&common, s).await,
            Settings::Reissue(s) => commands::reissue::run(&common, s).await,
            Settings::Reset(s) => commands::reset::run(&common, s).await,
            Settings::Enable(s) => commands::enable::run(&common, s).await,
            Settings::Revoke(s) => commands::revoke::run(&common, s).await,
            Settings::State(s) => commands::state::run(&common, s),
        }
    });
    match &result {
        // Not a failure: the run that holds the state does the work, and a scheduler that
        // mails what a run says on stderr (cron with -q) stays quiet.
        Err(e @ Error::Locked(_)) => tracing::info!("{e}"),
        Err(e) => tracing::error!("{e}"),
        Ok(_) => {}
    }
    error::exit_code(&result)
}

/// A failure before logging is set up.
fn fail_early(e: Error) -> u8 {
    eprintln!("error: {e}");
    error::exit_code(&Err(e))
}
