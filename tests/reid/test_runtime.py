"""Export and the inference backends on CPU; TensorRT tests run only with CUDA + tensorrt."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from reid.attention import pair_attention
from reid.export.cli import app
from reid.export.fallback import export_fallback
from reid.export.onnx_export import ExportError
from reid.export.quantize import quantize_onnx
from reid.export.samples import cosine_rows
from reid.models import CASN
from reid.runtime import CropBatcher, EmbedderError, load_embedder
from reid.runtime.consistency import ConsistencyScorer, fit_channel_basis
from reid.runtime.cpu_choice import verdicts_file
from reid.runtime.cuda_graphs import GraphedForward
from reid.runtime.fallback import fallback_embedder, fallback_onnx
from reid.runtime.home import reid_home
from reid.runtime.metadata import metadata_path, model_stem, scorer_path
from reid.runtime.onnx_backend import OrtEmbedder
from reid.runtime.registry import ort_cuda_usable
from reid.runtime.torch_backend import TorchEmbedder

HAS_TRT = importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available()
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


def auto_onnx_name(home: Path) -> str:
    """Who runs an .onnx under `auto` (reid.runtime.cpu_choice): ORT where it has CUDA, else
    the runtime the verdict measured into ``home`` names (ORT's CPU provider without
    OpenVINO)."""
    if ort_cuda_usable():
        return "ort-cuda"
    if not HAS_OPENVINO:
        return "ort-cpu"
    (verdict,) = json.loads(verdicts_file(home).read_text()).values()
    return "openvino-cpu" if verdict["openvino_speedup"] >= 1.0 else "ort-cpu"


def test_onnx_runtime_agrees_with_pytorch(exported: Path, checkpoint: Path, crops) -> None:
    meta = json.loads(metadata_path(exported).read_text())
    assert meta["output_names"] == ["features", "projections"] and meta["basis_rank"] == 16
    assert meta["input_size"] == [64, 32] and meta["parity_min_cosine"] >= 0.999
    ort_emb = OrtEmbedder(exported).embed(crops)
    torch_emb = TorchEmbedder.from_checkpoint(
        checkpoint, checkpoint.with_name("model.consistency.pt")
    ).embed(crops)
    assert cosine_rows(ort_emb.features, torch_emb.features).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(ort_emb.features, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ort_emb.projections, torch_emb.projections, rtol=1e-3, atol=1e-4)


def test_full_rank_projection_reproduces_the_attention_maps(checkpoint: Path) -> None:
    model = TorchEmbedder.from_checkpoint(checkpoint).model
    emb = model.embed(torch.randn(6, 3, 64, 32))
    basis = fit_channel_basis(emb.maps, rank=emb.maps.shape[1])  # square: U U^T = I
    scorer = ConsistencyScorer.from_model(model, basis)
    p = scorer.project(emb.maps)
    full = pair_attention(model, emb.maps[:3], emb.maps[3:], emb.features[:3], emb.features[3:])
    projected = pair_attention(model, p[:3], p[3:], emb.features[:3], emb.features[3:], basis)
    for a, b in zip(full, projected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_scorer_round_trips_through_its_file(exported: Path, tmp_path: Path) -> None:
    scorer = ConsistencyScorer.load(exported.with_name("model.consistency.pt"))
    scorer.save(tmp_path / "copy.pt")
    again = ConsistencyScorer.load(tmp_path / "copy.pt")
    torch.testing.assert_close(scorer.basis, again.basis)
    (tmp_path / "bad.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="bad.pt is corrupt"):
        ConsistencyScorer.load(tmp_path / "bad.pt")


def test_auto_backend_and_clear_errors(
    exported: Path, checkpoint: Path, crops, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REID_HOME", str(tmp_path / "home"))
    # the sibling .onnx wins on a CPU, and on a GPU when ONNX Runtime has CUDA there;
    # torch fp16 otherwise beats ONNX Runtime on the CPU
    gpu_torch = torch.cuda.is_available() and not ort_cuda_usable()
    chosen = load_embedder(checkpoint).name
    assert chosen == ("torch-cuda fp16" if gpu_torch else auto_onnx_name(tmp_path / "home"))
    explicit = load_embedder(checkpoint, "torch").name
    assert explicit == ("torch-cuda fp16" if torch.cuda.is_available() else "torch-cpu")
    with pytest.raises(EmbedderError, match="loads .engine files"):
        load_embedder(exported, "trt")
    with pytest.raises(EmbedderError, match="no model at"):
        load_embedder(tmp_path / "nothing.pt")
    embedder = load_embedder(exported, "ort")
    with pytest.raises(EmbedderError, match="no crops"):
        embedder.embed([])
    with pytest.raises(EmbedderError, match="dtype float32"):
        embedder.embed([crops[0].astype(np.float32)])
    with pytest.raises(EmbedderError, match="is empty"):
        embedder.embed([np.zeros((0, 10, 3), np.uint8)])
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not onnx")
    metadata_path(corrupt).write_text(metadata_path(exported).read_text())
    for backend in ("ort", "openvino") if HAS_OPENVINO else ("ort",):
        with pytest.raises(EmbedderError, match="corrupt.onnx cannot be loaded"):
            load_embedder(corrupt, backend)
    text = tmp_path / "notes.pt"  # a text file named .pt used to be a KeyError traceback
    text.write_text("hello")
    with pytest.raises(EmbedderError, match="notes.pt is corrupt or not a reid-train"):
        load_embedder(text, "torch")
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(exported.read_bytes())
    with pytest.raises(EmbedderError, match="metadata file"):
        OrtEmbedder(lonely)


@pytest.mark.parametrize(
    "suffix,runtime,needs", [(".onnx", "ort", "onnxruntime"), (".xml", "openvino", "nncf")]
)
def test_int8_quantisation_reports_fidelity_and_refuses_a_loss(
    exported: Path,
    tmp_path: Path,
    crops,
    suffix: str,
    runtime: str,
    needs: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ONNX Runtime's INT8 (.onnx) or NNCF's for OpenVINO (.xml): kept when its features
    stay within the bar of fp32, removed when they do not."""
    pytest.importorskip(needs, reason=f"the INT8 {suffix} path needs {needs}")
    monkeypatch.setenv("REID_HOME", str(tmp_path / "home"))
    out = tmp_path / "int8" / f"model.int8{suffix}"
    # the tiny random model is harder to quantise than a trained one: a lower bar for it
    result = quantize_onnx(exported, out, num_calibration=16, min_cosine=0.9)
    int8 = load_embedder(result.path, runtime).embed(crops)
    fp32 = load_embedder(exported, runtime).embed(crops)
    measured = cosine_rows(int8.features, fp32.features)
    assert 0.9 < result.min_cosine <= 1.0 and measured.min() > 0.9
    meta = json.loads(metadata_path(result.path).read_text())
    assert meta["precision"] == "int8" and meta["parity_min_cosine"] == result.min_cosine
    assert load_embedder(result.path).embed(crops).features.shape == fp32.features.shape
    written = sorted(p.name for p in out.parent.iterdir())
    refused = CliRunner().invoke(  # no INT8 meets a bar over 1
        app, ["quantize", "--onnx", str(exported), "--out", str(out), "--min-cosine", "1.001"]
    )
    assert refused.exit_code == 2 and "nothing written" in " ".join(refused.output.split())
    assert written and not list(out.parent.iterdir())


@pytest.mark.skipif(not HAS_OPENVINO, reason="the openvino package is not installed")
def test_openvino_int8_without_nncf_says_what_to_install(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "nncf", None)  # as if not installed
    with pytest.raises(ExportError, match="needs NNCF: pip install nncf"):
        quantize_onnx(exported, tmp_path / "model.int8.xml", num_calibration=4)
    assert not list(tmp_path.iterdir())


def test_batcher_gathers_cameras_into_batches(exported: Path, crops) -> None:
    embedder = OrtEmbedder(exported)
    batcher = CropBatcher(embedder, max_batch=8, max_wait_s=0.05)
    results: dict[int, np.ndarray] = {}

    def camera(i: int) -> None:
        results[i] = batcher.submit(crops[2 * i : 2 * i + 2]).result().features

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.close()
    direct = embedder.embed(crops).features
    for i in range(6):
        np.testing.assert_allclose(results[i], direct[2 * i : 2 * i + 2], atol=1e-5)
    assert batcher.batches < 6


def test_cli_export_refuses_bad_input(checkpoint: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "onnx",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "m.onnx"),
            "--basis-rank",
            "8",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert (tmp_path / "m.onnx").is_file() and (tmp_path / "m.consistency.pt").is_file()
    missing = runner.invoke(
        app, ["onnx", "--checkpoint", str(tmp_path / "x.pt"), "--out", str(tmp_path / "y.onnx")]
    )
    assert missing.exit_code == 2 and "does not exist" in " ".join(missing.output.split())


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TRT, reason="needs CUDA and the tensorrt package ('trt' extra)")
def test_tensorrt_fp16_engine_parity_and_target_check(
    exported: Path, tmp_path: Path, crops
) -> None:
    from reid.export.tensorrt_build import build_engine
    from reid.runtime.tensorrt_backend import TensorRTEmbedder

    build = build_engine(exported, tmp_path / "model.engine", "fp16", max_batch=16)
    assert build.min_cosine >= 0.999
    engine = TensorRTEmbedder(build.engine)
    got = engine.embed(crops)
    assert cosine_rows(got.features, OrtEmbedder(exported).embed(crops).features).min() >= 0.999
    meta_file = metadata_path(build.engine)
    meta = json.loads(meta_file.read_text())
    meta["tensorrt_version"] = "1.0.0"
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(EmbedderError, match=r"built with TensorRT 1\.0\.0, this machine has"):
        TensorRTEmbedder(build.engine)


def test_fallback_embedder_lives_in_reid_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crops, request: pytest.FixtureRequest
) -> None:
    """No export yet: the same ImageNet model in PyTorch; after `reid-export fallback` the
    ONNX version, found through REID_HOME from any folder; the two agree."""
    monkeypatch.setenv("REID_HOME", str(tmp_path / "home"))
    assert reid_home() == tmp_path / "home"
    eager = fallback_embedder()
    assert eager.name == "torch-cpu"
    exported = export_fallback()
    assert exported == fallback_onnx() and exported.is_relative_to(tmp_path / "home")
    monkeypatch.chdir(tmp_path)
    onnx = fallback_embedder()
    assert onnx.name == auto_onnx_name(tmp_path / "home")
    assert fallback_embedder(backend="ort").name.startswith("ort")  # reid.backend: ort
    small = [cv2.resize(c, (64, 128)) for c in crops[:4]]
    assert cosine_rows(onnx.embed(small).features, eager.embed(small).features).min() >= 0.999
    if HAS_OPENVINO:  # OpenVINO computes in fp32: ONNX Runtime's features on real people
        real = request.getfixturevalue("people")
        got, expected = load_embedder(exported, "openvino"), load_embedder(exported, "ort")
        assert cosine_rows(got.embed(real).features, expected.embed(real).features).min() >= 0.999


def test_model_names_with_dots_keep_their_artifacts_together(
    exported: Path, tmp_path: Path, crops, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`reid.model: m/casn.v2.onnx` used to be cut at its first dot ("no model")."""
    monkeypatch.setenv("REID_HOME", str(tmp_path / "home"))
    assert model_stem("m/casn.v2.int8.onnx") == Path("m/casn.v2")
    assert model_stem("m/casn.v2.fp16.engine") == Path("m/casn.v2")
    assert scorer_path("m/casn.v2.pt") == Path("m/casn.v2.consistency.pt")
    assert scorer_path("casn.consistency.pt") == Path("casn.consistency.pt")
    for src, dst in (
        (exported, "casn.v2.onnx"),
        (metadata_path(exported), "casn.v2.onnx.json"),
        (scorer_path(exported), "casn.v2.consistency.pt"),
    ):
        shutil.copy(src, tmp_path / dst)
    embedder = load_embedder(tmp_path / "casn.v2.onnx")
    assert embedder.embed(crops).features.shape[0] == len(crops)
    assert scorer_path(tmp_path / "casn.v2.onnx").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_fp16_on_cuda_agrees_with_fp32_on_cpu(checkpoint: Path, crops) -> None:
    scorer = checkpoint.with_name("model.consistency.pt")
    cpu = TorchEmbedder.from_checkpoint(checkpoint, scorer).embed(crops)
    gpu = TorchEmbedder.from_checkpoint(checkpoint, scorer, device="cuda")
    assert gpu.half and gpu.name == "torch-cuda fp16"
    got = gpu.embed(crops)
    assert got.features.dtype == np.float32
    assert cosine_rows(got.features, cpu.features).min() >= 0.999
    flat = [e.projections.reshape(len(crops), -1) for e in (got, cpu)]
    assert cosine_rows(*flat).min() >= 0.99


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_buckets_pad_and_split_like_eager() -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.AdaptiveAvgPool2d(1)
    )
    model = model.cuda().eval()

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (model(x).flatten(1), x.mean(dim=(1, 2, 3)))

    graphed = GraphedForward(forward, max_batch=4)
    x = torch.randn(11, 3, 16, 8, device="cuda")
    with torch.no_grad():
        for n in (1, 3, 4, 11):  # buckets 1, 4, 4 and 4 + 4 + 4 (split, last one padded)
            got, expected = graphed(x[:n]), forward(x[:n])
            for g, e in zip(got, expected, strict=True):
                torch.testing.assert_close(g, e)
    assert sorted(graphed.graphs) == [1, 4]  # captured once per bucket
    with pytest.raises(ValueError, match="power of two"):
        GraphedForward(forward, max_batch=48)


@pytest.mark.parametrize("variant", ["ide", "pcb"])
def test_numpy_scorer_equals_the_torch_closed_form(variant: str) -> None:
    """The matcher's numpy scorer (no torch) against the torch closed form, which the
    attention tests check against autograd Grad-CAM; PCB covers stripes and projections."""
    model = CASN(5, backbone="resnet18", variant=variant).eval()
    size = (96, 32) if variant == "pcb" else (64, 32)
    emb = model.embed(torch.randn(8, 3, *size))
    scorer = ConsistencyScorer.from_model(model, fit_channel_basis(emb.maps, rank=24))
    p = scorer.project(emb.maps)
    expected = scorer.distance(emb.features[:4], p[:4], emb.features[4:], p[4:]).numpy()
    got = scorer.to_numpy().distance(
        emb.features[:4].numpy(), p[:4].numpy(), emb.features[4:].numpy(), p[4:].numpy()
    )
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert expected.max() > 0  # the pairs' profiles differ: the check is not vacuous
