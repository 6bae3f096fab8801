import json
import multiprocessing

import pytest

from cai.errors import InputError
from cai.inputs import read_prompts
from cai.records.append import JsonlWriter, repair
from cai.records.read import done_ids, read_jsonl
from cai.records.rewrite import keep_ids, write_json
from tests.helpers import ROOT


def test_jsonl_prompt_and_messages(write):
    convo = '[{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]'
    path = write("p.jsonl", f"""
        {{"prompt": "Hello"}}
        {{"id": "x2", "messages": {convo}}}

        {{"prompt": "Hello"}}
    """)
    items = read_prompts(path)
    assert [i.text for i in items] == ["Hello", "Q"]  # the duplicate is kept once
    assert items[1].id == "x2" and items[1].messages[0].role == "system"
    assert items[0].id == read_prompts(path)[0].id  # ids are stable across reads


def test_csv_and_text_formats(write):
    assert [i.id for i in read_prompts(write("p.csv", "id,prompt\na,One\nb,Two\n"))] == ["a", "b"]
    assert [i.text for i in read_prompts(write("p.txt", "One\n\n  Two  \n"))] == ["One", "Two"]


def test_shipped_examples_read():
    assert len(read_prompts(ROOT / "examples" / "prompts.jsonl")) >= 8
    assert read_prompts(ROOT / "examples" / "prompts.jsonl", limit=3)[2].line == 3


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("p.jsonl", '{"prompt": "ok"}\n{"prompt": "unclosed\n', "p.jsonl:2: not valid JSON"),
        ("p.jsonl", '{"prompt": "ok"}\n{"text": "x"}\n',
         "p.jsonl:2: no 'prompt' text (keys found: text)"),
        ("p.jsonl", '["a"]\n', "p.jsonl:1: each line must be an object"),
        ("p.jsonl", '{"messages": [{"role": "user"}]}\n',
         "p.jsonl:1: messages[0].content: missing"),
        ("p.jsonl", '{"prompt": 17}\n', "p.jsonl:1: prompt: expected text or a list of {role, "
         "content} messages, found a number (17)"),
        ("p.jsonl", '{"messages": [{"role": "assistant", "content": "x"}]}\n',
         "p.jsonl:1: the conversation must end with a user message"),
        ("p.jsonl", '{"prompt": "  "}\n', "p.jsonl:1: the prompt is empty"),
        ("p.csv", "id,text\na,b\n", "p.csv:1: no 'prompt' column (columns: id, text)"),
        ("p.txt", "\n\n", "p.txt: no prompts in the file"),
    ],
)
def test_bad_prompt_files_name_file_and_line(write, name, text, message):
    path = write(name, text)
    with pytest.raises(InputError) as e:
        read_prompts(path)
    assert str(e.value).startswith(str(path.parent / message))


def test_missing_prompt_file(tmp_path):
    with pytest.raises(InputError, match="prompt file not found"):
        read_prompts(tmp_path / "none.jsonl")


def test_writer_appends_whole_lines_and_repairs_a_partial_one(tmp_path):
    path = tmp_path / "a.jsonl"
    with JsonlWriter(path) as w:
        w.write({"id": "1", "text": "é"})
    with path.open("a") as f:
        f.write('{"id": "2", "te')  # what a kill mid-write leaves
    assert done_ids(path) == {"1"}
    with JsonlWriter(path) as w:
        w.write({"id": "3"})
    assert [r["id"] for r in read_jsonl(path)] == ["1", "3"]
    repair(path)
    assert path.read_text(encoding="utf-8").endswith("\n")


def test_keep_ids_drops_uncommitted_records(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"id": i}) + "\n" for i in "abc"))
    assert keep_ids(path, {"a", "c"}) == 1
    assert [r["id"] for r in read_jsonl(path)] == ["a", "c"]
    assert keep_ids(path, {"a", "c"}) == 0


def _write_often(path, n: int) -> None:
    for i in range(200):
        write_json(path, {"writer": n, "i": i})


def test_processes_writing_one_json_file_at_once_each_replace_it_whole(tmp_path):
    """The ranks of a launch share the fingerprint cache: one rank's write must not rename
    away the temporary file of another (it did: 'fingerprints.json: No such file')."""
    path = tmp_path / "shared.json"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_often, args=(path, n)) for n in range(4)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(120)
    assert [w.exitcode for w in writers] == [0, 0, 0, 0]
    assert json.loads(path.read_text(encoding="utf-8"))["i"] == 199
    assert [p.name for p in tmp_path.iterdir()] == ["shared.json"]


def test_read_jsonl_names_the_bad_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"a": 1}\nnot json\n')
    with pytest.raises(InputError, match=r"r.jsonl:2: not valid JSON"):
        list(read_jsonl(path))


@pytest.mark.parametrize("name", ["p.jsonl", "p.csv", "p.txt", "c.yaml", "t.yaml", "r.jsonl"])
def test_a_file_that_is_not_utf8_names_its_line_and_byte(tmp_path, name):
    from cai.constitution import load_constitution
    from cai.training.config import read_config

    path = tmp_path / name
    head = "prompt\n" if name.endswith(".csv") else ""
    path.write_bytes(head.encode() + b'{"prompt": "fine"}\n{"prompt": "caf\xe9"}\n')
    read = {"c.yaml": load_constitution, "t.yaml": read_config,
            "r.jsonl": lambda p: list(read_jsonl(p))}.get(name, read_prompts)
    with pytest.raises(Exception) as raised:  # InputError, or ConstitutionError listing it
        read(path)
    line = 3 if head else 2
    offset = len(head) + len('{"prompt": "fine"}\n{"prompt": "caf')
    assert f"{name}:{line}: not UTF-8 text: byte 0xe9 at byte offset {offset}" in str(raised.value)


def test_one_id_on_two_different_prompts_is_an_error(write):
    path = write("p.jsonl", """
        {"id": "x", "prompt": "First"}
        {"id": "x", "prompt": "First"}
        {"id": "x", "prompt": "Second"}
    """)
    with pytest.raises(InputError, match=r"p.jsonl:3: id 'x' was already used on line 1"):
        read_prompts(path)
    same = write("q.jsonl", '{"id": "x", "prompt": "A"}\n{"id": "x", "prompt": "A"}\n')
    assert [i.text for i in read_prompts(same)] == ["A"]  # word for word: kept once


def test_a_yaml_error_points_at_a_line_that_exists():
    """A problem found mid-file is shown where it is; one found only at the end (a bracket or
    quote never closed) where the unclosed part began."""
    import yaml

    from cai.errors import yaml_line

    def line_of(text):
        with pytest.raises(yaml.YAMLError) as e:
            yaml.safe_load(text)
        return yaml_line(e.value, text)

    assert line_of("a: 1\nb: [1, 2\nc: 3\n") == 3  # found at c, inside the open bracket
    assert line_of("a: 1\nb: [1, 2\n") == 2
    assert line_of('a: 1\nb: "open\nc: 3\n\n') == 2
    assert line_of("a: 1\n  b: 2\n") == 2
