//! The suppress-mode password file: created new with mode 0600, one line per temporary
//! password issued, for out-of-band delivery, synced before any state commit that says it holds
//! the line. The only file a password is ever written to; must not be opened twice or
//! overwritten.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::error::Error;
use crate::password::TempPassword;

/// The header line, alone in a file that received no password.
const HEADER: &[u8] = b"username,temporary_password\n";

pub struct PasswordFile {
    path: PathBuf,
    file: Arc<Synced>,
}

/// The open file, and whether it holds lines not yet synced.
struct Synced {
    file: Mutex<std::fs::File>,
    dirty: AtomicBool,
}

impl crate::state::SyncFirst for Synced {
    fn sync(&self) -> std::io::Result<()> {
        if self.dirty.swap(false, Ordering::AcqRel) {
            let file = self.file.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = file.sync_data() {
                self.dirty.store(true, Ordering::Release);
                return Err(e);
            }
        }
        Ok(())
    }
}

impl Drop for Synced {
    fn drop(&mut self) {
        let _ = crate::state::SyncFirst::sync(self);
    }
}

impl PasswordFile {
    /// Creates the file; refuses to touch an existing one.
    pub fn create(path: &Path) -> Result<Self, Error> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path).map_err(|e| {
            Error::io(
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    "refusing to overwrite the password file"
                } else {
                    "cannot create the password file"
                },
                path,
                e,
            )
        })?;
        file.write_all(HEADER)
            .and_then(|_| file.sync_all())
            .map_err(|e| Error::io("cannot write the password file", path, e))?;
        Ok(PasswordFile {
            path: path.to_path_buf(),
            file: Arc::new(Synced {
                file: Mutex::new(file),
                dirty: AtomicBool::new(false),
            }),
        })
    }

    /// The run's password file: created new and synced before each of `state`'s commits, or
    /// (in a dry run) only checked not to exist.
    pub fn for_run(
        path: Option<&Path>,
        dry_run: bool,
        state: &crate::state::State,
    ) -> Result<Option<Self>, Error> {
        match (path, dry_run) {
            (Some(path), false) => {
                let file = PasswordFile::create(path)?;
                state.sync_first(file.file.clone());
                Ok(Some(file))
            }
            (Some(path), true) if path.exists() => Err(Error::Config(format!(
                "refusing to overwrite the password file {}",
                path.display()
            ))),
            _ => Ok(None),
        }
    }

    /// Appends one line. A killed process keeps it (the kernel has it); it reaches the disk
    /// before the state commits the mark that says it was recorded, so a power cut can lose
    /// the line only together with the mark, and the next run re-issues that password.
    pub fn record(&self, username: &str, password: &TempPassword) -> Result<(), String> {
        let mut file = self.file.file.lock().unwrap_or_else(|e| e.into_inner());
        let mut line = Vec::new();
        {
            let mut w = csv::WriterBuilder::new().from_writer(&mut line);
            w.write_record([username, password.expose()])
                .and_then(|_| w.flush().map_err(csv::Error::from))
                .map_err(|_| "cannot format the password file line".to_string())?;
        }
        file.write_all(&line)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))?;
        self.file.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes a password file that holds no password (a run that stopped before issuing one).
    pub fn discard_if_empty(path: &Path) {
        if std::fs::read(path).is_ok_and(|b| b == HEADER) {
            let _ = std::fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw.csv");
        let f = PasswordFile::create(&path).unwrap();
        f.record("u1", &TempPassword::new("Abc,def1!".into()))
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "username,temporary_password\nu1,\"Abc,def1!\"\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = PasswordFile::create(&path).err().unwrap();
        assert!(err.to_string().contains("refusing to overwrite"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        PasswordFile::discard_if_empty(&path);
        assert!(path.exists(), "a file with a password is kept");
    }

    #[test]
    fn a_file_that_received_no_password_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw.csv");
        drop(PasswordFile::create(&path).unwrap());
        PasswordFile::discard_if_empty(&path);
        assert!(!path.exists());
    }
}
