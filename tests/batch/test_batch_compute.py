"""pytorch_grad_cam.batch.compute: a batch's CAMs as tensors, grouped by shape, with targets and top class."""

from __future__ import annotations

import batch_helpers as H
import batch_models
import numpy as np
import torch

from pytorch_grad_cam import EigenCAM, GradCAM
from pytorch_grad_cam.batch.compute import timed_batches
from pytorch_grad_cam.batch.sources import DatasetSamples, as_list


def _batches(cam, targets=None):
    samples = DatasetSamples(H.Items(), cam_size=None, overlay=False, thumbnail=False)
    loader = torch.utils.data.DataLoader(samples, batch_sampler=[[4, 5, 6, 11]], collate_fn=as_list)
    return [batch for batch, _, _ in timed_batches(loader, cam, targets, False, False, [], None)]


def test_a_batch_of_two_shapes_gives_tensors_equal_to_one_call_per_shape():
    """Items 4, 5, 6, 11: (3, 32, 32), (3, 24, 40), a bad item, (3, 32, 32): two CAM calls, one per shape.

    Items 4 and 11 have different top classes (3 and 0), so a row mix-up changes the records."""
    model = batch_models.tiny_cnn()
    (batch,) = _batches(GradCAM(model, [model.features]), targets=lambda meta: meta["label"])
    assert [sample.index for sample, _ in batch] == [4, 5, 6, 11]
    results = {sample.index: result for sample, result in batch}
    assert results[6] is None
    items = H.Items()
    assert (results[4].predicted, results[11].predicted) == (3, 0)
    for group in ([4, 11], [5]):
        x = torch.stack([items[i][0] for i in group])
        expected = GradCAM(model, [model.features])(x, [i % 5 for i in group])
        with torch.no_grad():
            probabilities = torch.softmax(model(x), dim=-1)
        for row, index in enumerate(group):
            result = results[index]
            assert isinstance(result.cam, torch.Tensor) and result.cam.dtype == torch.float32
            np.testing.assert_array_equal(result.cam.numpy(), expected[row])
            assert result.target == index % 5
            assert result.predicted == int(probabilities[row].argmax())
            assert result.probability == round(float(probabilities[row].max()), 6)


def test_targets_none_explains_the_top_class_and_a_method_without_targets_has_none():
    model = batch_models.tiny_cnn()
    (batch,) = _batches(GradCAM(model, [model.features]))
    assert all(result.target == result.predicted for _, result in batch if result is not None)
    (batch,) = _batches(EigenCAM(model, [model.features]), targets=3)
    assert all(result.target is None and result.predicted is not None for _, result in batch if result)
