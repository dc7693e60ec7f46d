"""The ``block`` option: shapes, what sign sees, and the gradients that make estimators differ."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import estimators
from bench.config import build_config
from bench.errors import UserError
from estimators.blocks import BLOCKS, LearnableBias, RPReLU
from estimators.layers import BinaryConv2d, binary_layers
from tasks.classification.models import MODELS, OptionAShortcut

SIZES = {"resnet18_imagenet": 64}


def build(model: str = "resnet20_cifar", block: str = "bireal", in_channels: int = 1) -> nn.Module:
    torch.manual_seed(0)
    return MODELS.get(model)(num_classes=10, in_channels=in_channels, block=block)


def conv_inputs(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input every 3x3 block conv receives (after the sign site), by name."""
    seen, handles = {}, []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and name.endswith(("conv1", "conv2", "conv")) and name != "conv1":
            handles.append(module.register_forward_pre_hook(lambda m, i, n=name: seen.__setitem__(n, i[0])))
    model(images)
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("model", MODELS.names())
def test_every_model_builds_with_every_block(model, block):
    net = build(model, block, in_channels=3)
    size = SIZES.get(model, 32)
    assert net(torch.randn(2, 3, size, size)).shape == (2, 10)
    has_hardtanh = any(isinstance(m, nn.Hardtanh) for m in net.modules())
    assert has_hardtanh == (block in ("irnet", "recu"))
    assert any(isinstance(m, (LearnableBias, RPReLU)) for m in net.modules()) == (block == "reactnet")


@pytest.mark.parametrize("block", BLOCKS)
def test_odd_feature_map_sides_keep_the_shortcut_and_the_conv_aligned(block):
    """14 x 14 inputs give a 7 x 7 stage, downsampled to 4 x 4 by the strided conv and the shortcut alike."""
    assert build(block=block)(torch.randn(2, 1, 14, 14)).shape == (2, 10)


def test_irnet_resnet20_has_a_parameter_free_option_a_shortcut_and_bireal_an_avgpool_conv():
    irnet, bireal = build(block="irnet"), build(block="bireal")
    shortcut = irnet.layers[1][0].downsample
    assert isinstance(shortcut, OptionAShortcut) and not list(shortcut.parameters())
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(shortcut(x)[:, 8:24], x[:, :, ::2, ::2]) and shortcut(x)[:, :8].abs().sum() == 0
    kinds = [type(m) for m in bireal.layers[1][0].downsample]
    assert kinds == [nn.AvgPool2d, nn.Conv2d, nn.BatchNorm2d]


def test_sign_sees_values_beyond_one_in_bireal_and_never_in_irnet():
    images = torch.randn(4, 1, 28, 28)
    for block, beyond in (("bireal", True), ("reactnet", True), ("irnet", False)):
        model = build(block=block)
        estimators.binarize_model(model, estimators.build("ste"))
        inputs = conv_inputs(model, images)
        fraction = sum(float((x.abs() > 1).float().mean()) for x in inputs.values()) / len(inputs)
        assert (fraction > 0.2) if beyond else fraction == 0.0, (block, fraction)


def test_the_full_precision_reference_gets_relu_where_the_bnn_has_sign():
    images = torch.randn(4, 1, 28, 28)
    fp = build(block="bireal")  # the fp32 estimator patches nothing
    assert all(x.min() >= 0 for x in conv_inputs(fp, images).values())
    binary = build(block="bireal")
    estimators.binarize_model(binary, estimators.build("clipped_ste"))
    assert all(x.min() < 0 for x in conv_inputs(binary, images).values())
    # without the ReLU the fp32 bireal network would be affine in its input (BN in eval is affine)
    fp.eval()
    a, b = torch.randn(1, 1, 28, 28), torch.randn(1, 1, 28, 28)
    assert not torch.allclose(fp(a + b) - fp(b), fp(a) - fp(torch.zeros_like(a)), atol=1e-4)


def _gradients(block: str, estimator: str, weight_grad: str = "surrogate") -> dict[str, torch.Tensor]:
    model = build(block=block)
    estimators.binarize_model(model, estimators.build(estimator), weight_grad=weight_grad)
    torch.manual_seed(1)
    images, labels = torch.randn(8, 1, 28, 28, requires_grad=True), torch.randint(0, 10, (8,))
    F.cross_entropy(model(images), labels).backward()
    grads = {"input": images.grad}
    grads.update({name: p.grad for name, p in model.named_parameters() if p.grad is not None})
    return grads


def test_ste_and_clipped_ste_differ_on_the_default_model_and_coincide_in_irnet():
    config = build_config(task="classification", estimator="ste")
    assert config.block == "bireal" and config.model == "resnet20_cifar"
    ste, clipped = _gradients(config.block, "ste"), _gradients(config.block, "clipped_ste")
    relative = (ste["input"] - clipped["input"]).norm() / clipped["input"].norm()
    assert relative > 0.05, relative
    ste, clipped = _gradients("irnet", "ste"), _gradients("irnet", "clipped_ste")
    assert all(torch.equal(ste[k], clipped[k]) for k in ste)  # Hardtanh cut both to |x| <= 1


def test_surge_auxiliary_gradient_reaches_inputs_beyond_one():
    """At a binary conv of the default model, the clipped main path passes nothing where
    |x| > 1; SURGE's auxiliary path does."""
    model = build(block="bireal")
    estimators.binarize_model(model, estimators.build("ste"))
    x = conv_inputs(model, torch.randn(4, 1, 28, 28))["layers.1.1.conv1"].detach()
    beyond = x.abs() > 1
    assert beyond.float().mean() > 0.2
    grad_out = torch.randn(x.shape[0], 32, x.shape[2], x.shape[3])
    found = {}
    for name in ("clipped_ste", "surge"):
        conv = nn.Conv2d(32, 32, 3, 1, 1, bias=False)
        torch.manual_seed(2)
        nn.init.normal_(conv.weight, std=0.05)
        layer = BinaryConv2d.from_module(conv, estimators.build(name))
        layer.estimator.attach([layer])
        leaf = x.clone().requires_grad_(True)
        layer(leaf).backward(grad_out)
        found[name] = leaf.grad
    assert found["clipped_ste"][beyond].abs().max() == 0
    assert (found["surge"][beyond] != 0).float().mean() > 0.99


def test_identity_weight_grad_leaves_only_the_activation_estimator_different():
    ede_own, ede_identity = _gradients("bireal", "ede"), _gradients("bireal", "ede", weight_grad="identity")
    name = "layers.0.0.conv1.weight"
    assert not torch.allclose(ede_own[name], ede_identity[name])
    # one layer, the same input and upstream gradient: with identity, EDE's weight gradient is STE's
    conv = nn.Conv2d(4, 4, 3, 1, 1, bias=False)
    x, g = torch.randn(2, 4, 6, 6), torch.randn(2, 4, 6, 6)
    grads = {}
    for est, mode in (("ede", "identity"), ("ste", "identity"), ("ede", "surrogate")):
        layer = BinaryConv2d.from_module(copy.deepcopy(conv), estimators.build(est), weight_grad=mode)
        layer(x).backward(g)
        grads[(est, mode)] = layer.weight.grad
    assert torch.equal(grads[("ede", "identity")], grads[("ste", "identity")])
    assert not torch.allclose(grads[("ede", "surrogate")], grads[("ste", "identity")])


def test_reactnet_biases_and_prelu_slopes_are_trained():
    grads = _gradients("reactnet", "clipped_ste")
    assert any(k.endswith("move1.bias") and v.abs().sum() > 0 for k, v in grads.items())
    assert any(k.endswith("prelu.weight") and v.abs().sum() > 0 for k, v in grads.items())


def test_sign_inputs_hook_counts_the_fraction_beyond_one():
    from bench.engine import SignInputs, TrainState

    layer = BinaryConv2d.from_module(nn.Conv2d(1, 1, 1, bias=False), estimators.build("ste"))
    model = nn.Sequential(layer)
    state = TrainState(model=model, optimizer=None, scheduler=None, epochs=1, total_steps=1)
    hook = SignInputs()
    hook.before_train(state)
    model(torch.tensor([0.5, -2.0, 1.5, 0.9]).view(1, 1, 2, 2))
    model(torch.tensor([3.0, 0.0, 0.0, 0.0]).view(1, 1, 2, 2))
    with torch.no_grad():
        model(torch.full((1, 1, 2, 2), 5.0))  # not a training step: not counted
    hook.after_epoch(state)
    assert state.train_values == {"frac_abs_gt1/0": 3 / 8, "frac_abs_gt1_mean": 3 / 8}
    hook.after_train(state)
    assert not layer._forward_pre_hooks


def test_block_values_are_checked():
    with pytest.raises(UserError, match="bireal, reactnet, irnet"):
        build_config(task="classification", estimator="ste", sets=["block=resnet"])
    with pytest.raises(UserError, match="no block choice"):
        build_config(task="glue", estimator="ste", sets=["block=bireal"])
    with pytest.raises(UserError, match="surrogate, identity"):
        build_config(task="classification", estimator="ste", sets=["weight_grad=none"])
    assert build_config(task="classification", estimator="ste", preset="irnet", dataset="cifar10").block == "irnet"
    assert build_config(task="classification", estimator="ste", preset="paper", dataset="cifar10").block == "recu"
    assert build_config(task="glue", estimator="ste").block is None


def test_detection_backbone_blocks():
    pytest.importorskip("mmdet")
    from tasks.detection.task import import_openmmlab

    import_openmmlab()
    from mmdet.registry import MODELS as MMDET

    images = torch.randn(1, 3, 64, 64)
    from bench.plugins import get_task

    assert get_task("detection").blocks == ("bireal", "reactnet", "irnet")
    for block in get_task("detection").blocks:
        backbone = MMDET.build(dict(type="BiRealResNet", bnn_block=block, depth=18, out_indices=(0, 1, 2, 3),
                                    avg_down=True))
        assert len(backbone(images)) == 4
        assert any(isinstance(m, nn.Hardtanh) for m in backbone.modules()) == (block == "irnet")
        fp_inputs = conv_inputs(backbone, images)
        if block != "irnet":
            assert fp_inputs and all(x.min() >= 0 for x in fp_inputs.values())
        estimators.binarize_model(backbone, estimators.build("ste"))
        assert len(binary_layers(backbone)) == 16
        inputs = conv_inputs(backbone, images)
        assert (max(float(x.detach().abs().max()) for x in inputs.values()) > 1) == (block != "irnet")


def test_recu_block_normalises_each_sample_in_training_only_and_pools_its_shortcut():
    from estimators.blocks import SampleNormalize, before_sign, post_activation
    from tasks.classification.models import MODELS, OptionAShortcut

    torch.manual_seed(0)
    x = torch.randn(3, 4, 5, 5) * torch.tensor([0.5, 2.0, 8.0]).view(3, 1, 1, 1)
    norm = before_sign("recu", 4)
    assert isinstance(norm, SampleNormalize) and isinstance(post_activation("recu", 4), nn.Hardtanh)
    out = norm.train()(x)
    torch.testing.assert_close(out.reshape(3, -1).var(dim=1), torch.ones(3), rtol=1e-3, atol=1e-3)
    assert out.abs().max() > 1  # ReCU's point: sign's input is no longer confined to [-1, 1]
    assert torch.equal(norm.eval()(x), x)
    model = MODELS.get("resnet20_cifar")(num_classes=10, in_channels=3, block="recu")
    shortcuts = [m for m in model.modules() if isinstance(m, OptionAShortcut)]
    assert shortcuts and all(isinstance(s.pool, nn.AvgPool2d) for s in shortcuts)
    y = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(OptionAShortcut(1, 3, pool=True)(y)[0, 1], F.avg_pool2d(y, 2)[0, 0])
