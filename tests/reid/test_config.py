from pathlib import Path

import pytest
import torch

from reid.config import ConfigError, LossConfig, ModelConfig, load_yaml_settings
from reid.models import CASN

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


# each shipped config: (channels, map height, width, feature dim) of the model it describes,
# from the paper's input sizes and the backbones' strides (32; 16 with last_stride 1)
SHIPPED = {
    "casn_ide_mobilenet_v2.yaml": (1280, 288 // 32, -(-144 // 32), 1280),
    "casn_ide_resnet50.yaml": (2048, 288 // 32, -(-144 // 32), 2048),
    "casn_pcb_resnet50.yaml": (2048, 384 // 16, 128 // 16, 6 * 256),
}


def test_every_shipped_model_config_is_checked() -> None:
    assert sorted(p.name for p in (CONFIGS / "model").glob("*.yaml")) == sorted(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_configs_build_the_model_they_describe(name: str) -> None:
    config = load_yaml_settings(CONFIGS / "model" / name, ModelConfig)
    model = CASN.from_config(config, num_classes=3).eval()
    with torch.no_grad():
        out = model.embed(torch.randn(1, 3, *model.input_size))
    channels, height, width, dim = SHIPPED[name]
    assert out.maps.shape == (1, channels, height, width)
    assert out.features.shape == (1, dim)


def test_shipped_loss_config_is_the_paper_default() -> None:
    assert load_yaml_settings(CONFIGS / "loss_paper.yaml", LossConfig) == LossConfig()


def test_errors_name_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text("backbone: resnet50\nvariant: mgn\ndropuot: 0.1\n")
    with pytest.raises(ConfigError) as info:
        load_yaml_settings(path, ModelConfig)
    message = str(info.value)
    assert str(path) in message
    assert "variant" in message and "dropuot" in message


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_yaml_settings(tmp_path / "absent.yaml", ModelConfig)
    bad = tmp_path / "bad.yaml"
    bad.write_text("backbone: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml_settings(bad, ModelConfig)


def test_from_config_builds_the_described_model() -> None:
    config = ModelConfig(backbone="resnet18", variant="pcb", hidden_dim=64)
    model = CASN.from_config(config, num_classes=4)
    assert model.variant == "pcb" and model.feature_dim == 6 * 256
    assert model.classifier.heads[0][0].out_features == 64


def test_the_shared_settings_helpers_are_still_importable_from_reid_config() -> None:
    """They live in settingskit (detectors use them without reid); reid.config re-exports."""
    import settingskit
    from reid import config

    assert all(getattr(config, name) is getattr(settingskit, name) for name in settingskit.__all__)
