"""The readers, by property: whatever bytes or values a file holds, a reader returns what it
read or raises one InputError naming the file; it never raises anything else, and it gives
back what a well-formed file says."""

from __future__ import annotations

import json
import re
import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cai.errors import InputError
from cai.inputs import read_prompts
from cai.records.read import json_object
from cai.schema import numbered_csv
from cai.yamlfile import MAX_DEPTH, parse_yaml

YAMLISH = st.text(alphabet=string.printable + "&*!|>-:[]{}#'\"é\ufeff", max_size=300)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20)
FILES = settings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(YAMLISH)
@settings(max_examples=300, deadline=None)
def test_any_text_is_yaml_or_one_input_error(text):
    try:
        parse_yaml(text, "c.yaml")
    except InputError as e:
        assert str(e).startswith("c.yaml:")


PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**62), 2**62) | st.text(max_size=20)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(alphabet=string.ascii_letters, min_size=1, max_size=8), inner, max_size=4),
    max_leaves=25)


@given(PLAIN)
@settings(max_examples=300, deadline=None)
def test_plain_yaml_reads_back_as_written(data):
    """What PyYAML writes without anchors (no value shared) reads back the same."""
    text = yaml.safe_dump(data)
    assert parse_yaml(text)[0] == data


def test_nesting_past_the_limit_is_refused_at_its_line():
    ok = "a: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    assert parse_yaml(ok)[0] is not None
    with pytest.raises(InputError, match=r"^c.yaml:2: nested more than"):
        parse_yaml("a: 1\nb: " + "[" * MAX_DEPTH + "]" * MAX_DEPTH + "\n", "c.yaml")


@given(st.text(max_size=200))
@settings(max_examples=300, deadline=None)
def test_any_line_is_an_object_or_one_input_error(line):
    try:
        assert isinstance(json_object("r.jsonl", 7, line), dict)
    except InputError as e:
        assert str(e).startswith("r.jsonl:7: ")


@given(st.lists(JSON_VALUES, min_size=1, max_size=5))
@FILES
def test_any_jsonl_prompt_file_gives_prompts_or_one_error_with_its_line(tmp_path, rows):
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    try:
        items = read_prompts(path)
    except InputError as e:
        assert str(e).startswith(str(path))
    else:
        assert all(isinstance(i.text, str) and i.text.strip() for i in items)


@given(st.lists(st.fixed_dictionaries({"prompt": st.text(min_size=1, max_size=30).filter(
    str.strip)}, optional={"id": st.text(min_size=1, max_size=8) | st.integers(0, 10**6)}),
    min_size=1, max_size=5), st.sampled_from(["\n", "\r\n"]), st.booleans())
@FILES
def test_a_good_file_reads_the_same_with_crlf_and_a_bom(tmp_path, rows, newline, bom):
    plain, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    text = "".join(json.dumps(r) + "\n" for r in rows)
    plain.write_text(text, encoding="utf-8")
    other.write_bytes((("\ufeff" if bom else "") + text.replace("\n", newline)).encode())
    try:
        expected = read_prompts(plain)
    except InputError as e:  # two rows with one id and other prompts: refused in both
        with pytest.raises(InputError, match=re.escape(str(e).split(": ", 1)[1])):
            read_prompts(other)
        return
    assert [(i.id, i.messages, i.line) for i in read_prompts(other)] == \
        [(i.id, i.messages, i.line) for i in expected]


@given(st.lists(st.text(min_size=1).filter(str.strip), min_size=1, max_size=5))
@FILES
def test_any_text_cai_writes_it_reads_back(tmp_path, texts):
    """Whatever a model says (U+2028, a form feed, a lone \\r), a file cai wrote reads back."""
    from cai.records.append import JsonlWriter
    from cai.records.read import read_jsonl

    path = tmp_path / "r.jsonl"
    path.unlink(missing_ok=True)
    with JsonlWriter(path) as w:
        for t in texts:
            w.write({"prompt": t})
    assert [r["prompt"] for r in read_jsonl(path)] == texts


@given(st.text(alphabet=string.printable + "é\"", max_size=300))
@FILES
def test_any_csv_gives_rows_or_one_error_with_its_line(tmp_path, text):
    path = tmp_path / "p.csv"
    path.write_text("prompt,id\n" + text, encoding="utf-8")
    try:
        rows = list(numbered_csv(path, ["prompt"]))
    except InputError as e:
        assert str(e).startswith(f"{path}:")
    else:
        assert all(set(r) == {"prompt", "id"} for _, r in rows)
