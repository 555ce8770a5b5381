//! The reports, in one wing: their vocabulary at the bottom (`model`, `status`, `wording`), and the writers
//! on top of it (`csv`, `files` for the JSON and the atomic writes, `sink` for rows as they
//! finish, `page`, `terminal`). Only the vocabulary is re-exported here, so that a module below
//! the writers never imports one by accident.

pub mod csv;
pub mod files;
pub mod model;
pub mod page;
pub mod sink;
pub mod status;
pub mod terminal;
pub mod wording;

pub use model::{Act, Deferral, Outcome, Report, RowReport, Stuck, ending, summarize};
