"""Torch networks and the numpy forward pass of the "mlp" architecture."""
import numpy as np
import pytest
import torch

from iaemu_likelihood.networks import MLP_DEFAULTS, PAPER_DEFAULTS, build_network
from iaemu_likelihood.numpy_forward import MLPEnsemble, softplus

#: numpy (float64 compute) vs torch float64 on the same float32 weights
NUMPY_TORCH_RTOL = 1e-6
N_POINTS = 16


def _inputs(n=N_POINTS, seed=0):
    return np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, 7))


@pytest.mark.parametrize("architecture", ["mlp", "paper"])
def test_output_contract_shapes_and_positive_variance(architecture):
    torch.manual_seed(0)
    net = build_network(architecture).eval()
    mean, var = net(torch.as_tensor(_inputs(), dtype=torch.float32))
    assert mean.shape == (N_POINTS, 60) and var.shape == (N_POINTS, 60)
    assert torch.all(var > 0)
    assert torch.all(torch.isfinite(mean))


def test_build_network_rejects_unknown_architecture_and_keys():
    with pytest.raises(ValueError, match="'cnn'.*mlp.*paper"):
        build_network("cnn")
    with pytest.raises(ValueError, match="depth"):
        build_network("mlp", {"depth": 3})
    with pytest.raises(ValueError, match="activation = 'relu'"):
        build_network("mlp", {"activation": "relu"})
    with pytest.raises(ValueError, match="dropout = 1.5"):
        build_network("paper", {"dropout": 1.5})
    with pytest.raises(ValueError, match="decoder_length = 50"):
        build_network("paper", {"decoder_length": 50})


def test_defaults_are_documented_sizes():
    assert PAPER_DEFAULTS["latent_dim"] == 128 and PAPER_DEFAULTS["dropout"] == 0.2
    net = build_network("mlp", {"width": 32, "n_hidden": 2})
    assert [m.out_features for m in net.hidden] == [32, 32]
    assert net.out.out_features == 120
    assert MLP_DEFAULTS["activation"] == "silu"


@pytest.mark.parametrize("activation", ["silu", "tanh", "gelu"])
def test_numpy_forward_reproduces_torch_mlp(activation):
    torch.manual_seed(1)
    members = [build_network("mlp", {"width": 48, "n_hidden": 3, "activation": activation})
               for _ in range(3)]
    state_dicts = [{k: v.numpy().copy() for k, v in m.state_dict().items()} for m in members]
    std = np.linspace(0.5, 2.0, 60)
    mu = np.linspace(-1.0, 1.0, 60)
    low, high = np.full(7, -3.0), np.full(7, 5.0)
    ensemble = MLPEnsemble(state_dicts, activation, 1e-6, low, high, mu, std)
    theta = low + (high - low) * (_inputs() + 1.0) / 2.0
    y, var_std = ensemble(theta)
    assert y.shape == (3, N_POINTS, 60) and var_std.shape == (3, N_POINTS, 60)
    x = torch.as_tensor(_inputs(), dtype=torch.float64)
    for i, net in enumerate(members):
        with torch.no_grad():
            m, v = net.double()(x)
        np.testing.assert_allclose(y[i], m.numpy() * std + mu, rtol=NUMPY_TORCH_RTOL, atol=0)
        np.testing.assert_allclose(var_std[i], v.numpy(), rtol=NUMPY_TORCH_RTOL, atol=0)


def test_numpy_softplus_matches_torch_including_extremes():
    z = np.array([-800.0, -30.0, -1.0, 0.0, 1e-3, 5.0, 19.0, 25.0, 800.0])
    expected = torch.nn.functional.softplus(torch.as_tensor(z)).numpy()
    np.testing.assert_allclose(softplus(z), expected, rtol=1e-12, atol=0)


def test_paper_state_dict_uses_reference_module_names():
    keys = build_network("paper").state_dict().keys()
    for key in ("encoder.layer1.0.weight", "encoder.layer1.2.running_mean", "encoder.match_dim1.weight",
                "encoder.final_layer.0.weight", "decoder1.initial_layer.weight", "decoder2.conv6.weight",
                "decoder3.bn6.running_var", "decoder3.conv7.bias"):
        assert key in keys


def test_paper_mc_dropout_is_stochastic_in_eval_mode_and_keeps_batchnorm_frozen():
    torch.manual_seed(2)
    net = build_network("paper").eval()
    x = torch.as_tensor(_inputs(), dtype=torch.float32)
    running = net.encoder.layer1[2].running_mean.clone()
    with torch.no_grad():
        a, _ = net(x)
        b, _ = net(x)
        torch.testing.assert_close(a, b)  # deterministic without MC dropout
        net.set_mc_dropout(True)
        c, _ = net(x)
        d, _ = net(x)
    assert not torch.allclose(c, d)
    assert not net.encoder.layer1[2].training  # batch norm stays in eval mode
    torch.testing.assert_close(net.encoder.layer1[2].running_mean, running)
    net.set_mc_dropout(False)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[0], a)


def test_networks_are_differentiable_wrt_inputs():
    torch.manual_seed(3)
    for architecture in ("mlp", "paper"):
        net = build_network(architecture).eval()
        x = torch.as_tensor(_inputs(4), dtype=torch.float32).requires_grad_(True)
        mean, var = net(x)
        (mean.sum() + var.sum()).backward()
        assert x.grad is not None and torch.all(torch.isfinite(x.grad))
        assert float(x.grad.abs().sum()) > 0
