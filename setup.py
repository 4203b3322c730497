"""
Pure-Python install of edgent_ros (no ROS needed): model, offline phase, planner logic, CLI.

`pip install .` on a training server gives `edgent-ros train|profile|fit|plan|info|layers`.
The ROS 2 nodes and messages come from the colcon/ament build (CMakeLists.txt); the two installs
share the `edgent_ros` package name and extend each other's path (see edgent_ros/__init__.py).
"""
from setuptools import setup

setup(
    name='edgent_ros',
    version='0.1.0',
    description='Edgent device-edge co-inference: multi-exit DNN split between robot and edge',
    license='Apache-2.0',   # text in LICENSE, which setuptools packages by default
    packages=['edgent_ros', 'edgent_ros.core', 'edgent_ros.offline', 'edgent_ros.nodes',
              'edgent_ros.evaluation', 'edgent_ros.cli', 'edgent_ros.models'],
    package_data={'edgent_ros': ['artifacts/*.json', 'artifacts/*.npz',
                                 'artifacts/*.safetensors', 'artifacts/*.yaml',
                                 'artifacts/transfer_logs/*.csv',
                                 'artifacts/transfer_logs/*.json']},
    python_requires='>=3.10',
    install_requires=[
        'numpy>=1.26,<3',
        # 2.13.0 is the CPU build this project is tested with; a wider range pulls CUDA builds.
        'torch>=2.1,<=2.13.0',
        'scikit-learn>=1.4',
        'scipy>=1.10',
        'safetensors>=0.4',
        'opencv-python-headless>=4.8,<5',
        'matplotlib>=3.8',
        'tqdm>=4.66',
        'pyyaml>=6',
    ],
    extras_require={'bags': ['rosbags>=0.10']},
    entry_points={
        'console_scripts': [
            'edgent-ros = edgent_ros.cli.main:main',
            'camera_node = edgent_ros.nodes.entry:camera_node',
            'edge_node = edgent_ros.nodes.entry:edge_node',
            'planner_node = edgent_ros.nodes.entry:planner_node',
            'viz_node = edgent_ros.nodes.entry:viz_node',
        ],
    },
)
