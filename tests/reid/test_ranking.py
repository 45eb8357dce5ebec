import numpy as np
import torch

from reid.attention import attention_distance
from reid.models import CASN
from reid.ranking import casn_distance
from reid.runtime.consistency import attention_scorer
from reid.runtime.pair_scoring import feature_distance_matrix


def test_feature_only_ranking_is_the_cosine_distance() -> None:
    model = CASN(5, backbone="resnet18").eval()
    q, g = model.embed(torch.randn(3, 3, 64, 32)), model.embed(torch.randn(6, 3, 64, 32))
    dist = casn_distance(
        attention_scorer(model),
        q.features.numpy(),
        q.maps.numpy(),
        g.features.numpy(),
        g.maps.numpy(),
        attention_weight=0.0,
    )
    expected = (
        1 - torch.nn.functional.cosine_similarity(q.features[:, None], g.features[None], dim=-1)
    ) / 2
    np.testing.assert_allclose(dist, expected.numpy(), atol=1e-5, rtol=0)
    assert np.all((dist >= 0) & (dist <= 1))


def test_casn_ranking_rescores_the_top_k_with_the_pair_attention_distance() -> None:
    """The numpy closed form against autograd Grad-CAM computed from the images."""
    model = CASN(5, backbone="resnet18").eval()
    q_images, g_images = torch.randn(2, 3, 64, 32), torch.randn(7, 3, 64, 32)
    q, g = model.embed(q_images), model.embed(g_images)
    weight, top_k = 0.4, 3
    dist = casn_distance(
        attention_scorer(model),
        q.features.numpy(),
        q.maps.numpy(),
        g.features.numpy(),
        g.maps.numpy(),
        weight,
        top_k,
    )
    feat = feature_distance_matrix(q.features.numpy(), g.features.numpy())
    for i in range(2):
        top = np.argsort(feat[i])[:top_k]
        for j in range(7):
            if j in top:
                m1, m2 = model.siamese_attention(q_images[i : i + 1], g_images[j : j + 1])
                att = float(attention_distance(m1, m2)[0]) / q.maps.shape[-2]
                expected = (1 - weight) * feat[i, j] + weight * att
                np.testing.assert_allclose(dist[i, j], expected, atol=1e-4, rtol=0)
            else:
                np.testing.assert_allclose(dist[i, j], 1 + feat[i, j], rtol=1e-6)
