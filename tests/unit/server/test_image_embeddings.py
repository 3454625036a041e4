"""The ``embedding`` task on a local image-and-text model: a tiny random CLIP built by the
test, served over HTTP. Texts and images answer the vectors CLIP itself computes, several
items in one ``content`` object answer one vector, and what CLIP cannot read (audio,
video, PDF, bytes that are no image) is refused before the model runs."""

from __future__ import annotations

import math

import pytest

from endpoint_serving import serving
from kubeinfer.catalog import parse_endpoint
from tiny_clip import PROJECTION_DIM, data_uri, png

RED = data_uri(png(20, 12, (200, 10, 30)))
STRIPES = data_uri(png(9, 17, (10, 200, 30), stripe=(250, 250, 250)))


def endpoint(model_id, inference_id: str = "clip"):
    return parse_endpoint(inference_id, "embedding", {
        "service": "elasticsearch",
        "service_settings": {"model_id": str(model_id), "num_allocations": 1, "num_threads": 1},
    })


def image(value: str) -> dict:
    return {"content": {"type": "image", "format": "base64", "value": value}}


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def reference(folder, texts=(), images=()):
    """CLIP's own normalised text and image features, computed here with transformers."""
    import base64
    import io

    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(str(folder)).eval()
    out = {}
    with torch.no_grad():
        for text in texts:
            enc = AutoTokenizer.from_pretrained(str(folder))([text], return_tensors="pt")
            features = model.get_text_features(**enc)
            features = features if isinstance(features, torch.Tensor) else features.pooler_output
            out[text] = torch.nn.functional.normalize(features, dim=-1)[0].tolist()
        for uri in images:
            picture = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")
            pixels = AutoImageProcessor.from_pretrained(str(folder))(images=[picture], return_tensors="pt")
            features = model.get_image_features(pixel_values=pixels["pixel_values"])
            features = features if isinstance(features, torch.Tensor) else features.pooler_output
            out[uri] = torch.nn.functional.normalize(features, dim=-1)[0].tolist()
    return out


def close(a, b, tolerance=1e-4):
    return len(a) == len(b) and all(abs(x - y) <= tolerance for x, y in zip(a, b))


async def test_texts_and_images_embed_as_clip_computes_them(tiny_clip):
    body = {"input": [image(RED), {"content": {"type": "text", "value": "a red square"}}, "stripes",
                      image(STRIPES)]}
    async with serving(endpoint(tiny_clip)) as (client, backend):
        r = await client.post("/_inference/embedding/clip", json=body)
        assert r.status_code == 200, r.text
        assert backend.describe() == {"dimensions": PROJECTION_DIM, "similarity": "cosine"}
    vectors = [e["embedding"] for e in r.json()["embeddings"]]
    assert set(r.json()) == {"embeddings"}
    expected = reference(tiny_clip, texts=("a red square", "stripes"), images=(RED, STRIPES))
    assert [len(v) for v in vectors] == [PROJECTION_DIM] * 4
    assert all(abs(norm(v) - 1) < 1e-5 for v in vectors)
    # Batched together, padded, each the vector CLIP gives it alone.
    assert close(vectors[0], expected[RED])
    assert close(vectors[1], expected["a red square"])
    assert close(vectors[2], expected["stripes"])
    assert close(vectors[3], expected[STRIPES])


async def test_several_items_in_one_content_object_give_one_vector(tiny_clip):
    group = {"content": [{"type": "image", "format": "base64", "value": RED}, {"type": "text", "value": "red"}]}
    async with serving(endpoint(tiny_clip)) as (client, _):
        r = await client.post("/_inference/embedding/clip", json={"input": [group, "red"]})
    assert r.status_code == 200, r.text
    [together, alone] = [e["embedding"] for e in r.json()["embeddings"]]
    expected = reference(tiny_clip, texts=("red",), images=(RED,))
    mean = [(a + b) / 2 for a, b in zip(expected[RED], expected["red"])]
    assert close(together, [x / norm(mean) for x in mean])
    assert close(alone, expected["red"])


@pytest.mark.parametrize("kind, media", [("audio", "audio/wav"), ("video", "video/mp4"), ("pdf", "application/pdf")])
async def test_audio_video_and_pdf_are_refused_as_elasticsearch_refuses_them(tiny_clip, kind, media):
    body = {"input": ["a text", {"content": {"type": kind, "format": "base64", "value": data_uri(b"xyz", media)}}]}
    async with serving(endpoint(tiny_clip)) as (client, _):
        r = await client.post("/_inference/embedding/clip", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "status_exception"
    assert r.json()["error"]["reason"] == f"The elasticsearch service does not support embedding with {kind} inputs"


@pytest.mark.parametrize("value, problem", [
    ("iVBORw0KGgo=", "must be a base64 data URI"),
    ("data:image/png;base64,@@not-base64@@", "is not valid base64"),
    (data_uri(b"not an image at all"), "is not an image this model can read"),
])
async def test_an_image_that_cannot_be_read_is_a_400_naming_the_input(tiny_clip, value, problem):
    async with serving(endpoint(tiny_clip)) as (client, _):
        r = await client.post("/_inference/embedding/clip", json={"input": ["fine", image(value)]})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["reason"] == f"The [image] input at $.input[1] {problem}" + (
            " (data:<media type>;base64,<data>)" if "data URI" in problem else "")
        # The endpoint goes on serving.
        assert (await client.post("/_inference/embedding/clip", json={"input": image(RED)})).status_code == 200


async def test_an_image_of_too_many_pixels_is_refused_without_being_decoded(tiny_clip):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    # 30000 x 30000 pixels declared, a few bytes sent: decoding it would take 2.7 GB.
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b""))
    async with serving(endpoint(tiny_clip)) as (client, _):
        r = await client.post("/_inference/embedding/clip", json={"input": image(data_uri(bomb))})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["reason"].startswith("The [image] input at $.input[0] has more pixels than ")


async def test_a_text_only_model_cannot_serve_the_embedding_task(tiny_models):
    from model_server.backends.registry import create_backend

    backend = create_backend(endpoint(tiny_models["embedding"]))
    with pytest.raises(Exception) as failure:
        await backend.start()
    assert "does not embed both texts and images" in str(failure.value)


async def test_openai_embeddings_route_serves_texts_of_an_embedding_endpoint(tiny_clip):
    async with serving(endpoint(tiny_clip)) as (client, _):
        ours = await client.post("/_inference/embedding/clip", json={"input": ["red", "blue"]})
        openai = await client.post("/v1/embeddings", json={"model": "clip", "input": ["red", "blue"]})
    assert openai.status_code == 200, openai.text
    assert [d["index"] for d in openai.json()["data"]] == [0, 1]
    for theirs, mine in zip(openai.json()["data"], ours.json()["embeddings"]):
        assert close(theirs["embedding"], mine["embedding"], 1e-6)


async def test_on_cpu_both_towers_run_on_onnx_runtime_as_torch_computes_them(tiny_clip, tmp_path):
    body = {"input": [image(STRIPES), "stripes", image(RED), "a much longer text about a red square"]}
    answers = {}
    for engine in ("torch", "onnx"):
        async with serving(endpoint(tiny_clip), cache_dir=tmp_path, engine={"engine": engine}) as (client, backend):
            r = await client.post("/_inference/embedding/clip", json=body)
            assert r.status_code == 200, r.text
            answers[engine] = ([e["embedding"] for e in r.json()["embeddings"]], dict(backend.running_on))
    assert answers["torch"][1] == {"engine": "torch", "quantization": "none"}
    assert answers["onnx"][1]["engine"] == "onnx" and answers["onnx"][1]["cosine"] >= 0.9999
    exports = sorted(p.relative_to(tmp_path).parts[-4:] for p in tmp_path.glob("kubeinfer-onnx/**/model.onnx"))
    assert [p[-2] for p in exports] == ["text", "vision"]
    for ours, theirs in zip(*(answers[e][0] for e in ("onnx", "torch"))):
        assert close(ours, theirs, 1e-5)


async def test_int8_is_refused_for_image_and_text_models(tiny_clip, tmp_path):
    from model_server.backends.registry import create_backend

    backend = create_backend(endpoint(tiny_clip), cache_dir=tmp_path, engine={"quantization": "int8"})
    with pytest.raises(Exception) as failure:
        await backend.start()
    assert "int8 quantization is not offered for image-and-text models" in str(failure.value)
