"""pytorch_grad_cam._core.validation: the one positive-int check, its argparse form, and the seed check."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from pytorch_grad_cam import RandomCAM, ScoreCAM
from pytorch_grad_cam._core.validation import SEED_RANGE, check_seed, int_option, positive_int
from pytorch_grad_cam.cli.dataset import build_parser as batch_parser
from pytorch_grad_cam.cli.photo import build_parser as cli_parser
from pytorch_grad_cam.errors import UsageError
from pytorch_grad_cam.smooth_grad_cam_plusplus import SmoothGradCAMPlusPlus
from pytorch_grad_cam.sscam import SSCAM


@pytest.mark.parametrize(
    ("value", "minimum", "error", "message"),
    [
        (0, 1, ValueError, "batch_size must be an int >= 1; got 0"),
        (-3, 1, ValueError, "batch_size must be an int >= 1; got -3"),
        (-1, 0, ValueError, "batch_size must be an int >= 0; got -1"),
        (2.0, 1, TypeError, "batch_size must be an int >= 1; got 2.0 (float)"),
        (True, 1, TypeError, "batch_size must be an int >= 1; got True (bool)"),
        ("8", 1, TypeError, "batch_size must be an int >= 1; got '8' (str)"),
        (None, 1, TypeError, "batch_size must be an int >= 1; got None (NoneType)"),
    ],
)
def test_positive_int_names_the_argument_and_what_it_expected(value, minimum, error, message):
    with pytest.raises(error) as raised:
        positive_int(value, "batch_size", minimum=minimum)
    assert str(raised.value) == message


def test_positive_int_returns_a_python_int():
    assert positive_int(7, "n") == 7
    assert positive_int(0, "n", minimum=0) == 0
    value = positive_int(np.int64(5), "n")
    assert value == 5 and type(value) is int


def test_int_option_is_the_same_check_for_argparse():
    parse = int_option()
    assert parse(" 12 ") == 12
    for text in ("0", "-1", "1.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected an int >= 1, got {text!r}"):
            parse(text)
    assert int_option(minimum=0)("0") == 0


def test_both_command_lines_check_their_counts_with_it(capsys):
    with pytest.raises(UsageError, match=r"argument --batch-size: expected an int >= 1, got '0'"):
        cli_parser("prog").parse_args(["--image-path", "x.png", "--batch-size", "0"])
    folder = ["--image-dir", "d", "--output-dir", "o"]
    for option, value, minimum in (
        ("--batch-size", "0", 1),
        ("--per-page", "0", 1),
        ("--num-workers", "-1", 0),
    ):
        with pytest.raises(SystemExit):
            batch_parser("prog").parse_args([*folder, option, value])
        assert f"argument {option}: expected an int >= {minimum}, got '{value}'" in capsys.readouterr().err
    assert batch_parser("prog").parse_args([*folder, "--num-workers", "0"]).num_workers == 0


@pytest.mark.parametrize(
    ("seed", "error", "message"),
    [
        (0.5, TypeError, "seed must be an int or None; got 0.5 (float)"),
        (True, TypeError, "seed must be an int or None; got True (bool)"),
        ("1", TypeError, "seed must be an int or None; got '1' (str)"),
        (
            2**64,
            ValueError,
            "seed must be between -2**63 and 2**64 - 1 (torch's seeds); got 18446744073709551616",
        ),
        (-(2**63) - 1, ValueError, "seed must be between -2**63 and 2**64 - 1"),
    ],
)
def test_check_seed_names_the_argument(seed, error, message):
    with pytest.raises(error) as raised:
        check_seed(seed)
    assert str(raised.value).startswith(message)


def test_check_seed_accepts_what_torch_takes():
    assert check_seed(None) is None
    for seed in (*SEED_RANGE, 0, np.int32(3)):
        assert check_seed(seed) == int(seed)
        torch.Generator().manual_seed(check_seed(seed))  # torch takes every seed the check lets through
    assert check_seed(4, "noise_seed") == 4
    with pytest.raises(TypeError, match="noise_seed must be an int or None"):
        check_seed(1.0, "noise_seed")


@pytest.mark.parametrize(
    ("cls", "options", "error", "message"),
    [
        (RandomCAM, {"seed": 0.5}, TypeError, "seed must be an int or None; got 0.5 (float)"),
        (SmoothGradCAMPlusPlus, {"seed": 2**64}, ValueError, "seed must be between -2**63"),
        (SSCAM, {"seed": "7"}, TypeError, "seed must be an int or None; got '7' (str)"),
        (SSCAM, {"num_samples": 0}, ValueError, "num_samples must be an int >= 1; got 0"),
        (SmoothGradCAMPlusPlus, {"num_samples": 2.0}, TypeError, "num_samples must be an int >= 1; got 2.0"),
        (ScoreCAM, {"batch_size": 0}, ValueError, "batch_size must be an int >= 1; got 0"),
    ],
)
def test_the_methods_use_the_one_check(cls, options, error, message, small_cnn):
    with pytest.raises(error) as raised:
        cls(small_cnn, [small_cnn.block2], **options)
    assert str(raised.value).startswith(message)
