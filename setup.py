import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


class BuildPyWithConfigs(build_py):
    """Ship configs/ inside the package (tfpps/_configs) so an installed tfpps finds its YAML configs."""

    def run(self):
        super().run()
        source = Path(__file__).resolve().parent / "configs"
        if source.is_dir():
            shutil.copytree(source, Path(self.build_lib) / "tfpps" / "_configs", dirs_exist_ok=True)


setup(
    name="tfpps",
    version="0.1.0",
    description="Personalized product search and sequential recommendation on TensorFlow/Keras, "
    "with an Apache Beam feature pipeline.",
    python_requires=">=3.10,<3.12",
    packages=find_packages(include=["tfpps", "tfpps.*", "beam_jobs", "beam_jobs.*"]),
    package_data={"tfpps": ["py.typed"]},
    install_requires=[
        "tensorflow==2.16.2",
        "tf-keras~=2.16.0",
        "tensorflow-recommenders==0.7.7",
        "tensorflow-io==0.37.1",
        "apache-beam[tfrecord]==2.77.0",
        "keras-tuner==1.4.8",
        "scipy>=1.10",  # keras-tuner's BayesianOptimization (keras-tuner[bayesian])
        "scikit-learn>=1.3",
        "numpy<2",
        "pyyaml>=6",
        "pyarrow>=14",
        "matplotlib>=3.7",
    ],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "pandas>=2", "ruff==0.17.6"],
        "gcp": ["apache-beam[gcp]==2.77.0"],
        "scann": ["scann==1.3.2"],  # ScaNN index for tfpps.export (the release built for TensorFlow 2.16)
    },
    cmdclass={"build_py": BuildPyWithConfigs},
    entry_points={"console_scripts": ["tfpps-train=tfpps.cli.train:main"]},
)
