"""utils.tensor_result: a CAM call's maps as a tensor, for that call only."""

from __future__ import annotations

import threading

import numpy as np
import torch

from pytorch_grad_cam import GradCAM
from pytorch_grad_cam._core.tensor_result import cam_maps


def test_cam_maps_is_the_call_as_a_tensor(small_cnn, images):
    x = images(2, size=16)
    cam = GradCAM(small_cnn, [small_cnn.block2])
    maps = cam_maps(cam, x, [1, 3], aug_smooth=True)
    assert isinstance(maps, torch.Tensor) and maps.dtype == torch.float32
    np.testing.assert_array_equal(maps.numpy(), cam(x, [1, 3], aug_smooth=True))
    assert isinstance(cam(x, [1, 3]), np.ndarray)  # the request ended with the call


def test_calls_inside_and_in_other_threads_get_numpy(small_cnn, images):
    x = images(1, size=16)
    inner = GradCAM(small_cnn, [small_cnn.block1])
    seen = []

    def target(output):
        # a CAM call made while the outer call runs, here and in another thread
        if not seen:
            seen.append(type(inner(x, [0])))
            thread = threading.Thread(target=lambda: seen.append(type(inner(x, [0]))))
            thread.start()
            thread.join()
        return output[..., 2]

    maps = cam_maps(GradCAM(small_cnn, [small_cnn.block2]), x, [target])
    assert isinstance(maps, torch.Tensor)
    assert seen == [np.ndarray, np.ndarray]


def test_a_callable_returning_numpy_is_wrapped():
    maps = cam_maps(lambda x: np.ones((1, 2, 2), dtype=np.float32), None)
    torch.testing.assert_close(maps, torch.ones(1, 2, 2))
