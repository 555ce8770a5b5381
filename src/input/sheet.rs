//! Workbooks: recognising one by its bytes, opening it with calamine (.xlsx, .xlsm, .xlsb, .xls,
//! .ods), choosing the sheet, and turning each row into text cells plus what Excel stored in
//! each cell when it was not text (a number, a date, a formula, an error, part of a merge).
//! Must not judge what a cell says: the CSV's checks (`cells`) run on the text unchanged.
//!
//! A workbook is read whole (calamine holds the sheet in memory, as Excel does): `check` of a
//! 100,000-row, six-column .xlsx peaks at 86 MB. The CSV reader is the one that streams.

use std::io::Cursor;
use std::path::Path;

use calamine::{Data, Dimensions, Range, Reader, SheetType, SheetVisible};

use super::InputError;
use super::cells::letters;

/// What a file's first bytes say it is, when it is a workbook's container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Container {
    /// A zip: .xlsx, .xlsm, .xlsb or .ods.
    Zip,
    /// An OLE compound file: .xls, or an encrypted (password-protected) .xlsx.
    Compound,
}

/// The container a file's first bytes announce, if any.
pub(super) fn container(prefix: &[u8]) -> Option<Container> {
    if prefix.starts_with(b"PK\x03\x04") {
        Some(Container::Zip)
    } else if prefix.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        Some(Container::Compound)
    } else {
        None
    }
}

/// A name that says "workbook" whatever the bytes say.
pub(super) fn has_workbook_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .is_some_and(|e| matches!(e.as_str(), "xlsx" | "xlsm" | "xlsb" | "xls" | "ods"))
}

/// What Excel stored in a cell when it was not text. The cell's text beside it is what the tool
/// would take (the digits of a number), or empty where it takes nothing.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Stored {
    /// A number; the text is its digits (`819012345678`, `0.5`).
    Number,
    /// TRUE or FALSE; the text says which.
    Bool,
    /// A date or time, shown as the ISO date Excel means.
    Date(String),
    /// The cell's value comes from this formula (without its `=`).
    Formula(String),
    /// An error value (`#N/A`, `#REF!`).
    Error(String),
    /// Part of merged cells but not their first: Excel shows the first cell's value here, the
    /// file stores nothing. The merge's range, e.g. `D4:D6`.
    Merged(String),
}

/// The sheet a workbook's rows come from.
pub(super) struct Sheet {
    cells: Range<Data>,
    formulas: Range<String>,
    merges: Vec<Dimensions>,
    /// Absolute row index of the next row to hand out.
    next: u32,
    /// How the input is described in logs: "Excel workbook (.xlsx), sheet "Providers"".
    pub(super) described: String,
    pub(super) name: String,
    /// The workbook's other worksheets, when the sheet was chosen by default (for hints).
    pub(super) others: Vec<String>,
}

impl Sheet {
    /// The next row that has a cell, as text cells from column A, with what was stored where it
    /// was not text. Returns its row number as Excel shows it.
    pub(super) fn next_row(
        &mut self,
        record: &mut csv::StringRecord,
        stored: &mut Vec<Option<Stored>>,
    ) -> Option<u64> {
        let end = self
            .cells
            .end()?
            .0
            .max(self.formulas.end().map_or(0, |e| e.0));
        if self.next > end {
            return None;
        }
        let row = self.next;
        self.next += 1;
        record.clear();
        stored.clear();
        let width = self.cells.end().map_or(0, |e| e.1 + 1);
        let width = width.max(self.formulas.end().map_or(0, |e| e.1 + 1));
        let mut text = String::new();
        for col in 0..width {
            text.clear();
            let mut kind = match self.cells.get_value((row, col)).unwrap_or(&Data::Empty) {
                Data::Empty => None,
                Data::String(s) => {
                    text.push_str(s);
                    None
                }
                Data::Int(i) => {
                    text.push_str(&i.to_string());
                    Some(Stored::Number)
                }
                Data::Float(f) => {
                    text.push_str(&number_text(*f));
                    Some(Stored::Number)
                }
                Data::Bool(b) => {
                    text.push_str(if *b { "TRUE" } else { "FALSE" });
                    Some(Stored::Bool)
                }
                Data::DateTime(d) => Some(Stored::Date(date_text(d))),
                Data::DateTimeIso(d) | Data::DurationIso(d) => Some(Stored::Date(d.clone())),
                Data::Error(e) => Some(Stored::Error(e.to_string())),
            };
            if let Some(formula) = self.formulas.get_value((row, col))
                && !formula.is_empty()
            {
                kind = Some(Stored::Formula(formula.clone()));
            }
            if kind.is_none() && text.is_empty() {
                kind = self.merged_into(row, col).map(Stored::Merged);
            }
            record.push_field(&text);
            stored.push(kind);
        }
        Some(u64::from(row) + 1)
    }

    /// The merge this cell belongs to, when it is not the merge's first cell.
    fn merged_into(&self, row: u32, col: u32) -> Option<String> {
        self.merges
            .iter()
            .find(|m| m.contains(row, col) && (row, col) != m.start)
            .map(|m| {
                format!(
                    "{}{}:{}{}",
                    letters(m.start.1 as usize + 1),
                    m.start.0 + 1,
                    letters(m.end.1 as usize + 1),
                    m.end.0 + 1
                )
            })
    }
}

/// A number as the tool takes it: whole numbers without a decimal point (Excel stores every
/// number as a float), others as the shortest decimal that reads back the same.
fn number_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

fn date_text(d: &calamine::ExcelDateTime) -> String {
    if d.is_duration() {
        return format!("a duration of {} days", d.as_f64());
    }
    let (y, mo, da, h, mi, s, _) = d.to_ymd_hms_milli();
    if (h, mi, s) == (0, 0, 0) {
        format!("{y:04}-{mo:02}-{da:02}")
    } else {
        format!("{y:04}-{mo:02}-{da:02} {h:02}:{mi:02}:{s:02}")
    }
}

/// Opens the workbook at `path` (its `bytes`, already read) and the sheet to read: `wanted`, or
/// the first visible worksheet.
pub(super) fn open(
    path: &Path,
    bytes: Vec<u8>,
    container: Container,
    wanted: Option<&str>,
) -> Result<Sheet, InputError> {
    let fail = |message: String| InputError::Workbook {
        path: path.to_path_buf(),
        message,
    };
    let opened = |e: &dyn std::fmt::Display| fail(e.to_string());
    match container {
        Container::Compound => {
            if is_encrypted_package(&bytes) {
                return Err(InputError::Encrypted {
                    path: path.to_path_buf(),
                });
            }
            let book = calamine::open_workbook_from_rs::<calamine::Xls<_>, _>(Cursor::new(bytes))
                .map_err(|e| match e {
                calamine::XlsError::Password => InputError::Encrypted {
                    path: path.to_path_buf(),
                },
                e => opened(&e),
            })?;
            read(path, book, wanted, ".xls", |b, n| {
                b.merge_cells_by_sheet_name(n)
            })
        }
        Container::Zip if is_ods(&bytes) => {
            let book = calamine::open_workbook_from_rs::<calamine::Ods<_>, _>(Cursor::new(bytes))
                .map_err(|e| opened(&e))?;
            read(path, book, wanted, ".ods", |_, _| Ok(Vec::new()))
        }
        Container::Zip if is_xlsb(&bytes) => {
            let book = calamine::open_workbook_from_rs::<calamine::Xlsb<_>, _>(Cursor::new(bytes))
                .map_err(|e| opened(&e))?;
            read(path, book, wanted, ".xlsb", |_, _| Ok(Vec::new()))
        }
        Container::Zip => {
            let book = calamine::open_workbook_from_rs::<calamine::Xlsx<_>, _>(Cursor::new(bytes))
                .map_err(|e| match e {
                    calamine::XlsxError::Zip(z) => fail(format!(
                        "it is not a workbook Excel wrote (the zip inside cannot be read: {z})"
                    )),
                    e => opened(&e),
                })?;
            read(path, book, wanted, ".xlsx", |b, n| {
                b.merge_cells_by_sheet_name(n)
            })
        }
    }
}

/// Reads the chosen sheet of an open workbook: its values, its formulas and (where the format
/// has them and calamine reads them) its merges.
fn read<W>(
    path: &Path,
    mut book: W,
    wanted: Option<&str>,
    kind: &str,
    merges: impl FnOnce(&mut W, &str) -> Result<Vec<Dimensions>, W::Error>,
) -> Result<Sheet, InputError>
where
    W: Reader<Cursor<Vec<u8>>>,
    W::Error: std::fmt::Display,
{
    let fail = |e: W::Error| InputError::Workbook {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let name = choose(path, &book, wanted)?;
    let merges = merges(&mut book, &name.0).map_err(fail)?;
    let cells = book.worksheet_range(&name.0).map_err(fail)?;
    let formulas = book.worksheet_formula(&name.0).map_err(fail)?;
    Ok(sheet(name, cells, formulas, merges, kind))
}

fn sheet(
    (name, others): (String, Vec<String>),
    cells: Range<Data>,
    formulas: Range<String>,
    merges: Vec<Dimensions>,
    kind: &str,
) -> Sheet {
    // Formulas and values cover the same cells; the first used row of either is where to
    // start looking for the header.
    let next = match (cells.start(), formulas.start()) {
        (Some(a), Some(b)) => a.0.min(b.0),
        (Some(a), None) | (None, Some(a)) => a.0,
        (None, None) => 0,
    };
    Sheet {
        described: format!(
            "{} ({kind}), sheet {}",
            if kind == ".ods" {
                "OpenDocument spreadsheet"
            } else {
                "Excel workbook"
            },
            super::cells::quote(&name)
        ),
        cells,
        formulas,
        merges,
        next,
        name,
        others,
    }
}

/// The sheet to read, and (when it was chosen by default) the workbook's other worksheets.
fn choose<RS: std::io::Read + std::io::Seek, W: Reader<RS>>(
    path: &Path,
    book: &W,
    wanted: Option<&str>,
) -> Result<(String, Vec<String>), InputError> {
    let worksheets: Vec<&calamine::Sheet> = book
        .sheets_metadata()
        .iter()
        .filter(|s| s.typ == SheetType::WorkSheet)
        .collect();
    let names = || {
        worksheets
            .iter()
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    match wanted {
        Some(wanted) => {
            let exact = worksheets.iter().find(|s| s.name == wanted);
            let folded = || {
                let mut like = worksheets
                    .iter()
                    .filter(|s| s.name.trim().to_lowercase() == wanted.trim().to_lowercase());
                match (like.next(), like.next()) {
                    (Some(one), None) => Some(*one),
                    _ => None,
                }
            };
            match exact.copied().or_else(folded) {
                Some(sheet) => Ok((sheet.name.clone(), Vec::new())),
                None => Err(InputError::NoSuchSheet {
                    path: path.to_path_buf(),
                    sheet: wanted.to_owned(),
                    sheets: names(),
                }),
            }
        }
        None => {
            let first = worksheets
                .iter()
                .find(|s| s.visible == SheetVisible::Visible)
                .ok_or_else(|| InputError::NoWorksheet {
                    path: path.to_path_buf(),
                })?;
            let others = worksheets
                .iter()
                .filter(|s| s.name != first.name)
                .map(|s| s.name.clone())
                .collect();
            Ok((first.name.clone(), others))
        }
    }
}

/// An OOXML file saved with a password is an OLE compound file holding `EncryptedPackage`.
fn is_encrypted_package(bytes: &[u8]) -> bool {
    let name: Vec<u8> = "EncryptedPackage"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    bytes.windows(name.len()).any(|w| w == name.as_slice())
}

/// An OpenDocument file starts with its uncompressed `mimetype` entry.
fn is_ods(bytes: &[u8]) -> bool {
    bytes.get(30..38) == Some(b"mimetype")
        && bytes
            .get(38..38 + 60)
            .is_some_and(|m| m.windows(24).any(|w| w == b"opendocument.spreadsheet"))
}

/// A binary workbook names `xl/workbook.bin` in its zip directory.
fn is_xlsb(bytes: &[u8]) -> bool {
    let tail = bytes.len().saturating_sub(1 << 20);
    bytes
        .get(tail..)
        .is_some_and(|t| t.windows(15).any(|w| w == b"xl/workbook.bin"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workbook_is_known_by_its_first_bytes() {
        assert_eq!(container(b"PK\x03\x04\x14\x00"), Some(Container::Zip));
        assert_eq!(
            container(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0]),
            Some(Container::Compound)
        );
        assert_eq!(container(b"email,name\n"), None);
        assert_eq!(container(b"\xEF\xBB\xBFemail"), None);
        assert_eq!(container(b"PK"), None, "too short to say");
        assert!(has_workbook_extension(Path::new("a/Providers.XLSX")));
        assert!(has_workbook_extension(Path::new("p.ods")));
        assert!(!has_workbook_extension(Path::new("p.csv")));
        assert!(!has_workbook_extension(Path::new("xlsx")));
    }

    #[test]
    fn numbers_read_as_excel_shows_them_without_a_decimal_point_when_whole() {
        assert_eq!(number_text(819012345678.0), "819012345678");
        assert_eq!(number_text(42.0), "42");
        assert_eq!(number_text(-7.0), "-7");
        assert_eq!(number_text(0.5), "0.5");
        assert_eq!(number_text(1234.25), "1234.25");
        assert_eq!(number_text(1e20), "100000000000000000000");
    }

    #[test]
    fn dates_are_shown_as_the_iso_date_excel_means() {
        use calamine::{ExcelDateTime, ExcelDateTimeType};
        // 45383 is 2024-04-01 in Excel's 1900 date system.
        let date = ExcelDateTime::new(45383.0, ExcelDateTimeType::DateTime, false);
        assert_eq!(date_text(&date), "2024-04-01");
        let noon = ExcelDateTime::new(45383.5, ExcelDateTimeType::DateTime, false);
        assert_eq!(date_text(&noon), "2024-04-01 12:00:00");
    }

    #[test]
    fn an_encrypted_package_is_found_by_its_stream_name() {
        let mut bytes = vec![0u8; 100];
        assert!(!is_encrypted_package(&bytes));
        bytes.extend("EncryptedPackage".encode_utf16().flat_map(u16::to_le_bytes));
        assert!(is_encrypted_package(&bytes));
    }
}
