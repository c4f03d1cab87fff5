"""Whom a complaint is about: the community's own people (`staff`) or anyone else (`other`).

A complaint about a grid worker must not be handled by that worker, so the classifier names the target and
routing (policies/routing.yaml `target: staff`) sends it above them. The words for staff come from one policy
list (taxonomy.yaml `staff_terms`, by the position each word names); this module only knows how a sentence
makes one of them the one complained about. In a complaint, naming them is enough (网格员从来没来过俺家),
unless they are asked for help (请网格员来看看) or belong to another organisation (物业工作人员); a word that only
names the community as a body (`office`: 社区, 居委会) needs their conduct after it (社区一直推). A complaint
verb aimed at them (投诉俺们网格员) or their conduct (…电话都不接, 态度还不好) makes the reading `strong`: enough
to call the message a complaint whatever the model read.
Must not: decide the intent or the route, or know any staff word itself.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

STAFF = "staff"
OTHER = "other"

# a complaint verb with the staff word after it, a few characters on: 投诉俺们网格员, 举报社区书记
_AIMED = r"(投诉|举报|告|反映|曝光|检举|控告|状告|意见大)\S{0,8}$"
# what the staff member did (or did not do), said after the word: their conduct is the complaint
_CONDUCT = re.compile(
    r"态度\S{0,4}(不好|差|恶劣|蛮横|生硬|冷|不行|太次|极差|凶)|睡觉|敲门不开|忙音|没人接|打不通|打游戏|玩手机|"
    r"脏字|骂人|太冲|嫌|弄错|搞错|写错|不给改|没下文|不了了之|拍个?照就走|走过场|跑了\S{0,3}趟|不在岗|天天不在|"
    r"根本没人|过期|说不知道|一问三不知|推来推去|一直推|亲戚|关系户|优亲厚友|不公平|不公正|明天再说|不当回事|"
    r"不上心|答应\S{0,14}(没来|没办|没弄|没下文)|到现在\S{0,2}(没|还没)|从来没|没来过|说处理了|"
    r"(不接|不回|不理|不管|不问|不作为|不办|不处理|不干活|不负责|不上门|不露面|不来|没来|没人来|不见人|"
    r"不耐烦|爱答不理|爱搭不理|不搭理|不吭声|不给办|不帮|不解决|没解决|没处理|没人管)|"
    r"(推|踢皮球|推诿|推脱|敷衍|糊弄|应付|拖|甩锅|刁难|为难|偏袒|摆架子|官僚|吃拿卡要|骂|吼|凶|嚷|训|"
    r"挂(电话|了)|撒谎|说谎|骗|威胁|乱收|收(钱|好处|红包|礼)|要(钱|好处)|索要|打人|动手|找不到人|"
    r"人影|光说不做|说了不算|说话难听|难听|阴阳怪气|瞧不起|看不起|欺负|差劲|太差|不像话|失职|渎职)")
# the staff member asked to do something: a request, not by itself a target (请网格员来看看, 让社区的人管管)
_ASKED = r"(请|让|叫|找|麻烦|希望|盼|求|喊|联系|通知|告诉|问问?)\S{0,3}$"
_CONDUCT_SPAN = 24  # characters after the staff word in which their conduct is read
# another organisation's people just before the word (物业工作人员, 热力公司的人): not the community's
_OTHER_ORG = re.compile(r"(物业|公司|供热|热力|燃气|自来水|供电|电力|城管|派出所|警察|医院|银行|超市|饭店|商户|施工|"
                        r"装修|快递|外卖|保安|学校|幼儿园|房东|中介|12345)\S{0,3}$")
_OTHER_ORG_ANY = re.compile(_OTHER_ORG.pattern.removesuffix(r"\S{0,3}$"))
# positions whose words name the community as an organisation (社区, 居委会): they count only with conduct


WEAK_KEYS = frozenset({"office"})
# a place or service of the community, not its people (社区医院, 社区门口)
_NOT_PEOPLE = re.compile(r"(医院|卫生|诊所|食堂|超市|药店|广场|门口|活动|花园|附近|养老|幼儿|托管|医生|大夫|团购|群里)")


@dataclass(frozen=True)
class TargetReading:
    target: str  # "staff" | "other"
    roles: tuple[str, ...] = ()  # the positions named as the ones complained about (staff_terms keys)
    hits: tuple[str, ...] = ()  # the staff words that decided it
    # a complaint verb aimed at them or their conduct, not just their name: enough to call the message a
    # complaint whatever the model read (a bare mention only tells whom a complaint is about)
    strong: bool = False


class TargetDetector:
    """Built once from taxonomy.yaml's `staff_terms` ({position: [words]})."""

    def __init__(self, staff_terms: Mapping[str, Sequence[str]]):
        pairs = sorted(((w, role) for role, words in staff_terms.items() for w in words),
                       key=lambda p: len(p[0]), reverse=True)  # longest first: 社区书记 before 书记
        self._role_of = dict(pairs)
        self._words = re.compile("|".join(re.escape(w) for w, _ in pairs)) if pairs else None
        self._aimed = re.compile(_AIMED)
        self._asked = re.compile(_ASKED)

    def read(self, text: str) -> TargetReading:
        """Whom `text` complains about (call it for complaints; any text gives an answer)."""
        if self._words is None or not text:
            return TargetReading(OTHER)
        norm = unicodedata.normalize("NFKC", text)
        roles: list[str] = []
        hits: list[str] = []
        strong = False
        for m in self._words.finditer(norm):
            before = norm[max(0, m.start() - 10):m.start()]
            if _OTHER_ORG.search(before):
                continue
            # the rest of the sentence after the word (a full stop or question ends it)
            after = re.split(r"[。！？!?；;\n]", norm[m.end():], maxsplit=1)[0][:_CONDUCT_SPAN]
            aimed = bool(self._aimed.search(before))
            asked = bool(self._asked.search(before)) and not aimed
            if asked:
                # asked for help: only their own conduct in the same clause makes them the target
                # (找网格员也不管 is; 请网格员来处理 楼上不管 is not)
                after = re.split(r"[，,、\s]", after, maxsplit=1)[0]
            conduct = aimed or bool(_CONDUCT.search(after))
            role = self._role_of[m.group(0)]
            if role in WEAK_KEYS and (_NOT_PEOPLE.match(norm, m.end()) or _OTHER_ORG_ANY.search(norm[:m.start()])):
                continue
            if not conduct and (asked or role in WEAK_KEYS):
                continue
            strong = strong or conduct
            if role not in roles:
                roles.append(role)
            hits.append(m.group(0))
        if not hits:
            return TargetReading(OTHER)
        return TargetReading(STAFF, tuple(r for r in roles if r not in WEAK_KEYS), tuple(hits), strong)
