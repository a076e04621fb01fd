"""Regenerate the sample PDF and DOCX documents (needs fpdf2 and python-docx).

The generated files are committed; contextd itself only reads them (pypdf, python-docx).
Run: .venv/bin/pip install fpdf2 && .venv/bin/python sample_data/make_binary_docs.py [OUT]
(OUT defaults to sample_data/docs; give another folder to check the output without
touching the committed files). Each PDF is read back with pypdf, as contextd reads it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import docx
from fpdf import FPDF
from pypdf import PdfReader

HERE = Path(__file__).resolve().parent / "docs"

BOARD_NOTES = [
    "Board deck notes, September 2026 (finance only).",
    "The board approved the 2027 budget with EBITDA target of 14 million EUR.",
    "Capital expenditure for the Rotterdam warehouse expansion: 2.5 million EUR.",
    "The audit committee flagged revenue recognition on multi-year fleet licences.",
]
SECURITY = [
    "Information security policy.",
    "All laptops use full-disk encryption. Passwords are at least 14 characters.",
    "Report a lost device to the IT service desk within one hour.",
    "Customer data never leaves the EU data centres.",
]


def write_pdf(path: Path, title: str, lines: list[str], dated: datetime) -> None:
    pdf = FPDF()
    pdf.set_title(title)
    pdf.set_creation_date(dated)  # the content clock contextd reads (CreationDate/ModDate)
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for line in lines:
        pdf.multi_cell(0, 8, line)
        pdf.ln(2)
    path.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(path))
    text = " ".join((page.extract_text() or "") for page in PdfReader(str(path)).pages)
    missing = [line for line in lines if " ".join(line.split()) not in " ".join(text.split())]
    if missing:
        raise SystemExit(f"{path}: pypdf cannot read back {missing}")


def write_docx(path: Path, title: str, lines: list[str], dated: datetime) -> None:
    document = docx.Document()
    document.core_properties.title = title
    # python-docx's template says 2013 otherwise; contextd reads these as updated_at.
    document.core_properties.created = document.core_properties.modified = dated
    document.add_heading(title, level=1)
    for line in lines:
        document.add_paragraph(line)
    path.parent.mkdir(parents=True, exist_ok=True)
    document.save(str(path))


def main(out: Path = HERE) -> None:
    write_pdf(out / "finance" / "board-deck-notes.pdf", "Board deck notes", BOARD_NOTES,
              datetime(2026, 9, 28, 9, tzinfo=UTC))
    write_pdf(out / "support" / "security-policy.pdf", "Information security policy",
              SECURITY, datetime(2026, 2, 10, 9, tzinfo=UTC))
    write_docx(out / "finance" / "salary-bands.docx", "Salary bands 2026", [
        "Salary band E3 (senior engineer): 78,000 to 96,000 EUR.",
        "Salary band S2 (account executive): 58,000 EUR base plus commission.",
        "Salary bands are reviewed every April by finance and HR.",
    ], datetime(2026, 4, 15, 9, tzinfo=UTC))
    write_docx(out / "sales" / "acme-account-plan.docx", "Acme Logistics account plan", [
        "Acme Logistics runs 140 Northwind R2 robots across three sites.",
        "The 2026 renewal covers fleet licences for three years; champion: Jane Porter.",
        "Risk: Acme is trialling a competitor at the Lyon site.",
    ], datetime(2026, 8, 20, 9, tzinfo=UTC))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
