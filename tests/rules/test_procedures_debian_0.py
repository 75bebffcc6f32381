"""The procedure corpus (tests/rules/procedures.py) on the debian image, part 1 of 2:
each procedure in a fresh real container, against the default rules."""
import pytest

from corpus_bed import engine, judge, pipe, procedures_of  # noqa: F401 (fixtures)


@pytest.mark.parametrize("proc", procedures_of("debian", 0, 2), ids=lambda p: p.name)
def test_procedure_is_detected_with_its_technique(proc, debian_containers, pipe, engine):  # noqa: F811
    judge(proc, debian_containers(network=True), pipe, engine)
