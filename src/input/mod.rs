//! Input: the row source. Opens a CSV (decoded by `encoding`) or a workbook's sheet (`sheet`),
//! checks the header and each row (`cells`), and yields valid rows and rejects with the line
//! and column. Reads only the file or reader it is given; must not talk to Cognito.
//!
//! A CSV streams: the decoder, the CSV parser and the duplicate index are all bounded, so
//! checking a million-row file stays well under 100 MB of memory. A workbook is read whole.

mod cells;
mod encoding;
mod sheet;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use encoding_rs_io::{DecodeReaderBytes, DecodeReaderBytesBuilder};

use cells::*;
use encoding::*;
use sheet::{Sheet, Stored};

/// How to read the input: the text encoding of a CSV, the sheet of a workbook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    pub encoding: EncodingChoice,
    /// The worksheet to read; None: the workbook's first visible worksheet.
    pub sheet: Option<String>,
}

/// Which text encoding the file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodingChoice {
    /// Byte-order mark if there is one, else UTF-8 if the bytes are valid UTF-8, else Shift_JIS
    /// if they are valid Shift_JIS, else UTF-8 with the bad rows rejected.
    #[default]
    Auto,
    /// UTF-8 (a UTF-8 or UTF-16 byte-order mark still wins).
    Utf8,
    /// Shift_JIS as Japanese Excel writes it (CP932, so 髙, ① and ～ decode).
    ShiftJis,
}

/// What identifies a row: the lower-cased email, or the `username` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyMode {
    /// The key is the trimmed, lower-cased email.
    Email,
    /// The key is the trimmed `username` cell, compared exactly.
    Username,
}

/// Rules from the user pool that the rows must satisfy. `None` fields mean "not checked".
#[derive(Debug, Clone, Default)]
pub struct ColumnRules {
    /// Attribute names the pool lets us write (e.g. "name", "given_name", "phone_number", "locale", "custom:tenant").
    /// When Some, any attribute column not in this set is a run-level error listing the valid names.
    pub writable: Option<BTreeSet<String>>,
    /// Attributes the pool requires (besides email), e.g. "name": a row with it missing/empty is invalid.
    pub required: BTreeSet<String>,
    /// Maximum length in characters per attribute (from the schema's StringAttributeConstraints).
    pub max_len: HashMap<String, usize>,
    /// Usernames may look like email addresses: true in free-form pools where email is not an
    /// alias (Cognito refuses email-format usernames only when email is an alias).
    pub email_usernames: bool,
    /// Usernames that differ only in case name one user (a case-insensitive pool): such keys
    /// are duplicates in the file.
    pub fold_username_case: bool,
}

/// One valid row, ready to be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Line number in the file where the record starts, as a spreadsheet shows it (header = 1, first data row = 2; blank lines count).
    pub line: u64,
    /// The identity of the row: lower-cased trimmed email (KeyMode::Email) or trimmed username (KeyMode::Username).
    pub key: String,
    /// Trimmed, lower-cased email.
    pub email: String,
    /// Trimmed `username` cell, when the column exists and the cell is not empty.
    pub username: Option<String>,
    /// The other columns, name -> trimmed value (phone_number normalised to E.164), empty values
    /// omitted, in header order; never email, username or groups.
    pub attributes: Vec<(String, String)>,
    /// From `groups`: `;`-separated, trimmed, empties dropped, de-duplicated keeping first order.
    pub groups: Vec<String>,
}

impl Row {
    /// The name a person knows the provider by: `name`, else `family_name given_name` (the
    /// order Japanese names are written in).
    pub fn display_name(&self) -> Option<String> {
        display_name(|n| {
            self.attributes
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.as_str())
        })
    }

    /// A digest of what the row asks for (email, username, attribute cells, groups) under
    /// `context` (the run's update mode): equal digests mean the row has not changed. Hex,
    /// 32 characters; the values themselves are never stored.
    pub fn digest(&self, context: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        // Each part is length-prefixed, so no two different rows hash alike by concatenation.
        let mut part = |s: &str| {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        };
        part(context);
        part(&self.email);
        part(self.username.as_deref().unwrap_or_default());
        let mut attributes: Vec<&(String, String)> = self.attributes.iter().collect();
        attributes.sort();
        for (n, v) in attributes {
            part(n);
            part(v);
        }
        part("groups");
        for g in &self.groups {
            part(g);
        }
        let out = h.finalize();
        out[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// `name`, else `family_name given_name`, from attributes looked up by `get`.
pub fn display_name<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
    let present = |n: &str| get(n).map(str::trim).filter(|v| !v.is_empty());
    present("name").map(str::to_owned).or_else(|| {
        let parts: Vec<&str> = [present("family_name"), present("given_name")]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    })
}

/// The attribute columns of a header: every column but email, username and groups.
pub fn attribute_columns(columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .filter(|c| matches!(role_of(c), Role::Attribute | Role::Phone))
        .cloned()
        .collect()
}

/// One rejected row: never sent to Cognito, reported as `invalid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Line where the record starts, counted like [`Row::line`].
    pub line: u64,
    /// The column at fault (header name), None when the whole row is at fault.
    pub column: Option<String>,
    /// Best-effort key, if the key cell could be read.
    pub key: Option<String>,
    /// Best-effort trimmed, lower-cased email.
    pub email: Option<String>,
    /// Best-effort name (`name`, else `family_name given_name`), so the help desk can tell who
    /// the row was about.
    pub name: Option<String>,
    /// One human sentence, at most about 200 characters (quoted values are cut with …).
    pub reason: String,
}

/// What one data line of the file turned into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// Passed every check.
    Valid(Row),
    /// Failed a check; never sent to Cognito.
    Invalid(Reject),
}

/// Problems that stop the whole run, each naming the line and column where it applies.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// Reading failed (open, or I/O mid-way).
    #[error("cannot read {}{}: {source}", describe_path(.path), near_line(.line))]
    Io {
        path: Option<PathBuf>,
        line: Option<u64>,
        source: io::Error,
    },
    /// No header: the input is empty or has only blank lines.
    #[error("the CSV is empty: it needs a header line naming the columns, at least \"email\"")]
    Empty,
    /// A header cell is empty.
    #[error(
        "column {} of the header (line {line}) has no name; name it or delete the column",
        col_ref(.position)
    )]
    EmptyColumnName { position: usize, line: u64 },
    /// Two header cells have the same name once normalised.
    #[error(
        "column {} appears twice in the header (line {line}): columns {} and {}",
        quote(.name),
        col_ref(.first),
        col_ref(.second)
    )]
    DuplicateColumn {
        name: String,
        first: usize,
        second: usize,
        line: u64,
    },
    /// A column the tool must never take from the file.
    #[error("column {} (header line {line}) cannot be imported: {why}", quote(.name))]
    ReservedColumn {
        name: String,
        why: &'static str,
        line: u64,
    },
    /// The header has no `email` column.
    #[error("the header (line {line}) has no \"email\" column; found: {}", list(.found))]
    MissingEmailColumn { found: Vec<String>, line: u64 },
    /// Key mode is username but there is no `username` column.
    #[error("rows are keyed by username but the header (line {line}) has no \"username\" column")]
    MissingUsernameColumn { line: u64 },
    /// Attribute columns the user pool does not let us write.
    #[error(
        "the user pool cannot take column(s) {} (header line {line}); valid columns are: {}",
        list(.unknown),
        list(.valid)
    )]
    UnknownColumns {
        unknown: Vec<String>,
        valid: Vec<String>,
        line: u64,
    },
    /// Attributes the user pool requires that have no column at all.
    #[error(
        "the user pool requires attribute(s) {} but the header (line {line}) has no such column",
        list(.missing)
    )]
    MissingRequiredColumns { missing: Vec<String>, line: u64 },
    /// The header itself cannot be decoded in the chosen encoding.
    #[error(
        "the header (line {line}) has bytes that are not valid {encoding}; choose the encoding with --encoding utf-8 or --encoding shift_jis"
    )]
    UndecodableEncoding { encoding: &'static str, line: u64 },
    /// A structural CSV problem after which reading cannot go on.
    #[error("malformed CSV near line {line}: {message}")]
    Csv { line: u64, message: String },
    /// The file is a workbook calamine cannot read.
    #[error("cannot read the workbook {}: {message}", .path.display())]
    Workbook { path: PathBuf, message: String },
    /// A workbook saved with a password to open it.
    #[error(
        "{} is password-protected (encrypted), so it cannot be read; open it in Excel and save a copy without the password (File > Info > Protect Workbook > Encrypt with Password: clear it)",
        .path.display()
    )]
    Encrypted { path: PathBuf },
    /// Named like a workbook, but its bytes are not one.
    #[error(
        "{} is named like a workbook but is not one (it does not start like an .xlsx, .xls or .ods file; a CSV renamed .xlsx?); if it is a CSV, name it .csv",
        .path.display()
    )]
    NotAWorkbook { path: PathBuf },
    /// `--sheet` names no worksheet of the workbook.
    #[error("{} has no sheet {}; its sheets are: {}", .path.display(), quote(.sheet), list(.sheets))]
    NoSuchSheet {
        path: PathBuf,
        sheet: String,
        sheets: Vec<String>,
    },
    /// A workbook with no visible worksheet (only chart sheets, or every sheet hidden).
    #[error("{} has no visible worksheet to read; name one with --sheet", .path.display())]
    NoWorksheet { path: PathBuf },
    /// The chosen sheet has no cell at all.
    #[error(
        "sheet {} is empty: it needs a header row naming the columns, at least \"email\"{}",
        quote(.sheet),
        other_sheets(.others)
    )]
    EmptySheet { sheet: String, others: Vec<String> },
    /// `--sheet` given for a CSV.
    #[error("--sheet applies to workbooks; {} is a CSV (it has no sheets)", .path.display())]
    SheetForCsv { path: PathBuf },
    /// A problem with the header of a sheet chosen by default, in a workbook that has others.
    #[error("{source} (in sheet {}{})", quote(.sheet), other_sheets(.others))]
    InSheet {
        sheet: String,
        others: Vec<String>,
        source: Box<InputError>,
    },
}

fn other_sheets(others: &[String]) -> String {
    if others.is_empty() {
        String::new()
    } else {
        format!(
            "; the workbook also has {}: choose one with --sheet",
            list(others)
        )
    }
}

/// The CSV parser over the decoded bytes, counting lines.
type CsvReader<R> = csv::Reader<LineTracker<DecodeReaderBytes<R, Vec<u8>>>>;

/// Where rows come from.
enum Source<R: Read> {
    Csv(Box<CsvReader<R>>),
    Sheet(Box<Sheet>),
}

/// An open CSV with a checked header. Generic over the byte source so tests can use in-memory
/// bytes.
pub struct CohortReader<R: Read> {
    source: Source<R>,
    columns: Vec<String>,
    header_line: u64,
    detected: Detected,
    path: Option<PathBuf>,
}

/// Opens a CSV file or a workbook and reads its header.
///
/// A workbook is known by its first bytes (a zip or an OLE compound file), whatever its name;
/// a file named like a workbook that is neither is refused.
///
/// With [`EncodingChoice::Auto`] a regular CSV file is read once end to end in fixed-size
/// chunks to choose the encoding (so a Shift_JIS byte on the last line is still seen), then
/// rewound. Pipes and other non-seekable files are treated like [`from_reader`].
pub fn open(
    path: &Path,
    options: &Options,
) -> Result<CohortReader<Box<dyn Read + Send>>, InputError> {
    let encoding = options.encoding;
    let io_error = |source| InputError::Io {
        path: Some(path.to_path_buf()),
        line: None,
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let regular = file.metadata().map(|m| m.is_file()).unwrap_or(false);
    let mut magic = [0u8; 8];
    let got = if regular {
        read_full(&mut file, &mut magic).map_err(io_error)?
    } else {
        0
    };
    match magic.get(..got).and_then(sheet::container) {
        Some(container) => {
            let mut bytes = magic.get(..got).unwrap_or_default().to_vec();
            file.read_to_end(&mut bytes).map_err(io_error)?;
            return from_sheet(sheet::open(
                path,
                bytes,
                container,
                options.sheet.as_deref(),
            )?);
        }
        None if sheet::has_workbook_extension(path) => {
            return Err(InputError::NotAWorkbook {
                path: path.to_path_buf(),
            });
        }
        None if options.sheet.is_some() => {
            return Err(InputError::SheetForCsv {
                path: path.to_path_buf(),
            });
        }
        None if regular => {
            file.seek(SeekFrom::Start(0)).map_err(io_error)?;
        }
        None => {}
    }
    if !regular || encoding != EncodingChoice::Auto {
        return start(Box::new(file), encoding, Some(path.to_path_buf()));
    }
    let mut chunk = vec![0u8; SNIFF_BYTES];
    let mut filled = read_full(&mut file, &mut chunk).map_err(io_error)?;
    let detected = match chunk.get(..filled).and_then(from_bom) {
        Some(detected) => detected,
        None => {
            let mut sniffer = Sniffer::new();
            loop {
                let at_end = filled < chunk.len();
                sniffer.feed(chunk.get(..filled).unwrap_or_default(), at_end);
                if at_end || sniffer.settled() {
                    break;
                }
                filled = read_full(&mut file, &mut chunk).map_err(io_error)?;
            }
            sniffer.verdict()
        }
    };
    drop(chunk);
    file.seek(SeekFrom::Start(0)).map_err(io_error)?;
    build(Box::new(file), detected, Some(path.to_path_buf()))
}

/// Wraps any byte source (stdin, in-memory bytes) and reads its header.
///
/// With [`EncodingChoice::Auto`] the encoding is guessed from the first 64 KiB only, so memory
/// stays bounded; if invalid UTF-8 appears later, those rows are rejected with a hint to pass
/// `--encoding shift_jis`.
pub fn from_reader<R: Read + Send + 'static>(
    reader: R,
    encoding: EncodingChoice,
) -> Result<CohortReader<Box<dyn Read + Send>>, InputError> {
    start(Box::new(reader), encoding, None)
}

impl<R: Read> CohortReader<R> {
    /// What was read (for logs): the CSV's encoding ("UTF-8", "UTF-8 with BOM", "Shift_JIS",
    /// "UTF-16LE" or "UTF-16BE"), or the workbook's kind and sheet.
    pub fn describe(&self) -> &str {
        match &self.source {
            Source::Csv(_) => self.detected.name,
            Source::Sheet(sheet) => &sheet.described,
        }
    }

    /// Says which sheet a header problem is in, when the sheet was the workbook's first and
    /// there are others (the providers are often on another one).
    fn in_sheet(&self, error: InputError) -> InputError {
        match &self.source {
            Source::Sheet(sheet) if !sheet.others.is_empty() => InputError::InSheet {
                sheet: sheet.name.clone(),
                others: sheet.others.clone(),
                source: Box::new(error),
            },
            Source::Sheet(_) | Source::Csv(_) => error,
        }
    }

    /// Normalised header names in file order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Checks the header against the key mode and rules (run-level errors), then streams the records.
    pub fn records(self, key_mode: KeyMode, rules: &ColumnRules) -> Result<Records<R>, InputError> {
        match self.check_header(key_mode, rules) {
            Ok(()) => Ok(self.into_records(key_mode, rules)),
            Err(e) => Err(self.in_sheet(e)),
        }
    }

    fn check_header(&self, key_mode: KeyMode, rules: &ColumnRules) -> Result<(), InputError> {
        let line = self.header_line;
        for name in &self.columns {
            if let Some(why) = reserved(name) {
                return Err(InputError::ReservedColumn {
                    name: name.clone(),
                    why,
                    line,
                });
            }
        }
        let position = |wanted: &str| self.columns.iter().position(|c| c == wanted);
        if position("email").is_none() {
            return Err(InputError::MissingEmailColumn {
                found: self.columns.clone(),
                line,
            });
        };
        let username = position("username");
        if key_mode == KeyMode::Username && username.is_none() {
            return Err(InputError::MissingUsernameColumn { line });
        }
        if let Some(writable) = &rules.writable {
            let unknown: Vec<String> = self
                .columns
                .iter()
                .filter(|c| {
                    matches!(role_of(c), Role::Attribute | Role::Phone) && !writable.contains(*c)
                })
                .cloned()
                .collect();
            if !unknown.is_empty() {
                let mut valid: BTreeSet<String> = writable
                    .iter()
                    .filter(|n| reserved(n).is_none())
                    .cloned()
                    .collect();
                valid.extend(["email", "username", "groups"].map(String::from));
                return Err(InputError::UnknownColumns {
                    unknown,
                    valid: valid.into_iter().collect(),
                    line,
                });
            }
        }
        // `sub` is "required" in every pool's schema but is Cognito's to set, and email is
        // checked on its own.
        let missing: Vec<String> = rules
            .required
            .iter()
            .filter(|r| r.as_str() != "email" && reserved(r).is_none())
            .filter(|r| !self.columns.contains(r))
            .cloned()
            .collect();
        if !missing.is_empty() {
            return Err(InputError::MissingRequiredColumns { missing, line });
        }
        Ok(())
    }

    fn into_records(self, key_mode: KeyMode, rules: &ColumnRules) -> Records<R> {
        let position = |wanted: &str| self.columns.iter().position(|c| c == wanted);
        let email = position("email").unwrap_or_default();
        let username = position("username");
        let columns = self
            .columns
            .iter()
            .map(|name| Column {
                name: name.clone(),
                role: role_of(name),
                limit: rules
                    .max_len
                    .get(name)
                    .map_or(MAX_VALUE_CHARS, |&max| max.min(MAX_VALUE_CHARS)),
                required: rules.required.contains(name),
            })
            .collect();
        let bad_bytes = self.detected.bad_bytes();
        Records {
            source: self.source,
            record: csv::StringRecord::new(),
            stored: Vec::new(),
            numbers_noted: BTreeSet::new(),
            columns,
            email,
            username,
            key_mode,
            email_usernames: rules.email_usernames,
            fold_username_case: rules.fold_username_case,
            first_line_of_key: HashMap::new(),
            bad_bytes,
            path: self.path,
            done: false,
            ends_at_eof: None,
        }
    }
}

impl<R: Read> fmt::Debug for CohortReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CohortReader")
            .field("encoding", &self.detected.name)
            .field("header_line", &self.header_line)
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

/// Iterator of records; `Err` only for a run-level problem after which reading cannot go on
/// (e.g. an I/O error), and then the iterator ends.
pub struct Records<R: Read> {
    source: Source<R>,
    record: csv::StringRecord,
    /// For a sheet's row: what each cell stored when it was not text (empty for a CSV).
    stored: Vec<Option<Stored>>,
    /// Columns whose numbers were taken as their digits, already said in the log.
    numbers_noted: BTreeSet<usize>,
    columns: Vec<Column>,
    email: usize,
    username: Option<usize>,
    key_mode: KeyMode,
    /// Usernames may look like emails (see [`ColumnRules::email_usernames`]).
    email_usernames: bool,
    /// See [`ColumnRules::fold_username_case`].
    fold_username_case: bool,
    /// 64-bit hash of each key seen -> line of its first row. Hashes rather than the keys
    /// themselves keep the index near 36 MB at a million rows instead of roughly three times
    /// that for the strings. Two different keys share a hash with odds of about n²/2⁶⁵
    /// (≈3·10⁻⁸ for a million rows); the cost of that is one row wrongly reported as a
    /// duplicate, never a wrong write.
    first_line_of_key: HashMap<u64, u64>,
    bad_bytes: &'static str,
    path: Option<PathBuf>,
    done: bool,
    /// The last line of the record just read, when it ran to the end of the input (a quote left
    /// open swallows everything after it, the file's final line break included).
    ends_at_eof: Option<u64>,
}

impl<R: Read> fmt::Debug for Records<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Records")
            .field("key_mode", &self.key_mode)
            .field("keys_seen", &self.first_line_of_key.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Iterator for Records<R> {
    type Item = Result<Record, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let csv = match &mut self.source {
                Source::Csv(csv) => csv,
                Source::Sheet(sheet) => match sheet.next_row(&mut self.record, &mut self.stored) {
                    None => {
                        self.done = true;
                        continue;
                    }
                    Some(line) => {
                        // A row with nothing in it but the tail of a merge above is blank.
                        if self.record.iter().all(|f| f.trim().is_empty())
                            && self
                                .stored
                                .iter()
                                .all(|s| matches!(s, None | Some(Stored::Merged(_))))
                        {
                            continue;
                        }
                        return Some(Ok(self.check(line)));
                    }
                },
            };
            let from = csv.position().byte();
            match csv.read_record(&mut self.record) {
                Ok(false) => self.done = true,
                Ok(true) => {
                    let line = csv.get_mut().line_of_record(from);
                    let consumed = csv.position().byte();
                    self.ends_at_eof = csv.get_mut().last_line_if_consumed(consumed);
                    // Excel leaves rows of bare commas where cells were cleared: not data.
                    if self.record.iter().all(|f| f.trim().is_empty()) {
                        continue;
                    }
                    return Some(Ok(self.check(line)));
                }
                Err(err) => {
                    let line = csv.get_mut().line_of_record(from);
                    let message = err.to_string();
                    match err.into_kind() {
                        // Unreachable after decoding to UTF-8, but a row is the right blast radius.
                        csv::ErrorKind::Utf8 { err, .. } => {
                            return Some(Ok(Record::Invalid(Reject {
                                line,
                                column: self.columns.get(err.field()).map(|c| c.name.clone()),
                                key: None,
                                email: None,
                                name: None,
                                reason: self.bad_bytes.to_owned(),
                            })));
                        }
                        csv::ErrorKind::Io(source) => {
                            self.done = true;
                            return Some(Err(InputError::Io {
                                path: self.path.clone(),
                                line: Some(line),
                                source,
                            }));
                        }
                        _ => {
                            self.done = true;
                            return Some(Err(InputError::Csv { line, message }));
                        }
                    }
                }
            }
        }
        None
    }
}

impl<R: Read> Records<R> {
    /// Validates the record just read; registers its key for duplicate detection.
    fn check(&mut self, line: u64) -> Record {
        let email = best_effort(&cell(&self.record, self.email).to_lowercase());
        let key = match self.key_mode {
            KeyMode::Email => email.clone(),
            KeyMode::Username => self
                .username
                .and_then(|i| best_effort(cell(&self.record, i))),
        };
        match self.validate(line) {
            Ok(row) => {
                self.note_numbers(line);
                Record::Valid(row)
            }
            Err(fault) => Record::Invalid(Reject {
                line,
                column: fault.column.and_then(|i| self.column_name(i)),
                key,
                email,
                name: self.best_effort_name(fault.column),
                reason: fault.reason,
            }),
        }
    }

    /// The record's name cells as a name; none when one of them is the cell at fault (a
    /// formula, a control character, too long), so the report never repeats what it refused.
    fn best_effort_name(&self, at_fault: Option<usize>) -> Option<String> {
        const NAME_COLUMNS: [&str; 3] = ["name", "family_name", "given_name"];
        if at_fault
            .and_then(|i| self.columns.get(i))
            .is_some_and(|c| NAME_COLUMNS.contains(&c.name.as_str()))
        {
            return None;
        }
        display_name(|attribute| {
            self.columns
                .iter()
                .position(|c| c.name == attribute)
                .map(|i| cell(&self.record, i))
        })
        .filter(|name| !name.chars().any(char::is_control))
        .and_then(|name| best_effort(&name))
    }

    /// A column as reasons name it: its header, and in a sheet its letters too ("phone (D)").
    fn column_name(&self, i: usize) -> Option<String> {
        let name = &self.columns.get(i)?.name;
        Some(match self.source {
            Source::Sheet(_) => format!("{name} ({})", letters(i + 1)),
            Source::Csv(_) => name.clone(),
        })
    }

    /// Says once per column that a sheet's numbers were taken as their digits: a number has no
    /// leading zero or plus sign, so what Excel dropped stays dropped, and the log says so.
    fn note_numbers(&mut self, line: u64) {
        for (i, stored) in self.stored.iter().enumerate() {
            if matches!(stored, Some(Stored::Number | Stored::Bool))
                && self.numbers_noted.insert(i)
                && let Some(column) = self.column_name(i)
            {
                tracing::warn!(
                    "line {line}, column {column}: the workbook stores {} here as a number; numbers in this column are taken as their digits, so a leading 0 or + that Excel dropped stays dropped (format the column as Text to keep them)",
                    quote(cell(&self.record, i))
                );
            }
        }
    }

    fn validate(&mut self, line: u64) -> Result<Row, Fault> {
        let (email, username) = self.identity(line)?;
        let (key, key_column) = match (self.key_mode, &username, self.username) {
            (KeyMode::Username, Some(name), Some(i)) => (name.clone(), i),
            _ => (email.clone(), self.email),
        };
        // The key is claimed even if a later check fails, so that fixing one of two rows for
        // the same person can never silently let the other one through.
        self.claim(line, &key, key_column)?;
        if self.key_mode == KeyMode::Email {
            check_email_as_username(&email).map_err(|why| Fault::at(self.email, why))?;
        }
        self.check_width()?;
        let (attributes, groups) = self.cells(line)?;
        Ok(Row {
            line,
            key,
            email,
            username,
            attributes,
            groups,
        })
    }

    /// Cell `i` as text, checked: what a workbook stored there, a line break in a sheet's cell,
    /// control characters, encoding damage and the column's length limit.
    fn text(&self, i: usize, line: u64) -> Result<&str, Fault> {
        let record = &self.record;
        let at = |reason: String| Fault::at(i, reason);
        let value = cell(record, i);
        if let Some(kind) = self.stored.get(i).and_then(Option::as_ref)
            && let Some(column) = self.columns.get(i)
        {
            check_stored(kind, value, column.role).map_err(at)?;
        }
        match self.columns.get(i) {
            Some(_) if matches!(self.source, Source::Sheet(_)) && value.contains(['\n', '\r']) => {
                Err(at(format!(
                    "contains a line break (a new line inside the cell, Alt+Enter in Excel): {}",
                    quote(value)
                )))
            }
            Some(column) => check_text(
                value,
                column,
                self.bad_bytes,
                (line, self.ends_at_eof),
                record,
            )
            .map(|()| value)
            .map_err(at),
            None => Ok(value),
        }
    }

    /// Who the row is: its email (checked, lower-cased) and its username, if the file has one.
    fn identity(&self, line: u64) -> Result<(String, Option<String>), Fault> {
        let email =
            check_email(self.text(self.email, line)?).map_err(|why| Fault::at(self.email, why))?;
        let username = match self.username {
            Some(i) => {
                let value = self.text(i, line)?;
                let at = |why: String| Fault::at(i, why);
                if self.key_mode == KeyMode::Username {
                    check_username(value, self.email_usernames).map_err(at)?;
                }
                formula_check(value).map_err(at)?;
                (!value.is_empty()).then(|| value.to_owned())
            }
            None => None,
        };
        Ok((email, username))
    }

    /// Claims the row's key, or says which line claimed it first.
    fn claim(&mut self, line: u64, key: &str, key_column: usize) -> Result<(), Fault> {
        let folded = match self.key_mode {
            KeyMode::Username if self.fold_username_case => key.to_lowercase(),
            KeyMode::Username | KeyMode::Email => key.to_owned(),
        };
        match self.first_line_of_key.entry(key_hash(&folded)) {
            std::collections::hash_map::Entry::Occupied(first) => Err(Fault::at(
                key_column,
                format!("duplicate of line {}", first.get()),
            )),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(line);
                Ok(())
            }
        }
    }

    /// A row wider than its header: a sheet's cell with no column name, or extra fields.
    fn check_width(&self) -> Result<(), Fault> {
        let (record, width) = (&self.record, self.columns.len());
        if let Source::Sheet(_) = self.source
            && let Some(extra) = (width..record.len()).find(|&i| {
                !cell(record, i).is_empty() || self.stored.get(i).is_some_and(Option::is_some)
            })
        {
            return Err(Fault {
                column: None,
                reason: format!(
                    "column {} has a value but no header; name the column or clear it",
                    letters(extra + 1)
                ),
            });
        }
        if record.len() > width && record.iter().skip(width).any(|f| !f.trim().is_empty()) {
            return Err(Fault {
                column: None,
                reason: format!("row has {} fields, header has {width}", record.len()),
            });
        }
        Ok(())
    }

    /// The attributes and groups of the row's other cells, each checked for its role.
    fn cells(&self, line: u64) -> Result<(Attributes, Vec<String>), Fault> {
        let mut attributes = Vec::new();
        let mut groups = Vec::new();
        for (i, column) in self.columns.iter().enumerate() {
            if matches!(column.role, Role::Email | Role::Username) {
                continue;
            }
            let value = self.text(i, line)?;
            let at = |why: String| Fault::at(i, why);
            if value.is_empty() {
                if column.required {
                    return Err(at(format!(
                        "{} is required by the user pool but empty",
                        quote(&column.name)
                    )));
                }
                continue;
            }
            match column.role {
                Role::Phone => {
                    attributes.push((column.name.clone(), normalise_phone(value).map_err(at)?))
                }
                Role::Groups => {
                    formula_check(value).map_err(at)?;
                    groups = parse_groups(value).map_err(at)?;
                }
                Role::Attribute | Role::Email | Role::Username => {
                    formula_check(value).map_err(at)?;
                    attributes.push((column.name.clone(), value.to_owned()));
                }
            }
        }
        Ok((attributes, groups))
    }
}

/// A row's attribute cells, name and trimmed value, in header order.
type Attributes = Vec<(String, String)>;

/// A sheet's cell that was not text: refused, or taken as its text. Numbers and TRUE/FALSE are
/// refused where a lost leading `+` or `0` changes who the row is (email, username, phone),
/// taken as their digits elsewhere. Dates, formulas, error values and merged cells are refused
/// everywhere: what Excel shows there is not what the file says.
fn check_stored(kind: &Stored, value: &str, role: Role) -> Result<(), String> {
    match (kind, role) {
        (Stored::Number | Stored::Bool, Role::Attribute | Role::Groups) => Ok(()),
        (Stored::Number | Stored::Bool, Role::Phone) => Err(format!(
            "the workbook stores this phone number as the number {}, which has lost its + (and any leading 0); format the column as Text and enter it as +81…",
            quote(value)
        )),
        (Stored::Number | Stored::Bool, Role::Email | Role::Username) => Err(format!(
            "the workbook stores {} here as a number, which may have lost leading zeros; format the column as Text and enter it again",
            quote(value)
        )),
        (Stored::Date(date), _) => Err(format!(
            "the workbook stores a date or time here ({date}), not text; format the column as Text and enter the value as it should read"
        )),
        (Stored::Formula(formula), _) => Err(format!(
            "the value comes from a formula (={}); paste the column as values (Paste Special > Values) so the file holds the text itself",
            cut(formula)
        )),
        (Stored::Error(error), _) => Err(format!(
            "the cell holds the error value {error}; fix or clear it"
        )),
        (Stored::Merged(range), _) => Err(format!(
            "the cell is part of the merged cells {range}: Excel shows the first cell's value here but the file holds nothing; unmerge the cells and fill each one"
        )),
    }
}

fn cut(text: &str) -> String {
    let mut out: String = text.chars().take(QUOTE_CHARS).collect();
    if text.chars().count() > QUOTE_CHARS {
        out.push('…');
    }
    out
}

/// A sheet, ready to read: its header found and checked like a CSV's.
fn from_sheet(mut sheet: Sheet) -> Result<CohortReader<Box<dyn Read + Send>>, InputError> {
    let mut record = csv::StringRecord::new();
    let mut stored = Vec::new();
    let empty = |sheet: &Sheet| InputError::EmptySheet {
        sheet: sheet.name.clone(),
        others: sheet.others.clone(),
    };
    let line = loop {
        let Some(line) = sheet.next_row(&mut record, &mut stored) else {
            return Err(empty(&sheet));
        };
        if record.iter().any(|f| !normalise_column(f).is_empty()) {
            break line;
        }
    };
    // A sheet's used range often runs past the table (a formatted, empty column): cells with
    // no name at the header's end are not columns.
    let fields: Vec<&str> = record.iter().collect();
    let named = fields
        .iter()
        .rposition(|f| !normalise_column(f).is_empty())
        .map_or(0, |i| i + 1);
    let header: csv::StringRecord = fields.into_iter().take(named).collect();
    let columns = header_columns(&header, line, PLAIN_UTF8).map_err(|e| match &sheet.others {
        others if others.is_empty() => e,
        others => InputError::InSheet {
            sheet: sheet.name.clone(),
            others: others.clone(),
            source: Box::new(e),
        },
    })?;
    Ok(CohortReader {
        source: Source::Sheet(Box::new(sheet)),
        columns,
        header_line: line,
        detected: PLAIN_UTF8,
        path: None,
    })
}

/// Chooses the encoding from the first [`SNIFF_BYTES`] and puts those bytes back in front.
fn start(
    mut source: Box<dyn Read + Send>,
    choice: EncodingChoice,
    path: Option<PathBuf>,
) -> Result<CohortReader<Box<dyn Read + Send>>, InputError> {
    let mut prefix = vec![0u8; SNIFF_BYTES];
    let filled = read_full(&mut source, &mut prefix).map_err(|source| InputError::Io {
        path: path.clone(),
        line: None,
        source,
    })?;
    prefix.truncate(filled);
    let detected = from_bom(&prefix).unwrap_or_else(|| match choice {
        EncodingChoice::Utf8 => PLAIN_UTF8,
        EncodingChoice::ShiftJis => SJIS,
        EncodingChoice::Auto => {
            let mut sniffer = Sniffer::new();
            sniffer.feed(&prefix, filled < SNIFF_BYTES);
            sniffer.verdict()
        }
    });
    let rejoined: Box<dyn Read + Send> = Box::new(Cursor::new(prefix).chain(source));
    build(rejoined, detected, path)
}

/// Sets up decoding and CSV parsing, and reads and normalises the header.
fn build<R: Read>(
    source: R,
    detected: Detected,
    path: Option<PathBuf>,
) -> Result<CohortReader<R>, InputError> {
    // Decoding even valid UTF-8 (rather than passing it through) turns bad bytes into U+FFFD in
    // the cell they belong to, so the reject can name the column.
    let decoder = DecodeReaderBytesBuilder::new()
        .encoding(Some(detected.encoding))
        .strip_bom(true)
        .build(source);
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(LineTracker::new(decoder));
    let mut record = csv::StringRecord::new();
    let line = loop {
        let from = csv.position().byte();
        match csv.read_record(&mut record) {
            Ok(false) => return Err(InputError::Empty),
            Ok(true) => {
                let line = csv.get_mut().line_of_record(from);
                if record.iter().all(|f| normalise_column(f).is_empty()) {
                    continue;
                }
                break line;
            }
            Err(err) => {
                let line = csv.get_mut().line_of_record(from);
                let message = err.to_string();
                return Err(match err.into_kind() {
                    csv::ErrorKind::Io(source) => InputError::Io {
                        path,
                        line: Some(line),
                        source,
                    },
                    csv::ErrorKind::Utf8 { .. } => InputError::UndecodableEncoding {
                        encoding: detected.name,
                        line,
                    },
                    _ => InputError::Csv { line, message },
                });
            }
        }
    };

    let columns = header_columns(&record, line, detected)?;
    Ok(CohortReader {
        source: Source::Csv(Box::new(csv)),
        columns,
        header_line: line,
        detected,
        path,
    })
}

/// The header's normalised column names, each checked: decodable, named, not twice.
fn header_columns(
    record: &csv::StringRecord,
    line: u64,
    detected: Detected,
) -> Result<Vec<String>, InputError> {
    let mut columns = Vec::with_capacity(record.len());
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(record.len());
    for (index, raw) in record.iter().enumerate() {
        let position = index + 1;
        if raw.contains('\u{FFFD}') {
            return Err(InputError::UndecodableEncoding {
                encoding: detected.name,
                line,
            });
        }
        let name = normalise_column(raw);
        if name.is_empty() {
            return Err(InputError::EmptyColumnName { position, line });
        }
        if let Some(&first) = seen.get(&name) {
            return Err(InputError::DuplicateColumn {
                name,
                first,
                second: position,
                line,
            });
        }
        seen.insert(name.clone(), position);
        columns.push(name);
    }
    Ok(columns)
}

/// Counts physical lines in the decoded stream the CSV parser reads, because the parser's own
/// line count does not include the blank lines it skips before a record. `\n`, `\r\n` and a
/// lone `\r` each end a line, as they do for the parser.
struct LineTracker<R> {
    inner: R,
    /// Bytes handed to the parser so far.
    offset: u64,
    /// Line of the next byte.
    line: u64,
    after_cr: bool,
    at_line_start: bool,
    /// (offset, line) of the first byte of each non-blank line the parser has read ahead.
    /// Records start only there; entries are dropped as records are consumed, so this holds
    /// just the parser's read-ahead.
    line_starts: VecDeque<(u64, u64)>,
    /// The inner reader has reported the end of its input.
    at_eof: bool,
    /// Line of the last non-blank line read so far.
    last_content_line: u64,
}

impl<R> LineTracker<R> {
    fn new(inner: R) -> Self {
        LineTracker {
            inner,
            offset: 0,
            line: 1,
            after_cr: false,
            at_line_start: true,
            line_starts: VecDeque::new(),
            at_eof: false,
            last_content_line: 1,
        }
    }

    /// The last non-blank line of the input, if the parser, having consumed `consumed` bytes,
    /// has reached the end of it.
    fn last_line_if_consumed(&self, consumed: u64) -> Option<u64> {
        (self.at_eof && consumed >= self.offset).then_some(self.last_content_line)
    }

    /// Line of the first non-blank line at or after `from`, the parser's byte position before it
    /// read the record.
    fn line_of_record(&mut self, from: u64) -> u64 {
        while let Some((offset, line)) = self.line_starts.pop_front() {
            if offset >= from {
                return line;
            }
        }
        self.line
    }
}

impl<R: Read> Read for LineTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.at_eof = true;
        }
        for &byte in buf.get(..n).unwrap_or_default() {
            match byte {
                b'\n' => {
                    if !self.after_cr {
                        self.line += 1;
                    }
                    self.after_cr = false;
                    self.at_line_start = true;
                }
                b'\r' => {
                    self.line += 1;
                    self.after_cr = true;
                    self.at_line_start = true;
                }
                _ => {
                    if self.at_line_start {
                        self.line_starts.push_back((self.offset, self.line));
                        self.last_content_line = self.line;
                        self.at_line_start = false;
                    }
                    self.after_cr = false;
                }
            }
            self.offset += 1;
        }
        Ok(n)
    }
}

fn describe_path(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => path.display().to_string(),
        None => "the input".to_owned(),
    }
}

fn near_line(line: &Option<u64>) -> String {
    match line {
        Some(line) => format!(" near line {line}"),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use encoding_rs::SHIFT_JIS;
    use proptest::prelude::*;

    type Reader = CohortReader<Box<dyn Read + Send>>;

    fn reader(bytes: &[u8]) -> Result<Reader, InputError> {
        from_reader(Cursor::new(bytes.to_vec()), EncodingChoice::Auto)
    }

    fn read_with(
        bytes: &[u8],
        key_mode: KeyMode,
        rules: &ColumnRules,
    ) -> Result<Vec<Record>, InputError> {
        reader(bytes)?.records(key_mode, rules)?.collect()
    }

    fn read(text: &str) -> Vec<Record> {
        read_with(text.as_bytes(), KeyMode::Email, &ColumnRules::default()).expect("readable")
    }

    fn row(record: &Record) -> &Row {
        match record {
            Record::Valid(row) => row,
            Record::Invalid(reject) => panic!("expected a valid row, got {reject:?}"),
        }
    }

    fn reject(record: &Record) -> &Reject {
        match record {
            Record::Invalid(reject) => reject,
            Record::Valid(row) => panic!("expected a reject, got {row:?}"),
        }
    }

    fn lines(records: &[Record]) -> Vec<u64> {
        records
            .iter()
            .map(|r| match r {
                Record::Valid(row) => row.line,
                Record::Invalid(reject) => reject.line,
            })
            .collect()
    }

    fn attr<'a>(row: &'a Row, name: &str) -> Option<&'a str> {
        row.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// One test per row of `check_stored`'s rule: what a sheet's non-text cell becomes, by
    /// the column's role.
    #[test]
    fn cells_a_sheet_stored_as_other_than_text_are_refused_or_taken_by_role() {
        let taken = |kind: Stored, role: Role| check_stored(&kind, "42", role).is_ok();
        for role in [Role::Attribute, Role::Groups] {
            assert!(taken(Stored::Number, role), "{role:?}");
            assert!(taken(Stored::Bool, role), "{role:?}");
        }
        for role in [Role::Email, Role::Username, Role::Phone] {
            assert!(!taken(Stored::Number, role), "{role:?}");
            assert!(!taken(Stored::Bool, role), "{role:?}");
        }
        for role in [
            Role::Email,
            Role::Username,
            Role::Phone,
            Role::Attribute,
            Role::Groups,
        ] {
            assert!(!taken(Stored::Date("2024-04-01".into()), role));
            assert!(!taken(Stored::Formula("A1&B1".into()), role));
            assert!(!taken(Stored::Error("#N/A".into()), role));
            assert!(!taken(Stored::Merged("D8:D9".into()), role));
        }
        let phone = check_stored(&Stored::Number, "819012345678", Role::Phone).unwrap_err();
        assert!(phone.contains("lost its +"), "{phone}");
        let long =
            check_stored(&Stored::Formula("X".repeat(500)), "", Role::Attribute).unwrap_err();
        assert!(long.chars().count() < 250, "a formula is cut: {long}");
    }

    #[test]
    fn a_workbook_s_rows_are_excel_s_row_numbers_and_its_columns_have_letters() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/workbook-cells.xlsx");
        let reader = open(&path, &Options::default()).unwrap();
        assert_eq!(
            reader.describe(),
            r#"Excel workbook (.xlsx), sheet "Providers""#
        );
        assert_eq!(
            reader.columns(),
            ["email", "name", "phone_number", "groups", "nickname"]
        );
        let records: Vec<Record> = reader
            .records(KeyMode::Email, &ColumnRules::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(lines(&records), (3..=14).collect::<Vec<u64>>());
        assert_eq!(
            attr(row(&records[0]), "phone_number"),
            Some("+819012345678")
        );
        assert_eq!(attr(row(&records[8]), "nickname"), Some("42"));
        assert_eq!(
            reject(&records[1]).column.as_deref(),
            Some("phone_number (C)")
        );
    }

    #[test]
    fn bom_is_stripped() {
        let bytes = "\u{FEFF}email,name\r\nTaro@Example.com,山田 太郎\r\n".as_bytes();
        let cohort = reader(bytes).unwrap();
        assert_eq!(cohort.describe(), "UTF-8 with BOM");
        assert_eq!(cohort.columns(), ["email", "name"]);
        let records: Vec<Record> = cohort
            .records(KeyMode::Email, &ColumnRules::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            records,
            [Record::Valid(Row {
                line: 2,
                key: "taro@example.com".into(),
                email: "taro@example.com".into(),
                username: None,
                attributes: vec![("name".into(), "山田 太郎".into())],
                groups: vec![],
            })]
        );
    }

    #[test]
    fn plain_utf8_is_named_plainly() {
        assert_eq!(reader(b"email\n").unwrap().describe(), "UTF-8");
    }

    #[test]
    fn shift_jis_is_detected_from_bytes() {
        let text = "email,name,family_name\r\ntakahashi@example.com,髙橋 ①郎,髙橋\r\n";
        let (bytes, _, unmappable) = SHIFT_JIS.encode(text);
        assert!(!unmappable);
        assert!(std::str::from_utf8(&bytes).is_err());
        let cohort = reader(&bytes).unwrap();
        assert_eq!(cohort.describe(), "Shift_JIS");
        let records: Vec<Record> = cohort
            .records(KeyMode::Email, &ColumnRules::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(attr(row(&records[0]), "name"), Some("髙橋 ①郎"));
        assert_eq!(attr(row(&records[0]), "family_name"), Some("髙橋"));
    }

    #[test]
    fn open_scans_the_whole_file_for_shift_jis() {
        // 100 KiB of ASCII rows first: beyond what from_reader would look at.
        let mut text = String::from("email,name\n");
        for i in 0..4000 {
            text.push_str(&format!("user{i}@example.com,User {i}\n"));
        }
        assert!(text.len() > SNIFF_BYTES);
        text.push_str("last@example.com,髙木 ～\n");
        let (bytes, _, _) = SHIFT_JIS.encode(&text);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        io::Write::write_all(&mut file, &bytes).unwrap();
        let cohort = open(file.path(), &Options::default()).unwrap();
        assert_eq!(cohort.describe(), "Shift_JIS");
        let records: Vec<Record> = cohort
            .records(KeyMode::Email, &ColumnRules::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(records.len(), 4001);
        let last = row(&records[4000]);
        assert_eq!(last.line, 4002);
        assert_eq!(attr(last, "name"), Some("髙木 ～"));
    }

    #[test]
    fn open_reads_utf8_and_reports_missing_files() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        io::Write::write_all(&mut file, "email,name\na@example.com,Ａ\n".as_bytes()).unwrap();
        let cohort = open(file.path(), &Options::default()).unwrap();
        assert_eq!(cohort.describe(), "UTF-8");
        let missing = open(Path::new("/nonexistent/cohort.csv"), &Options::default());
        let err = missing.unwrap_err();
        assert!(matches!(err, InputError::Io { line: None, .. }), "{err:?}");
        assert!(err.to_string().contains("/nonexistent/cohort.csv"));
    }

    #[test]
    fn forced_encodings_are_obeyed_but_a_bom_wins() {
        let (sjis, _, _) = SHIFT_JIS.encode("email,name\na@example.com,山田\n");
        let forced = from_reader(Cursor::new(sjis.to_vec()), EncodingChoice::ShiftJis).unwrap();
        assert_eq!(forced.describe(), "Shift_JIS");
        let records: Vec<Record> = forced
            .records(KeyMode::Email, &ColumnRules::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(attr(row(&records[0]), "name"), Some("山田"));

        let as_utf8 = from_reader(Cursor::new(sjis.to_vec()), EncodingChoice::Utf8).unwrap();
        assert_eq!(as_utf8.describe(), "UTF-8");
        let records: Vec<Record> = as_utf8
            .records(KeyMode::Email, &ColumnRules::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(reject(&records[0]).reason, INVALID_UTF8);

        let bom = "\u{FEFF}email,name\na@example.com,山田\n"
            .as_bytes()
            .to_vec();
        let cohort = from_reader(Cursor::new(bom), EncodingChoice::ShiftJis).unwrap();
        assert_eq!(cohort.describe(), "UTF-8 with BOM");
        assert_eq!(cohort.columns(), ["email", "name"]);
    }

    #[test]
    fn utf16_with_bom_is_decoded() {
        let mut bytes = vec![0xFF, 0xFE];
        for unit in "email\tx\r\na@example.com\r\n".encode_utf16() {
            bytes.extend_from_slice(&unit.to_le_bytes());
        }
        let cohort = reader(&bytes).unwrap();
        assert_eq!(cohort.describe(), "UTF-16LE");
        assert_eq!(cohort.columns(), ["email\tx"]);
    }

    #[test]
    fn invalid_bytes_that_are_not_shift_jis_reject_the_row_and_name_the_column() {
        let bytes = b"email,name\nbad@example.com,ab\xFF\x81 cd\ngood@example.com,ok\n";
        let cohort = reader(bytes).unwrap();
        assert_eq!(cohort.describe(), "UTF-8");
        let records: Vec<Record> = cohort
            .records(KeyMode::Email, &ColumnRules::default())
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let bad = reject(&records[0]);
        assert_eq!(bad.line, 2);
        assert_eq!(bad.column.as_deref(), Some("name"));
        assert_eq!(bad.email.as_deref(), Some("bad@example.com"));
        assert_eq!(
            bad.reason,
            "invalid UTF-8 bytes; if this file is not UTF-8, pass --encoding shift_jis"
        );
        assert_eq!(row(&records[1]).email, "good@example.com");
    }

    #[test]
    fn undecodable_header_is_a_run_level_error() {
        let err = reader(b"em\xFFail,name\n").unwrap_err();
        assert!(
            matches!(
                err,
                InputError::UndecodableEncoding {
                    encoding: "UTF-8",
                    line: 1
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn header_names_are_normalised() {
        let cohort =
            reader(" Email ,\u{200B}Name,Custom:TenantId,PHONE_NUMBER\n".as_bytes()).unwrap();
        assert_eq!(
            cohort.columns(),
            ["email", "name", "custom:TenantId", "phone_number"]
        );
    }

    #[test]
    fn missing_email_column() {
        let err = read_with(
            b"mail,Name\nx@example.com,X\n",
            KeyMode::Email,
            &ColumnRules::default(),
        )
        .unwrap_err();
        match &err {
            InputError::MissingEmailColumn { found, line } => {
                assert_eq!(found, &["mail", "name"]);
                assert_eq!(*line, 1);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "the header (line 1) has no \"email\" column; found: \"mail\", \"name\""
        );
    }

    #[test]
    fn duplicate_column() {
        let err = reader(b"email,Name,name\n").unwrap_err();
        assert!(
            matches!(&err, InputError::DuplicateColumn { name, first: 2, second: 3, line: 1 } if name == "name"),
            "{err:?}"
        );
        assert!(err.to_string().contains("columns 2 (B) and 3 (C)"), "{err}");
    }

    #[test]
    fn empty_column_name() {
        let err = reader(b"email,,name\n").unwrap_err();
        assert!(
            matches!(
                err,
                InputError::EmptyColumnName {
                    position: 2,
                    line: 1
                }
            ),
            "{err:?}"
        );
        assert_eq!(col_ref(&28), "28 (AB)");
    }

    #[test]
    fn reserved_columns() {
        for name in [
            "sub",
            "email_verified",
            "phone_number_verified",
            "cognito:username",
            "Cognito:Mfa",
        ] {
            let text = format!("email,{name}\n");
            let err =
                read_with(text.as_bytes(), KeyMode::Email, &ColumnRules::default()).unwrap_err();
            match err {
                InputError::ReservedColumn {
                    name: got, line, ..
                } => {
                    assert_eq!(got, name.to_lowercase());
                    assert_eq!(line, 1);
                }
                other => panic!("{name}: unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn unknown_columns_against_rules() {
        let rules = ColumnRules {
            writable: Some(
                ["name", "given_name", "email", "email_verified"]
                    .map(String::from)
                    .into(),
            ),
            ..ColumnRules::default()
        };
        let err = read_with(
            b"email,name,nickname,groups,phone_number,username\n",
            KeyMode::Email,
            &rules,
        )
        .unwrap_err();
        match err {
            InputError::UnknownColumns { unknown, valid, .. } => {
                assert_eq!(unknown, ["nickname", "phone_number"]);
                assert_eq!(valid, ["email", "given_name", "groups", "name", "username"]);
            }
            other => panic!("unexpected {other:?}"),
        }
        let ok = read_with(
            b"email,name,groups\na@example.com,A,x\n",
            KeyMode::Email,
            &rules,
        )
        .unwrap();
        assert_eq!(ok.len(), 1);
    }

    #[test]
    fn empty_input_and_blank_lines_only() {
        for bytes in [&b""[..], b"\n\n\r\n", b"\xEF\xBB\xBF", b",,,\n , \n"] {
            let err = reader(bytes).unwrap_err();
            assert!(matches!(err, InputError::Empty), "{bytes:?}: {err:?}");
        }
    }

    #[test]
    fn header_only_gives_no_records() {
        assert_eq!(read("email,name\r\n"), []);
        assert_eq!(read("email,name"), []);
    }

    #[test]
    fn ragged_rows() {
        let records = read(
            "email,name,locale\na@example.com,A,ja,extra\nb@example.com\nc@example.com,C,ja,,\n",
        );
        let long = reject(&records[0]);
        assert_eq!(long.column, None);
        assert_eq!(long.reason, "row has 4 fields, header has 3");
        assert_eq!(long.key.as_deref(), Some("a@example.com"));
        let short = row(&records[1]);
        assert_eq!(short.attributes, []);
        // Trailing empty cells (a trailing comma from Excel) are harmless.
        assert_eq!(attr(row(&records[2]), "locale"), Some("ja"));
    }

    #[test]
    fn blank_lines_keep_physical_line_numbers() {
        let text = "email,name\n\na@example.com,A\n\n\nb@example.com,B\n,,\nc@example.com,C\n";
        assert_eq!(lines(&read(text)), [3, 6, 8]);
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(lines(&read(&crlf)), [3, 6, 8]);
        let cr = text.replace('\n', "\r");
        assert_eq!(lines(&read(&cr)), [3, 6, 8]);
        assert_eq!(lines(&read("\n\nemail\n\nx@example.com\n")), [5]);
    }

    #[test]
    fn quoted_newline_keeps_next_line_number() {
        let text = "email,name\na@example.com,\"two\nlines\"\nb@example.com,\"B, Jr.\"\n";
        let records = read(text);
        let first = reject(&records[0]);
        assert_eq!(first.line, 2);
        assert_eq!(first.column.as_deref(), Some("name"));
        assert!(
            first
                .reason
                .starts_with("contains a line break (the row runs from line 2 to 3"),
            "{}",
            first.reason
        );
        let second = row(&records[1]);
        assert_eq!(second.line, 4);
        assert_eq!(attr(second, "name"), Some("B, Jr."));
    }

    #[test]
    fn unclosed_quote_is_rejected_with_its_span() {
        // Four lines: the quote opened on line 2 swallows lines 3 and 4, not a fifth.
        let text = "email,name\na@example.com,\"Taro\nb@example.com,Jiro\nc@example.com,Saburo\n";
        let records = read(text);
        assert_eq!(records.len(), 1);
        let r = reject(&records[0]);
        assert_eq!(r.line, 2);
        assert!(
            r.reason
                .contains("from line 2 to 4; check for a quote left open"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn unclosed_quote_span_ends_at_the_last_line_of_the_file() {
        let span = |text: &str| -> String {
            let records = read(text);
            let r = reject(records.last().expect("a record"));
            r.reason
                .split_once(';')
                .map(|(span, _)| span.to_owned())
                .unwrap_or_default()
        };
        let four_lines =
            "email,name\na@example.com,\"Taro\nb@example.com,Jiro\nc@example.com,Saburo";
        let want = "contains a line break (the row runs from line 2 to 4";
        assert_eq!(span(four_lines), want, "no final line break");
        assert_eq!(span(&format!("{four_lines}\n")), want);
        assert_eq!(
            span(&format!("{four_lines}\n\n\n")),
            want,
            "trailing blank lines"
        );
        assert_eq!(span(&four_lines.replace('\n', "\r\n")), want, "CRLF");
        assert_eq!(
            span(&format!("{}\r\n", four_lines.replace('\n', "\r\n"))),
            want
        );
        assert_eq!(span(&four_lines.replace('\n', "\r")), want, "CR only");
        // Opened after a valid row, with more rows behind it (kept under the length limit).
        let mut long = String::from("email,name\nok@example.com,OK\nx@example.com,\"open\n");
        for i in 0..80 {
            long.push_str(&format!("u{i}@example.com,User {i}\n"));
        }
        assert_eq!(
            span(&long),
            "contains a line break (the row runs from line 3 to 83"
        );
        // Quotes that close: the breaks inside the record still decide, also on the last row.
        for text in [
            "email,name\na@example.com,\"two\nlines\"",
            "email,name\na@example.com,\"two\nlines\"\n",
            "email,name\na@example.com,\"two\nlines\"\n\n",
            "email,name\na@example.com,\"two\nlines\"\nb@example.com,B\n",
        ] {
            let records = read(text);
            assert_eq!(
                reject(&records[0])
                    .reason
                    .split_once(';')
                    .map(|(span, _)| span),
                Some("contains a line break (the row runs from line 2 to 3"),
                "{text:?}"
            );
        }
    }

    #[test]
    fn duplicate_keys_by_case_and_space() {
        let records = read(
            "email\ntaro@example.com\n\n  Taro@EXAMPLE.com \njiro@example.com\nTARO@example.com\n",
        );
        assert_eq!(row(&records[0]).key, "taro@example.com");
        let dup = reject(&records[1]);
        assert_eq!(dup.line, 4);
        assert_eq!(dup.reason, "duplicate of line 2");
        assert_eq!(dup.column.as_deref(), Some("email"));
        assert_eq!(dup.key.as_deref(), Some("taro@example.com"));
        assert_eq!(row(&records[2]).line, 5);
        assert_eq!(reject(&records[3]).reason, "duplicate of line 2");
    }

    #[test]
    fn usernames_in_another_case_are_duplicates_where_the_pool_ignores_case() {
        let text = "email,username\na@example.com,Taro\nb@example.com,taro\n";
        let sensitive =
            read_with(text.as_bytes(), KeyMode::Username, &ColumnRules::default()).unwrap();
        assert_eq!(
            row(&sensitive[1]).key,
            "taro",
            "case-sensitive: another user"
        );
        let rules = ColumnRules {
            fold_username_case: true,
            ..ColumnRules::default()
        };
        let insensitive = read_with(text.as_bytes(), KeyMode::Username, &rules).unwrap();
        assert_eq!(reject(&insensitive[1]).reason, "duplicate of line 2");
        assert_eq!(reject(&insensitive[1]).column.as_deref(), Some("username"));
    }

    #[test]
    fn invalid_first_occurrence_still_claims_the_key() {
        let records = read("email,phone_number\na@example.com,123\na@example.com,+81901234567\n");
        assert_eq!(reject(&records[0]).column.as_deref(), Some("phone_number"));
        assert_eq!(reject(&records[1]).reason, "duplicate of line 2");
    }

    #[test]
    fn username_key_mode() {
        let text = "email,username\na@example.com, Taro \nb@example.com,taro\nc@example.com,Taro\nd@example.com,\ne@example.com,x@example.com\nf@example.com,has space\n";
        let records =
            read_with(text.as_bytes(), KeyMode::Username, &ColumnRules::default()).unwrap();
        let first = row(&records[0]);
        assert_eq!(first.key, "Taro");
        assert_eq!(first.username.as_deref(), Some("Taro"));
        assert_eq!(row(&records[1]).key, "taro");
        assert_eq!(reject(&records[2]).reason, "duplicate of line 2");
        assert_eq!(reject(&records[2]).key.as_deref(), Some("Taro"));
        assert_eq!(reject(&records[3]).column.as_deref(), Some("username"));
        assert!(
            reject(&records[4])
                .reason
                .starts_with("username must not be an email address")
        );
        assert!(
            reject(&records[5])
                .reason
                .starts_with("username must not contain spaces")
        );

        let err = read_with(
            b"email\na@example.com\n",
            KeyMode::Username,
            &ColumnRules::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, InputError::MissingUsernameColumn { line: 1 }),
            "{err:?}"
        );

        // In email mode the username column is carried, not required.
        let records = read("email,username\na@example.com,\nb@example.com,bee\n");
        assert_eq!(row(&records[0]).username, None);
        assert_eq!(row(&records[0]).key, "a@example.com");
        assert_eq!(row(&records[1]).username.as_deref(), Some("bee"));
    }

    #[test]
    fn phone_numbers_are_normalised_or_rejected() {
        let cases = [
            ("+81 90-1234-5678", Ok("+819012345678")),
            ("(+81) 90.1234.5678", Ok("+819012345678")),
            ("＋８１ ９０－１２３４－５６７８", Ok("+819012345678")),
            ("+1 (415) 555-0100", Ok("+14155550100")),
            (
                "090-1234-5678",
                Err("phone_number needs the country code in E.164 form, e.g. +81901234567"),
            ),
            ("+0123456789", Err("not a valid phone_number")),
            ("+12345", Err("not a valid phone_number")),
            ("+1234567890123456", Err("not a valid phone_number")),
            ("+81 90 CALL ME", Err("not a valid phone_number")),
        ];
        for (input, expected) in cases {
            let text = format!("email,phone_number\na@example.com,{input}\n");
            let records = read(&text);
            match expected {
                Ok(normalised) => assert_eq!(
                    attr(row(&records[0]), "phone_number"),
                    Some(normalised),
                    "{input}"
                ),
                Err(prefix) => {
                    let r = reject(&records[0]);
                    assert_eq!(r.column.as_deref(), Some("phone_number"), "{input}");
                    assert!(r.reason.starts_with(prefix), "{input}: {}", r.reason);
                }
            }
        }
    }

    #[test]
    fn formula_cells_are_rejected() {
        for cell in ["=SUM(A1:A2)", "@cmd", "+cmd|' /C calc'!A0", "-x"] {
            let text = format!(
                "email,name\na@example.com,\"{}\"\n",
                cell.replace('"', "\"\"")
            );
            let records = read(&text);
            let r = reject(&records[0]);
            assert_eq!(r.column.as_deref(), Some("name"), "{cell}");
            assert!(
                r.reason.starts_with("looks like a spreadsheet formula"),
                "{cell}: {}",
                r.reason
            );
        }
        for cell in ["-5", "+1", "-", "a=b", "太郎"] {
            let text = format!("email,name\na@example.com,{cell}\n");
            assert_eq!(attr(row(&read(&text)[0]), "name"), Some(cell), "{cell}");
        }
        let records = read("email,groups\na@example.com,=HYPERLINK(\"x\")\n");
        assert_eq!(reject(&records[0]).column.as_deref(), Some("groups"));
    }

    #[test]
    fn megabyte_cell_gets_a_short_reason() {
        let huge = "あ".repeat(1 << 20);
        let text = format!("email,name\na@example.com,{huge}\nb@example.com,B\n");
        let records = read(&text);
        let r = reject(&records[0]);
        assert_eq!(r.column.as_deref(), Some("name"));
        assert_eq!(
            r.reason,
            "value is 1048576 characters long; the limit for \"name\" is 2048"
        );
        assert!(r.reason.chars().count() < 300);
        assert_eq!(row(&records[1]).line, 3);

        let huge_email = format!("{}@example.com", "a".repeat(1 << 20));
        let records = read(&format!("email\n{huge_email}\n"));
        let r = reject(&records[0]);
        assert!(r.reason.chars().count() < 300, "{}", r.reason);
        assert_eq!(r.email, None);
    }

    #[test]
    fn control_characters_are_rejected_but_tabs_pass() {
        let records = read("email,name\na@example.com,A\u{7}B\nb@example.com,\"A\tB\"\n");
        assert_eq!(
            reject(&records[0]).reason,
            "contains the control character U+0007: \"A\\u{7}B\""
        );
        assert_eq!(attr(row(&records[1]), "name"), Some("A\tB"));
    }

    #[test]
    fn required_attributes() {
        let rules = ColumnRules {
            required: ["name", "email", "sub"].map(String::from).into(),
            ..ColumnRules::default()
        };
        let records = read_with(
            b"email,name\na@example.com,  \nb@example.com,B\n",
            KeyMode::Email,
            &rules,
        )
        .unwrap();
        let r = reject(&records[0]);
        assert_eq!(r.column.as_deref(), Some("name"));
        assert_eq!(r.reason, "\"name\" is required by the user pool but empty");
        assert_eq!(row(&records[1]).line, 3);

        let err = read_with(b"email\na@example.com\n", KeyMode::Email, &rules).unwrap_err();
        assert!(
            matches!(&err, InputError::MissingRequiredColumns { missing, line: 1 } if missing == &["name"]),
            "{err:?}"
        );
    }

    #[test]
    fn email_like_usernames_only_where_the_pool_allows_them() {
        let input = b"username,email\nhanako@example.com,hanako@example.com\n";
        let alias_pool = read_with(input, KeyMode::Username, &ColumnRules::default()).unwrap();
        let r = reject(&alias_pool[0]);
        assert_eq!(r.column.as_deref(), Some("username"));
        assert!(
            r.reason.contains("must not be an email address"),
            "{}",
            r.reason
        );
        let plain = ColumnRules {
            email_usernames: true,
            ..ColumnRules::default()
        };
        let free_form = read_with(input, KeyMode::Username, &plain).unwrap();
        assert_eq!(row(&free_form[0]).key, "hanako@example.com");
    }

    #[test]
    fn max_len_from_rules() {
        let rules = ColumnRules {
            max_len: [("name".to_owned(), 5)].into(),
            ..ColumnRules::default()
        };
        let records = read_with(
            "email,name\na@example.com,山田 太郎\nb@example.com,山田 太郎太\n".as_bytes(),
            KeyMode::Email,
            &rules,
        )
        .unwrap();
        assert_eq!(attr(row(&records[0]), "name"), Some("山田 太郎"));
        assert_eq!(
            reject(&records[1]).reason,
            "value is 6 characters long; the limit for \"name\" is 5"
        );
    }

    #[test]
    fn groups_parsing() {
        let records = read(
            "email,groups\na@example.com, providers ; beta;;providers ; \nb@example.com,\nc@example.com,a；b\nd@example.com,beta testers\n",
        );
        assert_eq!(row(&records[0]).groups, ["providers", "beta"]);
        assert!(row(&records[0]).attributes.is_empty());
        assert_eq!(row(&records[1]).groups, Vec::<String>::new());
        assert_eq!(row(&records[2]).groups, ["a", "b"]);
        let r = reject(&records[3]);
        assert_eq!(r.column.as_deref(), Some("groups"));
        assert!(r.reason.starts_with("group name must not contain spaces"));

        let long = "g".repeat(129);
        let records = read(&format!(
            "email,groups\na@example.com,ok;{long}\nb@example.com,{}\n",
            "g".repeat(128)
        ));
        assert!(
            reject(&records[0])
                .reason
                .starts_with("group name is longer than 128")
        );
        assert_eq!(row(&records[1]).groups, ["g".repeat(128)]);
    }

    #[test]
    fn email_edge_cases() {
        let long_local = format!("{}@example.com", "a".repeat(65));
        let max_local = format!("{}@example.com", "a".repeat(64));
        let too_long = format!(
            "{}@{}.com",
            "a".repeat(60),
            "b".repeat(63) + "." + &"c".repeat(63) + "." + &"d".repeat(63)
        );
        let cases: &[(&str, Result<&str, &str>)] = &[
            ("taro.yamada@example.com", Ok("taro.yamada@example.com")),
            ("  Taro.Yamada@Example.COM  ", Ok("taro.yamada@example.com")),
            ("a+tag@sub.example.co.jp", Ok("a+tag@sub.example.co.jp")),
            ("o'brien@example.com", Ok("o'brien@example.com")),
            ("x@a-b.example", Ok("x@a-b.example")),
            (&max_local, Ok(&max_local)),
            ("", Err("email is required but empty")),
            (
                "foo@",
                Err("not a valid email address (nothing after the @)"),
            ),
            (
                "@example.com",
                Err("not a valid email address (nothing before the @)"),
            ),
            ("foo", Err("not a valid email address (no @)")),
            (
                "a@b@example.com",
                Err("not a valid email address (more than one @)"),
            ),
            (
                "taro yamada@example.com",
                Err("not a valid email address (contains a space)"),
            ),
            (
                "a@localhost",
                Err("not a valid email address (the domain needs a dot)"),
            ),
            (
                "a@example..com",
                Err("not a valid email address (the domain has an empty part)"),
            ),
            (
                "a@-example.com",
                Err("not a valid email address (a domain part starts or ends with a hyphen)"),
            ),
            (
                "a@example-.com",
                Err("not a valid email address (a domain part starts or ends with a hyphen)"),
            ),
            (
                "a@exa_mple.com",
                Err("not a valid email address (the domain may only have"),
            ),
            (
                "a@example.c",
                Err("not a valid email address (the top-level domain"),
            ),
            (
                "a@example.123",
                Err("not a valid email address (the top-level domain"),
            ),
            (
                ".a@example.com",
                Err("not a valid email address (misplaced dot"),
            ),
            (
                "a..b@example.com",
                Err("not a valid email address (misplaced dot"),
            ),
            (
                "a,b@example.com",
                Err("not a valid email address (a character before the @"),
            ),
            (
                &long_local,
                Err("not a valid email address (more than 64 characters"),
            ),
            (&too_long, Err("not a valid email address (longer than 254")),
            (
                "taro\u{a0}yamada@example.com",
                Err("not a valid email address (contains a space)"),
            ),
            (
                "taro\u{3000}yamada@example.com",
                Err("not a valid email address (contains a space)"),
            ),
            (
                "taro＠example.com",
                Err("not a valid email address (contains the full-width character ＠;"),
            ),
            (
                "ｔａｒｏ@example.com",
                Err("not a valid email address (contains the full-width character ｔ;"),
            ),
            (
                "山田@example.com",
                Err("internationalised email addresses are not supported"),
            ),
            (
                "taro@例え.jp",
                Err("internationalised email addresses are not supported"),
            ),
            ("=a@example.com", Err("looks like a spreadsheet formula")),
        ];
        for (input, expected) in cases {
            let text = format!("email,name\n\"{input}\",X\n");
            let records = read(&text);
            match expected {
                Ok(email) => {
                    let r = row(&records[0]);
                    assert_eq!(r.email, *email, "{input:?}");
                    assert_eq!(r.key, *email, "{input:?}");
                }
                Err(prefix) => {
                    let r = reject(&records[0]);
                    assert_eq!(r.column.as_deref(), Some("email"), "{input:?}");
                    assert!(r.reason.starts_with(prefix), "{input:?}: {}", r.reason);
                    assert!(r.reason.chars().count() <= 200, "{input:?}: {}", r.reason);
                }
            }
        }
    }

    struct FailAfter {
        data: Cursor<Vec<u8>>,
    }

    impl Read for FailAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.data.read(buf)? {
                0 => Err(io::Error::other("disk on fire")),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn io_error_mid_stream_ends_the_iteration() {
        let mut text = String::from("email\n");
        for i in 0..20_000 {
            text.push_str(&format!("u{i}@example.com\n"));
        }
        let source = FailAfter {
            data: Cursor::new(text.into_bytes()),
        };
        // The error surfaces from the prefix read or the stream, never as a panic.
        let result = from_reader(source, EncodingChoice::Utf8)
            .and_then(|c| c.records(KeyMode::Email, &ColumnRules::default()))
            .map(|records| records.collect::<Vec<_>>());
        match result {
            Err(InputError::Io { .. }) => {}
            Ok(items) => {
                let errors: Vec<_> = items.iter().filter(|i| i.is_err()).collect();
                assert_eq!(errors.len(), 1);
                assert!(matches!(
                    items.last(),
                    Some(Err(InputError::Io { line: Some(_), .. }))
                ));
            }
            Err(other) => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn readers_are_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Reader>();
        assert_send::<Records<Box<dyn Read + Send>>>();
    }

    #[test]
    fn samples_read_as_documented() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("samples");
        let collect = |name: &str| -> (String, Vec<Record>) {
            let cohort = open(&dir.join(name), &Options::default()).unwrap();
            let encoding = cohort.describe().to_owned();
            let records = cohort
                .records(KeyMode::Email, &ColumnRules::default())
                .unwrap()
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            (encoding, records)
        };

        let (encoding, records) = collect("providers.csv");
        assert_eq!(encoding, "UTF-8 with BOM");
        assert_eq!(records.len(), 10);
        assert!(records.iter().all(|r| matches!(r, Record::Valid(_))));
        assert!(
            records
                .iter()
                .any(|r| row(r).groups == ["providers", "beta"])
        );

        let (encoding, records) = collect("providers-sjis.csv");
        assert_eq!(encoding, "Shift_JIS");
        assert_eq!(records.len(), 5);
        let names: Vec<&str> = records
            .iter()
            .filter_map(|r| attr(row(r), "name"))
            .collect();
        assert!(names.iter().any(|n| n.contains('髙')), "{names:?}");
        assert!(names.iter().any(|n| n.contains('①')), "{names:?}");

        let (_, records) = collect("invalid.csv");
        let valid = records
            .iter()
            .filter(|r| matches!(r, Record::Valid(_)))
            .count();
        assert_eq!(valid, 2);
        assert!(records.len() >= 8);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let header_then = [b"email,name,phone_number,groups\n".as_slice(), &bytes].concat();
            for input in [bytes, header_then] {
                let result = from_reader(Cursor::new(input), EncodingChoice::Auto)
                    .and_then(|c| c.records(KeyMode::Email, &ColumnRules::default()));
                if let Ok(records) = result {
                    for record in records.flatten() {
                        let (line, reason_len) = match &record {
                            Record::Valid(row) => (row.line, 0),
                            Record::Invalid(reject) => (reject.line, reject.reason.chars().count()),
                        };
                        prop_assert!(line >= 2);
                        prop_assert!(reason_len <= 200);
                    }
                }
            }
        }

        #[test]
        fn valid_rows_round_trip(
            people in proptest::collection::vec(
                (
                    "[A-Za-z0-9]{1,10}(\\.[A-Za-z0-9_+]{1,5})?",
                    "[A-Za-z0-9]{1,10}(-[a-z0-9]{1,4})?\\.[A-Za-z]{2,5}",
                    "[ \t]{0,2}",
                    "[A-Za-z山田太郎髙①, \"]{0,12}",
                ),
                1..20,
            )
        ) {
            let mut writer = csv::Writer::from_writer(Vec::new());
            writer.write_record(["email", "name"]).unwrap();
            let mut expected = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for (local, domain, pad, name) in &people {
                let email = format!("{pad}{local}@{domain}{pad}");
                writer.write_record([email.as_str(), name.as_str()]).unwrap();
                let key = email.trim().to_lowercase();
                expected.push((key.clone(), seen.insert(key)));
            }
            let bytes = writer.into_inner().unwrap();
            let records = read_with(&bytes, KeyMode::Email, &ColumnRules::default()).unwrap();
            prop_assert_eq!(records.len(), people.len());
            for (i, (record, (key, first))) in records.iter().zip(&expected).enumerate() {
                match record {
                    Record::Valid(row) => {
                        prop_assert!(*first);
                        prop_assert_eq!(&row.key, key);
                        prop_assert_eq!(row.line, i as u64 + 2);
                    }
                    Record::Invalid(reject) => {
                        prop_assert!(!*first, "{:?}", reject);
                        prop_assert!(reject.reason.starts_with("duplicate of line"));
                    }
                }
            }
        }
    }
}
