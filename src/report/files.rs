//! The report files of a command: created before any work (a bad path fails first), written
//! whole or not at all, and discarded together when a command stops before it reports. Must not
//! decide what a report says.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::csv::{write_csv, write_doctor_csv, write_status_csv};
use super::model::{Report, RowReport};
use super::status::StatusReport;
use crate::error::Error;

/// The report's files, created (empty) before any work so a bad path fails first: the JSON, the
/// CSV and, for `run` and `status`, the page (`<run-id>.html`, see [`crate::report::page`]).
#[derive(Debug, Clone)]
pub struct ReportFiles {
    pub json: PathBuf,
    pub csv: PathBuf,
    pub html: Option<PathBuf>,
}

impl ReportFiles {
    /// Creates the directory and the JSON and CSV files now.
    pub fn open(dir: &Path, run_id: &str) -> Result<Self, Error> {
        Self::create(dir, run_id, false)
    }

    /// [`ReportFiles::open`], and the page too.
    pub fn open_with_page(dir: &Path, run_id: &str) -> Result<Self, Error> {
        Self::create(dir, run_id, true)
    }

    fn create(dir: &Path, run_id: &str, page: bool) -> Result<Self, Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io("cannot create report directory", dir, e))?;
        // Absolute paths, so the names printed at the end work from any directory.
        let dir = &std::fs::canonicalize(dir)
            .map_err(|e| Error::io("cannot open report directory", dir, e))?;
        let files = ReportFiles {
            json: dir.join(format!("{run_id}.json")),
            csv: dir.join(format!("{run_id}.csv")),
            html: page.then(|| dir.join(format!("{run_id}.html"))),
        };
        for path in files.paths() {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| Error::io("cannot create report file", path, e))?;
        }
        Ok(files)
    }

    /// Every file of the report.
    pub fn paths(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.json, &self.csv].into_iter().chain(&self.html)
    }

    /// The files' names for a log line: "a.json, a.csv and a.html".
    pub fn listed(&self) -> String {
        let names: Vec<String> = self.paths().map(|p| p.display().to_string()).collect();
        match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// The CSV's file name, as the page names it.
    pub fn csv_name(&self) -> String {
        self.csv
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Removes the files if nothing was written to them (a run that stopped before any work).
    pub fn discard_if_empty(&self) {
        for path in self.paths() {
            if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    /// Writes a run's report to both files.
    pub fn write(&self, report: &Report) -> Result<(), Error> {
        self.write_with(
            &|f| {
                serde_json::to_writer_pretty(&mut *f, report).map_err(std::io::Error::other)?;
                f.write_all(b"\n")
            },
            &|f| write_csv(&mut *f, &report.rows),
        )
    }

    /// Writes `status`'s report to both files (its rows read back from where they were kept as
    /// they were classified), its newly confirmed providers to `<run-id>-newly-confirmed.csv`,
    /// and `page`, built from the same rows; returns the newly confirmed list's path.
    pub fn write_status(
        &self,
        report: &StatusReport,
        page: Option<crate::report::page::Page>,
        run_id: &str,
    ) -> Result<PathBuf, Error> {
        let newly = self
            .json
            .with_file_name(format!("{run_id}-newly-confirmed.csv"));
        self.write_with(
            &|f| {
                serde_json::to_writer_pretty(&mut *f, report).map_err(std::io::Error::other)?;
                f.write_all(b"\n")
            },
            &|f| write_status_csv(&mut *f, &report.rows),
        )?;
        write_atomic(&newly, &|f| {
            write_status_csv(&mut *f, &report.newly_confirmed)
        })?;
        if let (Some(html), Some(page)) = (&self.html, page) {
            write_atomic(html, &|f| crate::report::page::render(&page, f))?;
        }
        Ok(newly)
    }

    /// Where `status` keeps its rows while it classifies them: beside the report, removed when
    /// the report is written.
    pub fn status_rows(&self) -> Result<crate::report::status::RowsWriter, Error> {
        let path = self.json.with_extension("rows.jsonl");
        crate::report::status::RowsWriter::create(&path)
            .map_err(|e| Error::io("cannot write report", &path, e))
    }

    /// Writes the providers an offboarding step held back because of its cap to
    /// `<run-id>-held-back.csv` (the report's columns); returns its path.
    pub fn write_held_back(&self, run_id: &str, rows: &[RowReport]) -> Result<PathBuf, Error> {
        let path = self.json.with_file_name(format!("{run_id}-held-back.csv"));
        write_atomic(&path, &|f| write_csv(&mut *f, rows))?;
        Ok(path)
    }

    /// Writes `doctor`'s report to both files.
    pub fn write_doctor(&self, report: &crate::help::DoctorReport) -> Result<(), Error> {
        self.write_with(
            &|f| {
                serde_json::to_writer_pretty(&mut *f, report).map_err(std::io::Error::other)?;
                f.write_all(b"\n")
            },
            &|f| write_doctor_csv(&mut *f, &report.providers),
        )
    }

    /// Writes both files with the given writers.
    pub fn write_with(&self, json: &WriteFn<'_>, csv: &WriteFn<'_>) -> Result<(), Error> {
        write_atomic(&self.json, json)?;
        write_atomic(&self.csv, csv)
    }
}

/// Something that writes a whole file.
pub type WriteFn<'a> = dyn Fn(&mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()> + 'a;

/// Writes a file through a temporary name and a rename, so a reader never sees half of it. The
/// temporary name is the process's own, and goes away if the write fails: no half-written file
/// is left behind under either name.
pub fn write_atomic(path: &Path, f: &WriteFn<'_>) -> Result<(), Error> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let file =
        std::fs::File::create(&tmp).map_err(|e| Error::io("cannot write report", &tmp, e))?;
    // Serializers write in small pieces: one syscall each without a buffer.
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
    let written = f(&mut out)
        .and_then(|_| out.into_inner().map_err(|e| e.into_error()))
        .and_then(|file| file.sync_all())
        .map_err(|e| Error::io("cannot write report", path, e))
        .and_then(|()| {
            std::fs::rename(&tmp, path).map_err(|e| Error::io("cannot write report", path, e))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::super::model::{Outcome, RowReport, summarize};
    use super::super::terminal::one_line;
    use super::*;
    use chrono::Utc;

    fn row(n: u64, outcome: Outcome) -> RowReport {
        RowReport::sample(n, outcome)
    }

    #[test]
    fn a_report_that_fails_half_way_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.html");
        let failed = write_atomic(&path, &|f| {
            use std::io::Write;
            f.write_all(b"<html>")?;
            Err(std::io::Error::other("the page could not be rendered"))
        });
        assert!(failed.is_err());
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        write_atomic(&path, &|f| {
            use std::io::Write;
            f.write_all(b"<html></html>")
        })
        .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"<html></html>");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_page_is_one_of_the_files_listed_and_discarded_with_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let files = ReportFiles::open_with_page(dir.path(), "r1").unwrap();
        let html = files.html.clone().expect("a page");
        assert!(html.exists());
        assert!(
            files
                .listed()
                .ends_with(&format!("r1.csv and {}", html.display()))
        );
        files.discard_if_empty();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let plain = ReportFiles::open(dir.path(), "r2").unwrap();
        assert!(plain.html.is_none());
        assert!(
            plain
                .listed()
                .ends_with(&format!(" and {}", plain.csv.display())),
            "{}",
            plain.listed()
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn report_files_refuse_to_overwrite_and_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let files = ReportFiles::open(dir.path(), "r1").unwrap();
        assert!(ReportFiles::open(dir.path(), "r1").is_err());
        let now = Utc::now();
        let rows = vec![row(2, Outcome::Created)];
        let report = Report {
            summary: summarize(&rows),
            rows,
            ..Report::empty("r1", now, now)
        };
        files.write(&report).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&files.json).unwrap()).unwrap();
        assert_eq!(json["summary"]["created"], 1);
        assert_eq!(json["rows"][0]["action"], "create");
        assert_eq!(json["rows"][0]["status_after"], "FORCE_CHANGE_PASSWORD");
        assert!(json["rows"][0].get("deferral").is_none());
        assert_eq!(json["rows"][0]["outcome"], "created");
        assert_eq!(json["rows"][0]["row"], 2);
        assert!(
            one_line(&report).contains("1 created"),
            "{}",
            one_line(&report)
        );
    }
}
