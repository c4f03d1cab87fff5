"""Places a question names that the knowledge base never mentions (北京的居住证, 青岛的低保).

The knowledge base holds one city's rules. A question about another city's rules still retrieves the right local
document, so the retrieval-level decision cannot refuse it, but an answer given without a word would pass the
local rules off as the other city's. The answer then says so first (knowledge.answers).
Owns: `PLACES`, `unknown_places`. Must not: decide whether to answer.
"""

from __future__ import annotations

# Province-level divisions and the larger cities residents name, Shandong's cities included. A name the corpus
# itself mentions (the knowledge base's own city) is never flagged.
PLACES = (
    # province-level divisions
    "北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽", "福建", "江西",
    "山东", "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海", "台湾", "内蒙古",
    "广西", "西藏", "宁夏", "新疆", "香港", "澳门",
    # Shandong's cities
    "济南", "青岛", "烟台", "潍坊", "淄博", "临沂", "济宁", "泰安", "威海", "日照", "德州", "聊城", "滨州", "菏泽",
    "枣庄", "东营",
    # other large cities
    "广州", "深圳", "杭州", "南京", "苏州", "无锡", "宁波", "温州", "武汉", "成都", "西安", "郑州", "长沙", "沈阳",
    "大连", "哈尔滨", "长春", "石家庄", "太原", "合肥", "福州", "厦门", "南昌", "南宁", "昆明", "贵阳", "兰州",
    "西宁", "银川", "乌鲁木齐", "拉萨", "呼和浩特", "海口", "三亚", "保定", "唐山", "徐州", "洛阳",
)


def unknown_places(question: str, corpus_text: str) -> list[str]:
    """Places named in `question` that occur nowhere in `corpus_text`, in the order they appear."""
    found = [(question.find(p), p) for p in PLACES if p in question and p not in corpus_text]
    # a name inside another name that was found is part of it, not a second place
    names = [p for _, p in sorted(found)]
    return [p for p in names if not any(p != q and p in q for q in names)]
