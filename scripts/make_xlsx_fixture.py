"""Writes tests/fixtures/online_retail_head.xlsx: the first 10,000 rows of the real Online
Retail file, with cell types as in the UCI original (numbers as numbers, dates as dates), so
the .xlsx reader is tested on the same rows as the CSV reader.

Usage: python3 scripts/make_xlsx_fixture.py ../shared/data/online-retail/online_retail.csv.gz
(needs openpyxl)."""
import csv, datetime, gzip, sys

import openpyxl

ROWS = 10_000
src = sys.argv[1]
wb = openpyxl.Workbook()
ws = wb.active
ws.title = "Online Retail"
with gzip.open(src, "rt", encoding="utf-8", newline="") as f:
    reader = csv.reader(f)
    ws.append(next(reader))
    for i, (inv, code, desc, qty, date, price, cust, country) in enumerate(reader):
        if i == ROWS:
            break
        ws.append([
            int(inv) if inv.isdigit() else inv,
            int(code) if code.isdigit() else code,
            desc or None,
            int(float(qty)),
            datetime.datetime.strptime(date, "%Y-%m-%d %H:%M:%S"),
            float(price),
            float(cust) if cust else None,
            country,
        ])
wb.save("tests/fixtures/online_retail_head.xlsx")
