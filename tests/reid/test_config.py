from pathlib import Path

import pytest

from reid.config import ConfigError, LossConfig, ModelConfig, load_yaml_settings
from reid.models import CASN

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted((CONFIGS / "model").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_model_configs_validate(path: Path) -> None:
    config = load_yaml_settings(path, ModelConfig)
    assert config.backbone in {"resnet50", "resnet18", "mobilenet_v2"}


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
