"""pytorch_grad_cam.batch.runner: run()'s arguments, the model left as it was, empty input, progress."""

from __future__ import annotations

import batch_helpers as H
import batch_models
import pytest
import torch
from torch.utils.data import IterableDataset

from pytorch_grad_cam import batch as B


def test_the_model_is_left_as_it_was_on_success_and_on_error(tmp_path):
    model = batch_models.tiny_cnn().train()
    model.head.weight.requires_grad_(False)
    calls = []
    model.features.register_forward_hook(lambda *args: calls.append(1))
    state = {name: value.clone() for name, value in model.state_dict().items()}

    def unchanged() -> None:
        assert model.training and all(module.training for module in model.modules())
        assert [p.requires_grad for p in model.parameters()] == [True, True, True, True, False, True]
        assert all(p.grad is None for p in model.parameters())
        assert len(model.features._forward_hooks) == 1 and not model.features._backward_hooks
        assert all(torch.equal(state[name], value) for name, value in model.state_dict().items())

    B.run(model, [model.features], H.Items(), "gradcam", output_dir=tmp_path / "ok", num_workers=0)
    unchanged()
    with pytest.raises(ValueError, match="never ran"):
        B.run(
            model,
            [torch.nn.Conv2d(3, 3, 1)],
            H.Items(),
            "gradcam",
            output_dir=tmp_path / "bad",
            num_workers=0,
        )
    unchanged()


class _Stream(IterableDataset):
    def __iter__(self):
        return iter([])


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1; got 0"),
        ({"num_workers": -1}, ValueError, "num_workers must be an int >= 0; got -1"),
        ({"cam_size": (0, 4)}, B.ConfigError, "cam_size must be a positive int or an"),
        ({"image_size": None}, B.ConfigError, "image_size must be"),
        ({"method": "nosuchcam"}, B.ConfigError, "unknown method 'nosuchcam'"),
        ({"targets": "cat"}, B.ConfigError, "targets must be None, an int"),
        ({"html": 1}, B.ConfigError, "html must be True or False"),
        ({"dataset_or_dir": _Stream()}, TypeError, "map-style"),
        ({"dataset_or_dir": 42}, TypeError, "dataset_or_dir must be a folder path"),
        ({"dataset_or_dir": "/no/such/folder"}, B.ConfigError, "is not a folder"),
    ],
)
def test_bad_arguments_name_the_argument(tmp_path, options, error, match):
    model = batch_models.tiny_cnn()
    arguments = {"dataset_or_dir": H.Items(), "method": "gradcam", "output_dir": tmp_path, **options}
    with pytest.raises(error, match=match):
        B.run(model, [model.features], arguments.pop("dataset_or_dir"), arguments.pop("method"), **arguments)
    assert not (tmp_path / B.MANIFEST_NAME).exists()


def test_an_empty_folder_gives_an_empty_manifest_and_a_warning(tmp_path):
    model = batch_models.tiny_cnn()
    (tmp_path / "photos").mkdir()
    with pytest.warns(UserWarning, match="no images in"):
        summary = B.run(model, [model.features], tmp_path / "photos", output_dir=tmp_path / "out", html=True)
    assert (summary.total, summary.written) == (0, 0)
    assert (tmp_path / "out" / B.MANIFEST_NAME).read_text() == ""
    assert [page.name for page in summary.pages] == ["index.html"]


def test_output_dir_must_not_be_the_image_folder(tmp_path):
    model = batch_models.tiny_cnn()
    with pytest.raises(B.ConfigError, match="must not be the image folder"):
        B.run(model, [model.features], tmp_path, output_dir=tmp_path)


def test_progress_bar_only_when_asked_or_on_a_terminal(tmp_path, capsys):
    model = batch_models.tiny_cnn()
    B.run(model, [model.features], H.Items(), "gradcam", output_dir=tmp_path / "a", num_workers=0)
    assert capsys.readouterr().err == ""
    B.run(
        model, [model.features], H.Items(), "gradcam", output_dir=tmp_path / "b", num_workers=0, progress=True
    )
    err = capsys.readouterr().err
    assert "12/12" in err and "img/s" in err
