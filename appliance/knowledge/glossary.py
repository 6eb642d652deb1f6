"""A bilingual ERP glossary: carries a question's key terms into the other language for BM25.

The default embedder is English-centric and BM25 matches words, so without this an English
question about a Korean document (or the reverse) has nothing to match on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from appliance.knowledge.analyzer import Analyzer, is_korean

# (English phrase, Korean phrase): common ERP, finance, HR and IT-helpdesk vocabulary.
ERP_TERMS: tuple[tuple[str, str], ...] = (
    ("purchase order", "발주"), ("purchase order", "구매오더"), ("purchase requisition", "구매요청"),
    ("requisition", "구매요청"), ("request for quotation", "견적요청"), ("quotation", "견적"),
    ("rfq", "견적요청"), ("vendor", "공급업체"), ("vendor", "협력업체"), ("supplier", "공급업체"),
    ("vendor registration", "업체 등록"), ("vendor evaluation", "업체 평가"),
    ("purchasing group", "구매그룹"), ("approval", "승인"), ("approve", "승인"), ("release", "승인"),
    ("approver", "결재자"), ("goods receipt", "입고"), ("invoice", "송장"), ("tax invoice", "세금계산서"),
    ("three-way match", "3자 대사"), ("import", "수입"), ("customs", "통관"), ("export", "수출"),
    ("sales order", "수주"), ("sales order", "판매오더"), ("customer", "고객"),
    ("customer master", "고객마스터"), ("customer code", "고객코드"), ("credit limit", "여신한도"),
    ("credit", "여신"), ("price", "단가"), ("discount", "할인"), ("delivery", "출하"),
    ("shipping", "출하"), ("return", "반품"), ("credit memo", "대변메모"), ("billing", "청구"),
    ("inventory", "재고"), ("stock", "재고"), ("stock transfer", "재고이동"), ("transfer", "이동"),
    ("warehouse", "창고"), ("storage location", "저장위치"), ("physical inventory", "재고실사"),
    ("stock count", "재고실사"), ("material master", "자재마스터"), ("material", "자재"),
    ("batch", "배치"), ("expiry", "유효기한"), ("shelf life", "유효기한"), ("scrap", "폐기"),
    ("write-off", "폐기"), ("accounting", "회계"),
    ("month-end closing", "월마감"), ("closing", "마감"), ("accrual", "발생비용"),
    ("expense", "경비"), ("expense claim", "경비 청구"), ("corporate card", "법인카드"),
    ("receipt", "영수증"), ("payment", "지급"), ("payment run", "지급 실행"),
    ("withholding tax", "원천징수"), ("withholding", "원천징수"),
    ("fixed asset", "고정자산"), ("depreciation", "감가상각"), ("account code", "계정코드"),
    ("cost center", "코스트센터"), ("budget", "예산"), ("annual leave", "연차"), ("leave", "휴가"),
    ("sick leave", "병가"), ("vacation", "휴가"), ("overtime", "연장근무"), ("overtime", "초과근무"),
    ("payroll", "급여"), ("salary", "급여"), ("payslip", "급여명세서"), ("business trip", "출장"),
    ("per diem", "일비"), ("onboarding", "입사"), ("new hire", "신규입사자"),
    ("certificate", "증명서"), ("certificate of employment", "재직증명서"),
    ("performance review", "인사평가"), ("evaluation", "평가"), ("employee", "직원"),
    ("password", "비밀번호"), ("account", "계정"), ("user account", "사용자 계정"), ("locked", "잠금"),
    ("login", "로그인"), ("logon", "로그인"), ("session", "세션"), ("role", "권한"),
    ("authorization", "권한"), ("permission", "권한"), ("error", "오류"), ("error code", "오류코드"),
    ("maintenance", "점검"), ("system maintenance", "시스템 점검"), ("downtime", "중단"),
    ("backup", "백업"), ("retention", "보존"), ("vpn", "vpn"), ("remote access", "원격접속"),
    ("printer", "프린터"), ("phone", "전화"),
    ("deadline", "마감"), ("form", "양식"),
    ("emergency", "긴급"), ("cancel", "취소"), ("change", "변경"),
    ("user", "사용자"), ("user id", "사용자 id"), ("external", "외부"), ("format", "형식"),
    ("letter of credit", "신용장"), ("shipment", "선적"), ("shipping documents", "선적 서류"),
    ("bank", "은행"), ("submit", "제출"), ("request", "요청"), ("request", "신청"),
    ("report", "리포트"), ("department", "부서"), ("team leader", "팀장"), ("plant", "공장"),
    ("working day", "영업일"), ("business day", "영업일"), ("holiday", "휴일"), ("amount", "금액"),
    ("limit", "한도"), ("spending limit", "사용 한도"), ("production", "생산"), ("quality", "품질"),
    ("contract", "계약"),
)


# Everyday words and the words manuals use for the same thing, within one language: employees
# ask "I lost my card", manuals say "분실". (question phrase, manual phrase)
SAME_LANGUAGE: tuple[tuple[str, str], ...] = (
    ("잃어버리다", "분실"), ("잃어버린", "분실"), ("그만두다", "퇴직"), ("그만둔", "퇴직"), ("퇴사", "퇴직"),
    ("돈", "금액"), ("돈", "비용"), ("깎다", "할인"), ("늦다", "지연"), ("늦게", "지연"), ("고치다", "수정"),
    ("틀리다", "오류"), ("틀린", "오류"), ("잘못", "오류"), ("바꾸다", "변경"), ("바꾸려면", "변경"),
    ("없애다", "삭제"), ("지우다", "삭제"), ("되돌리다", "취소"), ("물리다", "반품"), ("돌려보내다", "반품"),
    ("쉬다", "휴가"), ("휴무", "휴가"), ("월급", "급여"), ("봉급", "급여"), ("보너스", "상여"),
    ("야근", "연장근무"), ("잔업", "연장근무"), ("주말", "휴일"), ("사다", "구매"), ("구입", "구매"),
    ("한번만", "일회성"), ("한 번만", "일회성"), ("깜빡", "누락"), ("빠뜨리다", "누락"), ("막히다", "차단"),
    ("안 되다", "오류"), ("로그인", "접속"), ("비번", "비밀번호"), ("암호", "비밀번호"), ("끝나다", "마감"),
    ("마감일", "기한"), ("언제까지", "기한"), ("도장", "날인"), ("서명", "날인"), ("서류", "증빙"),
    ("영수증", "증빙"), ("출장비", "여비"), ("회사 카드", "법인카드"), ("팀장님", "팀장"),
    ("폰", "휴대폰"), ("폰", "휴대전화"), ("핸드폰", "휴대폰"), ("핸드폰", "휴대전화"),
    ("되살리다", "복원"), ("되살리다", "백업"), ("사라지다", "삭제"),
    ("재촉", "독촉"), ("종이", "용지"), ("뽑다", "출력"),
    ("lost", "loss"), ("lose", "loss"), ("quit", "resign"), ("leave the company", "resign"),
    ("fix", "correct"), ("wrong", "incorrect"), ("again", "repeat"), ("resend", "repeat"),
    ("send again", "repeat output"), ("money", "amount"), ("pay", "payment"), ("paid", "payment"),
    ("boss", "manager"), ("sign off", "approve"), ("ok", "approve"), ("okay", "approve"),
    ("cancel", "reverse"), ("undo", "reverse"), ("stuck", "blocked"), ("locked out", "locked"),
    ("login", "sign in"), ("log in", "sign in"), ("vacation", "leave"), ("holiday", "leave"),
    ("day off", "leave"), ("sick", "sick leave"), ("salary", "payroll"), ("wage", "payroll"),
    ("receipt", "supporting document"), ("deadline", "due date"), ("due", "deadline"),
    ("heavy", "weight"), ("weigh", "weight"), ("answer", "response"), ("reply", "response"),
    ("expire", "valid"), ("expires", "valid"), ("how many days", "days"), ("broken", "defect"),
    ("gone", "deleted"), ("get back", "restore"), ("who can", "authorized"), ("allowed", "permitted"),
    ("reminder", "dunning"), ("chase", "dunning"), ("take back", "cancel"), ("call back", "recall"),
    ("short", "underpaid"), ("too little", "underpaid"), ("too much", "overpaid"), ("late", "overdue"),
    ("euro", "eur"), ("won", "krw"), ("refund", "credit note"), ("money back", "refund"),
    ("on hold", "blocked"), ("by itself", "automatically"), ("on its own", "automatically"),
    ("missing", "shortage"),
)


class Glossary:
    """Looks up a question's terms in the other language, as index terms."""

    def __init__(self, analyzer: Analyzer, pairs: Iterable[tuple[str, str]] = ERP_TERMS,
                 same_language: Iterable[tuple[str, str]] = SAME_LANGUAGE):
        self.analyzer = analyzer
        self.pairs = [(en.lower(), ko) for en, ko in pairs]
        self.same_language = [(asked.lower(), written.lower()) for asked, written in same_language]
        self._terms: dict[str, list[str]] = {}
        self._by_first_word: dict[str, list[tuple[str, str]]] | None = None

    def _analyzed(self, phrase: str) -> list[str]:
        if phrase not in self._terms:
            self._terms[phrase] = self.analyzer.terms(phrase)
        return self._terms[phrase]

    def translate(self, question: str, terms: Sequence[str]) -> list[str]:
        """Index terms of the other language's phrases for the glossary entries the question uses."""
        present = set(terms)
        out = [t for _, target in self.translations(question, terms) for t in target]
        return list(dict.fromkeys(t for t in out if t not in present))

    def translations(self, question: str, terms: Sequence[str]) -> list[tuple[list[str], list[str]]]:
        """(the question's terms of a glossary phrase, the other language's terms for it) for
        each entry the question uses."""
        korean = is_korean(question)
        present = set(terms)
        packed = "".join(question.split())
        out: list[tuple[list[str], list[str]]] = []
        if not korean:  # only the entries whose first English word the question has
            if self._by_first_word is None:
                index: dict[str, list[tuple[str, str]]] = {}
                for en, ko in self.pairs:
                    if self._analyzed(en):
                        index.setdefault(self._analyzed(en)[0], []).append((en, ko))
                self._by_first_word = index
            pairs = [p for t in dict.fromkeys(terms) for p in self._by_first_word.get(t, ())]
        else:
            pairs = self.pairs
        for en, ko in pairs:
            source, target = (ko, en) if korean else (en, ko)
            wanted = self._analyzed(source)
            if korean:
                # Kiwi may split a compound in a sentence ("일비" -> 일 + 비) but not alone, so
                # the phrase itself counts too; morphemes may come in any order ("요청 구매").
                found = (wanted and set(wanted) <= present) or "".join(ko.split()) in packed
            else:
                # English phrases must be adjacent words: "form" never matches "information".
                found = bool(wanted) and _contains(terms, wanted)
            if found:
                out.append((_sources(wanted, present, source), self._analyzed(target)))
        return out

    def rephrase(self, question: str, terms: Sequence[str]) -> list[str]:
        """Index terms of the words manuals use for the question's everyday words, in its own
        language ("잃어버렸어요" -> 분실)."""
        present = set(terms)
        out = [t for _, written in self.rephrasings(question, terms) for t in written]
        return list(dict.fromkeys(t for t in out if t not in present))

    def rephrasings(self, question: str, terms: Sequence[str]) -> list[tuple[list[str], list[str]]]:
        """(the question's terms of an everyday phrase, the manuals' terms for it) per entry used."""
        present = set(terms)
        packed = "".join(question.lower().split())
        out: list[tuple[list[str], list[str]]] = []
        for asked, written in self.same_language:
            wanted = self._analyzed(asked)
            if asked.isascii():
                found = bool(wanted) and _contains(terms, wanted)
            else:
                found = (wanted and set(wanted) <= present) or "".join(asked.split()) in packed
            if found:
                out.append((_sources(wanted, present, asked), self._analyzed(written)))
        return out


def _sources(wanted: Sequence[str], present: set[str], phrase: str) -> list[str]:
    """The question's terms a matched phrase stands for (those of its analysis, or, where the
    analyzer split the question differently, those the phrase holds)."""
    found = [t for t in wanted if t in present]
    packed = "".join(phrase.lower().split())
    return found or [t for t in present if t in packed]


def _contains(terms: Sequence[str], phrase: Sequence[str]) -> bool:
    n = len(phrase)
    return any(list(terms[i:i + n]) == list(phrase) for i in range(len(terms) - n + 1))
