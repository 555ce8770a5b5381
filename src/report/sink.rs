//! `run`'s report written as its rows finish: a row goes to the CSV, and to a rows file, as soon
//! as it and every row before it are done, so a killed run leaves every finished row on disk in
//! line order; the JSON report is assembled from the rows file at the end. Counts as it goes.
//! Must not hold the rows (a cohort can have millions) or decide anything about them.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use super::page::RunPage;
use crate::error::Error;
use crate::report::files::ReportFiles;
use crate::report::{Report, RowReport, csv as report_csv, files};

pub use super::model::{Seen, Tally};

/// The report of a run in progress.
pub struct Sink {
    files: ReportFiles,
    csv: csv::Writer<BufWriter<File>>,
    rows: BufWriter<File>,
    rows_path: PathBuf,
    /// Rows finished before one dispatched earlier, by their place in the file.
    waiting: BTreeMap<u64, RowReport>,
    next: u64,
    pub tally: Tally,
    error: Option<std::io::Error>,
}

fn io<'a>(what: &'static str, path: &'a std::path::Path) -> impl Fn(std::io::Error) -> Error + 'a {
    move |e| Error::io(what, path, e)
}

impl Sink {
    /// Starts the report in `files` (created empty by [`ReportFiles::open`]): the CSV's header,
    /// and a JSON that says the run is not finished and where its rows are so far; the run
    /// replaces it with the whole report when it ends.
    pub fn start(files: &ReportFiles, head: &Report, keep_confirmed: bool) -> Result<Sink, Error> {
        let files = files.clone();
        let rows_path = files.json.with_extension("rows.jsonl");
        let placeholder = serde_json::json!({
            "run_id": head.run_id,
            "command": head.command,
            "user_pool_id": head.user_pool_id,
            "started_at": head.started_at,
            "dry_run": head.dry_run,
            "complete": false,
            "note": "the run has not finished (or was killed): its finished rows are in the CSV \
                     and, one JSON object a line, in rows_file",
            "rows_file": rows_path,
        });
        files::write_atomic(&files.json, &|f| {
            serde_json::to_writer_pretty(&mut *f, &placeholder).map_err(std::io::Error::other)?;
            f.write_all(b"\n")
        })?;
        let file = File::create(&files.csv).map_err(io("cannot write report", &files.csv))?;
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        report_csv::write_bom(&mut out).map_err(io("cannot write report", &files.csv))?;
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(report_csv::CSV_COLUMNS)
            .map_err(std::io::Error::from)
            .and_then(|()| csv.flush())
            .map_err(io("cannot write report", &files.csv))?;
        if let Some(html) = &files.html {
            files::write_atomic(html, &|f| {
                super::page::render_unfinished(&head.run_id, &files.csv_name(), f)
            })?;
        }
        let rows = File::create(&rows_path).map_err(io("cannot write report", &rows_path))?;
        Ok(Sink {
            files,
            csv,
            rows: BufWriter::with_capacity(64 * 1024, rows),
            rows_path,
            waiting: BTreeMap::new(),
            next: 0,
            tally: Tally::new(keep_confirmed),
            error: None,
        })
    }

    /// Takes the row that was `seq`-th in the file; writes it and every row after it that is
    /// already done, and flushes, so the files on disk hold every row up to there.
    pub fn push(&mut self, seq: u64, row: RowReport) {
        self.waiting.insert(seq, row);
        let mut wrote = false;
        while let Some(row) = self.waiting.remove(&self.next) {
            self.next += 1;
            self.tally.add(&row);
            self.write(&row);
            wrote = true;
        }
        if wrote {
            self.flush();
        }
    }

    /// Takes a row after the file's (an offboarded provider), written at once.
    pub fn append(&mut self, row: RowReport) {
        self.push(self.next, row);
    }

    fn write(&mut self, row: &RowReport) {
        let result = self
            .csv
            .write_record(report_csv::csv_record(row))
            .map_err(std::io::Error::from)
            .and_then(|()| serde_json::to_writer(&mut self.rows, row).map_err(Into::into))
            .and_then(|()| self.rows.write_all(b"\n"));
        if let Err(e) = result {
            self.error.get_or_insert(e);
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.csv.flush().and_then(|()| self.rows.flush()) {
            self.error.get_or_insert(e);
        }
    }

    /// Rows taken but held back behind an unfinished one (a bug if any remain at the end).
    pub fn held(&self) -> usize {
        self.waiting.len()
    }

    /// Writes the whole JSON report (`report`, whose `rows` are empty, and the rows written so
    /// far), in place of the placeholder, and the page, built in the same pass over the rows
    /// file (holding at most a page's worth of rows); then removes the rows file.
    pub fn finish(mut self, report: &Report) -> Result<(), Error> {
        // Rows held behind one that never came (cannot happen; never lose them if it does).
        for (_, row) in std::mem::take(&mut self.waiting) {
            self.tally.add(&row);
            self.write(&row);
        }
        self.flush();
        if let Some(e) = self.error.take() {
            return Err(Error::io("cannot write report", &self.files.csv, e));
        }
        let mut head = serde_json::to_value(report).map_err(|e| {
            Error::io(
                "cannot write report",
                &self.files.json,
                std::io::Error::other(e),
            )
        })?;
        let fields = head.as_object_mut().expect("a report is a JSON object");
        fields.remove("rows");
        fields.insert("complete".into(), serde_json::Value::Bool(true));
        let rows_path = self.rows_path.clone();
        let page = std::cell::RefCell::new(
            self.files
                .html
                .as_ref()
                .map(|_| RunPage::new(report, &self.files.csv_name())),
        );
        files::write_atomic(&self.files.json, &|f| {
            f.write_all(b"{\n")?;
            for (name, value) in fields.iter() {
                serde_json::to_writer(&mut *f, name)?;
                f.write_all(b": ")?;
                serde_json::to_writer(&mut *f, value)?;
                f.write_all(b",\n")?;
            }
            f.write_all(b"\"rows\": [")?;
            let rows = BufReader::new(File::open(&rows_path)?);
            for (i, line) in rows.lines().enumerate() {
                let line = line?;
                f.write_all(if i == 0 { b"\n" } else { b",\n" })?;
                f.write_all(line.as_bytes())?;
                if let Some(page) = page.borrow_mut().as_mut() {
                    page.add(&serde_json::from_str::<RowReport>(&line)?);
                }
            }
            f.write_all(b"\n]}\n")
        })?;
        if let (Some(html), Some(page)) = (&self.files.html, page.into_inner()) {
            let page = page.finish();
            files::write_atomic(html, &|f| super::page::render(&page, f))?;
        }
        let _ = std::fs::remove_file(&self.rows_path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Outcome;
    use chrono::Utc;

    fn head() -> Report {
        let now = Utc::now();
        Report::empty("r1", now, now)
    }

    fn row(line: u64, outcome: Outcome) -> RowReport {
        RowReport::new(line, format!("p{line}@example.jp"), None, outcome)
    }

    #[test]
    fn rows_reach_the_files_in_line_order_as_soon_as_those_before_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let files = ReportFiles::open_with_page(dir.path(), "r1").unwrap();
        let (json, csv) = (files.json.clone(), files.csv.clone());
        let html = files.html.clone().unwrap();
        let mut sink = Sink::start(&files, &head(), false).unwrap();
        let placeholder: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(placeholder["complete"], false);
        assert!(
            std::fs::read_to_string(&html)
                .unwrap()
                .contains("has not finished"),
            "a page that says the run is not finished, not an empty file"
        );
        sink.push(1, row(3, Outcome::Failed));
        let lines = |p: &PathBuf| std::fs::read_to_string(p).unwrap().lines().count();
        assert_eq!(lines(&csv), 1, "row 3 waits for row 2");
        sink.push(0, row(2, Outcome::Created));
        assert_eq!(lines(&csv), 3, "both on disk, in order, before the end");
        sink.push(2, row(4, Outcome::Created));
        assert_eq!(sink.held(), 0);
        assert_eq!(sink.tally.summary[&Outcome::Created], 2);
        assert_eq!(sink.tally.failed.len(), 1);
        let mut report = head();
        report.summary = sink.tally.summary.clone();
        sink.finish(&report).unwrap();
        let done: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(done["complete"], true);
        assert_eq!(done["summary"]["created"], 2);
        let rows: Vec<u64> = done["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["row"].as_u64().unwrap())
            .collect();
        assert_eq!(rows, [2, 3, 4]);
        let text = std::fs::read_to_string(&csv).unwrap();
        let csv_rows: Vec<&str> = text.lines().skip(1).map(|l| &l[..1]).collect();
        assert_eq!(csv_rows, ["2", "3", "4"]);
        assert!(!json.with_extension("rows.jsonl").exists());
        let page = std::fs::read_to_string(&html).unwrap();
        assert!(page.contains("Every row (3)"), "{page}");
        assert!(page.contains("<td>p3@example.jp</td>"), "{page}");
        assert!(
            page.contains("Needs an action (1)"),
            "the failed row: {page}"
        );
    }
}
