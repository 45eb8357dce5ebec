from pathlib import Path

import cv2
import numpy as np
import pytest

from reid.data import DatasetError, IdentityBatchSampler, generate_synthetic, load_dataset
from reid.data.datasets import market1501, site
from reid.data.loading import read_image


def _touch_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((16, 8, 3), 127, np.uint8))


def test_market_layout_relabels_train_and_drops_junk(tmp_path: Path) -> None:
    root = tmp_path / "Market-1501-v15.09.15"
    for name in ("0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s3_077419_03.jpg"):
        _touch_image(root / "bounding_box_train" / name)
    for name in ("0003_c1s1_000001_00.jpg",):
        _touch_image(root / "query" / name)
    for name in ("0003_c2s1_000002_00.jpg", "-1_c1s1_000003_00.jpg", "0000_c4s1_0004_00.jpg"):
        _touch_image(root / "bounding_box_test" / name)
    data = market1501(tmp_path)  # the official nested folder is found
    assert sorted((s.pid, s.camid) for s in data.train) == [(0, 0), (0, 1), (1, 2)]
    assert [(s.pid, s.camid) for s in data.query] == [(3, 0)]
    # junk (-1) removed, distractors (0) kept in the gallery
    assert sorted((s.pid, s.camid) for s in data.gallery) == [(0, 3), (3, 1)]


def test_incomplete_root_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "bounding_box_train").mkdir()
    with pytest.raises(DatasetError, match=r"missing query/, bounding_box_test/"):
        market1501(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset("dukemtmc", tmp_path / "nope")
    with pytest.raises(DatasetError, match="valid datasets"):
        load_dataset("imagenet", tmp_path)


def test_site_layout_splits_by_identity(tmp_path: Path) -> None:
    for identity in range(6):
        for camera in ("cam_a", "cam_b"):
            for n, t in enumerate((10.0 + identity, 20.5 + identity)):
                _touch_image(tmp_path / f"id{identity}" / f"{camera}_{t}_{n}.jpg")
    data = site(tmp_path, train_fraction=0.5, seed=3)
    train_ids = {s.path.parent.name for s in data.train}
    test_ids = {s.path.parent.name for s in data.query + data.gallery}
    assert len(train_ids) == 3 and not train_ids & test_ids
    assert sorted({s.pid for s in data.train}) == [0, 1, 2]
    # the earliest crop of each camera of each test identity is the query
    assert len(data.query) == 3 * 2 and all(s.path.name.endswith("_0.jpg") for s in data.query)
    assert len(data.gallery) == 3 * 2


def test_site_bad_file_name_is_named(tmp_path: Path) -> None:
    _touch_image(tmp_path / "a" / "cam1_12.5_0.jpg")
    _touch_image(tmp_path / "b" / "holiday.jpg")
    with pytest.raises(DatasetError, match="holiday.jpg"):
        site(tmp_path)


def test_synthetic_is_deterministic_and_readable(tmp_path: Path) -> None:
    a = load_dataset("synthetic", generate_synthetic(tmp_path / "a", identities=8, seed=5))
    b = load_dataset("synthetic", generate_synthetic(tmp_path / "b", identities=8, seed=5))
    assert [s.path.name for s in a.train] == [s.path.name for s in b.train]
    first = a.train[0].path.relative_to(tmp_path / "a")
    assert np.array_equal(
        cv2.imread(str(tmp_path / "a" / first)), cv2.imread(str(tmp_path / "b" / first))
    )
    assert a.num_train_pids == 4 and {s.pid for s in a.query} == {s.pid for s in a.gallery}
    assert len({s.camid for s in a.train}) >= 2


def test_corrupt_image_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "0001_c1s1_0_00.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError, match="0001_c1s1_0_00.jpg"):
        read_image(str(bad))


def test_identity_sampler_balances_and_shards() -> None:
    pids = [p for p in range(10) for _ in range(p % 3 + 2)]  # 2..4 images per identity
    sampler = IdentityBatchSampler(pids, batch_size=8, num_instances=2, seed=1)
    batches = list(sampler)
    assert batches and all(len(b) == 8 for b in batches)
    for batch in batches:
        ids = [pids[i] for i in batch]
        assert len(set(ids)) == 4 and all(ids.count(p) == 2 for p in set(ids))
    sampler.set_epoch(1)
    assert list(sampler) != batches
    ranks = [IdentityBatchSampler(pids, 8, 2, seed=1, rank=r, world_size=2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) and list(ranks[0]) != list(ranks[1])
    with pytest.raises(ValueError, match="multiple of num_instances"):
        IdentityBatchSampler(pids, batch_size=7, num_instances=2)
