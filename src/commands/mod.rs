//! One file per command, each a short runbook of named steps over the lifecycle every command
//! shares (`session`), with the settings `config::resolve` made for it. Adding a command is its
//! own file, a line here and its variant in the CLI and `config::Settings`. Must not hold what
//! more than one command needs (that is `session`, `onboard`, `help` and the report wing).

pub(crate) mod check;
pub(crate) mod doctor;
pub(crate) mod enable;
pub(crate) mod reissue;
pub(crate) mod reset;
pub(crate) mod revoke;
pub(crate) mod run;
pub(crate) mod state;
pub(crate) mod status;
