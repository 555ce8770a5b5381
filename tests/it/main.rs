//! End-to-end tests: the real binary, through the real AWS SDK, against moto's server (and the
//! fault proxy in front of it) on 127.0.0.1.

#[path = "../support/mod.rs"]
mod support;

mod bad_input;
mod dynamodb;
mod help_desk;
mod incremental;
mod install;
mod journey;
mod limits;
mod monitoring;
mod offboarding;
mod onboard;
mod page;
mod ping;
mod prometheus_tools;
mod real_cognito;
mod reminders;
mod robustness;
mod senders;
mod snapshot;
mod state;
mod suppression;
mod update;
mod usage;
mod validator;
mod workbook;
