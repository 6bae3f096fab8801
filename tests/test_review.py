"""`cai review`: the page's API on a real server on 127.0.0.1, the statistics on made-up labels,
hostile text, and a real headless browser labelling by keyboard."""

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from cai.records.read import read_jsonl
from cai.records.rewrite import write_jsonl
from cai.review.pairs import append
from cai.review.stats import review_stats
from cai.stats import wilson
from tests.helpers import cai, free_port
from tests.hostile import STRINGS, assert_inert, hostile


def reply(text):
    return [{"role": "assistant", "content": text}]


def judged(i, principle="alpha", x="a fine answer", y="a worse answer"):
    return {"id": f"q{i}", "pair_id": f"p{i}", "prompt": [{"role": "user", "content": f"Q{i}?"}],
            "chosen": reply(x), "rejected": reply(y), "soft_label": 0.8, "margin": 0.6,
            "principles": [principle],
            "constitution": {"name": "harmless", "version": "1.0", "sha256": "not-it"}}


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "judge"
    write_jsonl(d / "prefs.jsonl", [judged(1), judged(2), judged(3, "beta")])
    write_jsonl(d / "low_margin.jsonl", [judged(4, "beta", hostile(0), hostile(1))])
    write_jsonl(d / "unjudged.jsonl", [{"id": "q5", "pair_id": "p5", "prompt": "Q5?",
                                        "pair": [0, 2], "replies": ["one", "two"],
                                        "reason": "no principle had both orders parsed"}])
    return d


class Server:
    def __init__(self, target, *args):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cai", "review", str(target), "--no-browser", "--port",
             str(self.port), "--reviewer", "alice", *map(str, args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 30
        while True:
            try:
                self.get("/api/next")
                return
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    raise AssertionError(self.proc.communicate()[1]) from None
                time.sleep(0.1)

    def request(self, path, body=None, headers=None):
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={
            "Content-Type": "application/json", **(headers or {})},
            method="GET" if body is None else "POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read()), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(), dict(e.headers)

    def get(self, path):
        return self.request(path)[1]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def server(folder):
    s = Server(folder)
    yield s
    s.stop()


def test_the_api_labels_blind_undoes_and_refuses_bad_requests(server, folder):
    first = server.get("/api/next")
    assert set(first) == {"pair_id", "prompt", "a", "b", "question", "progress", "token"}
    assert first["progress"] == {"done": 0, "total": 5}
    assert {first["a"], first["b"]} and "chosen" not in json.dumps(first)
    token = {"X-Review-Token": first["token"]}
    log = folder / "reviews.jsonl"
    for body, headers, status in [
        ({"pair_id": first["pair_id"], "choice": "a"}, {}, 403),  # no token
        ({"pair_id": first["pair_id"], "choice": "a"}, {"X-Review-Token": "wrong"}, 403),
        ({"pair_id": first["pair_id"], "choice": "maybe"}, token, 400),
        ({"pair_id": "no-such-pair", "choice": "a"}, token, 400),
        ({"pair_id": [first["pair_id"]], "choice": "a"}, token, 400),  # a list: was a 500
        ({"pair_id": first["pair_id"], "choice": ["a"]}, token, 400),
        ([first["pair_id"], "a"], token, 400),
        ("not an object", token, 400),
        ({"pair_id": first["pair_id"], "choice": "a", "pad": "x" * 5000}, token, 413),
    ]:
        code, text, _ = server.request("/api/label", body, headers)
        assert code == status and text, (body, headers)
        assert "error" in json.loads(text), text  # a message, not a bare status
        assert not log.exists()  # nothing written
    for raw in (b"{not json", b"[" * 4000):  # not JSON; nested past the parser's depth
        code, text, _ = server.request("/api/label", raw, token)
        assert code == 400 and "expected JSON" in text and not log.exists()
    code, saved, headers = server.request("/api/label", {"pair_id": first["pair_id"],
                                                         "choice": "a"}, token)
    assert code == 200 and not any(h.lower().startswith("access-control") for h in headers)
    # The same label again (a repeated request) is refused and writes nothing.
    again = server.request("/api/label", {"pair_id": first["pair_id"], "choice": "b"}, token)
    assert again[0] == 409 and "labelled already" in again[1]
    [line] = list(read_jsonl(log))
    assert line["pair_id"] == first["pair_id"] and line["reviewer"] == "alice"
    assert line["choice"] == "a" and line["order"] in ("xy", "yx") and line["time"]
    second = server.get("/api/next")
    assert second["pair_id"] != first["pair_id"] and second["progress"]["done"] == 1
    assert server.request("/api/undo", {}, token)[0] == 200
    assert server.get("/api/next")["pair_id"] == first["pair_id"]  # labelled again
    # A request for another host name (DNS rebinding) is refused.
    req = urllib.request.Request(server.url + "/api/next", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 400


def test_stopping_and_restarting_loses_nothing(folder):
    s = Server(folder)
    try:
        pair = s.get("/api/next")
        s.request("/api/label", {"pair_id": pair["pair_id"], "choice": "b"},
                  {"X-Review-Token": pair["token"]})
    finally:
        s.stop()
    again = Server(folder)
    try:
        resumed = again.get("/api/next")
        assert resumed["progress"]["done"] == 1 and resumed["pair_id"] != pair["pair_id"]
        assert resumed["token"] != pair["token"]  # a new token each run
    finally:
        again.stop()


def test_an_empty_folder_and_a_port_in_use_are_one_error_line(tmp_path, folder, server):
    (tmp_path / "empty").mkdir()
    done = cai("review", tmp_path / "empty", "--no-browser", timeout=60)
    assert done.returncode == 2 and "no pairs to review" in done.stderr
    busy = cai("review", folder, "--no-browser", "--port", server.port, timeout=60)
    assert busy.returncode == 2 and f"cannot serve on 127.0.0.1:{server.port}" in busy.stderr
    assert "Traceback" not in done.stderr + busy.stderr


def label(log, reviewer, pair, said, order="xy"):
    """A label meaning `said` (x, y or tie), written as the page writes it when it showed the
    pair in `order`."""
    choice = "tie" if said == "tie" else "a" if (said == "x") == (order == "xy") else "b"
    append(log, {"event": "label", "pair_id": pair, "reviewer": reviewer, "order": order,
                 "choice": choice})


def test_stats_on_made_up_labels(folder):
    """Two reviewers; an undone label, a tie, a skip, a split and an unjudged pair."""
    log = folder / "reviews.jsonl"
    for pair, said, order in [("p1", "x", "xy"), ("p3", "x", "yx"), ("p4", "tie", "xy"),
                              ("p5", "x", "xy")]:
        label(log, "alice", pair, said, order)
    label(log, "alice", "p2", "x")
    append(log, {"event": "undo", "pair_id": "p2", "reviewer": "alice"})  # it does not count
    label(log, "alice", "p2", "y", "yx")
    for pair, said, order in [("p1", "x", "yx"), ("p2", "x", "xy"), ("p3", "y", "xy")]:
        label(log, "bob", pair, said, order)
    append(log, {"event": "label", "pair_id": "p4", "reviewer": "bob", "order": "yx",
                 "choice": "skip"})
    s = review_stats(folder)
    assert (s["labels"], s["pairs"], s["ties"]) == (8, 5, 1)
    assert s["reviewers"] == {"alice": 5, "bob": 3}
    # p2 and p3 split one against one, p4 has a tie alone: no majority. Of the judge's pairs
    # (p1-p4) only p1 has a verdict from the people, and it agrees.
    assert s["pairs_without_majority"] == 3 and s["judge_decided"] == 1
    assert s["agreement_with_judge"] == 1.0 and s["kappa"] is None  # one pair: undefined
    assert s["agreement_with_judge_ci95"] == [round(v, 4) for v in wilson(1, 1)]
    assert s["by_principle"]["alpha"]["pairs"] == 1
    assert s["by_principle"]["beta"] == {"pairs": 0, "agreement_with_judge": None,
                                         "agreement_with_judge_ci95": None, "kappa": None}
    # Over p1-p3, both decided: positions (A = 1) in each pair's order (its first label's:
    # xy, yx, yx) are alice 1, 1, 0 and bob 1, 0, 1: agreement 1/3, kappa (1/3 - 5/9) / (4/9).
    [between] = s["between_reviewers"]
    assert between == {"reviewers": ["alice", "bob"], "pairs": 3, "agreement": 0.3333,
                       "kappa": -0.5}
    gold = list(read_jsonl(folder / "gold.jsonl"))
    assert [g["id"] for g in gold] == ["p1", "p5"] and s["unjudged_in_gold"] == 1
    assert gold[0]["chosen"] == reply("a fine answer") and gold[1]["chosen"] == reply("one")
    assert gold[0]["votes"] == {"x": 2, "y": 0, "tie": 0} and gold[1]["judge_x"] is None
    assert json.loads((folder / "review_stats.json").read_text())["gold_pairs"] == 2
    out = cai("review", "stats", folder, "--json", timeout=60)
    assert json.loads(out.stdout)["labels"] == 8  # only JSON on stdout


def balanced(tmp_path, n=20):
    """n judged pairs, the judge's choice x in each; q0..q9 shown x first, the rest second."""
    d = tmp_path / "balanced"
    write_jsonl(d / "prefs.jsonl", [judged(i) for i in range(n)])
    return d, [("xy" if i < n // 2 else "yx") for i in range(n)]


def test_kappa_is_over_the_position_chosen_and_near_0_8_at_90_percent(tmp_path):
    """A reviewer agrees with the judge on 18 of 20 pairs, on a sample balanced between the
    two positions: agreement 0.9, kappa exactly 0.8 (the old kappa over `x or y` was 0.0,
    since the judge's label is always x)."""
    d, orders = balanced(tmp_path)
    log = d / "reviews.jsonl"
    for i, order in enumerate(orders):
        label(log, "alice", f"p{i}", "y" if i in (0, 10) else "x", order)
    s = review_stats(d)
    assert (s["pairs"], s["judge_decided"], s["agreement_with_judge"]) == (20, 20, 0.9)
    assert s["kappa"] == 0.8
    assert s["agreement_with_judge_ci95"] == [round(v, 4) for v in wilson(18, 20)]


def test_several_reviewers_of_a_pair_count_once_and_their_agreement_apart(tmp_path):
    """Bob labels the same 20 pairs (seeing his own orders) and differs from alice on p1 and
    p11: those two split, and the other 18 count once each, by their majority."""
    d, orders = balanced(tmp_path)
    log = d / "reviews.jsonl"
    for i, order in enumerate(orders):
        label(log, "alice", f"p{i}", "y" if i in (0, 10) else "x", order)
    for i, order in enumerate(orders):
        said = "y" if i in (0, 10, 1, 11) else "x"
        label(log, "bob", f"p{i}", said, "yx" if order == "xy" else "xy")
    s = review_stats(d)
    assert (s["labels"], s["pairs"], s["pairs_without_majority"]) == (40, 20, 2)
    # 18 pairs, 16 agree; in those 18 both raters say A on 9 pairs: kappa (16/18 - 1/2) / (1/2)
    assert (s["judge_decided"], s["agreement_with_judge"], s["kappa"]) == (18, 0.8889, 0.7778)
    assert s["agreement_with_judge_ci95"] == [round(v, 4) for v in wilson(16, 18)]
    assert s["between_reviewers"] == [{"reviewers": ["alice", "bob"], "pairs": 20,
                                       "agreement": 0.9, "kappa": 0.8}]
    out = cai("review", "stats", d, timeout=60)
    said = " ".join(out.stdout.split())
    assert "labelled: 20 pairs, 40 labels (alice 20, bob 20; 0 ties; 2 pairs without a " \
        "majority)" in said
    assert "agreement with the judge: 0.8889 over 18 pairs it decided" in said
    assert "kappa 0.7778 over the position chosen" in said
    assert "between alice and bob: agreement 0.9, kappa 0.8 over 20 pairs" in said


def test_unjudged_pairs_come_first_when_asked(folder):
    s = Server(folder, "--unjudged-first")
    try:
        first = s.get("/api/next")
        assert first["pair_id"] == "p5" and {first["a"], first["b"]} == {"one", "two"}
    finally:
        s.stop()


def test_the_page_cannot_be_framed(server):
    for path in ("/", "/api/next", "/static/review.js"):
        req = urllib.request.Request(server.url + path)
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["X-Frame-Options"] == "DENY"
            assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]


@pytest.mark.parametrize(("host", "warns"), [("0.0.0.0", True), ("localhost", False)])
def test_the_url_it_prints_works_for_any_host(folder, host, warns):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cai", "review", str(folder), "--no-browser",
                             "--port", str(port), "--host", host, "--reviewer", "alice"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split(" at ")[1].split()[0]
        assert url.endswith(f":{port}/"), line
        deadline = time.time() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "api/next", timeout=10) as r:
                    assert r.status == 200 and "pair_id" in json.loads(r.read())
                break
            except urllib.error.URLError:
                assert time.time() < deadline and proc.poll() is None
                time.sleep(0.1)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert ("warning: serving on" in stderr) == warns, stderr


def test_a_browser_labels_by_keyboard_once_per_press_and_runs_no_hostile_text(
        tmp_path, browser):
    """The review page over pairs whose prompts, replies and judge questions are hostile:
    nothing runs, the text shows as text. Two key presses in one moment, or a held key,
    label one pair once."""
    d = tmp_path / "judge"
    rows = [judged(i, x=hostile(i), y=hostile(i + 1)) for i in range(len(STRINGS))]
    for i, r in enumerate(rows):
        r["prompt"] = [{"role": "user", "content": hostile(i + 2)}]
    write_jsonl(d / "prefs.jsonl", rows)
    s = Server(d, "--sample", "3")
    try:
        page = browser.new_page()
        posted = []
        page.on("request", lambda r: posted.append(r.url) if r.method == "POST" else None)
        page.goto(s.url + "/")
        page.wait_for_selector("#pair:not([hidden])")
        page.wait_for_function("() => document.getElementById('a').textContent.length > 0")
        ids = {r["pair_id"]: i for i, r in enumerate(rows)}
        current = s.get("/api/next")["pair_id"]
        i = ids[current]
        assert_inert(page, [hostile(i), hostile(i + 1), hostile(i + 2)],
                     scripts=[s.url + "/static/review.js"])
        page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
        # Two presses before either request is answered: one label.
        page.evaluate("""() => { for (const k of ['a', 'a'])
            document.dispatchEvent(new KeyboardEvent('keydown', {key: k})); }""")
        page.wait_for_function("() => document.getElementById('progress').textContent"
                               ".startsWith('1 of 3')")
        # A held key repeats: one label for it too.
        page.keyboard.down("b")
        page.keyboard.down("b")
        page.keyboard.down("b")
        page.keyboard.up("b")
        page.wait_for_function("() => document.getElementById('progress').textContent"
                               ".startsWith('2 of 3')")
        page.keyboard.press("t")
        page.wait_for_selector("#done:not([hidden])")
        assert page.locator("#progress").inner_text() == "all labelled"
        assert page.locator("#error").is_hidden()
        assert set(s.get("/api/next")) == {"token"}  # the sample is done: the token alone
        assert posted == [s.url + "/api/label"] * 3  # the page sent no second request
        assert_inert(page, scripts=[s.url + "/static/review.js"])
        page.close()
    finally:
        s.stop()
    labelled = list(read_jsonl(d / "reviews.jsonl"))
    assert [r["choice"] for r in labelled] == ["a", "b", "tie"]
    assert len({r["pair_id"] for r in labelled}) == 3
