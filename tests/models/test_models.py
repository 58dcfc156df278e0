from __future__ import annotations

import pytest
import torch

from biasvar.errors import ConfigError
from biasvar.models import MODELS, count_params, create_model

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("shape", SHAPES)
def test_every_model_maps_images_to_logits(name, shape):
    torch.manual_seed(0)
    m = create_model(name, num_classes=7, in_shape=shape, width=8, depth=2)
    x = torch.randn(3, *shape)
    m.eval()
    out = m(x)
    assert out.shape == (3, 7) and torch.isfinite(out).all()
    m.train()
    out.sum().backward() if out.requires_grad else None


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.get(n).uses_width])
def test_width_and_depth_change_capacity(name):
    kw = dict(num_classes=10, in_shape=(1, 28, 28))
    small = count_params(create_model(name, width=8, depth=1, **kw))
    wide = count_params(create_model(name, width=32, depth=1, **kw))
    deep = count_params(create_model(name, width=8, depth=3, **kw))
    assert small < wide and small != deep


def test_default_cnn_is_the_reference_architecture():
    m = create_model("cnn", num_classes=10, in_shape=(1, 28, 28), width=32, depth=2)
    convs = [l for l in m.modules() if isinstance(l, torch.nn.Conv2d)]
    fcs = [l for l in m.modules() if isinstance(l, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [32, 64]
    assert [f.out_features for f in fcs] == [128, 10]


def test_dropout_and_batchnorm_knobs():
    m = create_model("mlp", num_classes=10, in_shape=(1, 8, 8), width=16, depth=2, dropout=0.3,
                     batchnorm=False)
    assert sum(isinstance(l, torch.nn.Dropout) for l in m.modules()) == 2
    assert not any(isinstance(l, torch.nn.BatchNorm1d) for l in m.modules())


def test_unknown_model_suggests_nearest():
    with pytest.raises(ConfigError, match="Did you mean 'cnn'") as e:
        create_model("cnnn", num_classes=10, in_shape=(1, 8, 8))
    assert "mlp" in str(e.value)
