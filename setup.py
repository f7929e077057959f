"""Install the HOFFR BasicSR plugin.

basicsr==1.4.2 builds from source and imports torch in its setup.py: install torch first, then
``pip install --no-build-isolation basicsr==1.4.2``, then this package (the Makefile does all three).
"""
from setuptools import find_packages, setup

setup(
    name='hoffr',
    version='0.1.0',
    description='HOFFR (Fang & Zhan, Neurocomputing 2022): joint video super-resolution and deblurring '
    'as a BasicSR plugin',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.11',  # 3.10's newest onnxruntime (1.23) runs our ONNX export off torch: README
    packages=find_packages(include=['hoffr_arch', 'hoffr_arch.*', 'datasets_lmdb', 'datasets_lmdb.*']),
    # the bundled clip and the shipped weights: a non-editable install (pip install ., a wheel) has them too
    package_data={'hoffr_arch': ['assets/*.pth', 'assets/*.mp4', 'assets/*.md']},
    install_requires=[
        'torch>=2.0',
        'torchvision>=0.15',
        'basicsr==1.4.2',
        'numpy',
        'opencv-python',
        'av>=14',  # PyAV: FFmpeg's libraries (libx264, AAC) in the wheel, for video in and out
        'lmdb',
        'Pillow',
        'pyyaml',
        'tqdm',
        'matplotlib',
    ],
    extras_require={
        'onnx': ['onnx', 'onnxruntime'],
        # infer --backend openvino: OpenVINO runs our ONNX export (onnx writes and reads its metadata)
        'openvino': ['onnx', 'openvino'],
        # openvino too, so that CI runs the OpenVINO backend's tests instead of skipping them
        'test': ['pytest', 'pytest-xdist', 'onnx', 'onnxruntime', 'openvino', 'ruff'],
    },
)
