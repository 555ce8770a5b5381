//! The bad-input corpus (`tests/corpus/`, described in its README.md): every malformed file goes
//! through `run`, against moto behind the fault proxy so that every request is counted, and
//! through `check`. Each must end with the documented exit code and a message naming the line
//! (and the column, where one applies), never panic, and send `AdminCreateUser` for the valid
//! rows only.
//!
//! One moto, two pools and one proxy serve the whole table; every case uses its own email
//! domain (`<case>.test`), so what the proxy saw during a case belongs to that case.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::Instant;

use cognito_onboard::error::exit;

use crate::support::proxy::{Proxy, Stats};
use crate::support::*;

/// Where a case's bytes come from.
enum Source {
    /// A committed file under `tests/corpus/`.
    Corpus,
    /// Written into the temp dir by the test: too big or too binary to commit.
    Generated(fn() -> Vec<u8>),
}

/// Which pool the case runs against.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum PoolKind {
    /// Email is the username; group `providers`; the default schema.
    EmailUsername,
    /// Free-form usernames (no alias); group `providers`; the default schema.
    FreeForm,
}

/// One rejected row: its line, its column (None when the whole row is at fault) and a fragment
/// of the reason.
struct Bad {
    line: u64,
    column: Option<&'static str>,
    says: &'static str,
}

/// A rejected cell.
const fn at(line: u64, column: &'static str, says: &'static str) -> Bad {
    Bad {
        line,
        column: Some(column),
        says,
    }
}

/// A rejected row, no single column at fault.
const fn row(line: u64, says: &'static str) -> Bad {
    Bad {
        line,
        column: None,
        says,
    }
}

/// What the binary must do with the file.
enum Expect {
    /// A file- or header-level problem: `run` and `check` exit 1 before any write, and stderr
    /// holds every fragment (each run-level fragment names the line where one exists).
    Refused(&'static [&'static str]),
    /// Row by row: exactly the users `created` (usernames, lower-case) are created, each row of
    /// `rejected` is reported invalid and never sent; exit 3 if any row is rejected, else 0.
    Rows {
        created: &'static [&'static str],
        rejected: &'static [Bad],
    },
    /// Random bytes after a good header: every data row is rejected (how many depends on where
    /// the bytes happen to break lines), exit 3, nothing sent.
    AllRejected,
    /// Only `check` (a `run` would create every row): exit 0 and this on stdout.
    CheckOnly(&'static str),
}

impl Expect {
    fn exit_code(&self) -> u8 {
        match self {
            Expect::Refused(_) => exit::ABORTED,
            Expect::Rows { rejected: [], .. } => exit::OK,
            Expect::Rows { .. } | Expect::AllRejected => exit::ROWS_FAILED,
            Expect::CheckOnly(_) => exit::OK,
        }
    }
}

struct Case {
    file: &'static str,
    source: Source,
    pool: PoolKind,
    expect: Expect,
    /// Further assertions on what `run` left in the pool.
    verify: Option<fn(&TestEnv, &Pool)>,
}

const fn case(file: &'static str, expect: Expect) -> Case {
    Case {
        file,
        source: Source::Corpus,
        pool: PoolKind::EmailUsername,
        expect,
        verify: None,
    }
}

impl Case {
    const fn generated(mut self, make: fn() -> Vec<u8>) -> Self {
        self.source = Source::Generated(make);
        self
    }
    const fn pool(mut self, pool: PoolKind) -> Self {
        self.pool = pool;
        self
    }
    const fn verify(mut self, verify: fn(&TestEnv, &Pool)) -> Self {
        self.verify = Some(verify);
        self
    }
}

/// The table; tests/corpus/README.md documents it.
const CASES: &[Case] = {
    use Expect::*;
    &[
        // --- the file or its header: stops the run before any write (exit 1) ---
        case(
            "empty.csv",
            Refused(&["the CSV is empty: it needs a header line"]),
        ),
        case(
            "only-blank-lines.csv",
            Refused(&["the CSV is empty: it needs a header line"]),
        ),
        case(
            "wrong-header.csv",
            Refused(&[
                r#"the header (line 1) has no "email" column; found: "taro@wrong-header.test", "taro yamada", "providers""#,
            ]),
        ),
        case(
            "missing-email-column.csv",
            Refused(&[
                r#"the header (line 1) has no "email" column; found: "mail", "name", "groups""#,
            ]),
        ),
        case(
            "semicolon-separated.csv",
            Refused(&[r#"the header (line 1) has no "email" column; found: "email;name;groups""#]),
        ),
        case(
            "duplicate-column.csv",
            Refused(&[
                r#"column "name" appears twice in the header (line 1): columns 2 (B) and 3 (C)"#,
            ]),
        ),
        case(
            "empty-column-name.csv",
            Refused(&["column 2 (B) of the header (line 1) has no name"]),
        ),
        case(
            "unknown-attribute.csv",
            Refused(&[
                r#"the user pool cannot take column(s) "department" (header line 1); valid columns are: "#,
                r#""family_name""#,
                r#""given_name""#,
                r#""phone_number""#,
            ]),
        ),
        case(
            "custom-attribute-undeclared.csv",
            Refused(&[
                r#"the user pool cannot take column(s) "custom:tenant_id" (header line 1); valid columns are: "#,
            ]),
        ),
        case(
            "reserved-sub.csv",
            Refused(&[
                r#"column "sub" (header line 1) cannot be imported: it is assigned by Cognito"#,
            ]),
        ),
        case(
            "reserved-email-verified.csv",
            Refused(&[
                r#"column "email_verified" (header line 1) cannot be imported: it is managed by the tool"#,
            ]),
        ),
        case(
            "group-missing.csv",
            Refused(&[
                "groups not in pool",
                "nosuchgroup (line 4, column groups), provider (line 3, column groups); the pool has: providers",
            ]),
        ),
        case(
            "xlsx-renamed-to-csv.csv",
            Refused(&["cannot read the workbook", "it is not a workbook Excel wrote"]),
        )
        .generated(xlsx_garbage),
        // --- workbooks (written by scripts/workbooks.py) ---
        case(
            "workbook-empty.xlsx",
            Refused(&[r#"sheet "Providers" is empty: it needs a header row"#]),
        ),
        case(
            "workbook-no-header.xlsx",
            Refused(&[
                r#"the header (line 1) has no "email" column; found: "taro@workbook-no-header.test""#,
            ]),
        ),
        case(
            "workbook-two-sheets.xlsx",
            Refused(&[
                r#"the header (line 1) has no "email" column"#,
                r#"(in sheet "Instructions"; the workbook also has "Providers": choose one with --sheet)"#,
            ]),
        ),
        case(
            "workbook-password.xlsx",
            Refused(&["is password-protected (encrypted), so it cannot be read"]),
        ),
        case(
            "csv-renamed.xlsx",
            Refused(&["is named like a workbook but is not one", "name it .csv"]),
        ),
        case(
            "workbook-cells.xlsx",
            Rows {
                created: &[
                    "taro@workbook-cells.test",
                    "merged-first@workbook-cells.test",
                    "hidden@workbook-cells.test",
                    "nickname@workbook-cells.test",
                ],
                rejected: &[
                    at(
                        4,
                        "phone_number (C)",
                        r#"stores this phone number as the number "819012345678", which has lost its +"#,
                    ),
                    at(5, "name (B)", "stores a date or time here (2024-04-01)"),
                    at(
                        6,
                        "name (B)",
                        r#"the value comes from a formula (=UPPER("formula")); paste the column as values"#,
                    ),
                    at(7, "name (B)", "the cell holds the error value #N/A"),
                    at(9, "groups (D)", "the cell is part of the merged cells D8:D9"),
                    at(12, "name (B)", "contains a line break (a new line inside the cell"),
                    row(13, "column F has a value but no header"),
                    at(14, "email (A)", "duplicate of line 3"),
                ],
            },
        )
        .verify(|env, pool| {
            assert_attr(env, pool, "taro@workbook-cells.test", "name", "山田 太郎");
            assert!(
                env.get_user(pool, "merged-second@workbook-cells.test")
                    .is_none()
            );
            assert_attr(
                env,
                pool,
                "taro@workbook-cells.test",
                "phone_number",
                "+819012345678",
            );
            assert_attr(env, pool, "nickname@workbook-cells.test", "nickname", "42");
        }),
        case(
            "utf16le-tab-separated.txt",
            Refused(&[r#"the header (line 1) has no "email" column; found: "email\tname""#]),
        ),
        case(
            "utf16le-no-bom.csv",
            Refused(&[
                r#"the header (line 1) has no "email" column; found: "e\0m\0a\0i\0l\0", "\0n\0a\0m\0e\0""#,
            ]),
        ),
        case(
            "workbook.ods",
            Rows {
                created: &["taro@workbook-ods.test"],
                rejected: &[at(
                    3,
                    "phone_number (C)",
                    "stores this phone number as the number",
                )],
            },
        )
        .verify(|env, pool| {
            assert_attr(env, pool, "taro@workbook-ods.test", "name", "山田 太郎");
            assert_attr(env, pool, "taro@workbook-ods.test", "nickname", "7");
        }),
        // --- files that are fine (exit 0) ---
        case(
            "only-header.csv",
            Rows {
                created: &[],
                rejected: &[],
            },
        ),
        case(
            "shift-jis-undeclared.csv",
            Rows {
                created: &[
                    "takahashi@shift-jis-undeclared.test",
                    "maru@shift-jis-undeclared.test",
                    "kana@shift-jis-undeclared.test",
                ],
                rejected: &[],
            },
        )
        .verify(|env, pool| {
            assert_attr(
                env,
                pool,
                "takahashi@shift-jis-undeclared.test",
                "name",
                "髙橋 一郎",
            );
            assert_attr(
                env,
                pool,
                "takahashi@shift-jis-undeclared.test",
                "family_name",
                "髙橋",
            );
            assert_attr(env, pool, "maru@shift-jis-undeclared.test", "name", "丸① ～");
            assert_attr(env, pool, "kana@shift-jis-undeclared.test", "name", "ﾀﾅｶ ﾀﾛｳ");
            assert!(
                env.group_members(pool, "providers")
                    .contains(&"takahashi@shift-jis-undeclared.test".to_string())
            );
        }),
        case(
            "utf16le-bom.csv",
            Rows {
                created: &["yamada@utf16le-bom.test", "suzuki@utf16le-bom.test"],
                rejected: &[],
            },
        )
        .verify(|env, pool| {
            assert_attr(env, pool, "yamada@utf16le-bom.test", "name", "山田 太郎");
            assert_attr(env, pool, "suzuki@utf16le-bom.test", "name", "鈴木 花子");
        }),
        case(
            "crlf-line-endings.csv",
            Rows {
                created: &[
                    "yamada@crlf-line-endings.test",
                    "suzuki@crlf-line-endings.test",
                ],
                rejected: &[],
            },
        )
        .verify(|env, pool| {
            assert_attr(env, pool, "yamada@crlf-line-endings.test", "name", "山田 太郎");
            assert_attr(env, pool, "suzuki@crlf-line-endings.test", "name", "鈴木 花子");
            assert!(
                env.group_members(pool, "providers")
                    .contains(&"yamada@crlf-line-endings.test".to_string())
            );
        }),
        case(
            "hundred-thousand-rows.csv",
            CheckOnly("100000 valid rows, 0 invalid"),
        )
        .generated(hundred_thousand_rows),
        // --- some rows are bad: they are reported, the others go ahead (exit 3) ---
        case(
            "invalid-utf8-not-shift-jis.csv",
            Rows {
                created: &[
                    "ok@invalid-utf8-not-shift-jis.test",
                    "also-ok@invalid-utf8-not-shift-jis.test",
                ],
                rejected: &[at(
                    3,
                    "name",
                    "invalid UTF-8 bytes; if this file is not UTF-8, pass --encoding shift_jis",
                )],
            },
        ),
        case(
            "mixed-encoding.csv",
            Rows {
                created: &[
                    "yamada@mixed-encoding.test",
                    "suzuki@mixed-encoding.test",
                    "sato@mixed-encoding.test",
                ],
                rejected: &[at(4, "name", "invalid UTF-8 bytes")],
            },
        )
        .verify(|env, pool| {
            assert_attr(env, pool, "yamada@mixed-encoding.test", "name", "山田 太郎");
            assert_attr(env, pool, "sato@mixed-encoding.test", "name", "佐藤 次郎");
        }),
        case("garbage-after-header.csv", AllRejected).generated(garbage_after_header),
        case(
            "ragged-rows.csv",
            Rows {
                created: &[
                    "ok@ragged-rows.test",
                    "trailing-commas@ragged-rows.test",
                    "short@ragged-rows.test",
                ],
                rejected: &[row(3, "row has 4 fields, header has 3")],
            },
        ),
        case(
            "quote-left-open.csv",
            Rows {
                created: &["before@quote-left-open.test"],
                rejected: &[at(
                    3,
                    "name",
                    "contains a line break (the row runs from line 3 to 5; check for a quote left open)",
                )],
            },
        ),
        case(
            "multiline-quoted-cell.csv",
            Rows {
                created: &["after@multiline-quoted-cell.test"],
                rejected: &[
                    at(
                        2,
                        "name",
                        "contains a line break (the row runs from line 2 to 3;",
                    ),
                    at(5, "name", r#"looks like a spreadsheet formula: "=1+2""#),
                ],
            },
        ),
        case(
            "megabyte-cell.csv",
            Rows {
                created: &["ok@megabyte-cell.test", "after@megabyte-cell.test"],
                rejected: &[at(
                    3,
                    "name",
                    r#"value is 1048576 characters long; the limit for "name" is 2048"#,
                )],
            },
        )
        .generated(megabyte_cell),
        case(
            "megabyte-email.csv",
            Rows {
                created: &["ok@megabyte-email.test"],
                rejected: &[at(3, "email", "characters long; the limit for \"email\" is")],
            },
        )
        .generated(megabyte_email),
        case(
            "formula-cells.csv",
            Rows {
                created: &["negative@formula-cells.test", "inner@formula-cells.test"],
                rejected: &[
                    at(2, "name", r#"looks like a spreadsheet formula: "=1+2""#),
                    at(3, "name", r#"looks like a spreadsheet formula: "@SUM(A1:A9)""#),
                    at(4, "name", r#"looks like a spreadsheet formula: "+cmd"#),
                    at(5, "family_name", r#"looks like a spreadsheet formula: "-Yamada""#),
                    at(6, "groups", r#"looks like a spreadsheet formula: "=providers""#),
                    at(7, "email", "looks like a spreadsheet formula"),
                    at(8, "name", r#"looks like a spreadsheet formula: "=HYPERLINK("#),
                ],
            },
        )
        .verify(|env, pool| {
            assert_attr(env, pool, "negative@formula-cells.test", "name", "-5");
            assert_attr(env, pool, "negative@formula-cells.test", "family_name", "+81");
            assert_attr(env, pool, "inner@formula-cells.test", "name", "Taro=Yamada");
        }),
        case(
            "duplicate-key-case.csv",
            Rows {
                created: &[
                    "taro.yamada@duplicate-key-case.test",
                    "other@duplicate-key-case.test",
                ],
                rejected: &[
                    at(3, "email", "duplicate of line 2"),
                    at(4, "email", "duplicate of line 2"),
                ],
            },
        )
        .verify(|env, pool| {
            // The first row wins, not a later one.
            assert_attr(
                env,
                pool,
                "taro.yamada@duplicate-key-case.test",
                "name",
                "First",
            );
        }),
        case(
            "duplicate-key-spaces.csv",
            Rows {
                created: &[
                    "hanako@duplicate-key-spaces.test",
                    "other@duplicate-key-spaces.test",
                ],
                rejected: &[
                    at(3, "email", "duplicate of line 2"),
                    at(4, "email", "duplicate of line 2"),
                ],
            },
        )
        .verify(|env, pool| {
            assert_attr(
                env,
                pool,
                "hanako@duplicate-key-spaces.test",
                "name",
                "First",
            );
        }),
        case(
            "groups-with-spaces.csv",
            Rows {
                created: &["ok@groups-with-spaces.test"],
                rejected: &[at(
                    3,
                    "groups",
                    r#"group name must not contain spaces or control characters: "beta testers""#,
                )],
            },
        ),
        case(
            "phone-without-country-code.csv",
            Rows {
                created: &[
                    "intl@phone-without-country-code.test",
                    "empty@phone-without-country-code.test",
                ],
                rejected: &[
                    at(
                        3,
                        "phone_number",
                        r#"phone_number needs the country code in E.164 form, e.g. +81901234567: "090-1234-5678""#,
                    ),
                    at(
                        4,
                        "phone_number",
                        r#"phone_number needs the country code in E.164 form, e.g. +81901234567: "09012345678""#,
                    ),
                    at(
                        5,
                        "phone_number",
                        r#"not a valid phone_number (expected E.164 form, e.g. +81901234567): "call me""#,
                    ),
                    at(6, "phone_number", "not a valid phone_number"),
                ],
            },
        )
        .verify(|env, pool| {
            assert_attr(
                env,
                pool,
                "intl@phone-without-country-code.test",
                "phone_number",
                "+819012345678",
            );
        }),
        case(
            "email-with-spaces.csv",
            Rows {
                created: &["ok@email-with-spaces.test", "padded@email-with-spaces.test"],
                rejected: &[
                    at(3, "email", "not a valid email address (contains a space)"),
                    at(4, "email", "not a valid email address (contains a space)"),
                    at(5, "email", "not a valid email address (contains a space)"),
                ],
            },
        ),
        case(
            "email-unicode.csv",
            Rows {
                created: &["ok@email-unicode.test"],
                rejected: &[
                    at(3, "email", "internationalised email addresses are not supported"),
                    at(4, "email", "internationalised email addresses are not supported"),
                    at(5, "email", "contains the full-width character ＠"),
                    at(6, "email", "contains the full-width character ｔ"),
                ],
            },
        ),
        case(
            "email-malformed.csv",
            Rows {
                created: &["ok@email-malformed.test"],
                rejected: &[
                    at(3, "email", "email is required but empty"),
                    at(4, "email", "not a valid email address (no @)"),
                    at(5, "email", "not a valid email address (nothing after the @)"),
                    at(6, "email", "not a valid email address (nothing before the @)"),
                    at(7, "email", "not a valid email address (the domain needs a dot)"),
                    at(8, "email", "not a valid email address (more than one @)"),
                    at(9, "email", "not a valid email address (misplaced dot"),
                    at(10, "email", "not a valid email address (the top-level domain"),
                ],
            },
        ),
        case(
            "very-long-email.csv",
            Rows {
                created: &["ok@very-long-email.test"],
                rejected: &[
                    at(
                        3,
                        "email",
                        "not a valid email address (longer than 254 characters)",
                    ),
                    at(
                        4,
                        "email",
                        "not a valid email address (more than 64 characters before the @)",
                    ),
                ],
            },
        ),
        // The pool's email is the username, so an address Cognito takes as an email (up to 254
        // characters) can still be too long for the `Username` it is sent as (128, AWS's model).
        case(
            "email-longer-than-a-username.csv",
            Rows {
                created: &[
                    "ok@email-longer-than-a-username.test",
                    "exactly128@sssssssssssssssssssssssssssssssssssssssssssssssssssssssssssssss.sssssssssssssssssss.email-longer-than-a-username.test",
                ],
                rejected: &[
                    at(
                        4,
                        "email",
                        "the email is the username here, and Cognito refuses it as one (it is 129 characters long; Cognito's limit for a username is 128)",
                    ),
                    at(
                        5,
                        "email",
                        "(it is 160 characters long; Cognito's limit for a username is 128)",
                    ),
                ],
            },
        ),
        case(
            "control-characters.csv",
            Rows {
                created: &["ok@control-characters.test", "tab@control-characters.test"],
                rejected: &[
                    at(3, "name", "contains the control character U+0007"),
                    at(4, "name", "contains the control character U+0000"),
                    at(5, "name", "contains the control character U+000B"),
                    at(6, "name", "contains the control character U+001B"),
                ],
            },
        )
        .verify(|env, pool| {
            assert_attr(
                env,
                pool,
                "tab@control-characters.test",
                "name",
                "A\tB (tab is fine)",
            );
        }),
        case(
            "username-looks-like-email.csv",
            Rows {
                // An email-like username is fine where email is not an alias (Cognito accepts it).
                created: &["taro.yamada", "hanako@username-looks-like-email.test"],
                rejected: &[
                    at(4, "username", "username is required (rows are keyed by username) but empty"),
                    at(5, "username", "username must not contain spaces or control characters"),
                ],
            },
        )
        .pool(PoolKind::FreeForm)
        .verify(|env, pool| {
            assert_attr(
                env,
                pool,
                "taro.yamada",
                "email",
                "taro@username-looks-like-email.test",
            );
        }),
        case(
            "cr-only-line-endings.csv",
            Rows {
                created: &[
                    "yamada@cr-only-line-endings.test",
                    "suzuki@cr-only-line-endings.test",
                ],
                rejected: &[at(4, "email", "the domain needs a dot")],
            },
        ),
        case(
            "blank-lines-between-rows.csv",
            Rows {
                created: &[
                    "first@blank-lines-between-rows.test",
                    "last@blank-lines-between-rows.test",
                ],
                rejected: &[at(7, "email", "not a valid email address (more than one @)")],
            },
        ),
    ]
};

// --- generated inputs ---

/// A small deterministic byte stream (xorshift64*), so the garbage is the same on every run.
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_be_bytes()[0]
        })
        .collect()
}

/// What an .xlsx renamed to .csv looks like: a zip header, NULs, then binary.
fn xlsx_garbage() -> Vec<u8> {
    let mut bytes = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00".to_vec();
    bytes.extend(pseudo_random(0x5EED, 4096));
    assert!(bytes.contains(&0), "the garbage has NUL bytes");
    bytes
}

fn garbage_after_header() -> Vec<u8> {
    let mut bytes = b"email,name\n".to_vec();
    bytes.extend(pseudo_random(0xBAD, 2048));
    assert!(bytes.contains(&0), "the garbage has NUL bytes");
    bytes
}

fn megabyte_cell() -> Vec<u8> {
    format!(
        "email,name\nok@megabyte-cell.test,Valid\nhuge@megabyte-cell.test,{}\nafter@megabyte-cell.test,After\n",
        "x".repeat(1 << 20)
    )
    .into_bytes()
}

fn megabyte_email() -> Vec<u8> {
    format!(
        "email,name\nok@megabyte-email.test,Valid\n{}@megabyte-email.test,Huge\n",
        "a".repeat(1 << 20)
    )
    .into_bytes()
}

fn hundred_thousand_rows() -> Vec<u8> {
    let mut text = String::from("email,name,groups\n");
    for i in 0..100_000 {
        text.push_str(&format!(
            "user{i}@hundred-thousand-rows.test,User {i},providers\n"
        ));
    }
    text.into_bytes()
}

// --- helpers ---

fn corpus_dir() -> PathBuf {
    root().join("tests/corpus")
}

fn assert_attr(env: &TestEnv, pool: &Pool, username: &str, name: &str, want: &str) {
    let user = env
        .get_user(pool, username)
        .unwrap_or_else(|| panic!("{username} was not created"));
    assert_eq!(
        attr(user.user_attributes(), name).as_deref(),
        Some(want),
        "{username}: attribute {name}"
    );
}

/// Operations that change the pool.
const WRITES: [&str; 4] = [
    "AdminCreateUser",
    "AdminAddUserToGroup",
    "AdminUpdateUserAttributes",
    "AdminSetUserPassword",
];

/// The reason every report and `check` gives for a rejected row.
fn reason_prefix(bad: &Bad) -> String {
    match bad.column {
        Some(column) => format!("line {}, column {column}: ", bad.line),
        None => format!("line {}: ", bad.line),
    }
}

/// What every invocation must satisfy, whatever the input.
fn assert_sane(label: &str, out: &Run) {
    let stderr = out.stderr();
    assert!(
        !stderr.contains("panicked"),
        "{label}: the binary panicked\n{stderr}"
    );
    // Reasons quote at most a short excerpt: a megabyte cell must not come back in the output.
    let size = out.output.stdout.len() + out.output.stderr.len();
    assert!(
        size < 64 * 1024,
        "{label}: {size} bytes of output\n{}",
        stderr.chars().take(2000).collect::<String>()
    );
}

fn assert_contains(label: &str, haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "{label}: expected {needle:?} in\n{haystack}"
    );
}

struct Bench<'a> {
    env: &'a TestEnv,
    proxy: &'a Proxy,
    email_pool: Pool,
    free_pool: Pool,
}

impl Bench<'_> {
    fn pool(&self, kind: PoolKind) -> &Pool {
        match kind {
            PoolKind::EmailUsername => &self.email_pool,
            PoolKind::FreeForm => &self.free_pool,
        }
    }

    fn command(&self, case: &Case, args: &[&std::ffi::OsStr]) -> TestCommand {
        self.env.command(self.pool(case.pool), args)
    }

    fn input(&self, case: &Case) -> PathBuf {
        match case.source {
            Source::Corpus => corpus_dir().join(case.file),
            Source::Generated(make) => self.env.write(case.file, make()),
        }
    }

    fn run_case(&self, case: &Case) {
        let path = self.input(case);
        let want = case.expect.exit_code();
        let label = format!("{} (run)", case.file);
        if !matches!(case.expect, Expect::CheckOnly(_)) {
            self.proxy.reset_stats();
            // The budget is lifted so that Cognito's 50 emails a day cannot defer valid rows
            // across the whole table.
            let out = self
                .command(
                    case,
                    &[
                        "run".as_ref(),
                        path.as_os_str(),
                        "--email-budget".as_ref(),
                        "1000000".as_ref(),
                    ],
                )
                .run();
            assert_sane(&label, &out);
            out.expect_code(want);
            let stats = self.proxy.stats();
            self.assert_run(case, &label, &out, &stats);
            if let Some(verify) = case.verify {
                verify(self.env, self.pool(case.pool));
            }
        }

        let label = format!("{} (check)", case.file);
        self.proxy.reset_stats();
        let out = self
            .command(case, &["check".as_ref(), path.as_os_str()])
            .run();
        assert_sane(&label, &out);
        out.expect_code(want);
        let stats = self.proxy.stats();
        for op in WRITES {
            assert_eq!(stats.received(op), 0, "{label}: check sent {op}");
        }
        let (stdout, stderr) = (out.stdout(), out.stderr());
        match &case.expect {
            Expect::Refused(says) => {
                for s in *says {
                    assert_contains(&label, &stderr, s);
                }
            }
            Expect::Rows { created, rejected } => {
                for bad in *rejected {
                    let prefix = format!("  {}", reason_prefix(bad));
                    assert!(
                        stdout
                            .lines()
                            .any(|l| l.starts_with(&prefix) && l.contains(bad.says)),
                        "{label}: expected a line {prefix:?} … {:?} in\n{stdout}",
                        bad.says
                    );
                }
                assert_contains(
                    &label,
                    &stdout,
                    &format!(
                        "  {} valid rows, {} invalid\n",
                        created.len(),
                        rejected.len()
                    ),
                );
                // Nothing but the expected rejects is reported.
                let reported = stdout.lines().filter(|l| l.starts_with("  line ")).count();
                assert_eq!(reported, rejected.len(), "{label}\n{stdout}");
            }
            Expect::AllRejected => {
                assert_contains(&label, &stdout, "  0 valid rows, ");
                assert!(
                    stdout.lines().any(|l| l.starts_with("  line ")),
                    "{label}: no rejected line named\n{stdout}"
                );
            }
            Expect::CheckOnly(says) => assert_contains(&label, &stdout, says),
        }
    }

    fn assert_run(&self, case: &Case, label: &str, out: &Run, stats: &Stats) {
        match &case.expect {
            Expect::Refused(says) => {
                let stderr = out.stderr();
                for s in *says {
                    assert_contains(label, &stderr, s);
                }
                for op in WRITES {
                    assert_eq!(stats.received(op), 0, "{label}: a refused file sent {op}");
                }
            }
            Expect::Rows { created, rejected } => {
                let report = out.report();
                let rows = report["rows"].as_array().expect("rows");
                let outcome = |o: &str| -> Vec<&serde_json::Value> {
                    rows.iter().filter(|r| r["outcome"] == o).collect()
                };
                assert_eq!(
                    rows.len(),
                    created.len() + rejected.len(),
                    "{label}: every row is created or invalid\n{report:#}"
                );
                let mut keys: Vec<&str> = outcome("created")
                    .iter()
                    .map(|r| r["key"].as_str().unwrap_or_default())
                    .collect();
                keys.sort_unstable();
                let mut want: Vec<&str> = created.to_vec();
                want.sort_unstable();
                assert_eq!(keys, want, "{label}: created\n{report:#}");

                let invalid = outcome("invalid");
                assert_eq!(
                    invalid.len(),
                    rejected.len(),
                    "{label}: invalid\n{report:#}"
                );
                for bad in *rejected {
                    let found = invalid
                        .iter()
                        .find(|r| r["row"] == bad.line)
                        .unwrap_or_else(|| {
                            panic!("{label}: no invalid row {}\n{report:#}", bad.line)
                        });
                    let reason = found["reason"].as_str().unwrap_or_default();
                    let prefix = reason_prefix(bad);
                    assert!(
                        reason.starts_with(&prefix) && reason.contains(bad.says),
                        "{label}: row {} reason {reason:?}, want {prefix:?} + {:?}",
                        bad.line,
                        bad.says
                    );
                    assert!(
                        reason.chars().count() < 300,
                        "{label}: reason too long: {reason}"
                    );
                }

                // Cognito heard of the valid rows, once each, and of nothing else.
                assert_eq!(
                    stats.forwarded("AdminCreateUser"),
                    created.len() as u64,
                    "{label}: AdminCreateUser calls\n{:?}",
                    stats.invitations_by_username
                );
                assert_eq!(stats.creates, created.len() as u64, "{label}: creates");
                let invited: BTreeMap<String, u64> =
                    created.iter().map(|c| (c.to_string(), 1)).collect();
                assert_eq!(
                    stats.invitations_by_username, invited,
                    "{label}: invitations by username"
                );
                for r in &invalid {
                    if let Some(email) = r["email"].as_str()
                        && !created.contains(&email)
                    {
                        assert_eq!(
                            stats.invitations_to(email),
                            0,
                            "{label}: rejected {email} was invited"
                        );
                    }
                }
            }
            Expect::AllRejected => {
                let report = out.report();
                let rows = report["rows"].as_array().expect("rows");
                assert!(!rows.is_empty(), "{label}: no rows\n{report:#}");
                for r in rows {
                    assert_eq!(r["outcome"], "invalid", "{label}\n{report:#}");
                    let reason = r["reason"].as_str().unwrap_or_default();
                    let line = r["row"].as_u64().expect("row");
                    assert!(line >= 2, "{label}: {reason}");
                    assert!(
                        reason.starts_with(&format!("line {line}")),
                        "{label}: {reason}"
                    );
                }
                assert_eq!(stats.received("AdminCreateUser"), 0, "{label}");
                assert!(stats.invitations_by_username.is_empty(), "{label}");
            }
            Expect::CheckOnly(_) => unreachable!("CheckOnly cases are not run"),
        }
    }
}

/// `| \`file\` | what is wrong | exit | message |` rows of tests/corpus/README.md: file → exit.
fn documented_exit_codes() -> BTreeMap<String, u8> {
    let text = std::fs::read_to_string(corpus_dir().join("README.md")).expect("corpus README");
    text.lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").collect();
            let file = cells[0].trim_start_matches("| `").trim_end_matches('`');
            let code = cells
                .get(2)
                .and_then(|c| c.trim().parse().ok())
                .unwrap_or_else(|| panic!("README row without an exit code: {l}"));
            (file.to_string(), code)
        })
        .collect()
}

#[test]
fn corpus_is_documented_and_every_fixture_is_used() {
    let cases = CASES;
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    let documented = documented_exit_codes();
    for case in cases {
        assert_eq!(
            documented.get(case.file),
            Some(&case.expect.exit_code()),
            "{}: tests/corpus/README.md documents another exit code, or none",
            case.file
        );
        if matches!(case.source, Source::Corpus) {
            assert!(
                corpus_dir().join(case.file).is_file(),
                "{} is missing",
                case.file
            );
        }
    }
    assert_eq!(documented.len(), cases.len(), "README rows without a case");
    for entry in std::fs::read_dir(corpus_dir()).expect("tests/corpus") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        if name != "README.md" {
            assert!(
                cases
                    .iter()
                    .any(|c| c.file == name && matches!(c.source, Source::Corpus)),
                "tests/corpus/{name} is not used by any case"
            );
        }
    }
    // Generated inputs are not committed.
    for case in cases
        .iter()
        .filter(|c| matches!(c.source, Source::Generated(_)))
    {
        assert!(
            !corpus_dir().join(case.file).exists(),
            "{} is generated and must not be committed",
            case.file
        );
    }
}

#[test]
fn every_malformed_input_gets_its_exit_code_a_located_message_and_no_request() {
    let mut env = TestEnv::new();
    let email_pool = env.pool(true, &["providers"]);
    let free_pool = env.pool(false, &["providers"]);
    let proxy = env.proxy(|c| c);
    let bench = Bench {
        env: &env,
        proxy: &proxy,
        email_pool,
        free_pool,
    };
    let mut failed = Vec::new();
    for case in CASES {
        let started = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| bench.run_case(case)));
        eprintln!(
            "{:<40} {} in {:.2} s",
            case.file,
            if result.is_ok() { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if result.is_err() {
            failed.push(case.file);
        }
    }
    assert!(failed.is_empty(), "failed cases: {failed:?}");
}
