from setuptools import find_packages, setup

setup(
    name="facetrain",
    version="0.1.0",
    description=(
        "Distributed training of attention-augmented face-embedding and medical attention "
        "models on WebDataset shards with DeepSpeed"
    ),
    python_requires=">=3.11,<3.13",
    packages=find_packages(include=["launcher*", "facetrain*", "medtrain*", "shards*"]),
    install_requires=[
        # torch 2.13's CPU-only wheel has no torchvision that imports with it; 2.14 does.
        "torch>=2.14,<2.16",
        "torchvision>=0.29,<0.31",
        # JPEG decoding for the training reader: libjpeg-turbo into a caller's buffer, BGR on request.
        "simplejpeg>=1.8,<2",
        "deepspeed>=0.19.3,<0.20",
        "webdataset>=1.0.2,<1.1",
        # 2.6.0 pins torch<2.3 and numpy<2; 2.5.3 has open requirements and ships MTCNN weights.
        "facenet-pytorch==2.5.3",
        "timm>=1.0,<1.1",
        "numpy>=1.26,<3",
        "prometheus-client>=0.20,<1",
        "pyyaml>=6,<7",
        "tqdm>=4.66,<5",
        "scikit-learn>=1.4,<2",
        "scipy>=1.11,<2",
        "h5py>=3.10,<4",
        "matplotlib>=3.8,<4",
        "pillow>=10,<13",
        "psutil>=5.9,<8",
        # ONNX export of the embedding model (torch's dynamo exporter needs onnxscript) and its parity check.
        "onnx>=1.16,<2",
        "onnxscript>=0.5,<1",
        "onnxruntime>=1.18,<2",
    ],
    # scikit-image only for its bundled sample photograph (the MTCNN alignment test); mutmut for `make mutate`;
    # pytorch-metric-learning as the independent reference for the mining tests and benchmark.
    extras_require={
        "dev": [
            "pytest>=8,<10",
            "ruff>=0.6,<1",
            "scikit-image>=0.22,<1",
            "mutmut>=3.8,<4",
            "pytorch-metric-learning>=2.6,<3",
        ]
    },
    entry_points={"console_scripts": ["launch=launcher.launch.cli:main", "shards=shards.cli:main",
                                      "facetrain=facetrain.cli:main"]},
)
