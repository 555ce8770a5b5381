#!/usr/bin/env python3
"""Writes the project's workbooks: samples/providers.xlsx (the sample CSV's providers, as an
operator's Excel file holds them) and the malformed workbooks of the bad-input corpus
(tests/corpus/*.xlsx, documented in tests/corpus/README.md).

Run by `make workbooks` (openpyxl and msoffcrypto-tool come from scripts/requirements.txt). The
files are committed; run this again only to change them. Usage: workbooks.py [ROOT]
"""

import csv
import datetime
import io
import sys
import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import msoffcrypto
from msoffcrypto.format.ooxml import OOXMLFile
from openpyxl import Workbook
from openpyxl.styles import Font

ROOT = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "corpus"
FIXED = datetime.datetime(2026, 12, 1, 9, 0, 0)


def book():
    wb = Workbook()
    # Fixed document times, so the sheet's contents are all that changes between runs.
    wb.properties.created = FIXED
    wb.properties.modified = FIXED
    return wb


def text_cell(ws, ref, value):
    """A cell formatted as Text, as an operator makes a phone or postcode column."""
    ws[ref] = value
    ws[ref].number_format = "@"


def sample(path):
    """samples/providers.xlsx: the rows of samples/providers.csv in a sheet "Providers", with a
    phone column formatted as Text, and a second sheet of notes after it."""
    with open(ROOT / "samples" / "providers.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f))
    wb = book()
    ws = wb.active
    ws.title = "Providers"
    header = rows[0] + ["phone_number"]
    ws.append(header)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for i, row in enumerate(rows[1:], start=2):
        ws.append(row)
        text_cell(ws, f"G{i}", f"+8190{1000_0000 + i:08d}")
    for col, width in zip("ABCDEFG", (32, 14, 10, 10, 8, 18, 16)):
        ws.column_dimensions[col].width = width
    notes = wb.create_sheet("Notes")
    notes["A1"] = "The first sheet is the cohort; cognito-onboard reads it (or pass --sheet NAME)."
    wb.save(path)


def empty(path):
    wb = book()
    wb.active.title = "Providers"
    wb.save(path)


def no_header(path):
    wb = book()
    ws = wb.active
    ws.title = "Providers"
    ws.append(["taro@workbook-no-header.test", "山田 太郎", "providers"])
    ws.append(["hanako@workbook-no-header.test", "鈴木 花子", "providers"])
    wb.save(path)


def two_sheets(path):
    """The providers are on the second sheet; the first is a cover page."""
    wb = book()
    cover = wb.active
    cover.title = "Instructions"
    cover["A1"] = "Fill in one provider per row on the Providers sheet."
    ws = wb.create_sheet("Providers")
    ws.append(["email", "name", "groups"])
    ws.append(["taro@workbook-two-sheets.test", "山田 太郎", "providers"])
    ws.append(["hanako@workbook-two-sheets.test", "鈴木 花子", "providers"])
    wb.save(path)


def password(path):
    """A workbook saved with a password to open it (Excel's "Encrypt with Password")."""
    wb = book()
    ws = wb.active
    ws.append(["email", "name"])
    ws.append(["taro@workbook-password.test", "山田 太郎"])
    plain = io.BytesIO()
    wb.save(plain)
    plain.seek(0)
    with open(path, "wb") as out:
        OOXMLFile(plain).encrypt("secret", out)
    assert msoffcrypto.olefile.isOleFile(str(path))


def csv_renamed(path):
    path.write_text(
        "email,name\ntaro@csv-renamed.test,Taro Yamada\n", encoding="utf-8"
    )


def cells(path):
    """Every kind of cell Excel stores that is not plain text, one row each (see docs/input.md)."""
    domain = "workbook-cells.test"
    wb = book()
    ws = wb.active
    ws.title = "Providers"
    # Row 1 is left empty: the header is the first non-empty row, and lines are Excel's rows.
    ws.append([])
    ws.append(["email", "name", "phone_number", "groups", "nickname"])
    ws.append([f"taro@{domain}", "山田 太郎", None, "providers", None])
    text_cell(ws, "C3", "+819012345678")
    ws.append([f"number-phone@{domain}", "Number Phone", 819012345678, "providers"])
    ws.append([f"date@{domain}", datetime.date(2024, 4, 1), None, "providers"])
    ws.append([f"formula@{domain}", '=UPPER("formula")', None, "providers"])
    ws.append([f"error@{domain}", "#N/A", None, "providers"])
    ws.append([f"merged-first@{domain}", "Merged First", None, "providers"])
    ws.append([f"merged-second@{domain}", "Merged Second", None, None])
    ws.merge_cells("D8:D9")
    ws.append([f"hidden@{domain}", "Hidden Row", None, "providers"])
    ws.row_dimensions[10].hidden = True
    ws.append([f"nickname@{domain}", "Number Nickname", None, "providers", 42])
    ws.append([f"linebreak@{domain}", "Line\nBreak", None, "providers"])
    ws.append([f"no-header@{domain}", "No Header", None, "providers", None, "stray"])
    ws.append([f"TARO@{domain}", "Taro Again", None, "providers"])
    wb.save(path)


def ods(path):
    """A LibreOffice spreadsheet, written by hand (openpyxl writes only .xlsx): the mimetype
    entry first and stored, then the manifest and one table; a number and a text phone."""
    rows = [
        ["email", "name", "phone_number", "nickname"],
        ["taro@workbook-ods.test", "山田 太郎", "+819012345678", ("float", "7")],
        ["hanako@workbook-ods.test", "鈴木 花子", ("float", "819012345678"), ""],
    ]

    def cell(value):
        if isinstance(value, tuple):
            kind, number = value
            return (
                f'<table:table-cell office:value-type="{kind}" office:value="{number}">'
                f"<text:p>{number}</text:p></table:table-cell>"
            )
        if value == "":
            return "<table:table-cell/>"
        return f'<table:table-cell office:value-type="string"><text:p>{escape(value)}</text:p></table:table-cell>'

    body = "".join(
        "<table:table-row>" + "".join(cell(v) for v in row) + "</table:table-row>" for row in rows
    )
    content = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
        'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
        'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
        '<office:body><office:spreadsheet><table:table table:name="Providers">'
        f"{body}</table:table></office:spreadsheet></office:body></office:document-content>"
    )
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" manifest:version="1.2">'
        '<manifest:file-entry manifest:full-path="/" manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
        '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        "</manifest:manifest>"
    )
    stamp = FIXED.timetuple()[:6]
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            zipfile.ZipInfo("mimetype", stamp),
            "application/vnd.oasis.opendocument.spreadsheet",
            compress_type=zipfile.ZIP_STORED,
        )
        for name, data in [("META-INF/manifest.xml", manifest), ("content.xml", content)]:
            z.writestr(zipfile.ZipInfo(name, stamp), data, compress_type=zipfile.ZIP_DEFLATED)


def main():
    sample(ROOT / "samples" / "providers.xlsx")
    for name, make in [
        ("workbook-empty.xlsx", empty),
        ("workbook-no-header.xlsx", no_header),
        ("workbook-two-sheets.xlsx", two_sheets),
        ("workbook-password.xlsx", password),
        ("csv-renamed.xlsx", csv_renamed),
        ("workbook-cells.xlsx", cells),
        ("workbook.ods", ods),
    ]:
        make(CORPUS / name)
    print(f"wrote samples/providers.xlsx and 7 workbooks in {CORPUS}")


if __name__ == "__main__":
    main()
