from firmware import settings, storage
from mpcompat import TempDir, raises

HW = 32


def test_defaults_follow_contract():
    d = settings.defaults(HW)
    assert d["enabled"] is True and d["max_current_a"] == 16 and d["min_current_a"] == 6
    assert d["auth_required"] is False and d["standalone"] is True
    assert d["fallback_current_a"] == 6 and d["fallback_phases"] == 3
    assert d["phase_rotation"] == "L1L2L3" and d["local_auth_ids"] == []
    assert d["auth_timeout_s"] == 60 and d["state_interval_s"] == 10 and d["session_retry_s"] == 30


def test_valid_partial_document():
    out = settings.validate({"max_current_a": 20, "standalone": False, "phase_rotation": "L2L3L1"}, HW)
    assert out == {"max_current_a": 20, "standalone": False, "phase_rotation": "L2L3L1"}


def test_each_bad_value_is_refused_with_its_code():
    cases = [
        ({"max_current_a": 33}, "out_of_range"),
        ({"max_current_a": -1}, "out_of_range"),
        ({"max_current_a": "16"}, "bad_request"),
        ({"max_current_a": True}, "bad_request"),
        ({"min_current_a": 5}, "out_of_range"),
        ({"enabled": 1}, "bad_request"),
        ({"auth_timeout_s": 9}, "out_of_range"),
        ({"auth_timeout_s": 10.5}, "bad_request"),
        ({"fallback_phases": 2}, "out_of_range"),
        ({"fallback_phases": True}, "out_of_range"),
        ({"phase_rotation": "L1L1L1"}, "out_of_range"),
        ({"local_auth_ids": "04A1"}, "bad_request"),
        ({"local_auth_ids": [""]}, "bad_request"),
        ({"local_auth_ids": ["x"] * 101}, "out_of_range"),
        ({"colour": "red"}, "bad_request"),
        ([1, 2], "bad_request"),
    ]
    for doc, code in cases:
        e = raises(settings.SettingsError, settings.validate, doc, HW)
        assert e.code == code, (doc, e.code)


def test_all_or_nothing():
    cur = settings.defaults(HW)
    raises(settings.SettingsError, settings.merged, cur, {"max_current_a": 10, "bogus": 1}, HW)
    assert cur["max_current_a"] == 16
    new = settings.merged(cur, {"max_current_a": 10}, HW)
    assert new["max_current_a"] == 10 and cur["max_current_a"] == 16


def test_load_repairs_bad_keys():
    s = settings.load({"max_current_a": 99, "standalone": False, "junk": 1}, HW)
    assert s["max_current_a"] == 16 and s["standalone"] is False and "junk" not in s


def test_storage_atomic_roundtrip():
    d = TempDir("store")
    st = storage.Storage(d.path + "/flash")
    assert st.read_json("a.json", 5) == 5
    st.write_json("a.json", {"x": [1, 2]})
    st.write_json("a.json", {"x": [3]})
    assert st.read_json("a.json") == {"x": [3]}
    assert st.list("a") == ["a.json"]
    st.write_bytes("b.json", b"{torn")
    assert st.read_json("b.json", "dflt") == "dflt"
    st.remove("a.json")
    assert st.read_json("a.json") is None


def _bad_text():
    # a lone surrogate as each runtime can hold one: CPython refuses to decode it, MicroPython does
    try:
        return b"04\xed\xa0\x80".decode()
    except UnicodeError:
        return "04\ud800"


def test_settings_from_flash_with_invalid_text_fall_back():
    s = settings.load({"local_auth_ids": ["04A1", _bad_text()], "max_current_a": 10}, 32)
    assert s["local_auth_ids"] == [] and s["max_current_a"] == 10  # the bad key only, not the rest
    try:
        settings.validate({"local_auth_ids": [_bad_text()]}, 32)
        raise AssertionError("accepted")
    except settings.SettingsError as e:
        assert e.code == "bad_request"
