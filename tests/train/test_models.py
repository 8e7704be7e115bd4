import pytest
import timm
import torch

from mhss_ray.config import ModelConfig
from mhss_ray.errors import UserError
from mhss_ray.train.models import create_network


def test_any_timm_model_with_in_chans_from_the_data():
    net = create_network(ModelConfig(name="mobilenetv3_small_050"), num_classes=7, in_chans=4)
    assert net(torch.zeros(2, 4, 32, 32)).shape == (2, 7)


def test_local_pretrained_file_is_loaded(tmp_path):
    source = timm.create_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    net = create_network(ModelConfig(name="resnet18", pretrained_path=str(path)), num_classes=10, in_chans=3)
    assert torch.equal(net.layer1[0].conv1.weight, source.layer1[0].conv1.weight)
    assert net.fc.out_features == 10  # classifier of another size is re-initialised
    one = create_network(ModelConfig(name="resnet18", pretrained_path=str(path)), num_classes=10, in_chans=1)
    assert one.conv1.weight.shape[1] == 1  # first conv adapted to one channel


def test_model_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="model.name: unknown timm model 'resnet_nope'"):
        create_network(ModelConfig(name="resnet_nope"), 10, 3)
    with pytest.raises(UserError, match="model.pretrained_path: .*missing.pth: no such file"):
        create_network(ModelConfig(pretrained_path=str(tmp_path / "missing.pth")), 10, 3)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pth: cannot load into resnet18"):
        create_network(ModelConfig(pretrained_path=str(junk)), 10, 3)


def test_a_pretrained_file_of_another_network_or_untrusted_is_refused_in_one_line(tmp_path, capfd):
    """timm loads leniently: a file sharing no layer with the network used to train from random weights in
    silence; an untrusted pickle's error came after torch's two-line warning."""
    import pickle

    other = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, other)  # what timm took without a word
    with pytest.raises(UserError, match=r"holds 0 of the \d+ weights of resnet18 below its classifier \(missing conv1.weight"):
        create_network(ModelConfig(name="resnet18", pretrained_path=str(other)), 10, 3)

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    untrusted = tmp_path / "untrusted.pth"
    untrusted.write_bytes(pickle.dumps({"x": Evil()}, protocol=4))
    with pytest.raises(UserError, match="untrusted.pth: cannot load into resnet18 .weights_only=True blocked"):
        create_network(ModelConfig(name="resnet18", pretrained_path=str(untrusted)), 10, 3)
    captured = capfd.readouterr()
    assert "owned" not in captured.out and captured.err == "", captured.err  # nothing ran, nothing else printed
