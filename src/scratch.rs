//! Scratch databases for working sets too large to hold in memory (`status`'s targets and
//! reads, a shared table's copy of a pool's users): an SQLite file in a directory the command
//! can write (its report directory: a container's root file system may be read-only, and its
//! `/tmp` absent), unlinked as soon as it is open, so that nothing is left behind even by a
//! killed run. Must not know what is stored in them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rusqlite::Connection;

use crate::error::Error;

/// How much of a scratch database SQLite keeps in memory, in KiB: enough for the slices in
/// use, and a bound on its memory whatever the working set's size.
const CACHE_KIB: i64 = 4096;

fn err<E: std::fmt::Display>(dir: &Path) -> impl Fn(E) -> Error + '_ {
    move |e| Error::Io {
        what: "cannot keep a scratch file in",
        path: dir.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// A scratch database, and the directory it lives in (what its errors name).
#[derive(Debug)]
pub struct Scratch {
    db: Connection,
    at: PathBuf,
}

impl std::ops::Deref for Scratch {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.db
    }
}

impl Scratch {
    /// A failure of this scratch file, naming its directory.
    pub fn err<E: std::fmt::Display>(&self) -> impl Fn(E) -> Error + '_ {
        err(&self.at)
    }
}

/// A new scratch database in `dir` with `schema`; in SQLite's own temporary directory when
/// `dir` is none (a command without a report directory, and the unit tests).
pub fn open(dir: Option<&Path>, schema: &str) -> Result<Scratch, Error> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let tmp = std::env::temp_dir();
    let (db, path) = match dir {
        Some(dir) => {
            let name = format!(
                ".cognito-onboard-{}-{}.scratch",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let path = dir.join(name);
            (Connection::open(&path).map_err(err(dir))?, Some(path))
        }
        None => (Connection::open("").map_err(err(&tmp))?, None),
    };
    let at = dir.unwrap_or(&tmp);
    db.execute_batch(&format!(
        "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -{CACHE_KIB};
         {schema}"
    ))
    .map_err(err(at))?;
    // Open, its schema written: the name can go. SQLite keeps using the open file (no journal
    // to reopen), and the file goes when the connection closes, or the process dies.
    if let Some(path) = path {
        unlink(&path)?;
    }
    Ok(Scratch {
        db,
        at: at.to_path_buf(),
    })
}

fn unlink(path: &PathBuf) -> Result<(), Error> {
    std::fs::remove_file(path).map_err(|e| Error::io("cannot remove a scratch file", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_database_in_a_directory_works_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = open(Some(dir.path()), "CREATE TABLE t (v INTEGER);").unwrap();
        assert_eq!(db.at, dir.path());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "unlinked at once"
        );
        let tx = db.unchecked_transaction().unwrap();
        for v in 0..5000 {
            tx.execute("INSERT INTO t VALUES (?1)", [v]).unwrap();
        }
        tx.commit().unwrap();
        let sum: i64 = db
            .query_row("SELECT sum(v) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sum, (0..5000).sum::<i64>());
        drop(db);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_directory_that_cannot_be_written_is_named_in_the_error() {
        let e = open(Some(Path::new("/proc/no-such-dir")), "").unwrap_err();
        assert!(e.to_string().contains("/proc/no-such-dir"), "{e}");
    }
}
