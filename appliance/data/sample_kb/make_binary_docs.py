#!/usr/bin/env python3
"""Generate the binary documents (.pdf, .docx, .xlsx) of the sample knowledge base.

The text of every binary document is defined in this file. The generated files
are committed next to the Markdown/TXT/HTML/CSV documents under ``docs/``; this
script is only needed to regenerate them, never at runtime.

Usage (from any directory)::

    python3 -m venv /tmp/kbgen-venv
    /tmp/kbgen-venv/bin/pip install fpdf2 python-docx openpyxl pypdf
    apt-get install -y fonts-nanum            # Hangul TTF for the PDFs
    /tmp/kbgen-venv/bin/python make_binary_docs.py            # write files
    /tmp/kbgen-venv/bin/python make_binary_docs.py --verify   # write + check

Output is deterministic: fixed creation dates in the PDF metadata, fixed
timestamps inside the DOCX/XLSX zip containers.

Markup used for PDF/DOCX bodies (one construct per line):
    # Title            -> Heading 1
    ## Section         -> Heading 2
    ### Subsection     -> Heading 3
    - item             -> bullet
    | a | b |          -> table row (first row of a block is the header)
    ===PAGE===         -> page break
    other lines        -> paragraph text (consecutive lines are joined)
"""
from __future__ import annotations

import argparse
import datetime as _dt
import io
import logging
import re
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FONT_DIR = Path("/usr/share/fonts/truetype/nanum")
FONT_REGULAR = FONT_DIR / "NanumGothic.ttf"
FONT_BOLD = FONT_DIR / "NanumGothicBold.ttf"
FIXED_DATE = _dt.datetime(2024, 6, 28, 9, 0, 0, tzinfo=_dt.timezone.utc)
ZIP_DATE = (2024, 6, 28, 9, 0, 0)
COMPANY = "Hanbit Precision Co., Ltd. / 한빛정밀(주)"

# path (relative to sample_kb/) -> markup text
PDF_DOCS: dict[str, str] = {}
DOCX_DOCS: dict[str, str] = {}
# path -> list of (sheet title, rows); rows[0] is the header row
XLSX_DOCS: dict[str, list[tuple[str, list[list[object]]]]] = {}


# --------------------------------------------------------------------------
# markup parsing
# --------------------------------------------------------------------------
def parse_markup(text: str) -> list[tuple[str, object]]:
    """Return a list of blocks: (kind, payload).

    kinds: h1, h2, h3, p, bullet, table (payload = list of rows), page
    """
    blocks: list[tuple[str, object]] = []
    para: list[str] = []
    table: list[list[str]] = []

    def flush_para() -> None:
        if para:
            blocks.append(("p", " ".join(s.strip() for s in para)))
            para.clear()

    def flush_table() -> None:
        if table:
            blocks.append(("table", [row[:] for row in table]))
            table.clear()

    for raw in text.strip("\n").splitlines():
        line = raw.rstrip()
        stripped = line.strip()
        if stripped.startswith("|"):
            flush_para()
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            if all(re.fullmatch(r":?-{3,}:?", c) for c in cells):
                continue
            table.append(cells)
            continue
        flush_table()
        if not stripped:
            flush_para()
        elif stripped == "===PAGE===":
            flush_para()
            blocks.append(("page", None))
        elif stripped.startswith("### "):
            flush_para()
            blocks.append(("h3", stripped[4:]))
        elif stripped.startswith("## "):
            flush_para()
            blocks.append(("h2", stripped[3:]))
        elif stripped.startswith("# "):
            flush_para()
            blocks.append(("h1", stripped[2:]))
        elif stripped.startswith("- "):
            flush_para()
            blocks.append(("bullet", stripped[2:]))
        else:
            para.append(stripped)
    flush_para()
    flush_table()
    return blocks


# --------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------
def _font_cmap() -> set[int]:
    from fontTools.ttLib import TTFont

    cps: set[int] = set()
    for f in (FONT_REGULAR, FONT_BOLD):
        cps |= set(TTFont(str(f)).getBestCmap().keys())
    return cps


def check_glyphs(rel: str, text: str, cmap: set[int]) -> None:
    missing = sorted({ch for ch in text if ord(ch) not in cmap and ch not in "\n\r\t"})
    if missing:
        raise SystemExit(f"{rel}: characters missing from NanumGothic: {missing!r}")


def write_pdf(rel: str, text: str, cmap: set[int]) -> Path:
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    check_glyphs(rel, text, cmap)
    blocks = parse_markup(text)
    title = next(str(p) for k, p in blocks if k == "h1")
    korean = bool(re.search(r"[\uac00-\ud7a3]", title))
    footer_note = "사내 한정 문서" if korean else "Internal use only"

    class KBPDF(FPDF):
        def header(self) -> None:  # noqa: D401
            self.set_font("Nanum", "", 8)
            self.set_text_color(110, 110, 110)
            self.cell(0, 5, f"{COMPANY}  |  HERP", align="L")
            self.cell(0, 5, title[:60], align="R", new_x="LMARGIN", new_y="NEXT")
            self.set_draw_color(180, 180, 180)
            self.line(self.l_margin, self.get_y() + 1, self.w - self.r_margin, self.get_y() + 1)
            self.ln(5)
            self.set_text_color(0, 0, 0)

        def footer(self) -> None:
            self.set_y(-14)
            self.set_font("Nanum", "", 8)
            self.set_text_color(110, 110, 110)
            self.cell(0, 5, footer_note, align="L")
            self.cell(0, 5, f"{self.page_no()} / {{nb}}", align="R")
            self.set_text_color(0, 0, 0)

    pdf = KBPDF(format="A4")
    pdf.set_creation_date(FIXED_DATE)
    pdf.set_title(title)
    pdf.set_author(COMPANY)
    pdf.set_creator("make_binary_docs.py")
    pdf.set_producer("fpdf2")
    pdf.set_lang("ko-KR" if korean else "en-US")
    pdf.add_font("Nanum", "", str(FONT_REGULAR))
    pdf.add_font("Nanum", "B", str(FONT_BOLD))
    pdf.set_margins(20, 18, 20)
    pdf.set_auto_page_break(True, margin=20)
    pdf.alias_nb_pages()
    pdf.add_page()
    width = pdf.w - pdf.l_margin - pdf.r_margin

    for kind, payload in blocks:
        if kind == "page":
            pdf.add_page()
        elif kind == "h1":
            pdf.set_font("Nanum", "B", 17)
            pdf.multi_cell(width, 9, str(payload), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        elif kind == "h2":
            pdf.ln(2)
            pdf.set_font("Nanum", "B", 13)
            pdf.multi_cell(width, 7, str(payload), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(1.5)
        elif kind == "h3":
            pdf.ln(1)
            pdf.set_font("Nanum", "B", 11)
            pdf.multi_cell(width, 6, str(payload), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(0.5)
        elif kind == "p":
            pdf.set_font("Nanum", "", 10)
            pdf.multi_cell(width, 5.6, str(payload), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
        elif kind == "bullet":
            pdf.set_font("Nanum", "", 10)
            pdf.set_x(pdf.l_margin + 3)
            pdf.cell(4, 5.6, "·")
            pdf.multi_cell(width - 7, 5.6, str(payload), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(0.8)
        elif kind == "table":
            rows = payload  # type: ignore[assignment]
            pdf.set_font("Nanum", "", 9)
            with pdf.table(
                width=width,
                line_height=5.2,
                text_align="LEFT",
                headings_style=FontFace(emphasis="BOLD", fill_color=(230, 236, 245)),
                padding=1.2,
            ) as tbl:
                for row in rows:  # type: ignore[union-attr]
                    r = tbl.row()
                    for cell in row:
                        r.cell(cell)
            pdf.ln(3)

    out = HERE / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    pdf.output(str(out))
    return out


# --------------------------------------------------------------------------
# DOCX
# --------------------------------------------------------------------------
def write_docx(rel: str, text: str) -> Path:
    from docx import Document
    from docx.oxml.ns import qn
    from docx.shared import Pt

    blocks = parse_markup(text)
    title = next(str(p) for k, p in blocks if k == "h1")
    doc = Document()
    for style_name in ("Normal", "Heading 1", "Heading 2", "Heading 3", "List Bullet"):
        st = doc.styles[style_name]
        rpr = st.element.get_or_add_rPr()
        fonts = rpr.find(qn("w:rFonts"))
        if fonts is None:
            fonts = rpr.makeelement(qn("w:rFonts"), {})
            rpr.append(fonts)
        fonts.set(qn("w:eastAsia"), "Malgun Gothic")
    doc.styles["Normal"].font.size = Pt(10.5)

    cp = doc.core_properties
    cp.title = title
    cp.author = COMPANY
    cp.last_modified_by = "make_binary_docs.py"
    cp.created = FIXED_DATE.replace(tzinfo=None)
    cp.modified = FIXED_DATE.replace(tzinfo=None)
    cp.revision = 1

    for kind, payload in blocks:
        if kind == "h1":
            doc.add_heading(str(payload), level=1)
        elif kind == "h2":
            doc.add_heading(str(payload), level=2)
        elif kind == "h3":
            doc.add_heading(str(payload), level=3)
        elif kind == "p":
            doc.add_paragraph(str(payload))
        elif kind == "bullet":
            doc.add_paragraph(str(payload), style="List Bullet")
        elif kind == "page":
            doc.add_page_break()
        elif kind == "table":
            rows = payload  # type: ignore[assignment]
            ncols = max(len(r) for r in rows)  # type: ignore[union-attr]
            tbl = doc.add_table(rows=0, cols=ncols)
            tbl.style = doc.styles["Table Grid"]
            for i, row in enumerate(rows):  # type: ignore[union-attr]
                cells = tbl.add_row().cells
                for j in range(ncols):
                    cells[j].text = row[j] if j < len(row) else ""
                    if i == 0:
                        for run in cells[j].paragraphs[0].runs:
                            run.bold = True
            doc.add_paragraph()

    out = HERE / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    doc.save(buf)
    out.write_bytes(normalize_zip(buf.getvalue()))
    return out


# --------------------------------------------------------------------------
# XLSX
# --------------------------------------------------------------------------
def write_xlsx(rel: str, sheets: list[tuple[str, list[list[object]]]]) -> Path:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    wb.remove(wb.active)
    wb.properties.creator = COMPANY
    wb.properties.title = Path(rel).stem
    wb.properties.created = FIXED_DATE.replace(tzinfo=None)
    wb.properties.modified = FIXED_DATE.replace(tzinfo=None)
    wb.properties.lastModifiedBy = "make_binary_docs.py"
    head_fill = PatternFill("solid", fgColor="DCE6F1")
    for name, rows in sheets:
        ws = wb.create_sheet(title=name)
        for row in rows:
            ws.append(row)
        for cell in ws[1]:
            cell.font = Font(bold=True)
            cell.fill = head_fill
        ws.freeze_panes = "A2"
        for col_idx in range(1, max(len(r) for r in rows) + 1):
            longest = max(len(str(r[col_idx - 1])) if col_idx - 1 < len(r) and r[col_idx - 1] is not None else 0 for r in rows)
            ws.column_dimensions[get_column_letter(col_idx)].width = min(max(10, longest * 1.15 + 2), 70)
        for row in ws.iter_rows(min_row=2):
            for cell in row:
                cell.alignment = Alignment(wrap_text=True, vertical="top")
    out = HERE / rel
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    wb.save(buf)
    out.write_bytes(normalize_zip(buf.getvalue()))
    return out


def normalize_zip(data: bytes) -> bytes:
    """Rewrite an Office zip container with fixed timestamps (deterministic output)."""
    stamp = FIXED_DATE.strftime("%Y-%m-%dT%H:%M:%SZ")
    src = zipfile.ZipFile(io.BytesIO(data))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            payload = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                txt = payload.decode("utf-8")
                txt = re.sub(r"(<dcterms:created[^>]*>)[^<]*(</dcterms:created>)", rf"\g<1>{stamp}\g<2>", txt)
                txt = re.sub(r"(<dcterms:modified[^>]*>)[^<]*(</dcterms:modified>)", rf"\g<1>{stamp}\g<2>", txt)
                payload = txt.encode("utf-8")
            zi = zipfile.ZipInfo(info.filename, date_time=ZIP_DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            dst.writestr(zi, payload)
    return buf.getvalue()


# ==========================================================================
# DOCUMENT CONTENT
# ==========================================================================
# ---------------------------------------------------------------- PDF docs
PDF_DOCS["docs/purchasing/vendor-registration-ko.pdf"] = """
# 신규 거래처(공급사) 등록 및 변경 절차

문서번호: PUR-PRC-003 | 주관부서: 구매팀 구매관리파트 (내선 2150) | 시행일: 2024-03-01 | 개정 차수: 4

## 1. 목적 및 적용 범위

이 절차는 한빛정밀(주)이 물품이나 용역을 구매하기 위해 새로운 공급사를 HERP 거래처 마스터에 등록하거나, 기존 거래처의 정보(특히 지급 계좌)를 변경할 때 지켜야 할 기준을 정한다. 거래처 등록은 부정 지급과 부적격 업체와의 거래를 막는 첫 번째 통제 절차이므로 요청 부서, 구매팀, 재무팀, 품질팀이 각자의 확인 책임을 진다.

적용 대상은 국내 공급사, 해외 공급사, 일회성 거래처이며, 고객(매출처) 등록은 영업관리팀의 고객 마스터 절차를 따른다.

## 2. 요청 방법

- HERP 트랜잭션 VN100 (메뉴: 구매관리 > 기준정보 > 거래처 등록 요청)에서 요청 유형 "신규"를 선택한다.
- 신규 거래처 등록 신청서(양식 PUR-F-003)를 작성하여 첨부한다. 신청서는 공급사가 직접 작성하고 대표자 또는 권한 있는 담당자가 서명해야 한다.
- 요청자는 공급사 선정 사유(견적 결과, 기술 검토 결과 등)를 요청 화면의 "선정 사유" 칸에 기재한다.

## 3. 제출 서류

| 서류 | 대상 | 비고 |
|---|---|---|
| 사업자등록증 사본 | 모든 국내 공급사 | 발급일 3개월 이내 |
| 법인 명의 통장 사본 | 모든 공급사 | 예금주명이 사업자등록증 상호와 일치해야 함 |
| 최근 2개년 재무제표 | 연간 예상 거래액 5,000만원 이상 | 감사보고서 또는 세무서 제출본 |
| 반부패·윤리 서약서(PUR-F-004) | 모든 공급사 | 대표자 서명 |
| 품질경영 인증서(ISO 9001 또는 IATF 16949) | 생산 자재 공급사(VC01~VC05) | 유효기간 확인 |
| 해외 법인 등록 서류 및 은행 확인서 | 해외 공급사 | 영문, SWIFT 코드 포함 |

===PAGE===

## 4. 심사 기준과 처리 기간

구매관리파트 기준정보 담당자는 접수 후 5영업일 이내에 심사를 마친다. 심사 항목은 다음과 같다.

- 휴·폐업 여부: 국세청 사업자 상태 조회 결과를 첨부한다.
- 신용등급: 외부 신용평가 기준 BB 이상이어야 한다. BB 미만인 경우 구매실장 승인과 선급금 지급 금지 조건이 붙는다.
- 중복 여부: 같은 사업자등록번호의 거래처가 이미 있으면 신규 등록하지 않고 기존 코드에 구매조직을 확장한다.
- 반부패 점검: 당사 임직원 또는 그 가족이 대주주인 업체인지 확인하고, 해당되면 윤리경영 담당에 보고한다.
- 품질 심사: 생산 자재 공급사는 품질팀이 현장 심사를 하며, 이 경우 처리 기간은 최대 15영업일까지 늘어날 수 있다.

심사가 끝나면 담당자가 거래처 마스터를 생성하고 요청자에게 거래처 코드를 메일로 통보한다. 거래처 카테고리(VC01~VC14)에 따라 구매그룹, 기본 지급조건, 조정계정이 자동으로 설정된다.

## 5. 거래처 코드 체계

| 구분 | 코드 형식 | 예시 |
|---|---|---|
| 국내 공급사 | V1 + 5자리 | V100231 |
| 해외 공급사 | V2 + 5자리 | V200518 |
| 일회성 거래처 | V9 + 5자리 | V900044 |

일회성 거래처(V9)는 정식 심사 없이 사업자등록증과 통장 사본만으로 등록할 수 있다. 다만 연간 거래 금액 500만원 이하, 연 3회 이하 거래로 제한되며, 이를 넘으면 정식 거래처로 전환 등록해야 한다.

===PAGE===

## 6. 지급 계좌 변경

지급 계좌 변경은 거래처 사칭 이메일을 이용한 송금 사기의 주요 수단이므로 가장 엄격하게 관리한다.

- 공급사는 계좌 변경 신청서(양식 PUR-F-005)에 대표자 인감을 날인하고, 새 계좌의 통장 사본을 첨부하여 제출한다.
- 구매관리파트는 거래처 마스터에 이미 등록된 대표 전화번호로 전화를 걸어 변경 사실을 확인한다(콜백 확인). 신청서에 적힌 전화번호로 확인하는 것은 인정되지 않는다.
- 콜백 확인 결과와 통화자, 통화 일시를 VN100 요청 화면에 기록한다.
- 재무팀 자금파트가 최종 승인하며, 승인 전까지 해당 거래처의 미지급 송장은 지급 보류(사유 M)된다.
- 이메일 본문만으로 계좌 변경을 요청받은 경우 절대 처리하지 말고 정보보안파트에 알린다.

## 7. 거래처 비활성화와 재사용

- 최근 12개월 동안 발주나 지급이 없는 거래처는 매년 1월에 자동으로 구매 차단 플래그가 설정된다.
- 다시 거래하려면 VN100에서 요청 유형 "차단 해제"를 선택하고, 사업자등록증과 통장 사본을 새로 제출한다.
- 거래처 정보 변경(주소, 담당자, 이메일)은 요청 유형 "변경"으로 신청하며, 처리 기간은 2영업일이다.

## 8. 문의처

거래처 등록 및 변경: 구매팀 구매관리파트 (내선 2150)
지급 계좌 승인: 재무팀 자금파트 (내선 2230)
품질 심사 일정: 품질팀 (아산 내선 3500)
"""

PDF_DOCS["docs/sales/returns-and-credit-memo-ko.pdf"] = """
# 고객 반품(RMA) 처리 및 대변메모 발행 절차

문서번호: SAL-PRC-012 | 주관부서: 영업관리팀 (내선 2510), 품질팀 | 시행일: 2024-02-01

## 1. 목적

고객이 납품받은 제품을 반품하려는 경우 반품 승인 번호(RMA) 발급부터 반품 입고, 품질 판정, 대변메모와 수정세금계산서 발행까지의 절차를 정한다. RMA 번호 없이 도착한 반품은 입고하지 않고 보관만 하며, 영업담당자에게 확인을 요청한다.

## 2. 반품 가능 기간

- 일반 반품: 출하일로부터 30일 이내에 요청해야 한다.
- 품질 불량으로 인한 반품: 출하일로부터 90일 이내
- 위 기간을 지난 반품은 영업본부장의 예외 승인이 있어야 받을 수 있다.

## 3. RMA 번호 발급

영업담당자는 고객의 반품 요청을 받으면 HERP 트랜잭션 RM100(메뉴: 영업관리 > 반품 > RMA 생성)에서 RMA를 생성한다.

- 원 청구 문서 번호 또는 출하 문서 번호를 참조하여 생성한다. 참조 없이 만든 RMA는 품질팀이 추적할 수 없으므로 허용되지 않는다.
- RMA 번호 형식: RMA-연도-4자리 일련번호 (예: RMA-2024-0153)
- 생성 시 반품 사유 코드, 반품 수량, 반품 입고 플랜트를 입력한다.
- RMA 번호는 고객에게 메일로 통보하고, 고객은 반품 박스 외부와 거래명세서에 RMA 번호를 표기해야 한다.

## 4. 반품 사유 코드

| 코드 | 사유 | 처리 원칙 |
|---|---|---|
| R01 | 품질 불량 | 품질팀 불량 분석, 8D 보고서 대상 여부 판단 |
| R02 | 오배송(품목 상이) | 물류팀 원인 조사, 운송비 당사 부담 |
| R03 | 수량 초과 출하 | 초과 수량만 반품, 운송비 당사 부담 |
| R04 | 운송 중 파손 | 운송사 보험 청구 병행 |
| R05 | 고객 단순 변심 | 재입고 수수료 10% 공제, 운송비 고객 부담 |
| R06 | 고객 사양 변경 | 영업팀장 승인 필요, 재고 전용 가능성 검토 |

===PAGE===

## 5. 반품 입고

- 반품은 반품창고에 입고한다. 아산공장은 저장위치 1109, 창원공장은 1209이다.
- 물류팀은 도착한 물품의 RMA 번호와 수량을 확인한 뒤 반품 주문(주문 유형 RE)을 참조하여 반품 입고를 전기한다(이동유형 651). 반품 입고된 재고는 자동으로 제한 재고 상태가 된다.
- RMA 수량과 실제 도착 수량이 다르면 실제 수량으로 입고하고 영업담당자에게 차이를 알린다.

## 6. 품질 판정

품질팀은 반품 입고 후 5영업일 이내에 판정을 내리고 HERP에 결과를 입력한다.

| 판정 | 후속 처리 |
|---|---|
| 재판매 가능 | 제품창고(1103 또는 1203)로 이동하여 가용 재고로 전환 |
| 재작업 필요 | 공정창고로 이동하고 재작업 오더 생성 |
| 폐기 | 불용재고 폐기 절차에 따라 이동유형 551로 폐기 |

R01(품질 불량) 반품이 같은 고객, 같은 품목으로 3개월 안에 2회 이상 발생하면 품질팀은 고객에게 8D 보고서를 제출한다.

## 7. 대변메모와 수정세금계산서

- 품질 판정이 끝나면 영업관리팀이 HERP 트랜잭션 BL310(메뉴: 영업관리 > 청구 > 대변메모 생성)에서 RMA를 참조하여 대변메모를 발행한다.
- 대변메모 금액이 500만원을 초과하면 영업본부장의 승인이 필요하다.
- R05 사유의 경우 재입고 수수료 10%를 공제한 금액으로 대변메모를 발행한다.
- 대변메모가 전기되면 수정세금계산서(사유: 환입)가 eTaxLink를 통해 자동으로 발행된다. 작성일자는 반품 입고일이다.
- 대변메모 금액은 고객의 미수금에서 차감되며, 이미 입금된 경우 다음 대금에서 상계하거나 고객 요청 시 환불한다.

===PAGE===

## 8. 교환 출하

고객이 환불 대신 동일 제품의 교환을 원하면 영업담당자는 RMA 번호를 참조하여 무상 교환 주문(주문 유형 FR)을 생성한다. FR 주문은 반품 입고가 확인된 뒤에 출하하는 것이 원칙이며, 고객 라인 정지 위험이 있는 경우에만 영업팀장 승인으로 선출하할 수 있다.

## 9. 월별 반품 보고

영업관리팀은 매월 WD+3에 반품 현황 보고서(리포트 RM-MON)를 영업본부와 품질팀에 배포한다. 보고서에는 사유 코드별 건수와 금액, 처리 지연 건(RMA 발급 후 30일 이상 미완료)이 포함된다.

## 10. 문의처

RMA 발급 및 대변메모: 영업관리팀 (내선 2510)
반품 입고: 아산 물류팀 (내선 3300), 창원 물류팀 (내선 4300)
품질 판정: 품질팀 (아산 내선 3500)
"""

PDF_DOCS["docs/inventory/physical-inventory-count.pdf"] = """
# Physical Inventory and Cycle Counting Procedure

Document ID: INV-PRC-005 | Owner: Logistics Teams Asan and Changwon, Finance Team (Cost) | Effective: 2024-01-01 | Revision 6

## 1. Purpose

Book stock in HERP must match the physical stock in every storage location. Hanbit Precision uses two methods: continuous cycle counting during the year and an annual wall-to-wall count at year end. Both use the same HERP transactions and the same rules for recounts and approval of differences.

## 2. Cycle counting by ABC class

Every material is classified A, B or C once a year in January, based on its annual consumption value in the previous year:

| Class | Share of annual consumption value | Count frequency |
|---|---|---|
| A | top materials making up 80% of value | every month |
| B | next 15% of value | every quarter |
| C | remaining 5% of value | twice a year (June and December) |

The ABC class is stored in the material master (storage view, field "Cycle count indicator"). The warehouse manager of each plant schedules cycle counts so that no more than 60 materials are counted on one day. Cycle counts are performed on Tuesdays and Thursdays after 15:00 when goods movements are lowest.

## 3. Annual wall-to-wall count

- The annual count takes place on the second-to-last working day of December in both plants.
- From 18:00 on the day before the count, the storage locations being counted are blocked for postings. Goods receipts that arrive during the block are kept in the receiving area and posted after the count.
- Production stops for the count day except for lines approved by the plant manager; their WIP is counted at 06:00.
- The external auditors observe the count in at least one plant and may perform test counts.

===PAGE===

## 4. HERP transactions

| Step | Transaction | Notes |
|---|---|---|
| Create count documents | IM400 | One document per storage location and count area; tick "Posting block" |
| Print count sheets | IM400 > Print | Form INV-F-010, printed without book quantities (blind count) |
| Enter counted quantities | IM410 | Enter zero explicitly for empty bins; blank lines are treated as not counted |
| Review differences | IM415 | Difference list with quantity and value per item |
| Post differences | IM420 | Movement type 701 (surplus) or 702 (shortage) |

## 5. Counting rules

- Counting is done in teams of two: one counter and one checker from a different department. Nobody counts a storage location he or she is responsible for.
- Count what you see, per bin and per batch. Do not look up book quantities during the count.
- Damaged or expired goods are counted but noted in the remarks column so that they can be moved to blocked stock afterwards.
- Goods belonging to customers or subcontractors are counted separately and are not part of our stock value.
- Count sheets are signed by both team members and handed to the warehouse manager on the same day.

## 6. Recounts

A recount by a different team is mandatory for every item where the difference between counted and book quantity exceeds 5% of the book quantity or KRW 500,000 in value, whichever threshold is reached first. The recount result replaces the first count. If the recount confirms the difference, the warehouse manager investigates possible causes (unposted goods receipts, wrong unit of measure, picking errors) before the difference is posted.

===PAGE===

## 7. Approval of differences

Differences are approved by document value (sum of absolute values of all differences in the count document):

| Total difference per count document | Approver |
|---|---|
| up to KRW 1,000,000 | Warehouse manager of the plant |
| up to KRW 10,000,000 | Plant controller |
| above KRW 10,000,000 | CFO |

IM420 blocks the posting until the approval is recorded; the message INV-E-0715 is shown if approval is missing. Posted differences are charged to account 529500 (inventory count differences) on the cost center of the warehouse.

## 8. Documentation and follow-up

- Signed count sheets, recount sheets and the approved difference list are scanned and attached to the count document in IM400 within 3 working days after posting.
- Items with differences in two consecutive cycle counts are reclassified to monthly counting for the next six months, regardless of ABC class.
- The plant controller presents a summary of count differences in the monthly plant review.

## 9. Contacts

Count planning and count sheets: warehouse manager of the plant (Asan ext. 3300, Changwon ext. 4300). Valuation and approval questions: Finance Team, Cost (ext. 2230). HERP issues: IT Helpdesk ext. 2400.
"""

PDF_DOCS["docs/accounting/corporate-card-policy-ko.pdf"] = """
# 법인카드 발급 및 사용 규정

문서번호: FIN-POL-003 | 주관부서: 재무팀 (내선 2230) | 시행일: 2024-04-01 | 승인: CFO

## 1. 목적

이 규정은 업무 비용 결제를 위한 법인카드의 발급, 사용, 정산, 분실 신고, 반납 기준을 정하여 법인카드의 부정 사용을 막고 비용 처리의 투명성을 확보하는 것을 목적으로 한다.

## 2. 카드 종류

- 개인 지정 법인카드(기명식): 특정 임직원에게 발급되며 본인만 사용할 수 있다.
- 부서 공용카드(무기명식): 부서 서무 담당자가 보관하며, 사용 시 공용카드 사용 대장에 사용자와 용도를 기록한다.

## 3. 월 사용 한도

| 구분 | 월 한도 |
|---|---|
| 사원 ~ 대리 | 100만원 |
| 과장 ~ 차장 | 200만원 |
| 팀장 | 300만원 |
| 임원 | 1,000만원 |
| 부서 공용카드 | 500만원 |

일시적인 한도 상향은 법인카드 한도 변경 신청서(양식 FIN-F-013)에 부서장 승인을 받아 재무팀에 제출하며, 최대 3개월까지 적용된다.

## 4. 발급 신청

- 법인카드 발급 신청서(양식 FIN-F-012)를 작성하여 팀장 승인을 받은 뒤 재무팀에 제출한다.
- 카드 발급까지는 카드사 심사를 포함하여 약 7영업일이 걸린다.
- 카드는 재무팀에서 본인이 직접 수령하며, 수령 시 법인카드 사용 서약서에 서명한다.

===PAGE===

## 5. 사용 제한

다음 업종과 용도에는 법인카드를 사용할 수 없다. 카드사 가맹점 업종 코드로 결제가 자동 차단되는 업종도 있다.

- 유흥주점, 단란주점, 노래방 등 유흥 업종
- 골프장 (임원의 거래처 접대는 사전 품의 시 예외)
- 상품권, 선불카드, 귀금속 구입
- 현금서비스, 카드론 등 현금성 거래
- 개인 물품 구입 등 업무와 무관한 지출

주말·공휴일 사용과 23:00~06:00 사이의 사용은 결제가 되더라도 정산 시 사유 입력이 필수이며, 재무팀이 별도로 소명을 요청할 수 있다.

## 6. 정산(EX200)

- 카드사 승인 데이터는 결제 다음 날 HERP로 자동 수신된다.
- 사용자는 수신일로부터 7일 이내에 HERP 트랜잭션 EX200(메뉴: 재무 > 경비 > 법인카드 정산)에서 사용 목적, 비용 계정, 코스트센터를 입력하고 영수증을 첨부한다.
- 접대비(기업업무추진비)는 거래처명과 참석자를 입력해야 한다.
- 미정산 상태로 14일이 지나면 카드 사용이 일시 정지되며, 정산을 완료한 다음 날 자동으로 해제된다.
- 정산 내역은 팀장이 승인하며, 재무팀은 월 단위로 표본 점검을 한다.

===PAGE===

## 7. 분실 및 도난

- 카드를 분실하면 즉시 카드사 분실신고 센터에 신고하고, 재무팀(내선 2230)에도 당일 알린다.
- 신고 전에 발생한 부정 사용은 카드사 보상 절차를 따르며, 신고 지연으로 보상받지 못한 금액은 사용자가 부담할 수 있다.
- 재발급은 발급 신청서를 다시 제출하며, 기존 카드 번호로는 재발급되지 않는다.

## 8. 개인 사용 및 위반 처리

- 실수로 개인 용도에 사용한 경우 즉시 재무팀에 알리고, 사용 금액을 회사 계좌로 입금한 후 EX200에서 "개인 사용 환입"으로 정산한다.
- 고의적이거나 반복적인 개인 사용, 허위 정산은 징계위원회에 회부되며 사용 금액은 전액 환수한다.
- 분할 결제로 한도나 승인 기준을 회피하는 행위도 위반으로 본다.

## 9. 반납

퇴사, 휴직(1개월 이상), 직무 변경으로 카드가 필요 없어지면 마지막 근무일 3영업일 전까지 재무팀에 카드를 반납하고 미정산 내역을 모두 정산해야 한다. 미반납 시 인사팀의 퇴직 처리(퇴직금 지급)가 보류될 수 있다.
"""

PDF_DOCS["docs/hr/payslip-and-payroll-ko.pdf"] = """
# 급여 지급 및 급여명세서 조회 안내

문서번호: HR-GDE-004 | 주관부서: 인사팀 급여 담당 (내선 2320, payroll@hanbitprecision.example) | 개정일: 2024-01-10

## 1. 급여 지급일과 계산 기간

- 급여 지급일은 매월 25일이다. 25일이 토요일, 일요일 또는 공휴일이면 직전 영업일에 지급한다.
- 기본급과 고정 수당은 당월 1일부터 말일까지를 기준으로 당월에 지급한다.
- 연장·야간·휴일 근로수당 등 변동 수당은 전월 16일부터 당월 15일까지의 근태 실적을 기준으로 당월 급여에 포함한다.
- 상여금은 연 4회(3월, 6월, 9월, 12월) 급여일에 함께 지급한다.
- 신규 입사자의 첫 달 급여는 입사일부터 일할 계산한다.

## 2. 급여명세서 조회(HR300)

- 급여명세서는 종이로 배부하지 않으며, 임직원 셀프서비스(ESS)의 HR300 화면(메뉴: 인사 > 셀프서비스 > 급여명세서)에서만 조회할 수 있다.
- 명세서는 급여 지급일 전날 18:00에 공개된다.
- 조회 시 HERP 로그인과 별도로 휴대폰 인증(2차 인증)을 거쳐야 한다.
- 최근 5년치 명세서를 조회하고 PDF로 내려받을 수 있다. PDF 파일은 생년월일 6자리로 암호가 걸려 있다.
- 개인정보 보호를 위해 급여명세서는 공용 프린터로 출력할 수 없다.

===PAGE===

## 3. 공제 항목

| 항목 | 기준 |
|---|---|
| 소득세 | 근로소득 간이세액표 기준 (본인 선택 80%, 100%, 120%) |
| 지방소득세 | 소득세의 10% |
| 국민연금 | 기준소득월액의 4.5% (근로자 부담분) |
| 건강보험 | 보수월액의 3.545% (근로자 부담분) |
| 장기요양보험 | 건강보험료의 12.95% |
| 고용보험 | 보수총액의 0.9% |
| 사우회비 | 월 10,000원 (가입자) |
| 노동조합비 | 조합원에 한해 통상임금의 1% |

소득세 원천징수 비율(80%, 100%, 120%)을 변경하려면 HR300의 "원천징수 비율 변경"에서 신청하며, 다음 달 급여부터 적용된다.

## 4. 급여 계좌 변경

- 급여 계좌는 본인 명의 계좌만 등록할 수 있다.
- ESS의 HR310(급여 계좌 변경)에서 새 계좌를 입력하고 통장 사본을 첨부한다.
- 매월 10일까지 신청한 건은 당월 급여부터 반영되며, 11일 이후 신청 건은 다음 달부터 반영된다.
- 계좌 변경이 완료되면 인사 마스터에 등록된 휴대폰으로 알림 문자가 발송된다. 본인이 신청하지 않은 변경 알림을 받으면 즉시 급여 담당에 연락한다.

===PAGE===

## 5. 연말정산

| 일정 | 내용 |
|---|---|
| 1월 15일 | 국세청 연말정산 간소화 자료 공개 |
| 1월 16일 ~ 1월 31일 | HERP HR320(연말정산) 화면에서 간소화 PDF 업로드 및 공제 신고서 제출 |
| 2월 10일 | 인사팀 검토 완료, 본인 확인 요청 |
| 2월 25일 | 2월 급여에서 환급 또는 추가 납부 정산 |

- 간소화 자료에 없는 공제(예: 안경 구입비, 교복 구입비 일부)는 영수증을 별도로 첨부한다.
- 기한 내 제출하지 않으면 기본 공제만 적용되며, 추가 공제는 본인이 5월 종합소득세 신고로 처리해야 한다.
- 추가 납부 세액이 10만원을 넘으면 2월부터 4월까지 3개월 분납을 신청할 수 있다.

## 6. 급여 오류 및 이의 제기

- 급여 금액이 예상과 다르면 지급일로부터 5영업일 이내에 급여 담당(내선 2320)에 문의하거나 payroll@hanbitprecision.example 로 메일을 보낸다.
- 근태 기록 누락으로 인한 수당 차이는 근태 정정 승인 후 다음 달 급여에서 소급 정산한다.
- 과지급된 금액은 본인에게 통보한 후 다음 달 급여에서 공제한다.

## 7. 관련 증명서

근로소득 원천징수영수증과 급여지급확인서는 ESS의 증명서 발급 화면에서 직접 발급할 수 있다. 자세한 내용은 제증명 발급 안내를 참고한다.
"""

PDF_DOCS["docs/admin/vpn-remote-access.pdf"] = """
# Remote Access to HERP via HanbitConnect VPN

Document ID: SYS-PRC-008 | Owner: IT Team, Information Security part | Helpdesk: ext. 2400 | Last revised: 2024-05-20

## 1. Overview

HERP, ESS and the internal file shares are only reachable from the company network. Employees who work from home, from a customer site or while travelling connect through the HanbitConnect VPN. HanbitConnect encrypts all traffic between the company laptop and the gateway vpn.hanbitprecision.example and requires multi-factor authentication at every login.

## 2. Who can get remote access

- Office employees who have a company laptop with the standard security agent installed.
- Production employees do not receive VPN access by default; exceptions (for example shift supervisors who approve overtime from home) need the plant manager's approval.
- External contractors may get VPN access for the validity period of their HERP account, at most 90 days.
- Personal devices (private PCs, tablets, phones) can never be used for VPN access. The VPN client checks the device certificate and refuses unknown devices.

## 3. How to request access

1. Fill in form SYS-F-014 (Remote Access Request) and attach it to a HanbitDesk ticket, category "VPN / Remote Access".
2. Your team leader approves the ticket.
3. The Information Security part activates the access within 3 business days and e-mails the installation guide.

Access is granted for one year and must be renewed with a new SYS-F-014. The renewal reminder is sent 30 days before expiry.

===PAGE===

## 4. Multi-factor authentication

- Install the Hanbit OTP app on your company-registered mobile phone and scan the QR code sent by the Information Security part.
- At VPN login enter your HERP user ID, your HERP password and the 6-digit code shown in the app. A new code is displayed every 30 seconds.
- If you change your phone, request an OTP re-registration through HanbitDesk before you hand in the old phone.

## 5. Connecting

- Start HanbitConnect (version 5.2 or later) from the system tray and select the profile "Hanbit-Default".
- After connecting, open the HERP web client at https://herp.hanbit.local as in the office.
- Idle VPN sessions are disconnected after 60 minutes without traffic. The maximum session length is 12 hours, after which you must log in again.
- Large file transfers (for example CAD drawings above 500 MB) should be scheduled outside 09:00 to 11:00, the peak time for remote sessions.

## 6. Working from abroad

- Access from outside Korea must be registered at least 5 business days before departure through HanbitDesk (category "VPN / Remote Access", type "Overseas"), stating the countries and travel dates.
- Without registration, logins from foreign IP addresses are blocked automatically.
- Access from countries on the company's restricted list is not possible even with registration. The current list is published on the IT portal.
- Public Wi-Fi in hotels and airports may be used only with the VPN connected; do not open HERP or e-mail before the VPN shows "Connected".

===PAGE===

## 7. Troubleshooting

| Error | Meaning | What to do |
|---|---|---|
| HC-ERR-21 | Device certificate expired | Connect the laptop to the office network once, or open a ticket to have the certificate renewed remotely |
| HC-ERR-33 | OTP code rejected | Check that the phone's date and time are set automatically; wait for a new code and try again |
| HC-ERR-40 | Device not compliant | The antivirus signatures or Windows updates are older than 14 days; run updates and reconnect |
| HC-ERR-52 | Account not enabled for VPN | No approved SYS-F-014 exists or it has expired; submit a new request |
| HC-ERR-61 | Login from unregistered country | Register the overseas trip (section 6) or call the Helpdesk |

If HERP itself is slow while the VPN is connected, test the connection speed with the "Diagnostics" button in HanbitConnect and attach the result to your Helpdesk ticket.

## 8. Security rules

- Lock your screen whenever you leave the laptop, also at home.
- Do not print HERP documents containing personal data (for example payroll or employee lists) on home printers.
- Report a lost or stolen laptop immediately to the Helpdesk (ext. 2400, or +82-41-530-2400 from outside) so that its certificate can be revoked.
"""

# --------------------------------------------------------------- DOCX docs
DOCX_DOCS["docs/purchasing/purchase-order-change-cancel.docx"] = """
# Changing and Cancelling Purchase Orders

Document ID: PUR-PRC-004 | Owner: Purchasing Team (ext. 2150) | Last revised: 2024-04-02

## 1. Scope

This procedure explains how buyers change a purchase order after it has been created or released, when a change requires a new approval, and how to cancel PO items correctly. It applies to all PO document types (NB standard, EM emergency, IM import).

## 2. Changing a PO (PO120)

Use transaction PO120 (menu: Purchasing > Purchase Order > Change). The following fields can be changed after release:

- Quantity, as long as the new quantity is not below the quantity already received.
- Delivery date of a schedule line.
- Net price and price conditions.
- Storage location and the text fields.

The vendor on the PO header can never be changed. If the wrong vendor was selected, cancel the PO and create a new one.

If you try to reduce the quantity below the goods receipt quantity, HERP shows PO-E-305 "Quantity less than quantity received". Check the PO history tab for the received quantity; if the GR was wrong, ask the receiving clerk to reverse it first.

## 3. When a change needs a new approval

A released PO returns to status "Release reset" and goes through the release workflow again when the total net value increases by more than 10% or by more than KRW 2,000,000, whichever is lower. Decreases in value, date changes and text changes do not reset the release.

Example: a released PO of KRW 15,000,000 is increased to KRW 16,800,000. The increase of KRW 1,800,000 is 12%, above the 10% threshold, so the PO must be approved again before the change is sent to the vendor.

While a PO is in "Release reset", goods can still be received up to the previously released quantity.

## 4. Cancelling PO items

Cancellation is done in PO120 by selecting the item and choosing Item > Delete, which sets the deletion indicator. A deletion reason code is mandatory:

| Code | Reason |
|---|---|
| C1 | Requirement no longer needed |
| C2 | Vendor cannot deliver |
| C3 | Price or specification error on the PO |
| C4 | Duplicate PO |
| C5 | Replaced by a contract or scheduling agreement |

An item can only be deleted if there is no goods receipt and no invoice on it, or if goods receipt and invoice quantities are equal (the item is then closed instead of deleted). For partially delivered items, reduce the quantity to the received quantity and set the "Delivery completed" flag.

## 5. Informing the vendor

After saving a change or cancellation, HERP sends a new PO output (e-mail or EDI, output type NEU) marked "CHANGE" or "CANCELLATION" automatically, once the PO is released. Do not send separate e-mails with different content.

If the vendor has already started production, cancellation may cause costs. For cancellations of items above KRW 10,000,000, attach the vendor's written confirmation (including any cancellation fee) to the PO before deleting the item. Cancellation fees are approved like a PO of the same value.

## 6. Change history

All changes are logged. Display them in PO130 > Environment > Change History, which shows the old and new values, the user and the time of each change. Auditors use this history, so never re-use a PO for a different purpose by overwriting its items.

## 7. Automatic closing of old POs

A monthly batch job (PO-CLOSE) closes PO items with no goods movement or invoice for 180 days and sets the "Delivery completed" flag. Buyers receive a list of the closed items and can reopen an item in PO120 within 30 days if a delivery is still expected.
"""

DOCX_DOCS["docs/purchasing/import-purchase-customs-ko.docx"] = """
# 해외 수입 구매 및 통관 업무 안내

문서번호: PUR-GDE-008 | 주관부서: 구매팀 수입구매 담당 (구매그룹 P50, 내선 2150) | 개정일: 2024-02-27

## 1. 적용 범위

해외 공급사(거래처 코드 V2로 시작)로부터 원자재, 설비 부품, 공구 등을 수입하는 경우의 발주, 결제, 통관, 입고 절차를 설명한다. 수입 구매는 반드시 구매그룹 P50 수입구매 담당이 처리하며, 요청 부서는 구매요청의 납품요청일을 요청일로부터 30일 이후로 입력해야 한다.

## 2. 수입 발주(PO 유형 IM)

- PO 유형은 IM(수입 발주)을 사용한다.
- 발주 통화는 USD, EUR, JPY 중 공급사 계약 통화로 한다.
- 환율은 발주일 전일의 서울외국환중개 매매기준율(HERP 환율 유형 M)이 자동 적용된다. 승인 한도는 이 환율로 환산한 원화 금액 기준으로 판단한다.
- 인도조건(Incoterms)은 FCA 또는 FOB를 기본으로 한다. 공급사가 운송비를 부담하는 DAP 조건은 구매팀장 승인이 있어야 한다.
- PO 헤더의 "인도조건 장소"(예: FOB Yokohama)를 반드시 입력한다.

## 3. 대금 결제 방식

| 건당 결제 금액 | 결제 방식 | 비고 |
|---|---|---|
| USD 50,000 미만(또는 상당액) | 전신환 송금(T/T) | 선적 후 30일 이내 송금 |
| USD 50,000 이상 | 신용장(L/C, At Sight) | 재무팀 자금파트에 개설 요청 |

신용장 개설은 수입구매 담당이 신용장 개설 요청서(양식 FIN-F-021)를 작성하여 재무팀 자금파트에 제출한다. 개설에는 3영업일이 걸리므로 공급사의 선적 예정일보다 최소 10영업일 전에 요청해야 한다. 신용장 조건 변경(Amend)도 같은 양식으로 요청한다.

## 4. 통관

- 수입 통관은 지정 관세사인 한결관세법인이 대행한다. 수입구매 담당은 선적 서류(Commercial Invoice, Packing List, B/L 또는 Air Waybill, 원산지증명서)를 받는 즉시 관세사에 전달한다.
- FTA 협정 세율을 적용받으려면 선적 전에 공급사에 원산지증명서 발급을 요청해야 한다. 원산지증명서와 관련 서류는 5년간 보관한다.
- 관세사는 수입신고 수리 후 수입신고필증과 세관 발행 수입세금계산서를 보내며, 수입 부가세는 매입세액으로 공제된다.
- 관세와 수입 부가세는 관세사가 대납한 뒤 청구하며, 재무팀이 다음 정기 지급일에 관세사에 지급한다.

## 5. 부대비용(착지비용) 처리

해상 운임, 보험료, 관세, 통관 수수료, 국내 내륙 운송비는 자재의 취득원가에 포함한다. 발주 시 예상 부대비용을 조건 유형 FRA1(운임), FRB1(관세), FRC1(기타 부대비용)으로 입력하면, 실제 청구서를 처리할 때 차이가 해당 자재의 재고 금액에 배부된다. 부대비용 조건을 입력하지 않으면 비용이 일반 운반비로 처리되어 원가가 왜곡되므로 주의한다.

## 6. 수입 입고

- 통관이 완료되고 물품이 공장에 도착하면 물류팀이 GR200으로 입고한다.
- 수입 PO에 대한 입고 시에는 "B/L No." 필드에 선하증권 번호(항공 화물은 AWB 번호)를 반드시 입력해야 저장된다.
- 수입 원자재는 모두 입고 검사 대상이므로 검사대기창고에 입고된다.

## 7. 일정 관리

수입구매 담당은 HERP 리포트 PUR-IMP-02(수입 진행 현황)로 선적, 입항, 통관, 입고 단계를 관리한다. 입항 후 7일이 지나도 통관되지 않은 건은 창고 보관료가 발생하므로 관세사와 원인을 확인하고 요청 부서에 알린다.
"""

DOCX_DOCS["docs/sales/export-sales-documents.docx"] = """
# Export Sales: Orders, Shipping Documents and Customs

Document ID: SAL-PRC-015 | Owner: Export Sales Team and Trade Compliance part (ext. 2530) | Last revised: 2024-03-05

## 1. Export orders in HERP

Export orders are entered in SO100 with order type EX in sales organization 2000 (Export sales). The order currency is the customer's contract currency: USD, EUR or JPY. Output VAT is zero-rated (tax code S0) and revenue is posted to account 411200 (export sales). The exchange rate for revenue is the base rate of the shipment date, i.e. the on-board date of the bill of lading.

The Incoterms and the named place are mandatory on the order header, for example FOB Busan or CIF Rotterdam. Our standard terms are FOB Busan for sea freight and FCA Incheon Airport for air freight. CIF or DAP terms require the approval of the Head of Sales because we then carry the freight cost and risk.

## 2. Pre-screening of strategic items

Some of our semiconductor equipment parts (division 02) can be classified as strategic (dual-use) items. Before the first export of a material to a new customer or country, the sales representative submits the strategic item pre-screening request (form TRD-F-004) to the Trade Compliance part. The review takes up to 5 working days. A material with the result "licence required" cannot be shipped until an export licence has been obtained; HERP blocks the delivery with a trade compliance block.

## 3. Shipping documents

| Document | Created by | How |
|---|---|---|
| Commercial invoice | Export Sales | Billing document from BL300, output type EXCI |
| Packing list | Logistics | Form SAL-F-021, printed from the delivery with export weights and case marks |
| Certificate of origin | Trade Compliance | FTA origin certificate (self-issued or Korea Chamber of Commerce), or non-preferential CO on request |
| Export declaration | Customs broker | Filed electronically by the broker based on invoice and packing list |
| Bill of lading / air waybill | Forwarder (carrier code CR08) | Issued after loading |

## 4. Export declaration and goods issue

The export declaration must be accepted by Korea Customs before the goods are loaded. The customs broker sends the export declaration number to Export Sales, who enters it in the delivery header field "Export Licence No." Goods issue (DL250) is not possible without this number; HERP shows DL-E-207 "Export licence number missing".

Goods must be loaded on the vessel or aircraft within 30 days after the export declaration is accepted, otherwise the declaration becomes invalid and must be amended by the broker.

## 5. FTA origin

The Trade Compliance part determines the FTA origin of each finished good based on the bill of materials and the HS code stored in the material master. Origin determinations are reviewed every year in February. All supporting documents (supplier origin declarations, bills of materials, cost breakdowns) are kept for 5 years because customs may verify the origin after export.

## 6. Payment terms and letters of credit

Export customers pay by T/T at 30 or 60 days after the B/L date, or by letter of credit at sight. For L/C business, the complete set of documents must be presented to the negotiating bank within 21 days after shipment and within the L/C validity. Export Sales checks every L/C on receipt and asks the customer for an amendment if any term cannot be met, for example a latest shipment date that is earlier than the confirmed production date.

## 7. After shipment

Export Sales sends the scanned shipping documents to the customer by e-mail on the day the B/L is issued. The original documents for L/C business go to the bank. The export declaration certificate and the B/L copy are attached to the billing document in HERP, because they are the evidence for zero-rated VAT in the quarterly VAT return.
"""

DOCX_DOCS["docs/inventory/batch-and-expiry-ko.docx"] = """
# 배치(로트) 관리 및 유효기한 관리 기준

문서번호: INV-STD-006 | 주관부서: 품질팀, 물류팀 | 개정일: 2024-03-18

## 1. 배치 관리 대상

HERP에서 다음 자재는 배치 단위로 재고를 관리한다. 배치 관리 여부는 자재마스터 저장 뷰의 "배치 관리" 표시로 정해진다.

- 원자재(RM): 강재의 히트번호(Heat No.)까지 추적해야 하므로 전 품목 배치 관리
- 완제품(FG): 자동차 OEM 고객의 추적성 요구에 따라 전 품목 배치 관리
- 유효기한이 있는 MRO 자재: 절삭유, 방청유, 접착제, 실란트 등
- 반제품(SF) 중 열처리 로트 구분이 필요한 품목

## 2. 배치번호 체계

| 구분 | 형식 | 예시 | 설명 |
|---|---|---|---|
| 구매 입고 배치 | YYMMDD + 플랜트 문자 + 3자리 | 240315A007 | 입고일, A=아산 / C=창원, 당일 일련번호 |
| 생산 배치 | P + YYMMDD + 라인 2자리 + 교대 1자리 | P240315042 | 생산일, 라인 04, 2교대 |

- 구매 입고 배치는 GR200에서 저장할 때 자동 채번된다.
- 공급사가 부여한 로트번호나 히트번호는 "공급사 배치" 필드에 반드시 입력한다. 입력하지 않으면 고객 클레임 시 원소재까지 추적할 수 없다.

## 3. 출고 원칙: FIFO와 FEFO

- 유효기한 관리 자재는 유효기한이 먼저 도래하는 배치부터 출고한다(FEFO).
- 그 밖의 배치 관리 자재는 먼저 입고된 배치부터 출고한다(FIFO).
- HERP는 출고, 피킹, 이동 시 원칙에 맞는 배치를 자동으로 제안한다. 다른 배치를 선택하려면 "배치 변경 사유"를 입력해야 하며, 사유는 월별로 품질팀이 점검한다.

## 4. 유효기한 관리

- 유효기한 관리 자재는 입고 시 제조일자 또는 유효기한을 입력해야 한다. 제조일자만 입력하면 자재마스터의 "총 보관기간"으로 유효기한이 계산된다.
- 잔여 유효기한이 30일 이하인 배치는 리포트 IM-EXP-30에 표시되고 매주 월요일 자재 담당자에게 메일로 발송된다.
- 유효기한이 지난 배치는 매일 02:30 야간 배치 작업으로 자동으로 제한 재고(B)로 전환되어 출고할 수 없다.
- 유효기한 연장이 필요한 경우 품질팀이 재검사를 하고 유효기한 연장 요청서(양식 QA-F-017)로 승인한다. 연장은 배치당 1회, 최대 90일까지만 허용된다.
- 연장 승인을 받지 못한 배치는 불용재고 폐기 절차에 따라 처리한다.

## 5. 배치 추적(Traceability)

- 트랜잭션 IM300(메뉴: 재고관리 > 배치 > 배치 사용처 조회)에서 특정 배치가 어느 생산 배치에 투입되었고 어느 고객에게 출하되었는지 정방향·역방향으로 조회할 수 있다.
- 고객 클레임이나 공급사 품질 이슈가 발생하면 품질팀은 24시간 이내에 영향 범위(관련 배치, 재고 위치, 출하 고객)를 파악하여 보고한다.
- 배치 추적 기록은 자동차 고객 요구에 따라 출하 후 15년간 보관한다.

## 6. 배치 분할과 병합

- 하나의 배치를 여러 저장위치로 나누는 것은 허용되지만, 서로 다른 배치를 하나로 합치는 것은 금지된다.
- 생산 현장에서 배치가 섞인 경우 즉시 품질팀에 알리고, 품질팀 판정 전까지 해당 재고는 제한 재고로 전환한다.
"""

DOCX_DOCS["docs/accounting/ap-payment-run.docx"] = """
# Vendor Payment Run (FI300)

Document ID: FIN-PRC-005 | Owner: Finance Team, Accounts Payable and Treasury (ext. 2230) | Last revised: 2024-02-13

## 1. Payment dates

Hanbit Precision pays vendor invoices twice a month, on the 10th and on the 25th. If the date falls on a Saturday, Sunday or public holiday, the payment is made on the previous working day. There are no weekly or daily payment runs; off-cycle payments are exceptions (section 6).

## 2. Payment terms

The payment term on the invoice determines the due date. Default terms are set by vendor category and can be changed only with a contract.

| Code | Meaning |
|---|---|
| N30 | Net 30 days from invoice date |
| N60 | Net 60 days from invoice date |
| E30 | End of the invoice month plus 30 days |
| E60 | End of the invoice month plus 60 days (standard for production material vendors) |
| IMM | Immediately due (one-time vendors, refunds) |

An invoice is paid in the first payment run on or after its due date; invoices are never paid before they are due. Example: an E60 invoice dated 14 March is due on 30 May (31 March plus 60 days). It is not yet due on 25 May, so it is paid in the run of 10 June.

## 3. Timeline of a payment run

| Day | Activity | Responsible |
|---|---|---|
| Run date minus 3 working days | Payment proposal created in FI300 | AP clerk |
| Run date minus 2 working days | Proposal reviewed; exceptions removed; proposal approved according to the payment approval matrix | AP lead, Finance Team Leader or CFO |
| Run date minus 1 working day | Payment run executed; bank file generated and uploaded to the bank portal | Treasury |
| Run date | Bank executes transfers; payment advices e-mailed to vendors | Bank, HERP |

## 4. What is excluded from the proposal

- Invoices with a payment block (reasons P, Q, D or M from invoice verification).
- Vendors with a central payment block, for example during a bank account change review.
- Invoices not yet approved in the invoice workflow.
- Credit balances: if a vendor has more credit notes than invoices, nothing is paid and AP requests a refund.

## 5. Payment methods

| Method | Use |
|---|---|
| T | Domestic bank transfer in KRW |
| S | Win-win settlement (상생결제) for small and medium-sized suppliers that requested it |
| F | Foreign remittance (T/T) in USD, EUR or JPY |

The bank file is uploaded by Treasury. Files above the single-signature limit need a second signatory in the bank portal, as defined in the payment approval matrix.

## 6. Urgent off-cycle payments

An off-cycle payment is possible only for legal deadlines, import duties, or a supplier threatening to stop deliveries to a production line. Submit form FIN-F-025 (Urgent Payment Request) with the reason and CFO approval to the AP team. Urgent payments are executed within 2 working days. A pattern of urgent payments for the same vendor is reported to the Head of Procurement.

## 7. Withholding tax for individuals

Payments to individuals who are not registered businesses (for example freelance lecturers or translators) are subject to 3.3% withholding tax (3% income tax plus 0.3% local income tax). AP deducts the tax automatically if the vendor master has the withholding tax type "Individual business income"; the withholding statement is issued by Finance in the following month.

## 8. Vendor inquiries

Vendors can check the status of their invoices and planned payment dates on the Hanbit Supplier Portal. Buyers should refer vendors to the portal first; questions the portal cannot answer go to the AP team by e-mail.
"""

DOCX_DOCS["docs/hr/business-trip-policy.docx"] = """
# Business Travel Policy: Requests, Allowances and Settlement

Document ID: HR-POL-008 | Owner: HR Team (ext. 2310) and Finance Team (ext. 2230) | Last revised: 2024-03-01

## 1. Travel request (TR100)

Every business trip, domestic or overseas, must be requested in HERP transaction TR100 (menu: HR > Travel > Travel Request) and approved before departure. Trips to the other plant (Asan to Changwon or back) are also business trips.

| Trip type | Approval | Request deadline |
|---|---|---|
| Domestic | Team leader | Before departure (at the latest on the day before) |
| Overseas | Department head, then HR | At least 10 working days before departure |

Overseas requests must include the purpose, the companies to be visited and the estimated cost. HR registers every overseas traveller for the group travel insurance automatically after approval; no separate insurance is needed.

## 2. Domestic trips

- Daily allowance (meals): KRW 30,000 per day for trips to destinations more than 100 km from the regular workplace. Shorter trips receive no daily allowance, only actual transport costs.
- Lodging: actual cost up to KRW 100,000 per night, or up to KRW 120,000 per night in Seoul. The hotel receipt is required.
- Transport: KTX or express bus in standard class; air travel (Jeju) in economy class.
- Own car: KRW 250 per km plus tolls and parking, with origin and destination in the settlement. Fuel receipts are not needed for the mileage allowance.

## 3. Overseas trips

Daily allowances and lodging caps depend on the destination zone and are paid in USD equivalent:

| Zone | Countries (examples) | Daily allowance | Lodging cap per night |
|---|---|---|---|
| A | USA, Japan, Germany, other Western Europe | USD 90 | USD 250 |
| B | China, Vietnam, Thailand, other Southeast Asia | USD 60 | USD 150 |
| C | All other countries | USD 70 | USD 180 |

- Flights: economy class. Business class is allowed for directors and above on flights with a scheduled flight time of more than 8 hours.
- Flights and hotels are booked through the company's contracted travel agency; private bookings are reimbursed only up to the agency's quote.
- Daily allowance is not paid for days on which meals are provided by the host or included in a conference fee.

## 4. Travel advance

Travellers can request an advance of up to 70% of the estimated cost by ticking "Advance" in TR100. The advance is paid to the salary account 3 working days before departure. Unsettled advances are deducted from salary if the settlement is more than 30 days late.

## 5. Settlement (TR200) and trip report

- Settle the trip in TR200 (menu: HR > Travel > Travel Expense Settlement) within 10 working days after returning.
- Attach all receipts and, for overseas trips, the boarding passes or e-tickets.
- Attach the trip report on form HR-F-051 (one page: purpose, results, follow-up actions). Settlements without a trip report are returned.
- Foreign currency receipts are converted at the exchange rate of the card statement or, for cash, of the advance payment date.
- Corporate card payments made during the trip are included in TR200 and are not settled again in EX200.

## 6. Changes and cancellations

If the trip dates or destination change, update the TR100 request before departure. Cancellation fees caused by business reasons are borne by the company; fees caused by personal reasons are borne by the traveller.
"""

DOCX_DOCS["docs/hr/onboarding-checklist-ko.docx"] = """
# 신규 입사자 온보딩 체크리스트

문서번호: HR-GDE-001 | 주관부서: 인사팀 (내선 2310), IT팀 | 개정일: 2024-02-20

## 1. 목적

신규 입사자가 입사 첫날부터 업무에 필요한 시스템과 장비를 사용할 수 있도록 인사팀, IT팀, 소속 팀장이 해야 할 일을 시점별로 정리한 체크리스트이다. 팀장은 이 체크리스트에 따라 진행 상황을 확인하고, 누락된 항목이 있으면 인사팀에 알린다.

## 2. 사번 체계

사번은 H + 입사 연도 2자리 + 4자리 일련번호로 구성된다. 예를 들어 2024년에 31번째로 입사한 직원의 사번은 H240031이다. 사번은 HERP 로그인, 출입카드, 급여, 증명서 발급에 공통으로 사용되며 퇴사 후에도 재사용하지 않는다.

## 3. 입사 전 (D-5 영업일까지)

| 담당 | 할 일 |
|---|---|
| 인사팀 | HERP 인사 마스터 생성(사번 부여). 저장 시 HERP 계정 요청(SY100)이 자동 생성되어 팀장에게 승인 요청이 간다 |
| 소속 팀장 | SY100 승인 시 필요한 역할을 선택(예: HB_PUR_REQUESTER, HB_HR_ESS) |
| IT팀 | 노트북 준비, 메일 계정 생성, 보안 에이전트 설치 |
| 총무팀 | 출입카드 발급, 좌석 및 사물함 배정 |
| 소속 팀장 | 멘토 지정(같은 팀 3년 이상 근무자) |

## 4. 입사 첫날 (D-day)

- 09:00 아산 본사 2층 대회의실에서 입사 오리엔테이션을 진행한다. 창원공장 입사자도 첫날은 아산 본사로 출근한다.
- 보안서약서(양식 HR-F-003)와 개인정보 수집·이용 동의서를 작성한다.
- ESS에서 급여 계좌를 등록한다(통장 사본 첨부).
- IT팀으로부터 노트북과 HERP 초기 비밀번호 안내를 받는다. 초기 비밀번호는 인사 마스터에 등록된 휴대폰으로 문자 발송된다.
- 오후에는 소속 부서로 이동하여 팀장과 멘토를 만난다.

## 5. 첫 주 (입사 후 7일 이내)

- 정보보안 교육(e-러닝 과정 SEC-101)을 이수한다. 입사 후 7일 이내에 이수하지 않으면 HERP 계정이 이수할 때까지 일시 잠긴다.
- 생산직 및 현장 출입 직무는 채용 시 안전보건교육 8시간을 이수한다. 교육은 매주 화요일 아산공장 안전교육장에서 진행된다.
- 팀장과 첫 주 면담을 하고 수습 기간 목표를 정한다.
- 멘토와 함께 HERP 기본 화면(근태 신청 HR100, 결재함, 구매요청 PR100 등)을 실습한다.

## 6. 수습 기간 (3개월)

- 신규 입사자의 수습 기간은 3개월이다. 경력직도 동일하게 적용한다.
- 멘토는 매월 1회 멘토링 기록을 ESS에 입력한다.
- 팀장은 수습 종료 2주 전까지 수습 평가서(양식 HR-F-009)를 인사팀에 제출한다.
- 수습 평가 결과가 기준에 미달하면 인사팀과 협의하여 수습 기간을 최대 3개월 연장할 수 있다.

## 7. 자주 묻는 질문

- 첫날 HERP에 로그인이 안 되는 경우: 팀장의 SY100 승인 여부를 확인하고, 승인이 끝났는데도 안 되면 IT 헬프데스크(내선 2400)에 연락한다.
- 출입카드를 받지 못한 경우: 총무팀에서 임시 출입카드를 발급받는다. 임시 카드는 7일간 유효하다.
"""

DOCX_DOCS["docs/admin/data-backup-and-retention.docx"] = """
# HERP Data Backup, Restore and Record Retention

Document ID: SYS-STD-009 | Owner: IT Team, System Operations part | Last revised: 2024-02-05

## 1. Backup schedule

HERP production data (database and document attachments) is backed up automatically. Backups are stored encrypted in the data center in Asan and replicated to the disaster recovery (DR) site in the Changwon plant.

| Backup | Schedule | Retention |
|---|---|---|
| Incremental backup | Every day at 01:00 | 35 days |
| Full backup | Every Sunday at 03:00 | 35 days |
| Monthly copy to DR site | First Sunday of each month | 13 months |
| Year-end backup | After the annual closing is finalized | 10 years |

Database transaction logs are shipped to the DR site every 15 minutes, so that the database can be recovered close to the point of failure.

## 2. Recovery objectives

| System | Recovery point objective (RPO) | Recovery time objective (RTO) |
|---|---|---|
| HERP production | 15 minutes (via log shipping) | 8 hours |
| ESS and Supplier Portal | 24 hours | 24 hours |
| Reporting and archive system | 24 hours | 3 business days |

The DR procedure is tested twice a year, in May and November, by switching HERP to the DR site on a weekend. The test report is submitted to the CIO and the external auditors.

## 3. Restore requests

- Users cannot restore single records or documents from a backup. If a document was changed by mistake, use the change history of the document (for example PO130 > Environment > Change History) and correct it, or reverse the posting.
- A restore of data (for example a deleted file share folder or an overwritten mass upload) is requested via a HanbitDesk ticket, category "Data Restore". The data owner of the affected module must approve the request.
- Restores are carried out within 3 business days after approval into a separate restore environment; the requester copies the needed data from there.
- A full restore of the production system is decided only by the CIO.

## 4. Record retention periods

HERP and its archive keep business records at least for the legally required periods:

| Record type | Retention | Legal basis |
|---|---|---|
| Accounting books and journal entries | 10 years | Commercial Act |
| Tax invoices, VAT and tax records | 5 years after the filing deadline | Framework Act on National Taxes |
| Payroll and employment records | 3 years after termination | Labor Standards Act |
| Vendor contracts and purchase orders | 5 years after contract expiry | Company policy |
| Batch traceability records (automotive) | 15 years after shipment | Customer requirements |

Records are not deleted automatically when the retention period ends; the data owners review deletion lists once a year in March.

## 5. Archiving

To keep HERP fast, documents of fiscal years that are closed for more than 3 years are moved to the read-only HERP archive. Archived documents can be displayed with the Archive Explorer (transaction SY800) and in reports marked "incl. archive". Archived documents cannot be changed or reversed.

## 6. Responsibilities

- IT System Operations: running and monitoring backups, DR tests, restores.
- Data owners (module owners in Finance, Purchasing, Sales, Logistics and HR): approving restores and deletion lists.
- All users: storing business documents in HERP or on the company file shares, never only on the local laptop disk, because laptops are not backed up.
"""

# --------------------------------------------------------------- XLSX docs
XLSX_DOCS["docs/sales/pricing-and-discount.xlsx"] = [
    ("Condition Types", [
        ["Condition", "Name", "Calculation", "Level", "Manual change allowed", "Notes"],
        ["PR00", "Base price", "KRW (or order currency) per unit from the price list", "Item", "No", "Maintained only by the pricing owner in Sales Administration (SP100)"],
        ["K007", "Customer discount", "Percentage from the customer contract", "Header", "No", "Stored per customer; changed only with a new contract"],
        ["ZVOL", "Volume discount", "Percentage by quantity tier per order item", "Item", "No", "See sheet Volume Tiers"],
        ["ZMAN", "Manual discount", "Percentage entered by the user", "Item", "Yes, within discount authority", "Reason code from sheet Manual Price Reasons is mandatory"],
        ["ZRSH", "Rush surcharge", "5% of net item value", "Header", "No", "Added automatically for order type RO"],
        ["ZFRT", "Small-order freight surcharge", "Fixed KRW 80,000 per order", "Header", "Yes (can be waived by sales team leader)", "Applies when the order net value is below KRW 1,000,000; never charged to customer group K1"],
        ["MWST", "Output VAT", "10% (tax code S1) or 0% (tax code S0, export)", "Header", "No", "Determined from the customer tax classification"],
    ]),
    ("Discount Authority", [
        ["Role", "Max. manual discount ZMAN per item", "Max. total discount value per order (KRW)", "Above the limit, approval by", "Notes"],
        ["Sales representative", "3%", "3,000,000", "Sales team leader", "Limit applies to ZMAN only; K007 and ZVOL are automatic"],
        ["Sales team leader", "7%", "15,000,000", "Head of Sales", "Approval in the sales order workflow (SO110 > Submit discount)"],
        ["Head of Sales", "12%", "50,000,000", "CEO", "Head of Sales reports all discounts above 10% monthly to the CFO"],
        ["CEO", "No limit", "No limit", "-", "Written approval attached to the order"],
    ]),
    ("Volume Tiers", [
        ["Division", "Tier", "Quantity per order item from", "Quantity per order item to", "ZVOL discount"],
        ["01 Automotive parts", "T0", 1, 999, "0%"],
        ["01 Automotive parts", "T1", 1000, 4999, "2%"],
        ["01 Automotive parts", "T2", 5000, 19999, "4%"],
        ["01 Automotive parts", "T3", 20000, "no upper limit", "6%"],
        ["02 Semiconductor equipment parts", "T0", 1, 49, "0%"],
        ["02 Semiconductor equipment parts", "T1", 50, 199, "1.5%"],
        ["02 Semiconductor equipment parts", "T2", 200, 999, "3%"],
        ["02 Semiconductor equipment parts", "T3", 1000, "no upper limit", "5%"],
    ]),
    ("Price Lists", [
        ["Price list", "Name", "Customer group", "Currency", "Price update effective", "Owner"],
        ["PL01", "Automotive OEM", "K1", "KRW", "1 January and 1 July", "Domestic Sales Team 1"],
        ["PL02", "Automotive tier-1 suppliers", "K2", "KRW", "1 January", "Domestic Sales Team 1"],
        ["PL03", "Semiconductor equipment makers", "K3", "KRW or USD", "1 April", "Domestic Sales Team 2"],
        ["PL04", "Distributors", "K4", "KRW", "1 January", "Domestic Sales Team 2"],
        ["PL05", "Export", "All export customers (sales org 2000)", "USD, EUR, JPY", "1 January", "Export Sales Team"],
    ]),
    ("Manual Price Reasons", [
        ["Reason code", "Reason", "Evidence to attach to the order"],
        ["MP1", "Competitor price match", "Competitor quotation or the customer's written request"],
        ["MP2", "New customer or product launch price", "Approved quotation (SO050) with validity date"],
        ["MP3", "Quality compensation", "Quality claim number from the Quality Team"],
        ["MP4", "Correction of a price list error", "E-mail from the pricing owner confirming the error"],
        ["MP5", "Year-end volume agreement", "Signed volume agreement with the customer"],
    ]),
]

XLSX_DOCS["docs/inventory/warehouse-codes.xlsx"] = [
    ("Plants", [
        ["Plant", "Name (EN)", "Name (KO)", "Address", "Main activities", "Logistics contact"],
        [1100, "Asan Plant (head office)", "아산공장(본사)", "120 Hanbitsandan-ro, Dunpo-myeon, Asan-si, Chungcheongnam-do", "CNC machining lines 1-6, head office functions, central warehouse", "Logistics Team Asan, ext. 3300"],
        [1200, "Changwon Plant", "창원공장", "45 Jeongmil-ro, Seongsan-gu, Changwon-si, Gyeongsangnam-do", "Heat treatment, assembly of gear units, export packing", "Logistics Team Changwon, ext. 4300"],
    ]),
    ("Storage Locations", [
        ["Plant", "Storage location", "Name (EN)", "Name (KO)", "Default stock type", "MRP relevant", "Notes"],
        [1100, 1101, "Raw material warehouse", "원자재창고", "Unrestricted", "Yes", "Steel and aluminium bar, castings"],
        [1100, 1102, "Production WIP store", "공정창고", "Unrestricted", "Yes", "Line-side stock of machining lines"],
        [1100, 1103, "Finished goods warehouse", "제품창고", "Unrestricted", "Yes", "Shipping point ASN1"],
        [1100, 1104, "MRO and spare parts store", "소모품·예비품창고", "Unrestricted", "Yes", "Tools (TL), spare parts (SP), MRO (MR)"],
        [1100, 1105, "Quality inspection area", "검사대기창고", "Quality inspection", "No", "Incoming goods waiting for usage decision"],
        [1100, 1106, "Subcontractor stock", "외주창고", "Unrestricted", "Yes", "Material provided to subcontractors (VC04)"],
        [1100, 1107, "Hazardous materials store", "위험물창고", "Unrestricted", "Yes", "Cutting oil, solvents; access by trained staff only"],
        [1100, 1108, "Scrap holding area", "폐기대기창고", "Blocked", "No", "Stock waiting for scrap approval"],
        [1100, 1109, "Returns warehouse", "반품창고", "Blocked", "No", "Customer returns with RMA"],
        [1200, 1201, "Raw material warehouse", "원자재창고", "Unrestricted", "Yes", "Semi-finished parts from Asan arrive here"],
        [1200, 1202, "Heat treatment WIP", "열처리 공정창고", "Unrestricted", "Yes", "Batches before and after furnaces"],
        [1200, 1203, "Finished goods warehouse", "제품창고", "Unrestricted", "Yes", "Shipping point CHW1, export packing"],
        [1200, 1204, "MRO and spare parts store", "소모품·예비품창고", "Unrestricted", "Yes", "Furnace spare parts"],
        [1200, 1205, "Quality inspection area", "검사대기창고", "Quality inspection", "No", "Incoming and post-heat-treatment inspection"],
        [1200, 1208, "Scrap holding area", "폐기대기창고", "Blocked", "No", "Stock waiting for scrap approval"],
        [1200, 1209, "Returns warehouse", "반품창고", "Blocked", "No", "Customer returns with RMA"],
    ]),
    ("Bin Format", [
        ["Element", "Format", "Example", "Meaning"],
        ["Zone", "1 letter", "C", "A = raw material, B = WIP, C = finished goods, D = MRO/spare parts, H = hazardous"],
        ["Rack", "2 digits", "12", "Rack number within the zone, counted from the dock"],
        ["Level", "2 digits", "03", "Shelf level, 01 = floor"],
        ["Position", "1 digit", "2", "Position on the shelf from left to right"],
        ["Full bin code", "Zone-Rack-Level-Position", "C-12-03-2", "Finished goods zone, rack 12, level 3, position 2"],
    ]),
    ("Stock Types", [
        ["Code", "Stock type (EN)", "Stock type (KO)", "Can be issued or transferred", "How it changes"],
        ["U", "Unrestricted", "가용 재고", "Yes", "Default after goods receipt without inspection"],
        ["Q", "Quality inspection", "품질검사 재고", "No", "Usage decision by the Quality Team moves it to U or B"],
        ["B", "Blocked", "제한 재고", "No (only scrap or return to vendor)", "Expired batches, returns, quality holds"],
        ["T", "In transit", "운송중 재고", "No", "Created by movement type 303, cleared by 305 at the receiving plant"],
    ]),
    ("Movement Types", [
        ["Movement type", "Description (EN)", "Description (KO)", "Transaction"],
        [101, "Goods receipt for purchase order", "구매오더 입고", "GR200"],
        [102, "Reversal of goods receipt", "입고 취소", "GR200"],
        [122, "Return delivery to vendor", "공급사 반품", "GR200"],
        [201, "Goods issue to cost center", "코스트센터 출고", "IM210"],
        [261, "Goods issue to production order", "생산오더 출고", "Production confirmation"],
        [301, "Plant-to-plant transfer, one step", "플랜트 간 이동(1단계)", "IM210"],
        [303, "Plant-to-plant transfer, issue (two step)", "플랜트 간 이동 출고(2단계)", "IM210"],
        [305, "Plant-to-plant transfer, receipt (two step)", "플랜트 간 이동 입고(2단계)", "IM210"],
        [311, "Transfer between storage locations", "저장위치 간 이동", "IM210"],
        [321, "Quality inspection to unrestricted", "품질검사 재고 → 가용", "Usage decision"],
        [551, "Scrapping", "폐기", "IM500"],
        [601, "Goods issue for delivery", "판매 출고", "DL250"],
        [651, "Customer return receipt", "고객 반품 입고", "Returns delivery"],
        [701, "Physical inventory surplus", "재고실사 증가", "IM420"],
        [702, "Physical inventory shortage", "재고실사 감소", "IM420"],
    ]),
]

XLSX_DOCS["docs/accounting/account-codes.xlsx"] = [
    ("GL Accounts", [
        ["Account", "Name (EN)", "Name (KO)", "Type", "Account group", "Posting notes"],
        [111100, "Cash on hand", "현금", "BS", "Cash", "Petty cash only at Asan head office; max balance KRW 500,000"],
        [111200, "Ordinary deposits", "보통예금", "BS", "Cash", "Posted automatically from bank statements"],
        [112100, "Trade receivables - domestic", "외상매출금-국내", "BS", "Receivables", "Reconciliation account, no direct posting"],
        [112200, "Trade receivables - export", "외상매출금-수출", "BS", "Receivables", "Reconciliation account, no direct posting"],
        [113100, "Advance payments to vendors", "선급금", "BS", "Receivables", "Down payments; see payment approval matrix"],
        [114100, "Input VAT", "부가세대급금", "BS", "Tax", "Tax codes V1 and VE only"],
        [121100, "Raw materials", "원재료", "BS", "Inventory", "Valuation class 3000; automatic postings only"],
        [121200, "Work in process", "재공품", "BS", "Inventory", "Month-end WIP settlement"],
        [121300, "Semi-finished goods", "반제품", "BS", "Inventory", "Valuation class 7900"],
        [121400, "Finished goods", "제품", "BS", "Inventory", "Valuation class 7920"],
        [121500, "Supplies and spare parts", "저장품", "BS", "Inventory", "Valuation classes 3040 and 3050"],
        [131100, "Machinery", "기계장치", "BS", "Fixed assets", "Asset class 2000"],
        [131200, "Tools and fixtures", "공구와기구", "BS", "Fixed assets", "Asset class 3000"],
        [131300, "Vehicles", "차량운반구", "BS", "Fixed assets", "Asset class 4000"],
        [131400, "Buildings", "건물", "BS", "Fixed assets", "Asset class 1000"],
        [131500, "Office equipment", "비품", "BS", "Fixed assets", "Asset class 5000, includes IT hardware"],
        [131900, "Construction in progress", "건설중인자산", "BS", "Fixed assets", "Asset class 9000, no depreciation"],
        [141100, "Software", "소프트웨어", "BS", "Intangible assets", "Asset class 6000"],
        [211100, "GR/IR clearing", "입고송장 청산", "BS", "Payables", "Automatic postings from GR200 and IV300 only"],
        [251100, "Trade payables - domestic", "외상매입금-국내", "BS", "Payables", "Reconciliation account for trade vendors"],
        [251200, "Trade payables - foreign", "외상매입금-해외", "BS", "Payables", "Reconciliation account for import vendors (V2)"],
        [253100, "Other payables", "미지급금", "BS", "Payables", "Reconciliation account for non-trade vendors"],
        [254100, "Output VAT", "부가세예수금", "BS", "Tax", "Tax codes S1 and S0"],
        [255100, "Withholdings", "예수금", "BS", "Payables", "Payroll deductions and withholding tax"],
        [411100, "Product sales - domestic", "제품매출-국내", "PL", "Revenue", "Sales organization 1000"],
        [411200, "Product sales - export", "제품매출-수출", "PL", "Revenue", "Sales organization 2000, tax code S0"],
        [419100, "Sales returns", "매출환입", "PL", "Revenue", "Credit memos with RMA reference"],
        [511100, "Raw material consumption", "원재료비", "PL", "Cost of sales", "Automatic from goods issues 261"],
        [521900, "Purchase price variance", "구매가격차이", "PL", "Cost of sales", "Invoice price differences within tolerance"],
        [529500, "Inventory count differences", "재고실사차이", "PL", "Cost of sales", "Movement types 701/702"],
        [529600, "Inventory scrap write-off", "재고폐기손실", "PL", "Cost of sales", "Movement type 551"],
        [611100, "Salaries", "급여", "PL", "Personnel", "Payroll posting only"],
        [621100, "Travel and transport", "여비교통비", "PL", "Operating expenses", "Travel settlements TR200, taxis"],
        [622100, "Entertainment", "접대비(기업업무추진비)", "PL", "Operating expenses", "Tax code VE; attendee list required"],
        [623100, "Employee welfare", "복리후생비", "PL", "Operating expenses", "Overtime meals, team activity budget"],
        [624100, "Communication", "통신비", "PL", "Operating expenses", "Mobile phones, lines"],
        [625100, "Supplies expense", "소모품비", "PL", "Operating expenses", "Office and shop-floor consumables, small tools"],
        [626100, "Repairs and maintenance", "수선비", "PL", "Operating expenses", "Repairs that do not extend asset life"],
        [627100, "Depreciation", "감가상각비", "PL", "Operating expenses", "FA300 run only"],
        [628100, "Training", "교육훈련비", "PL", "Operating expenses", "Courses, books"],
        [629100, "Freight out", "운반비", "PL", "Operating expenses", "Outbound freight accruals"],
        [711100, "Interest income", "이자수익", "PL", "Non-operating", ""],
        [721100, "Foreign exchange gains", "외환차익", "PL", "Non-operating", "Realized FX differences"],
        [731100, "Foreign exchange losses", "외환차손", "PL", "Non-operating", "Realized FX differences"],
        [799100, "Miscellaneous losses", "잡손실", "PL", "Non-operating", "Includes invoice rounding differences up to KRW 1,000"],
    ]),
    ("Cost Centers", [
        ["Cost center", "Name (EN)", "Name (KO)", "Plant", "Responsible"],
        [1110, "Machining line 1-3", "가공 1~3라인", 1100, "Production manager Asan"],
        [1120, "Machining line 4-6", "가공 4~6라인", 1100, "Production manager Asan"],
        [1130, "Quality assurance Asan", "품질보증 아산", 1100, "Quality Team Leader"],
        [1140, "Maintenance Asan", "설비보전 아산", 1100, "Maintenance Team Leader"],
        [1150, "Warehouse and logistics Asan", "물류 아산", 1100, "Logistics Team Leader Asan"],
        [1210, "Heat treatment", "열처리", 1200, "Production manager Changwon"],
        [1220, "Assembly", "조립", 1200, "Production manager Changwon"],
        [1230, "Quality assurance Changwon", "품질보증 창원", 1200, "Quality Team Leader"],
        [1250, "Warehouse and logistics Changwon", "물류 창원", 1200, "Logistics Team Leader Changwon"],
        [9100, "Management support", "경영지원", "-", "Head of Corporate Support"],
        [9200, "Finance", "재무", "-", "Finance Team Leader"],
        [9300, "Human resources", "인사", "-", "HR Team Leader"],
        [9400, "Information technology", "정보기술(IT)", "-", "IT Team Leader"],
        [9500, "Purchasing", "구매", "-", "Head of Procurement"],
        [9600, "Domestic sales", "국내영업", "-", "Head of Sales"],
        [9610, "Export sales", "해외영업", "-", "Head of Sales"],
        [9700, "Research and development", "연구개발", "-", "R&D Center Director"],
    ]),
    ("Tax Codes", [
        ["Tax code", "Description (EN)", "Description (KO)", "Rate", "Use"],
        ["V1", "Input VAT, deductible", "매입세액 공제", "10%", "Domestic purchases with tax invoice; import VAT from customs"],
        ["VE", "Input VAT, not deductible", "매입세액 불공제", "10%", "Entertainment, passenger cars not used for business"],
        ["V0", "Input, zero-rated or exempt", "영세율·면세 매입", "0%", "Purchases under local L/C, exempt services"],
        ["S1", "Output VAT", "매출세액", "10%", "Domestic sales"],
        ["S0", "Output, zero-rated", "영세율 매출", "0%", "Export sales and local L/C sales"],
        ["SX", "Output, exempt", "면세 매출", "0%", "Scrap sales to exempt buyers (rare)"],
    ]),
]

XLSX_DOCS["docs/accounting/payment-approval-matrix.xlsx"] = [
    ("AP Payment Approval", [
        ["Total of payment proposal (KRW)", "Approver of the proposal", "Deadline", "Notes"],
        ["up to 50,000,000", "AP lead", "Run date minus 2 working days, 12:00", "Applies to the regular semi-monthly payment runs"],
        ["50,000,001 - 500,000,000", "Finance Team Leader", "Run date minus 2 working days, 15:00", "Single vendor payments above KRW 100,000,000 are listed separately"],
        ["above 500,000,000", "CFO", "Run date minus 2 working days, 17:00", "CFO may approve from the mobile approval app"],
        ["Urgent off-cycle payment (any amount)", "CFO", "Form FIN-F-025", "Executed within 2 working days"],
    ]),
    ("Journal Entry Approval", [
        ["Manual journal entry amount (KRW)", "Process in FI100", "Approver", "Notes"],
        ["up to 10,000,000", "Park and post by accountant after peer review", "Second accountant (peer review)", "Peer reviewer must not be the person who parked the entry"],
        ["10,000,001 - 100,000,000", "Park, then post after approval", "Finance Team Leader", "Attach supporting documents to the parked entry"],
        ["above 100,000,000", "Park, then post after approval", "CFO", "Entries affecting revenue always need Finance Team Leader approval"],
        ["Any amount in a closed period", "Late posting request FI-F-033", "Finance Team Leader", "Posted by role HB_FI_CLOSE"],
    ]),
    ("Bank Signatories", [
        ["Bank file value (KRW)", "Signatures in bank portal", "Signatories", "Notes"],
        ["up to 100,000,000", "1", "Treasury manager", "Per bank file"],
        ["100,000,001 - 1,000,000,000", "2", "Treasury manager and Finance Team Leader", "Second signature within the same day"],
        ["above 1,000,000,000", "2", "Finance Team Leader and CFO", "CFO signature required"],
        ["Foreign remittance (any amount)", "2", "Treasury manager and Finance Team Leader", "Supporting invoice attached in the bank portal"],
    ]),
    ("Advance Payments", [
        ["Advance (down payment) amount (KRW)", "Requirement", "Approver", "Notes"],
        ["up to 30,000,000", "Contract or PO with advance payment term", "Head of Procurement", "Posted to account 113100"],
        ["above 30,000,000", "Advance payment guarantee (bank or surety insurance) for the full advance amount", "CFO", "Guarantee original kept by Treasury"],
        ["Vendors rated below BB", "No advance payment allowed", "-", "Exception only by CEO"],
    ]),
    ("House Banks", [
        ["House bank ID", "Use", "Currency", "Payment methods"],
        ["HB01", "Main operating account", "KRW", "T (domestic transfer)"],
        ["HB02", "Payroll account", "KRW", "Salary and expense reimbursements"],
        ["HB03", "Win-win settlement account", "KRW", "S (상생결제)"],
        ["HB04", "Foreign currency account", "USD", "F (foreign remittance)"],
        ["HB05", "Foreign currency account", "EUR/JPY", "F (foreign remittance)"],
    ]),
]

XLSX_DOCS["docs/hr/hr-codes.xlsx"] = [
    ("Leave Types", [
        ["Code", "Leave type (EN)", "Leave type (KO)", "Paid", "Entitlement", "Request in", "Evidence"],
        ["AL", "Annual leave (full day)", "연차", "Yes", "15-25 days per year by service", "HR100", "-"],
        ["HL", "Half-day leave", "반차", "Yes", "Deducted 0.5 day from annual leave", "HR100", "-"],
        ["QL", "Quarter-day leave (2 hours)", "반반차", "Yes", "Deducted 0.25 day; office staff only", "HR100", "-"],
        ["SL", "Sick leave", "병가", "Yes, 5 days per year; unpaid beyond", "Up to 60 days per year", "HR100", "Doctor's certificate for 3 or more consecutive days"],
        ["FL", "Family event leave", "경조휴가", "Yes", "See sheet Family Events", "HR100", "Family relation certificate or invitation/obituary notice"],
        ["ML", "Maternity leave", "출산전후휴가", "Yes (statutory)", "90 days (120 days for multiple births)", "HR form HR-F-030", "Medical certificate"],
        ["PL", "Paternity leave", "배우자 출산휴가", "Yes", "20 working days, within 120 days after birth", "HR100", "Birth certificate"],
        ["CL", "Childcare leave", "육아휴직", "Statutory benefit", "Up to 1 year per child (child under 8)", "HR form HR-F-031, 30 days in advance", "Family relation certificate"],
        ["OL", "Official leave", "공가", "Yes", "As required (reserve forces training, civil defense, jury duty)", "HR100", "Official notice"],
        ["RL", "Compensatory leave", "보상휴가", "Yes", "1.5 h per approved overtime hour; use within 3 months", "HR100", "Linked overtime request"],
        ["UL", "Unpaid leave", "무급휴직", "No", "Up to 3 months, HR approval", "HR form HR-F-032", "Reason statement"],
    ]),
    ("Family Events", [
        ["Event", "Event (KO)", "Leave days (FL)", "Company gift (KRW)", "Notes"],
        ["Own marriage", "본인 결혼", 5, "500,000", "Use within 30 days of the wedding"],
        ["Marriage of a child", "자녀 결혼", 1, "300,000", ""],
        ["Marriage of a sibling", "형제자매 결혼", 1, "-", ""],
        ["Death of spouse", "배우자 사망", 5, "1,000,000", "Company wreath delivered"],
        ["Death of parent or parent-in-law", "부모·배우자 부모 사망", 5, "1,000,000", "Company wreath delivered"],
        ["Death of child", "자녀 사망", 5, "1,000,000", ""],
        ["Death of grandparent", "조부모·외조부모 사망", 3, "300,000", ""],
        ["Death of sibling", "형제자매 사망", 3, "300,000", ""],
        ["Child's first birthday", "자녀 돌", 0, "100,000", "Gift only"],
    ]),
    ("Attendance Codes", [
        ["Code", "Attendance status (EN)", "Attendance status (KO)", "Recorded by", "Effect on pay"],
        ["01", "Normal attendance", "정상 출근", "Badge terminal", "None"],
        ["02", "Late arrival", "지각", "Badge terminal (after 08:40)", "Three late arrivals in a month count as one half day of unpaid absence"],
        ["03", "Early leave", "조퇴", "Team leader approval in HR100", "Deducted from annual leave in half or quarter days"],
        ["04", "Unexcused absence", "무단결근", "HR after check with team leader", "Unpaid; weekly holiday allowance lost"],
        ["05", "Field work", "외근", "HR100 entry by employee", "None"],
        ["06", "Business trip", "출장", "Approved TR100", "None"],
        ["07", "Training", "교육", "HR100 or training system", "None"],
        ["08", "Remote work", "재택근무", "HR100, max. 2 days per week for eligible office staff", "None"],
    ]),
    ("Job Grades", [
        ["Grade", "Title (EN)", "Title (KO)", "Minimum years in grade before promotion", "Overtime eligible"],
        ["G1", "Staff", "사원", 3, "Yes"],
        ["G2", "Assistant Manager", "대리", 4, "Yes"],
        ["G3", "Manager", "과장", 4, "Yes"],
        ["G4", "Deputy General Manager", "차장", 4, "Yes, unless appointed team leader"],
        ["G5", "General Manager", "부장", "-", "No (position allowance)"],
        ["E1", "Executive (Director and above)", "임원(이사 이상)", "-", "No"],
    ]),
]

XLSX_DOCS["docs/admin/role-authorization-matrix.xlsx"] = [
    ("Roles", [
        ["Role ID", "Description", "Module", "Key transactions", "Role owner (approver)"],
        ["HB_DISPLAY_ALL", "Display-only access to master data and documents", "All", "PO130, IM100, SO display, FI display reports", "IT Team Leader"],
        ["HB_PUR_REQUESTER", "Create and change purchase requisitions", "Purchasing", "PR100, PR110, PR120", "Head of Procurement"],
        ["HB_PUR_BUYER", "Create RFQs and purchase orders", "Purchasing", "RQ100, RQ200, BD100, PO110, PO120, PO130", "Head of Procurement"],
        ["HB_PUR_APPROVER", "Release purchase orders (release codes R1-R4 assigned individually)", "Purchasing", "PO150", "Head of Procurement"],
        ["HB_PUR_VENDOR", "Maintain vendor master data", "Purchasing", "VN100 processing", "Head of Procurement"],
        ["HB_INV_CLERK", "Goods receipts, transfers, stock display", "Inventory", "GR200, IM210, IM100", "Logistics Team Leader of the plant"],
        ["HB_INV_COUNT", "Physical inventory", "Inventory", "IM400, IM410, IM415, IM420", "Plant controller"],
        ["HB_INV_SCRAP", "Scrap postings", "Inventory", "IM500 (movement type 551)", "Plant manager"],
        ["HB_SAL_REP", "Sales orders and customer requests", "Sales", "SO050, SO100, SO110, CM100, RM100", "Head of Sales"],
        ["HB_SAL_CREDIT", "Release credit holds", "Sales", "SO150", "Finance Team Leader"],
        ["HB_SAL_BILLING", "Billing and credit memos", "Sales", "BL300, BL310, BL320", "Sales Administration Team Leader"],
        ["HB_FI_AP", "Invoice verification and payment proposals", "Finance", "IV300, IV310, FI300 (proposal only)", "Finance Team Leader"],
        ["HB_FI_TREASURY", "Execute payment runs and bank files", "Finance", "FI300 (execution), bank interface", "CFO"],
        ["HB_FI_GL", "General ledger postings", "Finance", "FI100, FI120, FI450", "Finance Team Leader"],
        ["HB_FI_CLOSE", "Period control and postings in closed periods", "Finance", "FI500", "CFO"],
        ["HB_FI_ASSET", "Fixed asset accounting", "Finance", "FA100, FA200, FA250, FA300", "Finance Team Leader"],
        ["HB_HR_ESS", "Employee self-service", "HR", "HR100, HR110, HR200, HR300, HR350, TR100, TR200, EX100, EX200", "HR Team Leader"],
        ["HB_HR_ADMIN", "HR master data and payroll", "HR", "HR master, payroll, HR320 administration", "HR Team Leader"],
        ["HB_SYS_ADMIN", "User and role administration", "System", "SY100 processing, SY300 processing, SY900", "CIO"],
        ["HB_FIREFIGHTER", "Emergency access with full logging", "System", "All (logged)", "CIO"],
    ]),
    ("SoD Conflicts", [
        ["Conflict ID", "Role A", "Role B", "Risk", "Rule"],
        ["SOD-01", "HB_PUR_BUYER", "HB_FI_AP", "A buyer could order and approve the vendor's invoice for payment", "Not allowed"],
        ["SOD-02", "HB_PUR_VENDOR", "HB_FI_TREASURY", "Vendor bank data could be changed and payment executed by the same person", "Not allowed"],
        ["SOD-03", "HB_PUR_BUYER", "HB_INV_CLERK", "Orders could be created and fictitious receipts posted", "Allowed only at Changwon with monthly review by the plant controller"],
        ["SOD-04", "HB_SAL_REP", "HB_SAL_CREDIT", "A sales representative could release own orders from credit hold", "Not allowed"],
        ["SOD-05", "HB_INV_COUNT", "HB_INV_CLERK", "Stock differences could be hidden by adjusting counts", "Allowed with independent recount by another team"],
        ["SOD-06", "HB_FI_GL", "HB_FI_CLOSE", "Postings in closed periods without review", "Allowed only for the GL lead; all closed-period postings reviewed by Finance Team Leader"],
        ["SOD-07", "HB_HR_ADMIN", "HB_FI_TREASURY", "Payroll data could be changed and paid by the same person", "Not allowed"],
    ]),
    ("Request Rules", [
        ["Topic", "Rule"],
        ["How to request a role", "SY300 (menu: System > User Administration > Role Request); select the role, plant and validity"],
        ["Approval", "Line manager, then the role owner, then IT Security for the SoD check"],
        ["Processing time", "2 business days after the last approval"],
        ["Temporary roles", "Maximum 30 days, for example to cover a colleague's vacation; removed automatically at the end date"],
        ["Firefighter access", "HB_FIREFIGHTER only for production emergencies with the CIO's approval; every session is logged and reviewed by IT Security within 2 working days"],
        ["Recertification", "Role owners review all assignments of their roles every six months (April and October)"],
        ["Release codes", "For HB_PUR_APPROVER, the release code (R1-R4) must match the approver's position in the PO approval procedure"],
    ]),
]


# ==========================================================================
# main / verification
# ==========================================================================
HANGUL = re.compile(r"[\uac00-\ud7a3]")


def verify() -> list[str]:
    """Re-open every generated file and check text/structure. Returns problems."""
    from docx import Document
    from openpyxl import load_workbook
    from pypdf import PdfReader

    problems: list[str] = []
    for rel, text in PDF_DOCS.items():
        reader = PdfReader(str(HERE / rel))
        extracted = "\n".join(page.extract_text() or "" for page in reader.pages)
        if len(reader.pages) < 2:
            problems.append(f"{rel}: only {len(reader.pages)} page(s)")
        squeeze = lambda s: re.sub(r"\s+", "", s)  # noqa: E731
        flat = squeeze(extracted)
        title = next(str(p) for k, p in parse_markup(text) if k == "h1")
        if squeeze(title) not in flat:
            problems.append(f"{rel}: title not found in extracted text")
        src_hangul = HANGUL.findall(text)
        out_hangul = HANGUL.findall(extracted)
        if src_hangul and len(out_hangul) < 0.9 * len(src_hangul):
            problems.append(f"{rel}: Hangul lost ({len(out_hangul)}/{len(src_hangul)})")
        # every paragraph's first 15 non-space characters must be extractable
        for kind, payload in parse_markup(text):
            if kind in ("p", "bullet", "h2"):
                probe = squeeze(str(payload))[:15]
                if probe and probe not in flat:
                    problems.append(f"{rel}: text not extractable: {probe!r}")
        print(f"  pdf  {rel}: {len(reader.pages)} pages, {len(extracted)} chars, {len(out_hangul)} hangul")
    for rel in DOCX_DOCS:
        doc = Document(str(HERE / rel))
        styles = [p.style.name for p in doc.paragraphs if p.text.strip()]
        h1, h2 = styles.count("Heading 1"), styles.count("Heading 2")
        if h1 != 1 or h2 < 3:
            problems.append(f"{rel}: Heading 1={h1}, Heading 2={h2}")
        print(f"  docx {rel}: Heading 1={h1}, Heading 2={h2}, tables={len(doc.tables)}")
    for rel, sheets in XLSX_DOCS.items():
        wb = load_workbook(str(HERE / rel), read_only=True)
        if wb.sheetnames != [name for name, _ in sheets]:
            problems.append(f"{rel}: sheet names differ")
        if len(wb.sheetnames) < 3:
            problems.append(f"{rel}: fewer than 3 sheets")
        counts = {ws.title: ws.max_row for ws in wb.worksheets}
        print(f"  xlsx {rel}: {counts}")
        wb.close()
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--verify", action="store_true", help="check the written files afterwards")
    args = ap.parse_args()
    for f in (FONT_REGULAR, FONT_BOLD):
        if not f.exists():
            print(f"missing font {f}; install fonts-nanum", file=sys.stderr)
            return 2
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    cmap = _font_cmap()
    for rel, text in PDF_DOCS.items():
        print("wrote", write_pdf(rel, text, cmap).relative_to(HERE))
    for rel, text in DOCX_DOCS.items():
        print("wrote", write_docx(rel, text).relative_to(HERE))
    for rel, sheets in XLSX_DOCS.items():
        print("wrote", write_xlsx(rel, sheets).relative_to(HERE))
    if args.verify:
        problems = verify()
        for p in problems:
            print("PROBLEM:", p)
        if problems:
            return 1
        print("verification OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
