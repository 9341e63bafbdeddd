import pytest
from stdnum.ua import rntrc

from payments.commission import commission_kop, quote_for
from payments.money import MoneyError, format_plain, format_uah, kop, sensible_bills
from payments.taxid import (Payer, PayerError, collect_errors, mask_id, mask_surname, normalize_id,
                            normalize_surname)
from terminal.catalogue.model import Commission, Fee, PaymentDetails

UAH = [100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000]


@pytest.mark.parametrize("value,ok", [
    ("3652504575", True),     # REFERENCE.md example: born 01.01.2000
    ("3652504576", False),    # wrong check digit
    ("365250457", False),     # 9 digits
    ("36525045751", False),   # 11 digits
    ("365250457a", False),
    ("３６５２５０４５７５", False),  # full-width digits are not ASCII digits
])
def test_rnokpp_checksum(value, ok):
    if ok:
        assert normalize_id("rnokpp", value) == value
    else:
        with pytest.raises(PayerError):
            normalize_id("rnokpp", value)


def test_check_digit_formula():
    # (Σ d×w mod 11) mod 10 with w = (-1,5,7,9,4,6,10,5,7)
    digits = "365250457"
    total = sum(int(d) * w for d, w in zip(digits, (-1, 5, 7, 9, 4, 6, 10, 5, 7)))
    assert rntrc.calc_check_digit(digits) == str((total % 11) % 10) == "5"


@pytest.mark.parametrize("raw,expected", [
    ("  Шевченко ", "Шевченко"), ("Прокопʼюк", "Прокоп'юк"), ("Косач-Квітка", "Косач-Квітка"),
    ("Smith", "Smith"), ("van  der Berg", "van der Berg"), ("Müller", "Müller"), ("Д'Артаньян", "Д'Артаньян"),
])
def test_surname_accepts(raw, expected):
    assert normalize_surname(raw) == expected


@pytest.mark.parametrize("raw,code", [
    ("", "empty"), ("   ", "empty"), ("Ш", "invalid"), ("12345", "invalid"), ("Шев4енко", "invalid"),
    ("Robert'); DROP TABLE", "invalid"), ("А" * 61, "too_long"), ("--", "invalid"), ("<script>", "invalid"),
])
def test_surname_rejects(raw, code):
    with pytest.raises(PayerError) as info:
        normalize_surname(raw)
    assert info.value.code == code


@pytest.mark.parametrize("kind,raw,expected", [
    ("rnokpp", "3652 504 575", "3652504575"), ("passport", "ак123456", "АК123456"),
    ("passport", "AK123456", "АК123456"),  # Latin look-alikes become Cyrillic
    ("passport", "001234567", "001234567"),
])
def test_ids_accept(kind, raw, expected):
    assert normalize_id(kind, raw) == expected


@pytest.mark.parametrize("kind,raw,code", [
    ("rnokpp", "", "rnokpp_empty"), ("rnokpp", "12345", "rnokpp_format"), ("rnokpp", "3652504576", "rnokpp_checksum"),
    ("passport", "АК12345", "passport_format"), ("passport", "", "passport_empty"), ("passport", "ZZ123456", "passport_format"),
    ("other", "1", "kind"),
])
def test_ids_reject(kind, raw, code):
    with pytest.raises(PayerError) as info:
        normalize_id(kind, raw)
    assert info.value.code == code


def test_payer_parse_collects_all_errors():
    errors = collect_errors("", "rnokpp", "1")
    assert [e.field for e in errors] == ["surname", "id_value"]
    payer = Payer.parse(" Шевченко ", "rnokpp", "3652504575")
    assert payer == Payer("Шевченко", "rnokpp", "3652504575")
    assert payer.masked == "Ш******о, ******4575"
    assert "Шевченко" not in payer.masked and "3652504575" not in payer.masked


def test_masks():
    assert mask_surname("Шевченко") == "Ш******о"
    assert mask_surname("van der Berg") == "v*n d*r B**g"
    assert mask_surname("Li") == "L*"
    assert mask_id("3652504575") == "******4575"
    assert mask_id("АК123456") == "****3456"


def test_money_helpers():
    assert format_uah(123456) == "1\u202f234,56 грн"
    assert format_uah(5, "en") == "0.05 UAH"
    assert format_plain(123456) == "1234.56"
    with pytest.raises(MoneyError):
        kop(1.5)
    with pytest.raises(MoneyError):
        kop(True)
    with pytest.raises(MoneyError):
        kop(-1)


@pytest.mark.parametrize("remaining,expected", [
    (0, set()),
    (3000, {100, 200, 500, 1000, 2000, 5000}),       # up to 30 UAH plus the one 50 that covers it
    (8500, {100, 200, 500, 1000, 2000, 5000, 10000}),
    (100, {100}),
    (150, {100, 200}),
    (10000000, set(UAH)),                              # nothing covers it: every bill is below
])
def test_sensible_bills(remaining, expected):
    assert sensible_bills(UAH, remaining) == expected


DETAILS = PaymentDetails("ГУК", "37989269", "UA583808050000026009702978805", "101", {"uk": "Збір"})


@pytest.mark.parametrize("commission,amount,expected", [
    (Commission(), 8500, 0),
    (Commission("fixed", fixed_kop=500), 8500, 500),
    (Commission("percent", percent_bp=150), 8500, 128),          # 127.5 → 128 (half up)
    (Commission("percent", percent_bp=150), 8300, 125),          # 124.5 → 125
    (Commission("percent", percent_bp=100, min_kop=300), 8500, 300),
    (Commission("percent", percent_bp=100, max_kop=5000), 10_000_000, 5000),
    (Commission("percent", percent_bp=100, min_kop=300, max_kop=5000), 100_000, 1000),
])
def test_commission_rules(commission, amount, expected):
    assert commission_kop(commission, amount) == expected
    quote = quote_for(Fee(amount, {"uk": "x"}, DETAILS, commission))
    assert quote.total_kop == amount + expected and isinstance(quote.total_kop, int)


def test_commission_rejects_unknown_kind():
    with pytest.raises(MoneyError):
        commission_kop(Commission("weird"), 100)
