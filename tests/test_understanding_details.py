"""Details extraction (estates from grids.yaml), the split of run-on messages into clauses, and the light
import of the understanding types."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot.understanding.details import DetailsExtractor, cn_number, split_candidates
from policies.loader import load_policies

extract_details = DetailsExtractor.from_grids(load_policies().grids).extract


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


def test_estates_are_the_ones_given() -> None:
    """The extractor knows no estate of its own: another street's names, and a short form only when unique."""
    other = DetailsExtractor(["幸福家园", "幸福里小区", "阳光花园"])
    assert other.extract("芙蓉小区3号楼停水").estate is None
    assert other.extract("幸福家园5栋门口").estate == "幸福家园"
    assert other.extract("阳光那边").estate is None and other.extract("阳光3号楼").estate is None
    assert DetailsExtractor(["芙蓉东苑小区"]).extract("芙蓉东苑2栋").estate == "芙蓉东苑小区"
    assert DetailsExtractor(["曲水亭", "曲水亭小区"]).extract("曲水亭小区东门").estate == "曲水亭小区"
    assert DetailsExtractor([]).extract("芙蓉小区3号楼").building == 3


def test_types_import_is_light() -> None:
    """The dialogue types against `Classifier`; importing the types must not load the model's libraries."""
    code = ("import sys, bot.understanding.types, bot.understanding; "
            "print(sorted(m for m in ('numpy', 'sklearn', 'scipy', 'bot.understanding.service') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cn_number() -> None:
    assert [cn_number(x) for x in ("3", "三", "十二", "二十三", "两")] == [3, 3, 12, 23, 2]


def test_split_only_at_connectors() -> None:
    assert split_candidates("楼道灯坏了，还有垃圾好几天没人清") == ["楼道灯坏了", "垃圾好几天没人清"]
    assert split_candidates("电梯坏了三天了，楼上老人下不了楼") == ["电梯坏了三天了，楼上老人下不了楼"]
