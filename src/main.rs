//! The `cognito-onboard` binary: parse the command line, run, exit with the run's code. Must not
//! grow: everything else is in the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cognito_onboard::cli::Cli::parse();
    ExitCode::from(cognito_onboard::app::main(cli))
}
