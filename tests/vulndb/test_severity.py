from agent.vulndb import severity as s


def test_cvss_v3_preferred_then_v4_then_v2():
    v3 = {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}
    v4 = {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/"
                                      "SC:N/SI:N/SA:N"}
    v2 = {"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:N/I:N/A:P"}
    assert s.of((v4, v3)) == s.Severity("critical", 10.0, v3["score"], "CVSS_V3")
    assert s.of((v4,)) == s.Severity("critical", 9.3, v4["score"], "CVSS_V4")
    assert s.of((v2,)) == s.Severity("medium", 5.0, v2["score"], "CVSS_V2")


def test_bad_vector_falls_through():
    bad = {"type": "CVSS_V3", "score": "CVSS:3.1/AV:X"}
    assert s.of((bad,)) == s.Severity("unknown")
    assert s.of((bad,), ({"urgency": "medium"},)) == s.Severity("medium", None, "", "urgency",
                                                                "medium")


def test_distro_ratings():
    assert s.of((), ({"urgency": "unimportant"},)).level == "low"
    assert s.of((), ({"urgency": "not yet assigned"},)) == s.Severity("unknown", None, "", "",
                                                                      "not yet assigned")
    assert s.of(({"type": "Ubuntu", "score": "high"},)).level == "high"
    assert s.of((), ({"severity": "MODERATE"},)).level == "medium"     # GHSA's words


def test_levels():
    assert [s.level_of(x) for x in (0.0, 0.1, 3.9, 4.0, 6.9, 7.0, 8.9, 9.0, 10.0)] == [
        "info", "low", "low", "medium", "medium", "high", "high", "critical", "critical"]
