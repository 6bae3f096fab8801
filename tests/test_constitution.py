import random

import pytest

from cai.constitution import ConstitutionError, load_constitution, parse_constitution
from cai.paths import shipped
from cai.stages.revise import choose_principles
from tests.helpers import MINIMAL


def problems(text: str) -> list[str]:
    with pytest.raises(ConstitutionError) as e:
        parse_constitution(text, "c.yaml")
    return e.value.problems


def test_minimal_parses_with_defaults():
    c = parse_constitution(MINIMAL, "c.yaml")
    assert [p.id for p in c.principles] == ["alpha", "beta"]
    assert c.principles[1].weight == 1.0 and c.principles[1].judge is None
    assert c.provenance == {"name": "tiny", "version": "0.1", "sha256": c.sha256}
    assert len(c.sha256) == 64


def test_hash_ignores_comments_and_layout_but_not_content():
    a = parse_constitution(MINIMAL).sha256
    assert parse_constitution("# a comment\n" + MINIMAL).sha256 == a
    assert parse_constitution(MINIMAL.replace("Fix it.", "Fix it now.")).sha256 != a


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "c.yaml:1: the file is empty"),
        ("name: [unclosed", "c.yaml:1: invalid YAML"),
        ("- just\n- a list\n", "c.yaml:1: the top level must be a mapping"),
        (MINIMAL.replace("name: tiny\n", ""), "c.yaml:1: missing 'name'"),
        (MINIMAL + "colour: blue\n", "c.yaml:13: unknown key 'colour'"),
        (MINIMAL.replace("    weight: 3", "    weight: 3\n    wieght: 2"),
         "c.yaml:10: principle 'alpha': unknown key 'wieght'"),
        (MINIMAL.replace("- id: beta", "- id: alpha"),
         "c.yaml:10: principle 'alpha': duplicate id (first used on line 5)"),
        (MINIMAL.replace("weight: 3", "weight: 0"),
         "c.yaml:9: principle 'alpha': 'weight' is 0; it must be a finite number above 0"),
        (MINIMAL.replace("weight: 3", "weight: heavy"),
         "c.yaml:9: principle 'alpha': 'weight' must be a number, not text"),
        (MINIMAL.replace("revision: Fix it.", "revision: ''"),
         "c.yaml:7: principle 'alpha': 'revision' is empty"),
        (MINIMAL.replace("    revision: Make it polite.\n", ""),
         "c.yaml:10: principle 'beta': missing 'revision'"),
        (MINIMAL.replace("critique: Say what is wrong.", "critique: [a, b]"),
         "c.yaml:6: principle 'alpha': 'critique' must be text, not a list"),
        (MINIMAL.replace("Fix it.", "Fix {{ response }}."),
         "c.yaml:7: principle 'alpha': 'revision' contains template syntax"),
        (MINIMAL.split("principles:")[0] + "principles: []\n",
         "c.yaml:4: no principles"),
        (MINIMAL.split("principles:")[0] + "principles:\n", "c.yaml:4: 'principles' is empty"),
        (MINIMAL.replace("  - id: beta", "  - id: Beta Two"),
         "c.yaml:10: principle 'Beta Two': id 'Beta Two' must be lowercase"),
        (MINIMAL.replace("    weight: 3", "    tags: harm"),
         "c.yaml:9: principle 'alpha': 'tags' must be a list of words"),
        (MINIMAL.replace("description: A tiny constitution for tests.\n",
                         "description: one\ndescription: two\n"),
         "c.yaml:4: key 'description' appears twice"),
        (MINIMAL + "examples:\n  - prompt: hi\n    response: yo\n",
         "c.yaml:14: example #1: missing 'critique'"),
        (MINIMAL + "examples:\n  - {principle: gamma, prompt: a, response: b, critique: c, "
         "revision: d}\n", "c.yaml:14: example #1: principle 'gamma' is not defined"),
    ],
)
def test_each_problem_names_file_line_and_fix(text, expected):
    found = problems(text)
    assert any(p.startswith(expected) for p in found), found


def test_all_problems_reported_at_once():
    bad = MINIMAL.replace("weight: 3", "weight: -1").replace("- id: beta", "- id: alpha")
    assert len(problems(bad)) == 2


def test_shipped_constitutions_are_valid():
    files = sorted(shipped("constitutions").glob("*.yaml"))
    assert {f.stem for f in files} >= {"harmless", "helpful-honest"}
    harmless = load_constitution(shipped("constitutions") / "harmless.yaml")
    assert len(harmless.principles) >= 12
    assert all(p.judge for p in harmless.principles)
    assert {"over-refusal", "privacy", "sycophancy"} <= {p.id for p in harmless.principles}


def test_sampling_is_seeded_and_weighted():
    c = parse_constitution(MINIMAL)
    ids = [p.id for p in choose_principles(c, seed=7, item_id="abc", rounds=6)]
    assert ids == [p.id for p in choose_principles(c, seed=7, item_id="abc", rounds=6)]
    assert ids == ["beta", "alpha", "alpha", "alpha", "alpha", "alpha"]
    many = [c.sample(random.Random(i)).id for i in range(2000)]
    assert 0.70 < many.count("alpha") / len(many) < 0.80  # weight 3 against 1


def test_fixed_principle_and_unknown_id():
    c = parse_constitution(MINIMAL, "c.yaml")
    assert [p.id for p in choose_principles(c, 0, "x", 2, fixed="beta")] == ["beta", "beta"]
    with pytest.raises(Exception, match="no principle 'gamma'; known ids: alpha, beta"):
        c.principle("gamma")
