"""The OpenVINO embedder: ONNX Runtime's features in fp32; `auto` on a CPU keeps whichever
of the two ran the model faster, measured once."""

from __future__ import annotations

import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from reid.export.onnx_export import export_onnx
from reid.export.samples import cosine_rows
from reid.runtime import EmbedderError, load_embedder
from reid.runtime.cpu_choice import verdicts_file
from reid.runtime.metadata import metadata_path
from reid.runtime.openvino_backend import OpenVinoEmbedder
from reid.runtime.registry import ort_cuda_usable

openvino = pytest.importorskip("openvino", reason="the openvino package is not installed")
cpu_only = pytest.mark.skipif(ort_cuda_usable(), reason="ONNX Runtime has CUDA here: it wins")


def test_openvino_agrees_with_onnx_runtime_on_real_people(exported: Path, people) -> None:
    got = OpenVinoEmbedder(exported).embed(people)
    expected = load_embedder(exported, "ort").embed(people)
    assert cosine_rows(got.features, expected.features).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(got.features, axis=1), 1.0, atol=1e-5)
    assert got.projections is not None and got.projections.dtype == np.float32
    np.testing.assert_allclose(got.projections, expected.projections, rtol=1e-3, atol=1e-4)


def test_one_openvino_embedder_serves_several_threads(exported: Path, people) -> None:
    embedder = OpenVinoEmbedder(exported)
    parts = [people[i : i + 3] for i in range(0, 12, 3)]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(embedder.embed, parts))
    for part, got in zip(parts, together, strict=True):
        np.testing.assert_array_equal(got.features, embedder.embed(part).features)


@cpu_only
def test_auto_keeps_the_runtime_measured_faster_once(
    exported: Path, checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REID_HOME", str(tmp_path / "home"))
    monkeypatch.setattr("reid.runtime.cpu_choice.openvino_speedup", lambda ort, ov: 1.25)
    assert load_embedder(exported).name == "openvino-cpu"
    verdicts = json.loads(verdicts_file().read_text())
    assert [v["openvino_speedup"] for v in verdicts.values()] == [1.25]

    def measured_again(ort: object, ov: object) -> float:
        raise AssertionError("measured again")

    monkeypatch.setattr("reid.runtime.cpu_choice.openvino_speedup", measured_again)
    assert load_embedder(checkpoint).name == "openvino-cpu"  # its sibling .onnx, as recorded
    assert load_embedder(exported, "ort").name == "ort-cpu"  # explicit: no choice
    slower = export_onnx(checkpoint, tmp_path / "other.onnx", basis_rank=8).onnx  # its own
    monkeypatch.setattr("reid.runtime.cpu_choice.openvino_speedup", lambda ort, ov: 0.9)
    assert load_embedder(slower).name == "ort-cpu"
    assert len(json.loads(verdicts_file().read_text())) == 2
    verdicts_file().write_text("{")  # cut short: measured again, not a crash
    assert load_embedder(slower).name == "ort-cpu"
    assert len(json.loads(verdicts_file().read_text())) == 1


@cpu_only
def test_the_measurement_times_both_runtimes_on_the_model(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    monkeypatch.setenv("REID_HOME", str(tmp_path / "home"))
    with caplog.at_level(logging.INFO):
        chosen = load_embedder(exported).name
    ((key, verdict),) = json.loads(verdicts_file().read_text()).items()
    assert verdict["openvino_speedup"] > 0 and verdict["model"] == str(exported)
    assert chosen == ("openvino-cpu" if verdict["openvino_speedup"] >= 1 else "ort-cpu")
    assert "measured once" in caplog.text and "onnxruntime" in key and "openvino" in key
    monkeypatch.setattr("reid.runtime.cpu_choice.openvino_installed", lambda: False)
    with caplog.at_level(logging.WARNING):
        assert load_embedder(exported).name == "ort-cpu"
    assert "pip install openvino" in caplog.text


def test_an_ir_runs_and_files_that_do_not_fit_are_clear_errors(
    exported: Path, checkpoint: Path, tmp_path: Path, crops
) -> None:
    with pytest.raises(EmbedderError, match=r"'openvino' loads \.onnx or \.xml files"):
        load_embedder(checkpoint, "openvino")
    ir = tmp_path / "model.xml"
    openvino.save_model(openvino.Core().read_model(str(exported)), str(ir))
    shutil.copy(metadata_path(exported), metadata_path(ir))
    from_ir = load_embedder(ir)  # an IR (.xml + .bin) has one runtime, under auto too
    assert from_ir.name == "openvino-cpu"
    expected = load_embedder(exported, "ort").embed(crops).features
    assert cosine_rows(from_ir.embed(crops).features, expected).min() >= 0.999
    ir.with_suffix(".bin").unlink()
    with pytest.raises(EmbedderError, match=r"model\.xml cannot be loaded"):
        OpenVinoEmbedder(ir)
    renamed = tmp_path / "renamed.onnx"
    shutil.copy(exported, renamed)
    meta = json.loads(metadata_path(exported).read_text())
    metadata_path(renamed).write_text(json.dumps({**meta, "output_names": ["embedding"]}))
    with pytest.raises(EmbedderError, match=r"renamed\.onnx outputs .* metadata says"):
        OpenVinoEmbedder(renamed)
    metadata_path(renamed).unlink()
    with pytest.raises(EmbedderError, match="metadata file"):
        OpenVinoEmbedder(renamed)
