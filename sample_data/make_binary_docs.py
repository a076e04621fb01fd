"""Regenerate the sample PDF and DOCX documents (needs fpdf2 and python-docx).

The generated files are committed; contextd itself only reads them (pypdf, python-docx).
Run: .venv/bin/pip install fpdf2 && .venv/bin/python sample_data/make_binary_docs.py
"""

from __future__ import annotations

from pathlib import Path

import docx
from fpdf import FPDF

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


def write_pdf(path: Path, title: str, lines: list[str]) -> None:
    pdf = FPDF()
    pdf.set_title(title)
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    for line in lines:
        pdf.multi_cell(0, 8, line)
        pdf.ln(2)
    pdf.output(str(path))


def write_docx(path: Path, title: str, lines: list[str]) -> None:
    document = docx.Document()
    document.core_properties.title = title
    document.add_heading(title, level=1)
    for line in lines:
        document.add_paragraph(line)
    document.save(str(path))


def main() -> None:
    write_pdf(HERE / "finance" / "board-deck-notes.pdf", "Board deck notes", BOARD_NOTES)
    write_pdf(HERE / "support" / "security-policy.pdf", "Information security policy",
              SECURITY)
    write_docx(HERE / "finance" / "salary-bands.docx", "Salary bands 2026", [
        "Salary band E3 (senior engineer): 78,000 to 96,000 EUR.",
        "Salary band S2 (account executive): 58,000 EUR base plus commission.",
        "Salary bands are reviewed every April by finance and HR.",
    ])
    write_docx(HERE / "sales" / "acme-account-plan.docx", "Acme Logistics account plan", [
        "Acme Logistics runs 140 Northwind R2 robots across three sites.",
        "The 2026 renewal covers fleet licences for three years; champion: Jane Porter.",
        "Risk: Acme is trialling a competitor at the Lyon site.",
    ])


if __name__ == "__main__":
    main()
