//! `state init|export|import`: the state's own table, and moving a state between an SQLite file
//! and a table. Must not open the state the way a run does: these commands are the state's.

use crate::config::{Common, StateSettings};
use crate::error::{Ending, Error};
use crate::state::{self, Location};

pub(crate) fn run(common: &Common, settings: &StateSettings) -> Result<Ending, Error> {
    let Location::Dynamo(table) = &common.state else {
        return Err(Error::Config(format!(
            "state {}: --state must be dynamodb://TABLE (the file is the other side of export \
             and import; an SQLite file needs no init)",
            match settings {
                StateSettings::Init => "init",
                StateSettings::Export(_) => "export",
                StateSettings::Import(_) => "import",
            }
        )));
    };
    let said = match settings {
        StateSettings::Init => state::init_table(table)?,
        StateSettings::Export(file) => state::export(table, file)?,
        StateSettings::Import(file) => state::import(file, table)?,
    };
    tracing::info!("{said}");
    println!("{said}");
    Ok(Ending::Settled)
}
