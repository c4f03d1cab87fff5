"""Personal-data masking: phone numbers and resident ID numbers, half- and full-width."""

from __future__ import annotations

import pytest

from policies.masking import contains_unmasked, find_personal_data, id_check_ok, mask_text

VALID_ID = "11010519491231002X"  # GB 11643 check digit X
INVALID_ID = "110105194912310021"


def test_id_check_digit() -> None:
    assert id_check_ok(VALID_ID) and id_check_ok(VALID_ID.lower())
    assert not id_check_ok(INVALID_ID)
    assert id_check_ok("１１０１０５１９４９１２３１００２Ｘ")


@pytest.mark.parametrize("raw,kind", [(VALID_ID, "id_number"), (INVALID_ID, "id_number_invalid"),
                                      ("１１０１０５１９４９１２３１００２ｘ", "id_number")])
def test_ids_are_masked_valid_or_not(raw: str, kind: str) -> None:
    text = f"我身份证号{raw}，麻烦查一下"
    assert [p.kind for p in find_personal_data(text)] == [kind]
    masked = mask_text(text)
    assert "1949" not in masked and "１９４９" not in masked and masked.startswith("我身份证号110*")
    assert not contains_unmasked(masked)


@pytest.mark.parametrize("raw,expected", [
    ("13812345678", "138****5678"), ("138 1234 5678", "138****5678"), ("138-1234-5678", "138****5678"),
    ("+86 13812345678", "138****5678"), ("１３８１２３４５６７８", "138****5678"), ("＋８６１３８１２３４５６７８", "138****5678"),
    ("0531-88886666", "0531****66"), ("(0531)88886666", "0531****66"), ("０５３１－８８８８６６６６", "0531****66"),
])
def test_phones_are_masked(raw: str, expected: str) -> None:
    masked = mask_text(f"电话{raw}找我")
    assert masked == f"电话{expected}找我"
    assert not contains_unmasked(masked)


@pytest.mark.parametrize("text", ["3号楼2单元1201", "订单号202311221234567890123", "今天是2024年3月5日", "", "😊"])
def test_non_personal_numbers_untouched(text: str) -> None:
    assert mask_text(text) == text
