"""The safety net: danger words and phrases that can only RAISE urgency, never lower it.

A missed emergency is the worst defect of the product, so a rule fires unless its own sentence clearly talks
about the past, a hypothetical, a notice or a question about rules, or negates the danger ("不是着火").
Must not: lower any label or look at the model's output.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

RANK = {"normal": 0, "urgent": 1, "emergency": 2}


@dataclass(frozen=True)
class DangerRule:
    name: str
    urgency: str  # "emergency" | "urgent"
    pattern: re.Pattern[str]
    category: str | None = None  # the category this danger usually belongs to
    exclude: re.Pattern[str] | None = None  # a sentence matching this is not this danger
    exclude_text: re.Pattern[str] | None = None  # a whole message matching this is not this danger
    require_text: re.Pattern[str] | None = None  # the rule counts only when the whole message matches this


@dataclass
class RuleResult:
    urgency: str | None = None
    hits: list[str] = field(default_factory=list)
    category: str | None = None  # hint from the strongest rule that fired
    # emergency phrases that were there but judged not happening now (past, drill, notice, stopped): the
    # model's echo of the same words is no evidence of a danger now either (service.py)
    calmed: list[str] = field(default_factory=list)

    def raises(self, urgency: str) -> bool:
        return self.urgency is not None and RANK[self.urgency] > RANK.get(urgency, 0)


def _r(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE)


_PERSON = (r"(人|老人|老太太|老太|老头|老爷子|老大爷|大爷|大妈|奶奶|爷爷|孩子|小孩|儿子|女儿|闺女|我妈|我爸|"
           r"俺妈|俺爹|俺娘|俺爸|老伴|他|她|男的|女的|邻居)")
_OLD = r"(老人|老太太|老太|老头|老爷子|老大爷|大爷|大妈|奶奶|爷爷|俺妈|俺爹|俺娘|我妈|我爸|老伴|姥姥|姥爷)"
_KIN = (r"(孩子|小孩|娃|孙子|孙女|外孙|老人|老爷子|老太太|老头子?|老伴|我妈|我爸|俺爹|俺娘|俺妈|俺爸|老娘|老爹|"
        r"婆婆|公公|姥姥|姥爷|奶奶|爷爷|儿子|女儿|闺女|老公|媳妇)")

# who pays for water damage already done is a dispute, not a flood happening now
# the water is stopped: what is left is damage (a report), not a flood going on
_STOPPED = r"(阀门|总阀|总闸|水阀|闸)\S{0,2}(关了|关上了|给关了)|关了?(阀门|总阀|水阀|总闸)|不漏了|止住了|不冒了|水停了"
_DAMAGE_DISPUTE = _r(r"调解|协调|评理|不认账|不赔|要赔|赔偿|谁负责|官司|谁出|维修费|费用")

RULES: tuple[DangerRule, ...] = (
    # --- fire and smoke
    DangerRule("fire", "emergency", _r(r"着火|著火|起火|失火|火灾|走水|着伙|烧起来|着起来|火苗|火很大|火好大|"
                                       r"火越来越大|火势|(往外|窗户|屋里|楼上|楼下)\S{0,2}冒火|冒火苗|"
                                       r"(车|罐|电瓶|电池|屋|房|厨房|锅|楼|阳台)\S{0,3}(着了|炸了|爆炸)|爆炸了|\bfire\b"),
               "safety", _r(r"防火|火灾隐患|消防演练|消防栓|火气|上火|fire ?lane|(打|点)不着火|打着火")),
    DangerRule("smoke", "emergency", _r(r"冒烟|冒黑烟|冒浓烟|浓烟|黑烟|全是烟|都是烟|烟(好|很|太|特别)大|烟往|"
                                        r"烧焦的?味|糊味|烟呛得\S{0,4}(下不了楼|出不去|睁不开|喘不)|\bsmoke\b"),
               "safety", _r(r"油烟|烧烤|烤串|抽烟|吸烟|烟头|烟囱|炉子|炒菜|秸秆|烟雾弹|不是着火|厂子|工厂|排\S{0,2}烟"),
               _r(r"抽烟|吸烟|烟头|烟民|二手烟")),
    DangerRule("gas", "emergency", _r(r"(煤气|燃气|然气|天然气|液化气|煤汽|燃汽)\S{0,3}"
                                      r"(味|泄漏|泄露|漏了|漏气|管\S{0,4}(断|破|穿))|"
                                      r"漏气|臭鸡蛋|(味|热水器|燃气|煤气|炉子)\S{0,12}头晕|(一家|全家|一屋子?人)\S{0,4}头晕\S{0,3}(恶心|想吐|吐)|(燃气|煤气|天然气)管\S{0,10}(穿|破|断|裂|漏)|"
                                      r"(呲呲|嘶嘶|滋滋)\S{0,4}(往外)?(喷|冒)气|"
                                      r"(燃气表|燃气管|煤气管|天然气管|阀门|表)\S{0,6}(滋滋|嘶嘶|呲呲)\S{0,8}(响|味)|"
                                      r"一氧化碳|煤气中毒|嘶嘶\S{0,4}(冒|漏)|\bgas (leak|smell)"),
               "safety", _r(r"报警器\S{0,6}(电池|没电)|安检|缴费|充值|燃气费")),
    # --- people in danger
    DangerRule("trapped", "emergency", _r(r"被困|困在|困人|关人|被关|关在\S{0,4}(电梯|屋|里)|"
                                          r"(电梯|电提|电t)\S{0,10}"
                                          r"(出不去|出不来|门打不开|夹住|夹人|卡住了|往下冲|掉下去|下坠)|"
                                          r"卡在\S{0,4}(楼|层)?\S{0,3}中间|停在\S{0,3}(两层|半层)中间|"
                                          r"电梯里\S{0,8}(门不开|出不去|动不了|黑着)|"
                                          r"(电梯|电提)\S{0,8}往下掉|\bstuck\b|\btrapped\b"),
               "building", _r(r"困难|被困扰|没人在里面|没有人在里面")),
    DangerRule("collapse", "emergency", _r(r"晕倒|昏倒|昏迷|昏过去|晕过去|不省人事|叫不醒|"
                                           r"(叫|喊|拍|摇|推)\S{0,4}没(了)?反应|没(有)?呼吸|没气了|"
                                           r"头破血流|满(脸|头|身)是血|头\S{0,2}(打|磕|砸)?破了|打破(了)?头|"
                                           r"口吐白沫|抽搐|抽过去|喘不上气|喘不过气|憋紫|嘴唇发紫|胸口(疼|痛|闷)得|"
                                           r"心口疼|"
                                           r"心梗|脑梗|中风|嘴(也)?歪|半边身子|流了?(很多|好多)血|流血不止|大出血|"
                                           r"误(喝|服|吃)|吃了一整瓶|溺水|掉进\S{0,6}(水|河|池|湖|井|坑)|心肺复苏|"
                                           + _PERSON + r"\S{0,6}倒(地|在地|下了|地上)|"
                                                       r"摔倒\S{0,10}(叫不醒|起不来|不动|流血|血|反锁|锁着|进不去|在屋里喊|喊)|"
                                           + _OLD + r"\S{0,8}(摔倒|跌倒|摔了一跤|摔地上)了?|"
                                           + _PERSON + r"\S{0,6}没(了)?反应|"
                                           r"烫伤|人快不行了|快不行了|快不行|抽风|翻白眼|休克|心脏骤停|没(了)?意识|"
                                           r"没(了)?知觉|人事不省|"
                                           r"(躺|倒|瘫)在\S{0,6}(不动|叫也不应|叫不应)|躺在\S{0,8}不动了|叫也不应|"
                                           r"(晕|昏)厥|噎住|突然倒(下|地|了)|倒下去了|呼吸(很|特别)?(弱|微弱)|"
                                           r"叫(他|她)?不应|吃了\S{0,3}一?整瓶|一?整瓶\S{0,3}药\S{0,3}吃|"
                                           r"烫(了|得|伤)\S{0,4}(一大片|起泡|皮)|卡住了?\S{0,4}喘|冒冷汗|冷汗直流|"
                                           r"(心口|胸口|心脏)\S{0,4}(疼|痛|闷)\S{0,8}(冷汗|喘|不行|救护车)|"
                                           r"(煤炉|炉子|蜂窝煤|炭火|烧炭)\S{0,12}(晕|吐|中毒|叫不醒)|中毒了|"
                                           r"(吞|咽)(了|下|进去)\S{0,6}(电池|纽扣|硬币|磁|钉|针|药)|"
                                           r"吃了(一把|半瓶|一瓶|好多|一大把)\S{0,2}(药|安眠)|"
                                           r"手脚\S{0,3}不听使唤|(喊|叫)(他|她)?(他|她)?也?不(说话|吭声|答应|应声)"),
               "health", _r(r"报销|费用|多少钱|慢病|体检|疫苗|腿脚不行|不行了吧|敲门\S{0,2}没反应|补贴|护理|康复|"
                            r"住院了|出院|保险|(按钮|按键|开关|遥控|手机|电脑|电视|机器)\S{0,4}没反应")),
    DangerRule("self_harm", "emergency", _r(r"不想活|活不下去|活着(没|没有)(意思|劲)|没啥意思了|想自杀|自杀|轻生|寻死|"
                                            r"想死|"
                                            r"跳楼|往下跳|跳下去|割腕|安眠药|药都攒好|告别的话|(我|俺)(真的)?撑不下去|"
                                            r"活着\S{0,3}没(啥|什么)?(意思|劲|盼头)|"
                                            r"一了百了|不活了|死了算了|寻短见|想不开|结束(自己的?)?生命|喝农药|喝药|"
                                            r"上吊|不想再活|活够了|\bsuicide\b|kill myself|want to die"),
               "health", _r(r"跳楼价|跳楼甩卖|笑死|热死|累死|烦死|想死你|馋死|急死")),
    DangerRule("violence", "emergency", _r(r"打人|动刀|拿(着)?(刀|棍|砖)|持刀|菜刀|砍人|捅人|行凶|家暴|抢劫|"
                                           r"打架\S{0,12}(刀|棍|砖|血|救命)|(抄|拿|抡)着?\S{0,2}(棍|刀|砖|家伙)|打(他|她)?(老婆|媳妇|孩子|老公)|打得头破血流|见血|喊救命|救命|"
                                           r"撬\S{0,3}门|入室|追着打|持械|"
                                           r"拿(着)?(斧头|斧子|锤子|铁锹|钢管|棍子|剪刀|匕首|刀子)|举着刀|"
                                           r"掏出(刀|匕首)|"
                                           r"被捅|捅伤|砍伤|被砍|掐(着|住)\S{0,6}脖子|掐脖子|要杀|杀人|动手打|"
                                           r"打起来了\S{0,10}(血|刀|棍|伤)|抡(着|起)"),
               "safety", _r(r"救命钱|救命药|打人的事|打架斗殴的规定|AED|能救命|救命的")),
    DangerRule("missing", "emergency", _r(r"走丢|走失|失踪|放学没回(家|来)|" +
                                          _KIN + r"\S{0,12}"
                                                 r"(不见了|找不到了|没回来|没回家|找不着|找不见|丢了|联系不上了)|"
                                                 r"人找不着了|找遍了\S{0,4}也?(没|不见|找不)|"
                                          r"(放学|出门|出去|买菜|遛弯|上学)\S{0,12}(没回|没到家|还没到|不见人)|跟丢|"
                                          r"(小时|钟头)(了|啦)?还?没回(来|家)|\bmissing\b"),
               "safety", _r(r"(狗|猫|宠物|钥匙|手机|钱包|卡|证|本|包|车)\S{0,2}(丢了|不见了|找不到|找不着)|防走失|防丢|"
                            r"眼睛看不见|"
                             r"手环|找回来了|(独居|一个人住|孤寡)\S{0,12}联系不上")),
    DangerRule("falling", "emergency", _r(r"砸(到|着|伤)\S{0,4}(人|头)|高空坠物\S{0,4}(砸|伤)|坠楼|"
                                          r"(爬到|爬上|爬出)\S{0,6}(窗|阳台)|倒塌|坍塌|压(着|住)人|掉下来\S{0,8}人|"
                                          r"砸下来|(玻璃|窗户|窗扇|窗框|窗子)\S{0,8}"
                                          r"(要掉|快掉|掉下来|往下掉|随时会?掉|摇摇欲坠|悬着|晃悠)|"
                                          r"砸到人|砸着人|往下掉\S{0,4}(砖|瓦|玻璃|花盆|东西)"),
               "safety", _r(r"没砸着人|没砸到人|差点")),
    DangerRule("throwing", "emergency", _r(r"(往下|楼上|楼下|窗外|阳台)\S{0,4}(扔|砸|抛|丢|掉)\S{0,6}"
                                           r"(花盆|砖|瓶子|酒瓶|石头|刀|铁|凳子|椅子|玻璃|东西)|高空抛物\S{0,6}(还在|一直|又)"),
               "safety", _r(r"垃圾|烟头|果皮|瓜子皮|纸"),
               require_text=_r(r"(还在|一直|正在|又在)\S{0,4}(往下)?(扔|砸|抛|丢)|砸(到|着|伤|碎)|花盆|砖|酒瓶|孩子|小孩|"
                               r"有人")),
    DangerRule("structure", "emergency", _r(r"(塔吊|脚手架|广告牌|招牌|围墙|院墙|阳台|房梁|屋顶|楼板)\S{0,4}"
                                            r"(歪了|要倒|快倒|倒了|要塌|快塌|塌了|往下掉|晃得厉害|要掉|快掉)"),
               "safety", require_text=_r(r"人|孩子|小孩|学生|底下|下面|路过|幼儿园|学校")),
    # about to fall where people are below; only glass and windows, or with people named below
    DangerRule("falling_soon", "emergency", _r(r"(随时|马上要?|眼看要?|快要)掉(下来|了)?|往下掉|晃悠悠|一晃一晃|"
                                               r"(站|爬|坐|蹲)\S{0,3}在?(窗台|窗户|阳台)\S{0,2}(外|边上)|"
                                               r"(趴|站|爬|坐|蹲|吊)\S{0,3}在?\S{0,6}(空调架|空调外机|窗户外|窗外)|"
                                               r"(天台|楼顶|房顶)\S{0,2}(站着|坐着|蹲着)\S{0,2}(个|一个)?(人|学生|孩子|小孩|男的|女的)"),
               "safety", require_text=_r(r"玻璃|窗|人来人往|人都在|有人在下面|孩子|小孩|底下是|"
                                         r"(下面|楼下|底下)(就)?是\S{0,6}(门口|幼儿园|学校|出口)|天台|楼顶|房顶")),
    # --- power and water
    DangerRule("live_wire", "emergency", _r(r"漏电|触电|电到人|带电|冒火花|冒火星|电火花|火星子|"
                                            r"(电表箱|配电箱|电箱)\S{0,4}(冒|着|火|响)|插线板泡|麻手|电麻了|"
                                            r"被电(了|到|着)|电了一下|"
                                            r"(杆|栏杆|栅栏|铁门|扶手|水管|水龙头|外壳|门把手|路灯|灯杆|电线杆|铁皮|"
                                            r"护栏|墙|洗衣机|热水器|晾衣架|防盗门|单元门)\S{0,6}(有电|电人|麻)|"
                                            r"摸\S{0,6}(麻|有电|电了)|(电闸|电箱|电表箱|配电箱|插座|灯座|灯口)\S{0,4}(湿透|进水|泡|往下流|流水|淌水)|"
                                            r"水\S{0,8}(灯座|灯口|插座|电闸)\S{0,4}(往下|流|淌|滴)|\blive wire"),
               "utilities", _r(r"漏电保护|飞线|私拉|焊|电焊")),
    # a wire down or cut is live unless the message says the power is off (a dug-up cable: an outage)
    DangerRule("wire_down", "emergency", _r(r"(电线|电缆|高压线)\S{0,8}(掉|断|落|耷拉|搭在|露出|泡在)"),
               "utilities", _r(r"飞线|私拉"), _r(r"没电|停电|断电|没有电")),
    DangerRule("flooding", "emergency", _r(r"(家里|屋里|屋子|客厅|卧室|地下室|一楼|厨房|家)\S{0,6}(进水|淹|灌水|漫)|"
                                           r"水淹|淹了|水漫|淹到|"
                                           r"往下浇|\bflood|水漫金山|"
                                           r"(家|屋|客厅|卧室|地板|床|一楼|地下室|厨房)\S{0,6}"
                                           r"(泡了|泡着|泡水|成了河|成河)|"
                                           r"水\S{0,4}(到|没过|漫过)\S{0,2}(膝盖|脚脖子|小腿|腰)|水涨得|"
                                           r"水\S{0,4}往\S{0,4}(屋里|家里|屋子里|一楼)\S{0,2}(灌|涌)"),
               "utilities", _r(r"路口|马路|路面|积水点|车库|漏水|渗水|污水|粪水|脏水|下水|屎水"),
               _r(_DAMAGE_DISPUTE.pattern + "|" + _STOPPED)),
    # a burst pipe floods a home only with the water said to be spreading; alone it is an outage (burst_pipe)
    DangerRule("burst_pipe_flood", "emergency", _r(r"(水管|管子|暖气管|热水管|暖气片|暖器片)\S{0,4}(爆|崩|裂)|爆管|"
                                                   r"\bburst pipe"),
               "utilities", exclude_text=_r(_DAMAGE_DISPUTE.pattern + "|" + _STOPPED),
               require_text=_r(r"满地|一地|全是水|都是水|喷|哗哗|淹|漫|灌|往下浇|成河|泡|涨|蒸汽|开水|热水往|"
                               r"关不上|止不住|流到|流进|膝盖|脚脖子")),
    # --- urgent: essential services lost, harm likely within hours
    DangerRule("burst_pipe", "urgent", _r(r"(水管|管子|暖气管|热水管|暖气片|暖器片)\S{0,4}(爆|崩|裂)|爆管"),
               "utilities", exclude_text=_DAMAGE_DISPUTE),
    DangerRule("no_water", "urgent", _r(r"停水|没水了|没有水|断水|没水|\bno water|"
                                        r"(水|自来水)\S{0,2}(给)?(停了|断了|掐了)|"
                                        r"把\S{0,4}水\S{0,2}(停|断|关|掐)|"
                                        r"(自来水|水龙头|放出来的水)\S{0,8}(没法喝|不能喝|黄泥|泥汤|浑|发黑|发臭|铁锈)"),
               "utilities", _r(r"公厕|厕所|冲不了|洗车|浇花|喷泉")),
    DangerRule("no_power", "urgent", _r(r"停电|没电了|断电|没有电|跳闸\S{0,6}(全楼|整栋|整个)|\bno power|blackout|"
                                        r"(全屋|全家|家里|屋里|整栋|全楼|楼里|小区|整个)\S{0,3}没电|把\S{0,4}电(给)?(停|断|掐)|"
                                        r"(?<!梯)电(给)?(停了|掐了)"),
               "utilities", _r(r"手机没电|电动车没电|电瓶没电|电池没电|报警器")),
    DangerRule("no_heat", "urgent", _r(r"没暖气|停暖|暖气不热\S{0,10}(度|冻|老人|孩子)|屋里\S{0,3}\d+度|冻得|"
                                       r"暖气\S{0,4}(阀门)?\S{0,2}(给)?(关了|停了|掐了|断了)|把\S{0,3}暖气\S{0,4}(关|停|掐|断)|"
                                       r"暖气(片)?\S{0,3}(冰凉|凉了|拔凉|不热)\S{0,6}(天|周|星期)|"
                                       r"(家里|屋里|屋子)\S{0,3}冷得(很|不行|受不了|要命|睡不着)"),
               "utilities"),
    DangerRule("no_gas", "urgent", _r(r"(燃气|天然气|煤气)\S{0,3}(停了|没了|断了|打不着|用不了)|停气"), "utilities",
               _r(r"缴费|充值|卡没钱|欠费")),
    DangerRule("sewage", "urgent", _r(r"(污水|粪水|脏水|屎水|粪便|下水|马桶|地漏)\S{0,6}"
                                      r"(冒|溢|漫|返|反|倒灌|往上涌|往外涌)|"
                                        r"化粪池\S{0,4}(满|溢|冒)|倒灌|返水|反水"),
               "utilities", _r(r"(反|返)(臭|味)")),
    DangerRule("manhole", "urgent", _r(r"井盖\S{0,6}(丢|没了|缺|没有|掀|偷|塌|碎|翻|坏)|没盖的井|敞着口"),
               "public_facilities"),
    DangerRule("bearing_wall", "urgent", _r(r"承重墙\S{0,4}(砸|拆|打|凿|裂)|(砸|拆|打|凿)\S{0,3}承重墙|"
                                            r"楼\S{0,2}(都在|一直)?震"),
               "building"),
    DangerRule("high_fever", "urgent", _r(r"(烧到|发烧|高烧|体温)\S{0,3}(39|40|41|三十九|四十)"), "health"),
    DangerRule("fallen_tree", "urgent", _r(r"树\S{0,6}(倒|断|折)\S{0,8}(路|挡|压|砸)"), "environment"),
    DangerRule("alone_unreachable", "urgent", _r(r"(独居|一个人住|孤寡)\S{0,16}"
                                                 r"(联系不上|没开门|敲门没人|不接|几天没见)|"
                                                 r"(联系不上|好几天没见)\S{0,10}(独居|一个人住)"),
               "elderly_disabled"),
    DangerRule("elevator_elderly", "urgent", _r(r"电梯\S{0,10}(坏|停|关)\S{0,16}(老人|下不了楼|上不去|下不去|八九十)"),
               "building"),
    # a lift out for a day or more where someone cannot use the stairs (said in another clause)
    DangerRule("elevator_out", "urgent", _r(r"电梯\S{0,4}(坏了|停了|停运|不动了|不运行)"), "building",
               _r(r"没人困|没困人"),
               require_text=_r(r"老人|腿不好|腿脚|下不了楼|上不去|下不去|八九十|坐轮椅|残疾|瘫|[十二三]\S?楼|\d{2}楼|"
                               r"高层|孕妇")),
)

# sentence-level guards: the danger is talked ABOUT, not happening now
_HYPOTHETICAL = _r(r"如果|万一|要是|假如|假设|预防|防范|演练|演习|培训|讲座|知识|宣传|提前了解|注意事项|以防|应急预案|"
                   r"逃生\S{0,4}(方法|技巧)|第一步该|应该怎么做|该注意啥|自救|科普|常识|"
                   r"(遇到|碰到|遇上)\S{0,8}(怎么|咋|该)|"
                   r"真\S{0,8}(的话|咋整|咋办|怎么办)|的话\S{0,4}(咋|怎么|该)|应该怎么(办|处理|逃生|做)|症状|要注意|"
                   r"注意(啥|什么)|电视剧|电影里|电视里|视频里|梦见|做梦|小说")
# said anywhere in a calm message, these make the whole of it a question for later ("想学学", "存一下")
_CALM_QUESTION = _r(r"想学|学学|学一下|了解一下|存一下|想存|科普|知识|讲讲|备着|以备")
_PAST = _r(r"上次|上回|上个月|上礼拜|上星期|前阵子|前段时间|前些天|"
           r"去年|前年|之前那|以前|那次|那场|那回|上周|后来|那件事|那个事|事后|处理得?怎么样|处理了吗|"
           r"查清楚|赔偿|保险|找谁赔|新闻|听说|是(咋|怎么)回事|前天|昨天|前几天|那天|当时|遭了|烧没了")
# feedback about a danger that is over: thanks, a banner, "found", "already out"
_OVER = _r(r"锦旗|多亏|幸亏|感谢\S{0,10}(及时|帮|救|处理)|谢谢\S{0,12}(及时|帮|救|找回|处理)|找回来了|"
           r"已经(灭|扑灭|修好|处理|找到)|"
           r"没事了|点个?赞|好评")
_NOW = _r(r"现在|还在|正在|一直|开始|快来|救命|赶紧|马上|快点|!|！|刚才|刚刚|到现在|还没|至今|仍然")
_LOUD_NOW = _r(r"救命|快来|赶紧|快派|马上来|快点|!!|！！|求求")
_NOTICE = _r(r"通知|公告|温馨提示|【转发】|转发|计划停|将于|预计|检修|提醒大家")
# practice and campaigns: the whole message is about them unless someone cries out ("演练时真着火了 救命")
_DRILL = _r(r"演练|演习|演示|培训|讲座|宣传|科普")
_RULE_QUESTION = _r(r"(能|可以|允许|让)\S{0,12}(吗|不|么|？|\?)|是否|规定|违规|违法吗|罚款|怎么(处理|处罚)|归谁管|找谁")
# "the danger is over now" said with 现在 (which alone would read as happening now)
_OVER_NOW = _r(r"现在(没了|好了|没事了?|不\S?了)|已经(没|不)(味|烟|漏)了?")
# a figure of speech (急得着火, 忙得要晕过去了) or a fear (怕着火, 担心掉下去) just before the danger word
_METAPHOR = re.compile(r"(急|热|忙|累|气|饿|愁|烦|馋|冻|困|吓)(得|的)(我|俺)?都?(快|要)?要?$")
_FEAR = re.compile(r"((?<!恐)怕(?!是)|担心|生怕|防止|以免|免得)\S{0,3}$")
_NEGATED = re.compile(r"((?<!是)不是|没有|没|并没|并非|不像|别)\S{0,3}$")
# spaces end a sentence in Chinese text, not between English words ("gas smell")
_SENTENCE_SPLIT = re.compile(r"[。！？!?；;\n]+|(?<=[^\x00-\x7f])\s+|\s+(?=[^\x00-\x7f])")


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_SPLIT.split(text) if s]


_CLAUSE_SPLIT = re.compile(r"[，,、：:]")


def _clause(sentence: str, match: re.Match[str]) -> str:
    """The comma-delimited part of `sentence` that holds the match."""
    start = max((m.end() for m in _CLAUSE_SPLIT.finditer(sentence, 0, match.start())), default=0)
    end = next((m.start() for m in _CLAUSE_SPLIT.finditer(sentence, match.end())), len(sentence))
    return sentence[start:end]


def _guarded(rule: DangerRule, sentence: str, match: re.Match[str], whole: str) -> bool | str:
    """Truthy when this hit should not count (see module docstring): "calm" when it is the danger itself
    talked about as not happening now (past, drill, notice, stopped, negated), True for a look-alike word."""
    if rule.exclude is not None and rule.exclude.search(sentence):
        return True
    if rule.require_text is not None and not rule.require_text.search(whole):
        return True
    if _METAPHOR.search(sentence[: match.start()][-6:]):
        return True
    return "calm" if _not_now(rule, sentence, match, whole) else False


def _not_now(rule: DangerRule, sentence: str, match: re.Match[str], whole: str) -> bool:
    if rule.exclude_text is not None and rule.exclude_text.search(whole) and not _LOUD_NOW.search(whole):
        return True
    if _NEGATED.search(sentence[: match.start()][-5:]):
        return True
    if (_FEAR.search(sentence[: match.start()][-5:]) or _OVER_NOW.search(whole)) and not _LOUD_NOW.search(whole):
        return True
    # "now" from this sentence, or from a loud cry anywhere ("上个月着火了，现在墙还黑着" stays past)
    now = bool(_NOW.search(sentence) or _LOUD_NOW.search(whole))
    if _HYPOTHETICAL.search(sentence) or (_CALM_QUESTION.search(whole) and not now):
        return True
    if (_PAST.search(sentence) or (_PAST.search(whole) and not _NOW.search(whole))) and not now:
        return True
    clause = _clause(sentence, match)
    if _PAST.search(clause) and not _NOW.search(clause) and not _LOUD_NOW.search(whole):
        return True  # 上个月楼上着火了，现在墙还是黑的: the "now" is about what is left
    if _OVER.search(whole) and not now:
        return True
    if _NOTICE.search(whole) and not now:
        return True
    if _DRILL.search(whole) and not _LOUD_NOW.search(whole):
        return True
    # a question about rules ("电动车能在楼道充电吗") — never for life-or-death words said with urgency
    if rule.urgency == "emergency" and _RULE_QUESTION.search(sentence) and not now and rule.name in (
            "fire", "smoke", "gas", "live_wire", "flooding"):
        return "吗" in sentence or "?" in sentence or "？" in whole
    return False


def apply_rules(text: str) -> RuleResult:
    """The highest urgency any unguarded danger phrase in `text` calls for, with the hits."""
    norm = unicodedata.normalize("NFKC", text or "")
    result = RuleResult()
    best = 0
    for sentence in _sentences(norm):
        for rule in RULES:
            for m in rule.pattern.finditer(sentence):
                guard = _guarded(rule, sentence, m, norm)
                if guard:
                    if guard == "calm" and rule.urgency == "emergency" and rule.name not in result.calmed:
                        result.calmed.append(rule.name)
                    continue
                hit = f"{rule.name}:{m.group(0)}"
                if hit not in result.hits:
                    result.hits.append(hit)
                if RANK[rule.urgency] > best:
                    best = RANK[rule.urgency]
                    result.urgency = rule.urgency
                    result.category = rule.category
                break
    return result
