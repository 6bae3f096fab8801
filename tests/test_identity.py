"""Cache keys and records name a model by what it runs: weights fingerprinted, servers by
deployment. None of these load a model."""

import asyncio
import os

from cai.chat import Message
from cai.models.backends.local import LocalBackend
from cai.models.backends.openai import OpenAIBackend
from cai.models.cache import ResponseCache
from cai.models.client import Client
from cai.models.identity import deployment, file_fingerprint, folder_fingerprint
from tests.stubs.stub_server import StubServer


def test_another_gguf_file_is_another_model(tmp_path):
    a, b = tmp_path / "a" / "m.gguf", tmp_path / "b" / "m.gguf"
    for path, content in ((a, b"weights A"), (b, b"weights B")):
        path.parent.mkdir()
        path.write_bytes(content)
    one, two = LocalBackend(model_path=a), LocalBackend(model_path=b)
    assert one.spec == f"local:{a}" and one.model_name == "m.gguf"
    assert one.identity != two.identity
    assert one.identity.startswith(f"local:{a.resolve()}@")
    before = one.identity
    a.write_bytes(b"retrained weights")  # the same path, new content: a new identity
    os.utime(a, ns=(1, 1))
    assert LocalBackend(model_path=a).identity != before


def test_fingerprints_are_cached_by_path_size_and_mtime(tmp_path, own_cache):
    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    first = file_fingerprint(f)
    assert (own_cache / "cai" / "fingerprints.json").is_file()
    assert file_fingerprint(f) == first
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"v1")
    old = folder_fingerprint(folder)
    (folder / "model.safetensors").write_bytes(b"v2")  # retrained into the same folder
    os.utime(folder / "model.safetensors", ns=(2, 2))
    assert folder_fingerprint(folder) != old


def test_servers_are_keyed_by_deployment_and_clouds_by_name():
    assert deployment(["http://a/v1", "http://b/v1"]) == deployment(["http://b/v1/", "http://a/v1"])
    cloud = OpenAIBackend("m", api_key="k")
    one = OpenAIBackend("m", base_urls=["http://127.0.0.1:1/v1"], api_key="k")
    two = OpenAIBackend("m", base_urls=["http://127.0.0.1:2/v1"], api_key="k")
    assert cloud.identity == "openai:m"
    assert one.identity != two.identity and one.identity.startswith("openai:m@")


def test_two_servers_with_one_model_name_never_share_answers(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite")
    messages = [Message("user", "Hello?")]

    async def ask(url: str) -> str:
        client = Client(OpenAIBackend("same-name", base_urls=[url], api_key="k"), cache=cache)
        try:
            return (await client.complete(messages, client.sampling(seed=1))).text
        finally:
            await client.aclose()

    with StubServer(handler=lambda r: {"content": "from server one"}) as one, \
            StubServer(handler=lambda r: {"content": "from server two"}) as two:
        assert asyncio.run(ask(one.url)) == "from server one"
        assert asyncio.run(ask(two.url)) == "from server two"
        assert asyncio.run(ask(one.url)) == "from server one"
        assert one.completions == 1 and two.completions == 1  # the repeat came from the cache
