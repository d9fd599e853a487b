"""lstm-math: LSTM seq2seq models that learn arithmetic from strings, as a TFX-style pipeline."""

from setuptools import find_packages, setup

# Everything installs under one name, ``lstm_math``: the repository keeps its readable top level
# (pipeline/, components/, serving/) and package_dir maps each folder to lstm_math.<folder>.
# Editable installs (`make install`), wheels and the image all see the same modules; nothing
# named `pipeline`, `components` or `serving` reaches site-packages.
TOP_LEVEL = ("config", "pipeline", "components", "serving")
PACKAGES = [f"lstm_math.{p}" for p in find_packages(include=[f"{t}{s}" for t in TOP_LEVEL
                                                              for s in ("", ".*")])]

setup(
    name="lstm-math",
    version="0.1.0",
    description="Beam -> tf.data -> Keras (tf.distribute) -> keras-tuner -> SavedModel -> TF Serving, "
    "for seq2seq arithmetic",
    python_requires=">=3.10,<3.13",
    packages=PACKAGES,
    package_dir={f"lstm_math.{t}": t for t in TOP_LEVEL},
    package_data={"lstm_math.pipeline": ["configs/*.yaml"],
                  "lstm_math.serving": ["deploy/*", "deploy/**/*"]},
    install_requires=[
        # The full tensorflow package (not tensorflow-cpu): it uses GPUs where there are some,
        # and tensorflow-serving-api requires it.
        "tensorflow>=2.21,<2.22",
        "keras>=3.10,<4",
        "keras-tuner>=1.4.7,<1.5",
        # keras-tuner's BayesianOptimization oracle: a scikit-learn Gaussian process, its
        # acquisition optimized with scipy.
        "scipy>=1.11,<2",
        "scikit-learn>=1.3,<2",
        "tensorboard>=2.20,<2.22",
        "tensorflow-datasets>=4.9.9,<4.10",
        "apache-beam>=2.77,<2.78",
        "google-crc32c>=1.5,<2",  # fast CRCs for TFRecords written from Beam
        "tensorflow-serving-api>=2.21,<2.22",
        "grpcio>=1.60,<2",
        # the model server's HTTP/1.1 front end (serving/server/rest_api.py); its deadlines
        # (serving/server/connections.py) extend aiohttp's connection handler through
        # attributes that are not public API, so the minor version is the one tested
        "aiohttp>=3.14,<3.15",
        # the libuv event loop of the model server's gRPC front end (more requests/s;
        # serving/server/app.py); not on Windows, where it falls back to asyncio's loop
        "uvloop>=0.19,<1; sys_platform != 'win32'",
        "prometheus-client>=0.20,<1",  # the model server's metrics exposition
        "pyyaml>=6,<7",
        "matplotlib>=3.7,<4",
    ],
    extras_require={
        # docker: the Docker API client KFP's local DockerRunner drives (tests/test_containers.py)
        "test": ["pytest>=8,<10", "hypothesis>=6.100,<7", "pytest-timeout>=2.3,<3",
                 "docker>=7,<8"],
        "gcp": ["apache-beam[gcp]>=2.77,<2.78"],
        # Kubeflow Pipelines: `lstm-math compile-kfp`, the image's step runtime, the
        # Kubernetes launcher (the `kubernetes` client comes with kfp).
        "kfp": ["kfp>=2.14,<3", "kfp-kubernetes>=2.14,<3"],
    },
    entry_points={"console_scripts": ["lstm-math=lstm_math.pipeline.cli:main"]},
)
