#!/usr/bin/env python3
"""Writes a workbook of ROWS providers to OUT, for `make bench`'s memory table: the same six
columns as the benchmark's CSV, one sheet, written in openpyxl's streaming mode so that the
script itself stays small. Usage: big_workbook.py ROWS OUT
"""

import sys

from openpyxl import Workbook


def main():
    rows, out = int(sys.argv[1]), sys.argv[2]
    wb = Workbook(write_only=True)
    ws = wb.create_sheet("providers")
    ws.append(["email", "name", "family_name", "given_name", "locale", "groups"])
    for i in range(rows):
        ws.append([f"provider{i:08}@example.com", f"山田 太郎 {i}", "山田", "太郎", "ja", "providers"])
    wb.save(out)


if __name__ == "__main__":
    main()
