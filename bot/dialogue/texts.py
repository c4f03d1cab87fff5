"""Every Chinese sentence the dialogue engine says, in one place (wording is reviewed here, not in code).

Owns: reply templates, button labels, the command lists for `setMyCommands`, safety guidance.
Must not: decide anything; callers pick the text and fill the blanks.
"""

from __future__ import annotations

# ---------------- commands (exported as data for Telegram's setMyCommands) ----------------
COMMANDS_RESIDENT: list[tuple[str, str]] = [
    ("start", "开始使用 / 隐私说明"),
    ("mycases", "查看我反映的事项"),
    ("address", "设置或修改我的住址"),
    ("help", "我能帮您做什么"),
    ("myid", "查看我的渠道、ID 和角色"),
]
COMMANDS_WORKER: list[tuple[str, str]] = [
    ("tasks", "我的待办工单"),
    ("leave", "请假（新工单交给其他网格员）"),
    ("back", "销假，恢复接新工单"),
    ("wishes", "心愿墙：认领居民的微心愿（志愿者、党员）"),
    ("help", "网格员使用说明"),
    ("myid", "查看我的渠道、ID 和角色"),
]
COMMANDS_ADMIN: list[tuple[str, str]] = [
    ("stats", "工单统计摘要"),
    ("broadcast", "向某网格居民发通知：/broadcast 网格号 内容"),
    ("register_worker", "登记网格员：/register_worker 电报ID 网格号 岗位"),
    ("help", "管理员使用说明"),
    ("myid", "查看我的渠道、ID 和角色（登记网格员时要用）"),
]

# ---------------- first contact and consent ----------------
WELCOME = (
    "您好！我是泉小智，社区的网格服务助手。政策咨询、报修、反映问题、邻里纠纷、微心愿，都可以跟我说，"
    "我会帮您转给负责的网格员，并跟进到办好为止。"
)
PRIVACY = (
    "【隐私说明】为了办理您反映的事项，我们会保存：您的留言（电话号码、身份证号会自动打码）、"
    "您设置的住址（小区、楼号、单元）和工单办理记录。这些信息只用于办理您的事项，"
    "只有负责办理的网格工作人员能看到，不会提供给其他人；工单记录保存 3 年后删除。\n"
    "您同意后，我才会保存这些信息。"
)
CONSENT_ASK = "您同意吗？"
BTN_AGREE = "同意"
BTN_DISAGREE = "不同意"
CONSENT_THANKS = "谢谢您的信任！接下来请设置一下您的住址，方便把事情交给您所在网格的网格员。"
CONSENT_DECLINED = (
    "好的，尊重您的选择。不同意的情况下，我仍然可以回答政策问题、提供紧急情况的处置指引，"
    "但不会登记工单，也不会保存您的住址。以后想登记事项，发送 /start 重新选择即可。"
)
NEED_CONSENT_FOR_CASE = (
    "登记工单需要先同意隐私说明（我们要保存您的留言和住址才能办理）。"
    "发送 /start 查看说明并选择「同意」。"
)

# ---------------- address ----------------
ADDRESS_PICK_COMMUNITY = "请选择您所在的社区（也可以直接输入，例如：芙蓉小区3号楼2单元）："
ADDRESS_PICK_ESTATE = "请选择小区："
ADDRESS_PICK_BUILDING = "请选择楼号："
ADDRESS_PICK_UNIT = "请选择单元："
ADDRESS_NOT_UNDERSTOOD = (
    "抱歉，我没认出这个地址。请点按钮选择，或按「小区名+楼号+单元」输入，例如：芙蓉小区3号楼2单元。"
)
ADDRESS_OUTSIDE = "抱歉，{estate}{building}号楼不在本街道的网格范围内，请核对楼号，或点按钮重新选择。"
ADDRESS_BOUND = "好的，已记下您的住址：{address}（{grid}）。以后有事直接跟我说就行。"
ADDRESS_SKIP = "暂不设置"
ADDRESS_SKIPPED = "好的，住址可以以后再设（发送 /address）。有什么需要，直接跟我说。"
ADDRESS_NEEDS_CONSENT = "设置住址需要先同意隐私说明，发送 /start 查看。"
# a floor or a room is not the building; a name that only looks like an estate is confirmed before binding
ADDRESS_FLOOR_NOT_BUILDING = "{what}，我还需要知道楼号：您住{estate}几号楼？请点按钮选择，或直接输入（例如：5号楼）。"
ADDRESS_IS_FLOOR = "{floor}楼是楼层"
ADDRESS_IS_ROOM = "{room}是房间号"
ADDRESS_ASK_BUILDING = "您住{estate}几号楼？请点按钮选择，或直接输入（例如：5号楼）。"
ADDRESS_CONFIRM_ESTATE = "您说的是{estate}吗？"
ADDRESS_NOT_THAT_ESTATE = "好的，请选择您所在的社区，或把小区名再输入一次："
BTN_YES_ESTATE = "是"
BTN_NOT_ESTATE = "不是"
BTN_PICK_ESTATE = "选小区"

# ---------------- help ----------------
HELP_RESIDENT = (
    "我可以帮您：\n"
    "• 咨询政策：比如「居住证怎么办」「高龄补贴怎么领」\n"
    "• 报修、反映问题：比如「3号楼楼道灯坏了」\n"
    "• 邻里纠纷调解、微心愿登记\n"
    "• 紧急情况：会先告诉您怎么做、打什么电话，并立刻通知网格员\n"
    "常用命令：/mycases 查看我的事项　/address 修改住址　/start 隐私说明"
)
HELP_WORKER = (
    "网格员使用说明：\n"
    "• 新任务会推送给您，点「接单」「已联系」「办结」即可处理；需要时可「转派」或「申请延期」\n"
    "• /tasks 查看待办工单（按时限排序）\n"
    "• /wishes 心愿墙：志愿者和党员在这里认领微心愿，认领后可「汇报进展」，办好点「已完成」\n"
    "• 办结时可以补一句说明，也可以发一张现场照片\n"
    "• 写进展或回复居民时可以点常用语\n"
    "• /leave 请假（新工单交给其他网格员），/back 销假"
)
HELP_ADMIN = (
    "管理员命令：\n"
    "• /stats 工单统计摘要\n"
    "• /broadcast 网格号 内容 —— 向该网格居民发通知\n"
    "• /register_worker 电报ID 网格号 岗位 —— 登记网格员（岗位：full_time/part_time/volunteer…）"
)

# ---------------- input problems ----------------
EMPTY_INPUT = "您好像发了一条空消息。请用文字说说您遇到的问题或想咨询的事，发送 /help 可以看我能做什么。"
TOO_LONG = "您的消息比较长，我先按前 {limit} 个字来处理。"
UNSUPPORTED = "抱歉，我暂时只能看懂文字和照片。请用文字描述一下您的问题，我来帮您处理。"

# voice messages (bot.dialogue.voice)
VOICE_READ_BACK = "您说的是：{text}，对吗？"
BTN_VOICE_YES = "对"
BTN_VOICE_NO = "不对"
VOICE_SAY_AGAIN = "不好意思，没听准。请再说一遍（慢一点、离话筒近一点），或者直接打字告诉我。"
VOICE_EMPTY = "这段语音里没有听到说话声。请再说一遍，或者直接打字告诉我。"
VOICE_BROKEN = "这条语音文件好像损坏了，打不开。请重新录一段，或者直接打字告诉我。"
VOICE_UNSUPPORTED = "这种语音格式我暂时打不开。请用聊天软件自带的“按住说话”重新录一段，或者直接打字告诉我。"
VOICE_CASE_TITLE = "语音留言（{seconds}秒）"
VOICE_CASE_TEXT = "居民发来一条{seconds}秒的语音留言，请收听语音后联系居民。"
VOICE_OFFLINE = ("收到您的语音。我现在没法把语音转成文字，已作为语音留言交给网格员收听，"
                 "工单号 {code}，{handler}会联系您。")
VOICE_TOO_LONG = ("这条语音超过了{limit}秒，我没法自动转成文字，已作为语音留言交给网格员收听，工单号 {code}，"
                  "{handler}会联系您。以后可以分几段短一点说，或者直接打字。")
VOICE_KEPT_FOR_CONSENT = "收到您的语音。请先看一下下面的隐私说明，同意后我把这段语音交给网格员收听。"
VOICE_NOT_FILED = "这段语音没能登记成工单。请直接打字告诉我您的问题；急事请拨打 12345。"
VOICE_WORKER = "收到语音。工作人员请用文字或按钮操作工单，语音暂不能作为处理记录。"
BUTTON_EXPIRED = "该按钮已过期，请以最新的消息为准。"
SYSTEM_ERROR = "系统开小差了，请稍后再试（编号 {cid}）。"
UNKNOWN_COMMAND = "没有这个命令。发送 /help 查看我能做什么。"

# ---------------- chitchat, off-topic, injection ----------------
CHITCHAT = (
    "您好！我是社区网格服务助手，能帮您咨询政策、报修、反映问题、调解纠纷、登记微心愿。"
    "有什么需要，直接跟我说就行。"
)
THANKS_REPLY = "不客气，能帮上忙就好！有其他需要随时找我。"
INJECTION = (
    "抱歉，这个我不能做。我只能帮您办理您本人的社区事务，不会透露系统设置或其他居民的信息。"
    "有什么社区的事需要帮忙吗？"
)

# ---------------- clarification ----------------
CLARIFY = "我想确认一下：您是想咨询政策，还是报修/反映问题？"
BTN_CLARIFY_INQUIRY = "咨询政策"
BTN_CLARIFY_REPORT = "报修反映"
BTN_CLARIFY_EMERGENCY = "紧急求助"
BTN_CLARIFY_OTHER = "其他"
BTN_CLARIFY_DISPUTE = "邻里纠纷，想找人调解"
CLARIFY_OTHER = "好的。您可以再具体说说，或者发送 /help 看看我能帮您做什么。"

# ---------------- policy answers ----------------
SOURCES = "来源："
BTN_USEFUL = "有用"
BTN_NOT_USEFUL = "没用"
BTN_HUMAN = "转人工"
USEFUL_THANKS = "谢谢您的反馈！"
NOT_USEFUL_THANKS = "抱歉没帮上忙。需要的话点「转人工」，网格员会联系您。"
NOT_ANSWERED = "这个问题我没有找到可靠的政策依据，不敢乱说。"
# an unanswered question worth a person: one message, the case already open (who answers and by when)
NOT_ANSWERED_HANDED_OFF = (
    "这个问题我没有找到可靠的政策依据，不敢乱说。已为您转给{handler}（工单号 {code}），{due}，会由工作人员直接答复您。"
)
BTN_MORE = "详细"
MORE_EXPIRED = "详细内容已经发过了，请往上翻看。"
ASK_WHICH_DOC = "您问的是下面哪一项？"
BTN_NONE_OF_THESE = "都不是，找工作人员"
HUMAN_OPENED = "已为您转给{handler}，工单号 {code}，{due}。"
HUMAN_ALREADY = "这个问题已经转给工作人员了（工单号 {code}），请留意回复。"
HUMAN_NO_CONSENT = "转人工需要登记工单，需要您先同意隐私说明：发送 /start 查看。"

# ---------------- reports ----------------
ASK_WHERE = "请问具体在哪里？比如几号楼几单元，或者哪条路、哪个位置。"
ASK_WHAT = "能具体说说是什么东西出了什么问题吗？比如「3号楼2单元楼道灯不亮」。"
ASK_PHOTO = "如果方便，可以拍一张照片发给我，网格员处理会更快。没有的话点「跳过」。"
BTN_SKIP = "跳过"
PHOTO_RECEIVED = "照片收到了。"
CONFIRM_ONE = "我帮您登记：\n类别：{category}\n地点：{where}\n描述：{text}\n对吗？"
CONFIRM_MANY = "我帮您登记 {n} 件事：\n{items}\n地点：{where}\n对吗？"
CONFIRM_ITEM = "{i}. 【{category}】{text}"
BTN_YES = "对"
BTN_NO = "不对(修改)"
ASK_CORRECTION = "好的，请告诉我哪里不对：直接说正确的地点（如「5号楼2单元」）或重新描述一下问题。"
CASE_OPENED = "已登记，工单号 {code}。由{handler}负责，{due}。办理进展我会及时告诉您。"
CASE_DUPLICATE = (
    "同一问题已有人反映，已合并跟进（您的工单号 {code}），{handler}正在处理，有进展会同时通知您。"
)
CASE_HOTSPOT = "附近还有其他居民反映了同类问题，已合并为一件事集中处理。"
WHERE_UNKNOWN = "（未提供，网格员会联系您确认）"
WHERE_HOME = "{address}"
DUE_RESPONSE = "预计 {when} 前响应"
DUE_NONE = "会尽快响应"
NO_ADDRESS_DUTY = "您还没有设置住址，我先转给社区值班台，他们会和您确认地点（/address 可以设置住址）。"
CANCELLED = "好的，已取消这次登记。有需要随时再说。"
ADDRESS_UNCONFIRMED_DUTY = "地址我没能认出来，先把工单转给社区值班台（地址待确认），他们会联系您核实地点。"
ADDRESS_KEPT_PROBLEM = "好的，您反映的问题我先记下了：「{text}」。\n还需要您的住址才能交给对应的网格员："
ADDRESS_GIVE_UP = "没关系，地址可以以后再设（发送 /address）。有什么需要，直接跟我说。"
ADDRESS_RETRY = "还是没认出这个地址。请按「小区名+楼号+单元」输入（例如：芙蓉小区3号楼2单元），或点按钮选择。"
SKIPPED_WHERE = "好的，地点先空着，网格员会联系您确认。"

# ---------------- emergencies ----------------
EMERGENCY_GAS = (
    "⚠️ 闻到燃气味，请立即：\n"
    "1. 不要开关电器、不要开灯、不要用明火（不要点火）；\n"
    "2. 轻轻打开门窗通风，关闭燃气总阀；\n"
    "3. 马上离开到室外，再拨打燃气公司的抢修电话（印在燃气表或缴费单上）或 119。"
)
EMERGENCY_FIRE = (
    "⚠️ 着火了请立即拨打 119！\n"
    "1. 先带家人撤离，用湿毛巾捂住口鼻，弯腰沿安全出口走楼梯，不要乘电梯；\n"
    "2. 火势小可用灭火器，电器起火先断电，油锅起火盖锅盖，不要泼水；\n"
    "3. 不要返回屋内取东西。"
)
EMERGENCY_MEDICAL = (
    "⚠️ 有人晕倒或急病，请立即拨打 120！\n"
    "1. 不要随意搬动病人，让其平躺、保持呼吸道通畅；\n"
    "2. 没有呼吸心跳且您会的话，可以做胸外按压；\n"
    "3. 派人到楼下接救护车。"
)
EMERGENCY_POLICE = "⚠️ 如果有人身危险，请先确保自己安全，立即拨打 110 报警。"
EMERGENCY_MISSING = "⚠️ 有人走失请立即拨打 110 报警，说明走失者的样貌、衣着和最后出现的位置。"
EMERGENCY_TRAPPED = "⚠️ 被困请保持冷静，拨打 119；电梯被困请按电梯内警铃、拨打电梯上的救援电话，不要扒门。"
EMERGENCY_WATER = ("⚠️ 家里进水/水管爆裂，请先关闭水表总阀，切断电源防止触电，"
                   "再拨打供水公司的抢修电话（印在水费单上）或 12345。")
EMERGENCY_ELECTRIC = "⚠️ 电线落地或有人触电：远离电线至少 10 米，不要用手拉触电的人，拨打 95598 供电抢修和 110/120。"
EMERGENCY_GENERIC = "⚠️ 如果有生命危险，请立即拨打 110（报警）、119（火警）或 120（急救）。"
EMERGENCY_OPENED = "我已登记紧急工单 {code}，并立刻通知了{handler}，{due}。请先确保自身安全。"
EMERGENCY_NO_CONSENT = "为了不耽误救助，我用您这条消息（电话号码等已打码）登记了工单，没有保存其他信息。"
EMERGENCY_NO_ADDRESS = "您还没有设置住址，值班台会尽快与您联系确认地点；方便的话请直接回复具体位置。"
SELF_HARM = (
    "听到您这么说，我很担心您。您现在的感受很重要，您不是一个人在面对。\n"
    "请拨打心理援助热线和专业的人聊一聊：全国心理援助热线 400-161-9995、12356，24 小时有人接听。\n"
    "如果您现在有危险，请马上拨打 110 或 120。我也已经请网格员尽快联系您、陪您一起想办法。"
)

# ---------------- status ----------------
MYCASES_HEADER = "您反映的事项："
MYCASES_EMPTY = "您还没有反映过事项。有需要直接跟我说就行。"
MYCASES_ITEM = "• {code}【{category}】{title}\n  状态：{status}{promise}"
CASE_NOT_FOUND = "没有找到这个工单，请核对工单号，或发送 /mycases 查看您的事项。"
STATUS_NAMES = {
    "new": "已登记",
    "assigned": "已派给网格员",
    "accepted": "网格员已接单",
    "in_progress": "正在办理",
    "resolved": "已办结，待您评价",
    "closed": "已完成",
    "reopened": "重新办理中",
}
PROMISE_RESPONSE = "，预计 {when} 前响应"
PROMISE_RESOLVE = "，预计 {when} 前办结"

# ---------------- rating ----------------
RATE_ASK = "工单 {code} 已办结，请您评价："
RATE_THANKS = "谢谢您的评价！"
RATE_REOPENED = "抱歉没有办好，工单 {code} 已重新交给网格员办理，会尽快联系您。"
BTN_NOT_FIXED = "没解决"
FEEDBACK_NO_CASE = "谢谢您的反馈！有需要随时找我。"

# ---------------- workers ----------------
WORKER_HELLO = "您好，{name}。发送 /tasks 查看待办工单。"
TASKS_EMPTY = "您目前没有待办工单。"
TASKS_HEADER = "您的待办工单（按时限排序）："
TASK_ITEM = "{code}【{category}·{urgency}】{title}\n地点：{where}\n状态：{status}，{due}"
TASK_DUE_RESPONSE = "{when} 前响应"
TASK_DUE_RESOLVE = "{when} 前办结"
BTN_ACCEPT = "接单"
BTN_RESPOND = "已联系"
BTN_RESOLVE = "办结"
BTN_TRANSFER = "转派"
BTN_EXTEND = "申请延期"
BTN_DEFAULT_NOTE = "不用说明"
BTN_CANCEL = "取消"
ACCEPTED = "已接单：{code}。联系居民后点「已联系」，办好后点「办结」。"
ASK_RESPOND_NOTE = "工单 {code}：请简单写一句联系情况（例如「已电话联系，明天上午上门」），或点「不用说明」。"
DEFAULT_RESPOND_NOTE = "网格员已联系居民"
RESPONDED = "已记录：{code} 已联系居民。办好后点「办结」。"
ASK_RESOLVE_NOTE = (
    "工单 {code}：请写一句办理结果（例如「已更换灯泡」），也可以直接发现场照片；没什么要说的就点「直接办结」。"
)
BTN_RESOLVE_NOW = "直接办结"
DEFAULT_RESOLVE_NOTE = "已办结"
ASK_RESOLVE_PHOTO = "可以发一张现场照片作为办结凭证，没有就点「跳过」。"
RESOLVED = "工单 {code} 已办结，已请居民评价。辛苦了！"
ASK_TRANSFER_TO = "工单 {code} 要转给谁？"
ASK_TRANSFER_REASON = "请写一句转派原因，或点「不用说明」。"
DEFAULT_TRANSFER_REASON = "不属于本岗位职责"
TRANSFERRED = "工单 {code} 已转派给{handler}。"
ASK_EXTEND_HOURS = "工单 {code} 需要延期多久？"
DISPUTE_PARTIES = "当事双方：{parties}"
TRANSFER_REASON_KEPT = "已记下转派原因：{reason}。工单 {code} 要转给谁？"
EXTEND_REASON_KEPT = "已记下延期原因：{reason}。工单 {code} 需要延期多久？"
PHONE_KEPT = "已记下您的回电号码 {phone}，补充到了工单 {code}，只有负责的网格员能看到，需要时会打给您。"
PHONE_KEPT_NO_CASE = "已记下您的回电号码 {phone}，只有负责您事项的网格员能看到。有什么事，直接跟我说就行。"
EXTEND_REQUESTED = "已为工单 {code} 申请延期 {hours} 小时，等待网格长审批。"
EXTEND_APPROVED = "已批准工单 {code} 延期。"
WORKER_CANCELLED = "好的，已取消。"
WORKER_UNKNOWN = "请点任务消息下面的按钮处理工单，或发送 /tasks 查看待办。"
WORKER_PHOTO_UNEXPECTED = "收到照片。如需作为办结凭证，请先点工单的「办结」。"

# ---------------- admin ----------------
NOT_ADMIN = "这个命令只有管理员可以使用。"
BROADCAST_USAGE = "用法：/broadcast 网格号 通知内容，例如：/broadcast FU01 明天上午停水"
BROADCAST_DONE = "已向 {grid} 的 {n} 位居民发送通知。"
BROADCAST_UNKNOWN_GRID = "没有找到网格 {grid}。"
REGISTER_USAGE = "用法：/register_worker 电报ID 网格号 岗位，例如：/register_worker 123456 FU01 full_time"
REGISTER_DONE = "已登记：{name}（{grid}，{role}，电报ID {tid}）。"
REGISTER_BAD_ROLE = "岗位只能是：{roles}"
STATS_HEADER = "工单统计："
BROADCAST_PREFIX = "【社区通知】"

EXTRA_ROLE_NAMES = {"volunteer_lead": "志愿者队长", "deputy": "兼职网格员（副）"}
PHOTO_WHAT_ABOUT = "这张照片是关于什么问题的？请用文字说明一下，我帮您登记。"
LOCATION_RECEIVED = "位置收到了。"
LOCATION_WHAT_ABOUT = "请问这里有什么问题？请用文字说明一下，我帮您登记。"
LOCATION_WHERE = "定位（{lat:.5f}, {lng:.5f}）"
EXTEND_REASON_DEFAULT = "需要更多时间办理"
ASK_EXTEND_REASON = "请写一句延期原因（例如「需要等配件」），或点「不用说明」。"
EXTEND_DENIED = "已驳回工单 {code} 的延期申请。"
NOT_ANSWERED_RETRY = "您可以换个说法再问一次；需要工作人员解答的话，点「转人工」。"

# ---------------- what quanbot itself knows: the resident's grid, community and duty desk (grids.yaml) ----------------
FACT_HOME = "您家（{address}）属于{grid}。"
FACT_WORKER = "负责您这个网格的是{role}{person}{phone}。"
FACT_WORKER_COVER = "{role}这段时间不在岗，由{cover}{person}代为负责{phone}。"
FACT_PHONE = "，工作电话 {phone}"
FACT_NO_PHONE = "网格员的工作电话还没有登记在我这里。有事直接跟我说就行，我马上转给网格员。"
FACT_SUPERVISOR = "{community}的网格长是{person}{phone}，负责管理社区的各个网格和网格员。"
FACT_COMMUNITY = "{community}居委会："
FACT_ADDRESS = "地址：{address}"
FACT_HOURS = "办公时间：{hours}"
FACT_COMMUNITY_PHONE = "电话：{phone}"
FACT_OTHER_PHONE = "也可以打社区电话 {phone}。"
FACT_DUTY = "下班以后、周末和节假日，请找{desk}。"
FACT_DUTY_HOURS = "，值班时间：{hours}"
FACT_DUTY_EMERGENCY = "遇到着火、煤气泄漏、有人受伤等紧急情况，请直接拨打 119 / 120 / 110。"
FACT_TELL_ME = "有事也可以直接跟我说，我会转给负责的工作人员。"
FACT_NO_ADDRESS = "您还没有设置住址，我还不知道您属于哪个网格。本街道的社区："
FACT_COMMUNITY_LINE = "• {community}：{details}"
FACT_BIND_OFFER = (
    "设置住址后，我就能告诉您网格员是谁、怎么联系。请选择您所在的社区（也可以直接输入，例如：芙蓉小区3号楼2单元）："
)
FACT_BIND_NEEDS_CONSENT = "想知道您的网格员是谁，需要先设置住址：发送 /start 查看隐私说明并选择「同意」。"

# ---------------- worker ↔ resident through the bot (casestore.relay), approvals ----------------
BTN_RELAY = "回复居民"
BTN_ASK_PHONE = "请居民留电话"
BTN_SHOW_PHONE = "查看电话"
BTN_APPROVE = "批准"
BTN_DENY = "驳回"
ASK_RELAY_TEXT = "工单 {code}：请输入要发给居民的话，我会以「网格员」的名义转给居民（双方都看不到对方的电话号码）。"
RELAY_SENT = "已发给居民（工单 {code}）。居民回复后我会转给您。"
RELAY_NEEDS_TEXT = "请输入要发给居民的文字，或点「取消」。"
ASK_PHONE_REASON = "工单 {code}：请写一句为什么需要居民的电话（例如「需要电话确认上门时间」），或点「不用说明」。"
DEFAULT_PHONE_REASON = "需要电话与您沟通办理细节"
PHONE_ASKED = "已请居民留回电号码（工单 {code}），居民留下后我会通知您。"
SHOW_PHONE = "工单 {code} 居民的回电号码：{phone}（仅供办理本工单使用，请勿外传）"
NO_PHONE = "工单 {code} 的居民还没有留回电号码。可以点「请居民留电话」请居民留一个。"
RELAY_TO_WORKER_SENT = "已转给负责的网格员（工单 {code}），有回复我会告诉您。"
RELAY_PHONE_KEPT = "收到，已转告负责的网格员（工单 {code}），只有他能看到您的号码。"
RELAY_REPLY_ASK = "请直接输入您想对网格员说的话（工单 {code}），我帮您转达。"
BTN_RELAY_REPLY = "回复网格员"
# a text during an open relay that plainly was something new: handled as such, and the resident is told
RELAY_NOT_TAKEN = "（这条我按新的事情处理了，没有转给工单 {code} 的网格员。要回复网格员，请点「回复网格员」再发。）"
PENDING_HEADER = "待审批的延期申请："
PENDING_ITEM = "{code}「{title}」\n申请人：{who}\n办结时限：{due} → {until}\n理由：{reason}"

# ---------------- reaching a person (issue #15) ----------------
# 转人工 typed or pressed: who gets back to the resident, and by when (grids.yaml names and hours)
HANDOFF_OPENED = "已为您转给{handler}{person}（工单号 {code}），{due}，会直接联系您。{hours}"
HANDOFF_JOINED = "您要找人工的事已经在办了（工单号 {code}），刚才说的我也补充进去了。{handler}{person}会联系您，{due}。"
HANDOFF_WORKER_HOURS = "网格员上班时间：{hours}。"
HANDOFF_OFF_HOURS = "现在是下班时间，网格员上班后会尽快联系您；着急的话请找{desk}。"
HANDOFF_RECENT = "居民最近说："
HANDOFF_NO_CONSENT = (
    "要让工作人员在这里回复您，需要先同意下面的隐私说明，同意后我马上转给您的网格员。"
    "着急的话也可以直接打社区电话：{phones}。"
)
# the emergency lane: safety first, the place next, consent last
EMERGENCY_ASK_PLACE = (
    "请马上告诉我具体位置：小区、几号楼几单元（例如：曲水花园5号楼2单元），或者直接发送定位。我会补到紧急工单上。"
)
EMERGENCY_PLACE_ADDED = "位置已补到紧急工单 {code}：{where}。已通知{handler}，请先确保自身安全。"
EMERGENCY_LOCATION_ADDED = "定位已补到紧急工单 {code}，网格员会按定位赶过去，请先确保自身安全。"
PRIVACY_AFTER_EMERGENCY = "紧急情况下先救助，依法可以不经同意先处理。下面是隐私说明，您看一下："
# 没修好 in words, and later words about an open case
REOPENED_IN_WORDS = "抱歉没有办好，工单 {code}（{title}）已重新交给网格员办理，会尽快联系您。"
NOTE_ADDED = "已补充到工单 {code}（{title}），网格员会看到。"
NOTE_WHICH = "这是工单 {code}（{title}）的补充，还是一个新问题？"
BTN_NOTE_ATTACH = "补充到工单 {code}"
BTN_NOTE_NEW = "新问题"

# ---------------- a grid team shares the load (bot.dialogue.team) ----------------
LEAVE_ON = ("已登记您请假。新工单会交给本网格的其他网格员（都不在时交网格长），"
            "每天早上的工单提醒也暂停。回来后发 /back。")
LEAVE_HELD = "\n您手上还有 {n} 件在办工单，需要别人接手的，请在工单上点「转派」（发 /tasks 查看）。"
LEAVE_ALREADY = "您已经是请假状态，新工单不会分派给您。回来后发 /back。"
LEAVE_OFF = "欢迎回来！新工单会恢复分派给您，发 /tasks 查看手上的工单。"
LEAVE_NOT_ON = "您现在不在请假状态，新工单照常分派给您。要请假请发 /leave。"
QUICK_HINT = "（也可以点下面的常用语）"

# ---------------- the 微心愿 wall (bot.dialogue.wishes) ----------------
WISH_CONFIRM_NOTE = "（确认后会隐去您的姓名、门牌和电话，发布到心愿墙，由本网格和社区的志愿者、党员认领。）"
WISH_PUBLISHED = ("已登记您的微心愿（编号 {code}，{kind}）。已隐去您的姓名、门牌和电话，发布到心愿墙，"
                  "志愿者或党员认领后我会马上告诉您。{due}")
WISH_DUE = "我们争取在 {when} 前帮您办好。"
WISH_PAIRING = "这是长期的心愿，认领的志愿者会和您结对帮扶，定期回访。"
WISH_CLAIMED = "认领成功！微心愿【{code}】：{text}\n请通过「汇报进展」告诉居民您的安排，办好后点「已完成」。"
BTN_WISH_CLAIM = "认领心愿"
BTN_WISH_PROGRESS = "汇报进展"  # the labels casestore.wishes.claimer_buttons gives
BTN_WISH_DONE = "已完成"
ASK_WISH_PROGRESS = "请用一句话说说微心愿【{code}】的进展（例如：周六上午9点上门理发），我会转告居民。"
WISH_PROGRESS_SENT = "已把进展转告居民（微心愿【{code}】）。"
WISH_DONE_SENT = "已请居民确认微心愿【{code}】是否达成，居民确认后我会告诉您。"
WISH_FULFILLED = "太好了！您的微心愿【{code}】已达成，谢谢您告诉我。有新的心愿随时跟我说。"
WISH_NOT_YET = "好的，已告诉志愿者微心愿【{code}】还没有达成，对方会再和您联系。"
WISH_WALL_EMPTY = "心愿墙上暂时没有待认领的心愿，有新心愿时我会推送给您。"
WISH_WALL_HEADER = "心愿墙（本网格和社区）："
WISH_WALL_ITEM = "【{code}】{kind}·{status}：{text}"
WISH_NOTE_EMPTY = "请用文字说说进展，或点「取消」。"
