"""Passage screening: what a knowledge document may never tell residents or the model; answers' own checks.

Owns: `Reason`, `Screen` (the quarantine rules with the link/phone allowlist of policies/links.yaml),
`Quarantined`, `screen_document`, `clean_passage`, `unsupported_facts`, `mask_answer`.

A knowledge document is data, never instructions. A passage (a line of a document; its whole paragraph when a
request runs across the paragraph's lines) is quarantined when it
- asks the reader to contact a personal account: a WeChat/QQ id or e-mail, 加微信, 个人微信;
- asks for money to a person or an account: 转账/汇款/付给 a person or 个人账户, 收款码, a bank card number;
- links to a host outside the allowlist;
- asks for verification codes, passwords, ID photos or bank card numbers to be handed over (to a person, a
  chat account or a number that is not an official one);
- addresses the assistant: "Assistant:", "system:", 忽略以上…, 以上规则已失效, "ignore previous instructions".
Rules read the NFKC-folded, lower-cased text, so full-width letters are caught too. A warning is not a request
("请勿向个人账户转账", "不会通过微信索要验证码"): the *soft* rules skip a match with a negation just before it in
its clause, or in a sentence about fraud. The *hard* signals (an account id, a link, a card number, a role marker)
quarantine whatever is around them. Official text passes: a fee paid at a counter, an official site or hotline,
a subsidy paid into the resident's own account, entering a code in an app.
Must not: drop whole documents, rank, answer or log personal data unmasked.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from knowledge.documents import Document
from policies.loader import DEFAULT_DIR, cached_policies
from policies.masking import find_personal_data, mask_value
from policies.models import Links


class Reason(StrEnum):
    contact = "contact"
    payment = "payment"
    link = "link"
    secrets = "secrets"
    addresses_assistant = "addresses_assistant"

    @property
    def label(self) -> str:
        """How an admin reads the reason (quanbot ingest)."""
        return _LABELS[self]


_LABELS = {
    Reason.contact: "要求添加私人联系方式",
    Reason.payment: "要求向个人或账户付款",
    Reason.link: "白名单以外的链接",
    Reason.secrets: "索要验证码、密码、证件照片或卡号",
    Reason.addresses_assistant: "对助手下指令",
}

# ---------------- text folding and the parts of a passage ----------------
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_CLAUSE_END = "，,；;。！？!?:：\n"
_SENTENCE_END = "。！？!?\n"


_CJK_GAP = re.compile(r"(?<=[\u4e00-\u9fff])[ \t\u3000]+(?=[\u4e00-\u9fff])")


def fold(text: str) -> str:
    """NFKC (full-width letters, digits and colons to ASCII), lower case, invisible characters and the spaces
    between two Chinese characters removed ("微 信" reads as "微信")."""
    return _CJK_GAP.sub("", unicodedata.normalize("NFKC", text).translate(_INVISIBLE).casefold())


_C = r"[^，,。；;！？!?\n]"  # a character inside one clause
_NEGATION = re.compile(r"不要|不得|不能|不会|不可|不用|不必|无需|无须|勿|严禁|禁止|谨防|警惕|防范|提防|拒绝|"
                       r"从不|从未|绝不|决不|别(?![人的处家])|小心|谨慎|不需要|不收取|不索要|不存在")
_FRAUD = re.compile(r"诈骗|骗子|骗局|冒充|假冒|反诈")
_NEGATION_WINDOW = 10

# ---------------- the rules ----------------
_PERSON = (r"(?:工作人员|网格员|社工|志愿者|经办人|负责人|联系人|专员|老师|经理|主任|会计|出纳|"
           r"先生|女士|阿姨|大姐|师傅|客服|管理员|[\u4e00-\u9fa5]某某?)")
_PAY = r"(?:转账|汇款|打款|转款|转钱|汇钱|打钱|付款|付钱|支付|缴纳|缴费|交费|交钱)"
_PAY_SHORT = r"(?:转|汇|付|缴|(?<![提递移成社外])交)"
_CODE = r"(?:验证码|动态码|校验码|短信码|动态密码|密码)"
_ITEM = (r"(?:身份证(?:正反面)?(?:照片|图片|扫描件|照)|手持身份证|身份证正反面|身份证号码?|"
         r"(?:银行卡|社保卡|信用卡)?卡号|银行卡信息|人脸照片|网银|cvv|安全码)")
_SEND = r"(?:发送|发|传|拍照发|拍|截图发|私信|交|提供|提交|告诉|告知|透露|报)"
_CHANNEL = rf"(?:微信|qq|邮箱|{_PERSON}|我们|我|以下|这个|该|号码|手机号|手机)"
_TARGET = (r"(?P<target>个人|私人|" + _PERSON + r"|以下|下列|如下|下方|指定|专用|安全|"
           r"账户|账号|卡号|银行卡|收款码|二维码|微信|支付宝)")
_DETERMINER = r"(?:以上|之前|上面|上述|前面|先前|此前|原来|原有|原先|你的|所有|全部|一切)"
_TLDS = (r"com|cn|net|org|top|xyz|info|vip|cc|io|me|co|biz|site|online|club|shop|app|link|ly|tk|ml|ga|gq|cf|icu|"
         r"wang|ink|fun|ltd|work|live|pro|tv|asia|mobi|name|hk|tw|us|uk|ru|so|la|ws|to|gl|su|gov|edu|ai")


@dataclass(frozen=True)
class _Rule:
    reason: Reason
    pattern: re.Pattern[str]
    hard: bool = False  # counts whatever surrounds it (no warning or negation excuses it)
    needs_money: bool = False  # counts only in a sentence that names money (转给网格员 30元, not 材料交给网格员)


def _rule(reason: Reason, pattern: str, *, hard: bool = False, needs_money: bool = False) -> _Rule:
    return _Rule(reason, re.compile(pattern), hard, needs_money)


_RULES: tuple[_Rule, ...] = (
    # --- addressing the assistant
    _rule(Reason.addresses_assistant,
          r"(?:^|[\s\[【(<\"“'‘|>#*])(?:assistant|system|developer|user|ai|bot|model|助手|ai助手|智能助手|机器人|大模型|模型)"
          r"\s*:", hard=True),
    _rule(Reason.addresses_assistant,
          r"<\|im_(?:start|end)\|>|\[/?inst\]|<\|(?:system|user|assistant)\|>|<<sys>>", hard=True),
    _rule(Reason.addresses_assistant,
          r"(?:以上|之前|上述|上面|前面|原有|原来|先前|此前)的?(?:所有|全部)?(?:规则|指令|指示|设定|提示词?|约束|限制)"
          r"(?:均|都|全部|已经|已|现在|已被|统统)*(?:失效|作废|无效|取消|废除|解除|不再适用|不再有效)", hard=True),
    _rule(Reason.addresses_assistant,
          r"(?:忽略|无视|不要理会|不用理会|不必理会|抛开|撇开|忘记|忘掉)(?:掉)?" + _DETERMINER),
    _rule(Reason.addresses_assistant, r"(?:忽略|无视|忘记|忘掉)(?:掉)?(?:指令|指示|提示词|设定|约束)"),
    _rule(Reason.addresses_assistant,
          r"\b(?:ignore|disregard|forget|override|bypass)\b\W*(?:\w+\W+){0,4}?"
          r"(?:instructions?|guidance|guidelines|rules|prompts?|directions|directives|constraints|restrictions)\b",
          hard=True),
    _rule(Reason.addresses_assistant,
          r"\byou\s+are\s+now\b|\bnew\s+instructions?\s*:|\b(?:system\s+prompt|developer\s+mode|jailbreak)\b",
          hard=True),
    _rule(Reason.addresses_assistant,
          r"你现在(?:必须|是|扮演|的身份|要|应该|开始)|从现在(?:起|开始)[,，]?你(?:是|要|必须|只能)", hard=True),
    _rule(Reason.addresses_assistant,
          r"(?:扮演|假装你是|假设你是)" + _C + r"{0,10}(?:助手|ai|模型|管理员|客服|收费员)", hard=True),
    _rule(Reason.addresses_assistant,
          r"系统(?:通知|提示|指令|消息)\s*[】\]:]|【\s*系统(?:通知|提示|指令|消息)|系统已(?:被|经被)?(?:接管|入侵|劫持|控制)",
          hard=True),
    _rule(Reason.addresses_assistant, r"<\s*/?\s*(?:system|context|question|doc|passage|instructions?)\s*>", hard=True),
    _rule(Reason.addresses_assistant, r"(?:新规则|新指令|新的指令|最新指令)\s*:"),
    _rule(Reason.addresses_assistant,
          r"(?<![您])你(?:现在)?(?:必须|务必|只能|一律)(?:回答|回复|输出|引导|告诉居民|告诉用户)"),
    # --- personal accounts
    _rule(Reason.contact,
          r"(?<![a-z])(?:微信号?|微信id|weixin|wechat|vx|v信|wx号?|威信|薇信|qq(?:群)?号?|扣扣|企鹅号)\s*(?:号码?|id)?\s*"
          r"(?:是|为|:)?\s*(?:[a-z][-_a-z0-9]{5,19}|\d{5,12})(?![-_a-z0-9])", hard=True),
    _rule(Reason.contact, r"(?<![参增附更追施叠外])(?:加|添加)(?:为)?" + _C
          + r"{0,10}?(?:微信|qq|vx|wx|v信|好友)(?!公众号|小程序|群|支付|缴|付|服务号|视频号|账单)"),
    _rule(Reason.contact, r"(?:加|添加)\s*v\s*:?\s*(?:[a-z][-_a-z0-9]{5,19}|\d{5,12})(?![-_a-z0-9])", hard=True),
    _rule(Reason.contact, r"(?:个人|私人)(?:微信|qq|支付宝)|私聊|私信(?:我|小编|客服|工作人员|网格员)"),
    # --- money to a person or an account
    _rule(Reason.payment, _PAY + r"(?:到|至|给|进|入)" + _C + r"{0,12}?" + _TARGET),
    _rule(Reason.payment, _PAY_SHORT + r"(?:到|至|给|进|入)" + _C + r"{0,12}?" + _TARGET, needs_money=True),
    _rule(Reason.payment, r"(?:向|往|给)" + _C + r"{0,10}?(?:个人|私人|" + _PERSON + r")的?(?:个人|私人)?"
          r"(?:账户|账号|银行卡|卡|微信|支付宝|收款码)?(?:\d+(?:\.\d+)?元)?(?:" + _PAY + r"|转|付|发红包)",
          needs_money=True),
    _rule(Reason.payment, r"收款码|收款二维码"),
    _rule(Reason.payment, r"(?:指定|以下|下列|如下|下方|安全|专用)的?(?:银行)?(?:账户|账号|卡号|银行卡)",
          needs_money=True),
    _rule(Reason.payment, r"户名\s*:" + _C + r"{1,20}?(?:卡号|账号)", hard=True),
    # --- handing over codes, passwords, ID photos, card numbers
    _rule(Reason.secrets, r"(?:提供|提交|告诉|告知|透露|报给|报上|上报|上交|交给|私信|回复|转发|发给|发送给|报出|"
          r"念给|说出)" + _C + r"{0,24}?" + _CODE),
    _rule(Reason.secrets, _CODE + _C + r"{0,12}?(?:发送|发|告诉|告知|报|提供|转发|交|念|说)(?:给|到|至)"
          r"(?!\s*(?:您|你|本人|申请人|预留|注册|绑定))"),
    _rule(Reason.secrets, _CODE + _C + r"{0,6}?(?:告诉|告知|透露|转告|念给|报给|提供给|交给)"),
    _rule(Reason.secrets, _ITEM + _C + r"{0,20}?" + _SEND + r"(?:给|到|至)\s*" + _C + r"{0,6}?(?P<channel>" + _CHANNEL
          + r"|\d[\d\s-]{4,})"),
)
# money named in the sentence: an amount, or a word for a payment (not 材料交给网格员, not 电话转给网格员)
_MONEY_WORDS = re.compile(r"\d+(?:\.\d+)?\s*(?:元|块)|钱|押金|保证金|红包|费用|\w费(?!标准|政策|问题|情况)|"
                          r"转账|汇款|打款|付款|缴纳|缴费")
_RESIDENT_OWN = re.compile(r"申请人|本人|居民|老人|您|自己|持卡人|社保卡|社会保障卡|家属|对公|公司|单位|机构|企业|"
                           r"银行网点|窗口|营业厅|财政|国库|医院|学校|部门|政府|街道|社区居委会")
_URL = re.compile(r"(?:(?:https?|ftp)://|www\.)[^\s，。；！？、）)」』”’'\"<>]+")
_BARE_HOST = re.compile(r"(?<![a-z0-9@._/-])((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+(?:" + _TLDS
                        + r"))(?![a-z0-9-])(?::\d+)?(?:/[^\s，。；！？、）)」』”’'\"<>]*)?")
_EMAIL = re.compile(r"[a-z0-9._%+-]+@([a-z0-9-]+(?:\.[a-z0-9-]+)+)")
_CARD = re.compile(r"(?<!\d)(?:62|4\d|5[1-5])\d{14,17}(?!\d)")
_ACCOUNT_WORDS = re.compile(r"卡号|账号|账户|户名|转账|汇款|打款|银行卡|收款")
_PHONE_CALL_TO_PAY = re.compile(r"(?:拨打|致电|联系|打)\s*(\+?\d[\d\s-]{3,16}\d)(?![\d.])\D{0,2}"
                                r"(?:缴纳|缴费|付款|转账|汇款|支付|交钱|交押金|缴押金|交费)")
_PHONE_TARGET = re.compile(r"(?:" + _PAY + r"|" + _PAY_SHORT + r"|发送|发|告诉|告知|报|提供|提交)(?:到|至|给)" + _C
                           + r"{0,8}?(?<![\d.])(\+?\d[\d\s-]{3,16}\d)(?![\d.])"
                           r"(?!\s*(?:年|月|日|元|块|号|楼|层|室|个|人|户|%|万|天|时|点|分|岁|周|次))")


@dataclass(frozen=True)
class Quarantined:
    """A passage held back for an admin's review: never indexed for retrieval, never cited or sent to a model."""

    doc_id: str
    title: str
    section: str
    line: int  # the file's line (Document.first_line counts from there); 0 for the title or other front matter
    text: str
    reasons: tuple[Reason, ...]

    @property
    def passage_id(self) -> str:
        return f"{self.doc_id}#q{self.line}"


_SEEN_MAX = 20_000


class Screen:
    """The quarantine rules with one allowlist; `fingerprint` changes whenever a rule or the allowlist does."""

    def __init__(self, links: Links) -> None:
        self.links = links
        rules = "\n".join(f"{r.reason.value}:{r.pattern.pattern}:{r.hard}:{r.needs_money}" for r in _RULES)
        digest = hashlib.sha256(f"{rules}\n{_URL.pattern}\n{_BARE_HOST.pattern}\n{_CARD.pattern}\n"
                                f"{sorted(links.hosts)}\n{sorted(links.phones)}".encode())
        self.fingerprint = digest.hexdigest()[:16]
        self._seen: dict[str, tuple[Reason, ...]] = {}  # answers screen the same stored lines again and again

    def reasons(self, text: str) -> tuple[Reason, ...]:
        """Why `text` must be quarantined, in rule order; empty when it may be served."""
        if not text or not text.strip():
            return ()
        known = self._seen.get(text)
        if known is None:
            known = self._reasons(text)
            if len(self._seen) >= _SEEN_MAX:
                self._seen.clear()
            self._seen[text] = known
        return known

    def _reasons(self, text: str) -> tuple[Reason, ...]:
        folded = fold(text)
        found: list[Reason] = []
        for rule in _RULES:
            if rule.reason not in found and any(self._counts(rule, m, folded) for m in rule.pattern.finditer(folded)):
                found.append(rule.reason)
        if Reason.link not in found and any(not self.links.allows_host(h) for h in hosts_in(folded)):
            found.append(Reason.link)
        if Reason.contact not in found and any(not self.links.allows_host(h) for h in _EMAIL.findall(folded)):
            found.append(Reason.contact)
        if Reason.payment not in found and _ACCOUNT_WORDS.search(folded) and _CARD.search(_join_digits(folded)):
            found.append(Reason.payment)
        for m in _PHONE_CALL_TO_PAY.finditer(folded):  # "拨打13900001111缴纳押金": pay through a private number
            if not self.links.allows_phone(m.group(1)) and not _negated(folded, m.start(), m.end()):
                found.append(Reason.payment)
        for m in _PHONE_TARGET.finditer(folded):  # money or an ID sent to a number that is not an official one
            if self.links.allows_phone(m.group(1)) or _negated(folded, m.start(), m.end()):
                continue
            sentence = _sentence(folded, m.start())
            if re.search(_PAY + "|" + _PAY_SHORT, m.group(0)) and _MONEY_WORDS.search(sentence):
                found.append(Reason.payment)
            elif re.search(_CODE + "|" + _ITEM, sentence):
                found.append(Reason.secrets)
        if Reason.contact in found and re.search(_CODE + "|" + _ITEM, folded):
            found.append(Reason.secrets)  # a chat account and an ID photo or a code in one passage: a hand-over
        return tuple(dict.fromkeys(found))

    def _counts(self, rule: _Rule, m: re.Match[str], folded: str) -> bool:
        """A soft match counts unless it is a warning, a payment to the resident or an institution, a payment
        rule in a sentence without money, or a hand-over to an official number."""
        if rule.hard:
            return True
        if _negated(folded, m.start(), m.end()):
            return False
        groups = m.groupdict()
        if groups.get("target") is not None and _RESIDENT_OWN.search(folded[m.start():m.end()]):
            return False  # 转入申请人本人账户, 缴纳到窗口 / 银行网点
        if rule.needs_money and not _MONEY_WORDS.search(_sentence(folded, m.start())):
            return False  # 材料交给网格员: nothing is paid
        channel = groups.get("channel")
        return not (channel and channel[0].isdigit() and self.links.allows_phone(channel))


def hosts_in(folded: str) -> list[str]:
    """The hosts of the links in already folded text (scheme links, www. links and bare domains)."""
    hosts: list[str] = []
    for m in _URL.finditer(folded):
        raw = m.group(0)
        hosts.append(urlsplit(raw if "://" in raw else f"http://{raw}").hostname or raw)
    for m in _BARE_HOST.finditer(_URL.sub(" ", folded)):
        hosts.append(m.group(1))
    return hosts


def _negated(folded: str, start: int, end: int) -> bool:
    """A warning: a negation just before the match in its clause or inside it ("请勿向个人账户转账",
    "验证码不要告诉任何人"), or a sentence about fraud."""
    clause_start = max(folded.rfind(c, 0, start) for c in _CLAUSE_END) + 1
    around = folded[max(clause_start, start - _NEGATION_WINDOW):end]
    return bool(_NEGATION.search(around)) or bool(_FRAUD.search(_sentence(folded, start)))


def _sentence(folded: str, at: int) -> str:
    start = max(folded.rfind(c, 0, at) for c in _SENTENCE_END) + 1
    ends = [i for i in (folded.find(c, at) for c in _SENTENCE_END) if i >= 0]
    return folded[start:min(ends) if ends else len(folded)]


def _join_digits(text: str) -> str:
    """Digit groups typed with spaces or dashes between them, joined ("6222 0212 3456" -> "622202123456")."""
    return re.sub(r"(?<=\d)[\s-](?=\d)", "", text)


@lru_cache(maxsize=8)
def screen_for(policies_dir: str | Path = DEFAULT_DIR) -> Screen:
    """The screen with the allowlist of `policies_dir`/links.yaml (read once per directory)."""
    return Screen(cached_policies(str(policies_dir)).links)


def default_screen() -> Screen:
    return screen_for(str(DEFAULT_DIR))


# ---------------- documents and passages ----------------
_HEADING = re.compile(r"^#{1,6}\s+(.*\S)\s*$")


def _paragraphs(text: str) -> Iterator[list[tuple[int, str]]]:
    """Runs of non-blank lines as (1-based line number, line); a heading is a run of its own."""
    run: list[tuple[int, str]] = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip() or _HEADING.match(line):
            if run:
                yield run
            run = []
            if line.strip():
                yield [(n, line)]
            continue
        run.append((n, line))
    if run:
        yield run


def _flagged_lines(text: str, screen: Screen) -> dict[int, tuple[Reason, ...]]:
    """{line number: reasons} of the lines to hold back: each flagged line, or a whole paragraph whose request
    only shows when its lines are read together (a sentence wrapped over two lines)."""
    out: dict[int, tuple[Reason, ...]] = {}
    for run in _paragraphs(text):
        flagged = {n: r for n, line in run if (r := screen.reasons(line))}
        if not flagged and len(run) > 1:
            joined = screen.reasons("".join(line.strip() for _, line in run))
            if joined:
                flagged = {n: joined for n, _ in run}
        out.update(flagged)
    return out


def screen_document(doc: Document, screen: Screen) -> tuple[Document, list[Quarantined]]:
    """The document without its quarantined passages, and those passages (title and source included)."""
    held: list[Quarantined] = []
    meta_updates: dict[str, str] = {}
    for name in ("title", "source", "issuer"):
        value = str(getattr(doc, name) or "")
        reasons = screen.reasons(value)
        if reasons:
            held.append(Quarantined(doc.doc_id, doc.doc_id, name, 0, value, reasons))
            meta_updates[name] = doc.doc_id if name == "title" else ""
    flagged = _flagged_lines(doc.text, screen)
    if not flagged and not held:
        return doc, []
    title = meta_updates.get("title", doc.title)
    section = title
    kept: list[str] = []
    for n, line in enumerate(doc.text.split("\n"), start=1):
        heading = _HEADING.match(line)
        if n in flagged:
            held.append(Quarantined(doc.doc_id, title, section, doc.first_line + n - 1, line.strip(), flagged[n]))
            continue
        if heading:
            section = heading.group(1).strip()
        kept.append(line)
    served = dataclasses.replace(doc, text="\n".join(kept), title=meta_updates.get("title", doc.title),
                                 source=meta_updates.get("source", doc.source),
                                 issuer=meta_updates.get("issuer", doc.issuer))
    return served, held


def clean_passage(text: str, screen: Screen | None = None) -> str:
    """`text` without the lines the screen holds back (an index built before quarantine may still have them);
    the same object when nothing is flagged."""
    flagged = _flagged_lines(text, screen or default_screen())
    if not flagged:
        return text
    return "\n".join(line for n, line in enumerate(text.split("\n"), start=1) if n not in flagged)


# ---------------- an LLM answer's own facts ----------------
_SHORT_NUMBER = re.compile(r"(?<![\d.])(?:1\d{4}|9\d{4}|400\d{7}|800\d{7})(?![\d.])"
                           r"(?!\s*(?:元|块|万|亿|千|百|人|户|个|平|米|%|年|月|日|天|次|岁|件|名|份|辆|台|吨|度|立方))")
_ID_AFTER_WORD = re.compile(r"(?:微信号?|weixin|wechat|vx|v信|wx|qq(?:群)?号?|账号|账户|卡号|户名|id)\s*(?:是|为|:)?\s*"
                            r"([a-z0-9][-_a-z0-9]{4,})")
_ASCII_ID = re.compile(r"(?<![a-z0-9_-])([a-z][a-z0-9_-]{3,}(?:\d|_)[a-z0-9_-]*)(?![a-z0-9_-])")
_LONG_DIGITS = re.compile(r"(?<!\d)\d{9,}(?!\d)")
_MONEY = re.compile(r"(?:[¥￥]\s*|人民币\s*|rmb\s*)?(\d+(?:[.,]\d+)*)\s*(万元|元|块钱|块|角)"
                    r"|(?:[¥￥]|人民币|rmb)\s*(\d+(?:\.\d+)?)")


def unsupported_facts(answer: str, passages: Iterable[str]) -> list[str]:
    """The links, phone numbers, account ids and amounts of money in `answer` that none of `passages` holds
    ("url:jn-rz.top/banli", "phone:13900001111", "id:jn_rz_2025", "money:30元")."""
    text = fold(answer)
    corpus = fold("\n".join(passages))
    flat = re.sub(r"[\s,，]", "", corpus)
    digits = re.sub(r"[\s\-()]", "", corpus)
    missing: list[str] = []

    def need(kind: str, value: str, present: bool) -> None:
        if not present and f"{kind}:{value}" not in missing:
            missing.append(f"{kind}:{value}")

    for m in list(_URL.finditer(text)) + list(_BARE_HOST.finditer(_URL.sub(" ", text))):
        url = re.sub(r"^(?:https?|ftp)://", "", m.group(0)).rstrip("/.")
        need("url", url, url in re.sub(r"(?:https?|ftp)://", "", corpus))
    phones: list[str] = []
    for item in find_personal_data(answer):
        if item.kind in ("mobile", "landline"):
            phones.append(item.number)
            need("phone", item.number, item.number in digits or item.number.lstrip("0") in digits)
    for m in _SHORT_NUMBER.finditer(text):
        phones.append(m.group(0))
        need("phone", m.group(0), m.group(0) in digits)
    for m in _ID_AFTER_WORD.finditer(text):
        need("id", m.group(1), m.group(1) in corpus)
    for m in _ASCII_ID.finditer(_URL.sub(" ", text)):
        need("id", m.group(1), m.group(1) in corpus)
    for m in _LONG_DIGITS.finditer(_join_digits(text)):
        if not any(m.group(0) in p or p in m.group(0) for p in phones):  # a phone number is checked as one
            need("id", m.group(0), m.group(0) in _join_digits(digits))
    for m in _MONEY.finditer(text):
        amount = (m.group(1) or m.group(3) or "").replace(",", "")
        unit = {"块": "元", "块钱": "元", None: "元"}.get(m.group(2), m.group(2))
        need("money", f"{amount}{unit}", re.search(rf"(?<![\d.]){re.escape(amount)}(?:{_unit_re(unit)})", flat)
             is not None or bool(re.search(rf"[¥￥]{re.escape(amount)}(?![\d.])", flat)))
    return missing


def _unit_re(unit: str) -> str:
    return {"元": "元|块", "万元": "万元|万", "角": "角"}.get(unit, re.escape(unit))


# ---------------- answers shown to residents ----------------
_ANSWER_MASKED = ("mobile", "id_number", "id_number_invalid")


def mask_answer(text: str) -> str:
    """Mask mobile and ID numbers in an answer; landlines and short hotlines (12345, 110, 96110) stay readable,
    because official service numbers are what residents need from an answer."""
    if not text:
        return text
    out, last = [], 0
    for item in find_personal_data(text):
        if item.kind not in _ANSWER_MASKED:
            continue
        out.append(text[last:item.start])
        out.append(mask_value(item.kind, item.raw))
        last = item.end
    out.append(text[last:])
    return "".join(out)
