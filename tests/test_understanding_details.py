"""Details extraction and the split of run-on messages into clauses."""

from __future__ import annotations

import pytest

from bot.understanding.details import cn_number, extract_details, split_candidates


@pytest.mark.parametrize("text,building,unit,room", [
    ("3号楼2单元的楼道灯坏了", 3, 2, None), ("三号楼电梯不动了", 3, None, None), ("3#楼下有个井盖没了", 3, None, None),
    ("12栋门口堆满垃圾", 12, None, None), ("3-2-1201家里停水", 3, 2, "1201"), ("3号楼2单元1201漏水", 3, 2, "1201"),
    ("十二栋二单元", 12, 2, None), ("３号楼２单元１２０１", 3, 2, "1201"), ("楼道灯坏了", None, None, None),
])
def test_building_unit_room(text: str, building, unit, room) -> None:
    d = extract_details(text)
    assert (d.building, d.unit, d.room) == (building, unit, room)


def test_estate_place_time() -> None:
    d = extract_details("曲水亭小区东门口的井盖丢了，从早上到现在没人管")
    assert d.estate == "曲水亭小区" and d.place is not None and "东门" in d.place
    assert d.time_text is not None and "从早上到现在" in d.time_text
    assert extract_details("芙蓉小区菜市场门口昨晚十点有人打架").time_text.startswith("昨晚十点")  # type: ignore[union-attr]
    assert extract_details("地下车库漏水三天了").place == "地下车库"
    assert extract_details("地下车库漏水三天了").time_text == "三天了"
    assert extract_details("曲水花园5栋").estate == "曲水花园"
    assert extract_details("楼道灯坏了").estate is None


def test_phone_and_id_masked_and_not_read_as_rooms() -> None:
    d = extract_details("电话13812345678 身份证11010519491231002X")
    assert d.phones == ["138****5678"] and d.id_numbers == ["110***********002X"]
    assert d.room is None and d.building is None


def test_cn_number() -> None:
    assert [cn_number(x) for x in ("3", "三", "十二", "二十三", "两")] == [3, 3, 12, 23, 2]


def test_split_only_at_connectors() -> None:
    assert split_candidates("楼道灯坏了，还有垃圾好几天没人清") == ["楼道灯坏了", "垃圾好几天没人清"]
    assert split_candidates("电梯坏了三天了，楼上老人下不了楼") == ["电梯坏了三天了，楼上老人下不了楼"]
